"""The doctor on freshly compiled clusters: what kube-proxy would write is never a failure,
except where the cluster itself has a problem (a Service without endpoints)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from test_doctor_checks import failures

from netproxy.commands.cluster_options import build_ruleset
from netproxy.doctor import diagnose
from netproxy.doctor.report import INFO, WARNING

REPO = Path(__file__).resolve().parents[1]


def _synth():
    spec = importlib.util.spec_from_file_location("synth_cluster", REPO / "scripts" / "synth_cluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synthetic_cluster_has_no_failures(tmp_path: Path) -> None:
    # 60 Services cover every kind of the generator's pattern of 20, Local policies included.
    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps({"apiVersion": "v1", "kind": "List",
                                   "items": _synth().generate(60, 4, 1)}))
    rules = build_ruleset({"inputs": (str(cluster),), "family": "ipv4"})
    report = diagnose(rules, local_ips=["192.168.0.10"])
    assert failures(report) == {}
    assert report.exit_code == 0
    statuses = {(f.check, f.status) for s in report.services for f in s.findings}
    assert ("local-endpoints", INFO) in statuses  # Local policy, no endpoint on node-0: by design
    assert ("walk-nodeport", INFO) in statuses
    assert not any(status == WARNING for _, status in statuses)


def test_example_cluster_fails_only_the_service_without_endpoints() -> None:
    rules = build_ruleset({"inputs": (str(REPO / "fixtures" / "example-cluster"),), "family": "ipv4"})
    report = diagnose(rules, local_ips=["192.168.0.11"])
    assert failures(report) == {"shop/legacy-db:postgres": {"endpoints"}}
    walk = next(f for s in report.services if s.name == "shop/frontend:http"
                for f in s.findings if f.check == "walk-split")
    assert walk.summary == ("10.96.100.10:80 reaches 3 endpoints, 33.33% each from a pod, the node "
                            "and outside the pod network")


def test_ipvs_leftovers_named_by_the_cluster_objects() -> None:
    """A left-over chain no comment names is named by the hash of a cluster Service port."""
    from netproxy.chainnames import service_chain
    from netproxy.parser import parse_rules

    chain = service_chain("shop/cart:grpc", "tcp")
    text = "\n".join([
        "*nat", ":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":KUBE-SERVICES - [0:0]",
        ":KUBE-MARK-MASQ - [0:0]", f":{chain} - [0:0]",
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        "-A KUBE-SERVICES -m set --match-set KUBE-CLUSTER-IP dst,dst -j ACCEPT", "COMMIT", ""])
    ruleset = parse_rules(text, source="ipvs-node.rules")
    blind = diagnose(ruleset)
    mode = next(f for f in blind.node if f.check == "proxy-mode")
    assert f"a Service port not named in the dump ({chain})" in mode.details[0]
    expected = build_ruleset({"inputs": (str(REPO / "fixtures" / "example-cluster"),), "family": "ipv4"})
    named = diagnose(ruleset, expected=expected)
    mode = next(f for f in named.node if f.check == "proxy-mode")
    assert f"shop/cart:grpc ({chain})" in mode.details[0]
    # IPVS holds the Services: no comparison of iptables rules with the cluster objects.
    assert failures(named) == {} and named.services == []
