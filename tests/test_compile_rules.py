"""Targeted compiler checks that golden files show less directly: the large-cluster
threshold, the Go-style mark and probability strings, and the synthetic generator."""

from __future__ import annotations

import pytest

from netproxy.compiler import compile_cluster
from netproxy.k8s.loader import Cluster
from netproxy.k8s.objects import Endpoint, EndpointPort, EndpointSlice, Service, ServicePortSpec
from netproxy.netfilter.values import kube_probability
from netproxy.proxy.settings import ProxySettings


def cluster_with(endpoints: int) -> Cluster:
    svc = Service("big", "fleet", cluster_ip="10.96.0.1", ports=[ServicePortSpec("http", "TCP", 80)])
    eps = EndpointSlice("big", "fleet-a", "fleet", "IPv4", [EndpointPort("http", "TCP", 8080)],
                        [Endpoint([f"10.1.{i // 250}.{i % 250 + 1}"]) for i in range(endpoints)],
                        labels={"kubernetes.io/service-name": "fleet"})
    return Cluster(services=[svc], slices=[eps])


@pytest.mark.parametrize("count, commented", [(1000, True), (1001, False)])
def test_large_cluster_threshold(count: int, commented: bool) -> None:
    nat = compile_cluster(cluster_with(count), ProxySettings()).payload.tables["nat"]
    svc_chain = next(c for n, c in nat.chains.items() if n.startswith("KUBE-SVC-"))
    sep_chain = next(c for n, c in nat.chains.items() if n.startswith("KUBE-SEP-"))
    assert len(svc_chain.rules) == count
    assert (svc_chain.rules[0].comment() is not None) == commented
    assert (sep_chain.rules[0].comment() is not None) == commented
    # the cluster-IP rule keeps its comment either way
    assert nat.chains["KUBE-SERVICES"].rules[0].comment() == "big/fleet:http cluster IP"


@pytest.mark.parametrize("bit, text", [(14, "0x00004000"), (0, "0x00000001"), (31, "0x80000000")])
def test_mark_is_go_hash_08x(bit: int, text: str) -> None:
    assert ProxySettings(masquerade_bit=bit).mark == text


@pytest.mark.parametrize("n, text", [(2, "0.5000000000"), (3, "0.3333333333"), (6, "0.1666666667"),
                                     (7, "0.1428571429")])
def test_probability_is_go_010f(n: int, text: str) -> None:
    assert kube_probability(n) == text


def test_synthetic_cluster_is_seeded_and_changes_percent() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "synth_cluster.py"
    spec = importlib.util.spec_from_file_location("synth_cluster", path)
    assert spec is not None and spec.loader is not None
    synth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synth)
    a, b = synth.generate(40, 5, 7), synth.generate(40, 5, 7)
    assert a == b and a != synth.generate(40, 5, 8)
    kinds = {o["spec"]["type"] for o in a if o["kind"] == "Service"}
    assert kinds == {"ClusterIP", "NodePort", "LoadBalancer"}
    changed = synth.generate(40, 5, 7, change_percent=10)
    sizes = [len(o["endpoints"]) for o in a if o["kind"] == "EndpointSlice"]
    sizes2 = [len(o["endpoints"]) for o in changed if o["kind"] == "EndpointSlice"]
    assert sum(x != y for x, y in zip(sizes, sizes2, strict=True)) == 4
