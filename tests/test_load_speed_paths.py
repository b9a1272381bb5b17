"""The loader's and proxy model's fast paths give exactly what the general code gives.

Each fast path accepts only inputs of a common shape and must then build the same objects as
the field-by-field (or general) code; for everything else that code runs and names the bad
field. These tests compare both on the common shapes and on seeded random mutations of them.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from netproxy.errors import InputError
from netproxy.k8s import decode
from netproxy.k8s.ipaddr import all_canonical_ipv4
from netproxy.k8s.objects import Endpoint, EndpointPort, EndpointSlice
from netproxy.proxy.endpoints import endpoints_map
from netproxy.proxy.serviceport import ServicePortName

SVC: dict[str, Any] = {
    "metadata": {"name": "web", "namespace": "ns"},
    "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
             "ipFamilies": ["IPv4"], "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}
LB: dict[str, Any] = {
    "metadata": {"name": "lb", "namespace": "ns", "labels": {"a": "b"}},
    "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.2", "externalTrafficPolicy": "Local",
             "healthCheckNodePort": 30500, "loadBalancerSourceRanges": [" 10.0.0.0/8"],
             "externalIPs": ["1.1.1.1"], "sessionAffinity": "ClientIP",
             "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}, "selector": {"app": "x"},
             "ports": [{"port": 443, "nodePort": 30443, "protocol": "UDP"}]},
    "status": {"loadBalancer": {"ingress": [{"ip": "5.5.5.5", "ipMode": "VIP"}, {"hostname": "h"}]}}}
SLICE: dict[str, Any] = {
    "metadata": {"name": "web-1", "namespace": "ns", "labels": {"kubernetes.io/service-name": "web"}},
    "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    "endpoints": [{"addresses": [f"10.1.0.{i}"], "nodeName": f"node-{i}",
                   "conditions": {"ready": i != 1, "serving": True, "terminating": i == 2}}
                  for i in range(4)]}

VALUES: list[Any] = [
    None, True, False, 0, 1, 80, 65536, "80", "", "TCP", "ICMP", "10.0.0.1", "010.0.0.1", "fd00::1",
    "None", "NodePort", "ExternalName", "Local", "Nearby", "ClientIP", [], {}, ["10.0.0.1"], [None],
    [1], ["IPv6"], ["IPv5"], {"ready": 1}, 1.5, "10.0.0.0/8", "10.0.0.0/33", ["10.0.0.0/33"],
    {"forZones": [{"name": "z"}]}, [{"ip": "1.2.3.4"}], [{"ip": 5}], {"clientIP": {"timeoutSeconds": 0}}]


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        out.extend(_paths(value, (*prefix, key)))
    return out


def _mutations(doc: dict[str, Any], count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        new = copy.deepcopy(doc)
        for _ in range(rng.choice((1, 1, 2))):
            *parents, last = rng.choice(_paths(new))
            node = new
            for key in parents:
                node = node[key]
            if isinstance(node, dict) and rng.random() < 0.25:
                del node[last]
            else:
                node[last] = copy.deepcopy(rng.choice(VALUES))
        out.append(new)
    return out


def _outcome(fn: Any, doc: dict[str, Any]) -> tuple[str, str]:
    try:
        return "ok", repr(fn(copy.deepcopy(doc), "f, document 1"))
    except InputError as err:
        return "error", str(err)


@pytest.mark.parametrize("base", [SVC, LB], ids=["clusterip", "loadbalancer"])
def test_common_service_path_is_the_checked_decoder(base: dict[str, Any]) -> None:
    assert decode._common_service(copy.deepcopy(base), "f") is not None
    for doc in [base, *_mutations(base, 1500, seed=1)]:
        fast = decode._common_service(copy.deepcopy(doc), "f, document 1")
        if fast is not None:
            assert repr(fast) == _outcome(decode._checked_service, doc)[1]
        assert _outcome(decode.decode_service, doc) == _outcome(decode._checked_service, doc)


def test_common_endpoints_path_is_the_checked_decoder() -> None:
    for doc in [SLICE, *_mutations(SLICE, 1500, seed=2)]:
        raws = doc.get("endpoints")
        fast = decode._common_endpoints(raws) if isinstance(raws, list) else None
        if fast is None:
            continue
        checked = []
        for i, raw in enumerate(raws):  # type: ignore[union-attr]
            try:
                checked.append(decode._endpoint_checked(raw, True, "f", f"endpoints[{i}]"))
            except InputError:
                checked = None  # type: ignore[assignment]
                break
        if checked is not None:
            assert repr(fast[0]) == repr(checked)
            assert fast[1] == [ep.addresses[0] for ep in checked]


@pytest.mark.parametrize("texts, expected", [
    ([], False), ([""], False), (["1.2.3.4"], True), (["1.2.3.4", "255.255.255.255", "0.0.0.0"], True),
    (["1.2.3.4,5.6.7.8"], False), (["1.2.3.4,", "5.6.7.8"], False), (["01.2.3.4"], False),
    (["1.2.3.4", ""], False), (["256.1.1.1"], False), (["1.2.3.4", None], False), (["fd00::1"], False),
])
def test_all_canonical_ipv4(texts: list, expected: bool) -> None:
    assert all_canonical_ipv4(texts) is expected


def test_endpoints_map_reads_a_slice_changed_after_decoding() -> None:
    eps = decode.decode_endpoint_slice(copy.deepcopy(SLICE), "f")
    eps.endpoints[0] = Endpoint(["010.1.0.9"])  # changed after decoding: sloppy, parsed again
    eps.endpoints[3] = Endpoint(["10.1.0.2"], terminating=True)  # a duplicate: the general merge
    got = endpoints_map([eps], "ipv4", "")[ServicePortName("ns", "web", "http", "TCP")]
    assert [(e.endpoint, e.terminating) for e in got] == [
        ("10.1.0.1:8080", False), ("10.1.0.2:8080", True), ("10.1.0.9:8080", False)]


def test_endpoints_map_one_slice_path_matches_the_merge() -> None:
    ports = [EndpointPort("http", "TCP", 8080), EndpointPort("dns", "UDP", 53)]
    one = EndpointSlice("ns", "a", "web", "IPv4", ports,
                        [Endpoint(["10.0.0.10"], node_name="n1"), Endpoint(["10.0.0.2"], ready=False)],
                        labels={"kubernetes.io/service-name": "web"})
    dup = EndpointSlice("ns", "b", "web", "IPv4", ports[:1], [Endpoint(["10.0.0.2"])],
                        labels={"kubernetes.io/service-name": "web"})
    got = endpoints_map([one, dup], "ipv4", "n1")
    http = got[ServicePortName("ns", "web", "http", "TCP")]
    assert [(e.endpoint, e.ready, e.is_local) for e in http] == [
        ("10.0.0.10:8080", True, True), ("10.0.0.2:8080", True, False)]  # b's ready entry wins
    assert [e.endpoint for e in got[ServicePortName("ns", "web", "dns", "UDP")]] == [
        "10.0.0.10:53", "10.0.0.2:53"]
