"""Trace tables for kube-proxy features on rules compiled from cluster objects.

Every expectation below was worked out by hand from the kube-proxy rule layout (the
reference spec, sections 2 and 6): which chain a packet enters, which endpoints it can be
DNATed to with which kernel probability, and whether KUBE-MARK-MASQ is hit on its way.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import pytest

from netproxy.commands.cluster_options import build_ruleset, node_local_ips
from netproxy.trace import Packet, Tracer

DATA = Path(__file__).resolve().parent / "data" / "trace"
NODE = "192.168.0.10"
POD = "10.244.1.50"       # a pod on this node
OUTSIDE = "172.16.5.5"    # a client outside the cluster


def kernel(p: float) -> float:
    """What xt_statistic really uses for --probability p: lround(2^31 p) / 2^31."""
    return math.floor(2**31 * p + 0.5) / 2**31


P3 = kernel(1 / 3)  # "0.3333333333" rounds to the same stored value
SPLIT3 = [P3, (1 - P3) * 0.5, (1 - P3) * 0.5]


@cache
def tracer(family: str = "ipv4") -> Tracer:
    name = "cluster.yaml" if family == "ipv4" else "cluster-v6.yaml"
    params = {"inputs": (str(DATA / name),), "family": family}
    return Tracer(build_ruleset(params), local_ips=node_local_ips(params))


def trace(family: str = "ipv4", **kw: object):
    res = tracer(family).trace(Packet(**kw))  # type: ignore[arg-type]
    assert res.total() == pytest.approx(1.0, abs=1e-12)
    return res


def dnat_table(res) -> dict[str | None, float]:
    out: dict[str | None, float] = {}
    for o in res.outcomes:
        out[o.dnat] = out.get(o.dnat, 0.0) + o.probability
    return out


CASES = [
    # name, packet, verdicts, {dnat: probability}, masquerade (for every outcome)
    ("pod to ClusterIP", dict(src=POD, dst="10.96.0.10", dport=80), {"ACCEPT"},
     {"10.244.1.5:8080": SPLIT3[0], "10.244.2.6:8080": SPLIT3[1], "10.244.3.7:8080": SPLIT3[2]},
     False),
    ("outside client to ClusterIP is masqueraded", dict(src=OUTSIDE, dst="10.96.0.10", dport=80),
     {"ACCEPT"}, {"10.244.1.5:8080": SPLIT3[0], "10.244.2.6:8080": SPLIT3[1],
                  "10.244.3.7:8080": SPLIT3[2]}, True),
    ("node to ClusterIP (OUTPUT) is masqueraded", dict(src=NODE, dst="10.96.0.10", dport=80),
     {"ACCEPT"}, {"10.244.1.5:8080": SPLIT3[0], "10.244.2.6:8080": SPLIT3[1],
                  "10.244.3.7:8080": SPLIT3[2]}, True),
    ("localhost NodePort", dict(origin="localhost", dst="127.0.0.1", dport=30080), {"ACCEPT"},
     {"10.244.1.8:8080": 0.5, "10.244.2.9:8080": 0.5}, True),
    ("outside to NodePort (eTP Cluster)", dict(src=OUTSIDE, dst=NODE, dport=30080), {"ACCEPT"},
     {"10.244.1.8:8080": 0.5, "10.244.2.9:8080": 0.5}, True),
    ("outside to NodePort eTP Local: local endpoint only, source kept",
     dict(src=OUTSIDE, dst=NODE, dport=30081), {"ACCEPT"}, {"10.244.1.10:8080": 1.0}, False),
    ("pod to NodePort eTP Local: short-circuit to all endpoints",
     dict(src=POD, dst=NODE, dport=30081), {"ACCEPT"},
     {"10.244.1.10:8080": 0.5, "10.244.2.11:8080": 0.5}, False),
    ("node to NodePort eTP Local: masqueraded, all endpoints",
     dict(src=NODE, dst=NODE, dport=30081), {"ACCEPT"},
     {"10.244.1.10:8080": 0.5, "10.244.2.11:8080": 0.5}, True),
    ("LoadBalancer from an allowed source range", dict(src="198.51.100.7", dst="203.0.113.10",
                                                       dport=443),
     {"ACCEPT"}, {"10.244.2.12:8443": 1.0}, True),
    ("LoadBalancer NodePort", dict(src=OUTSIDE, dst=NODE, dport=30443), {"ACCEPT"},
     {"10.244.2.12:8443": 1.0}, True),
    ("externalIP", dict(src=OUTSIDE, dst="198.51.100.50", dport=8443), {"ACCEPT"},
     {"10.244.3.13:8080": 1.0}, True),
    ("ClusterIP of the externalIP service from a pod", dict(src=POD, dst="10.96.0.50", dport=8443),
     {"ACCEPT"}, {"10.244.3.13:8080": 1.0}, False),
    ("terminating endpoint not used while a ready one exists",
     dict(src=POD, dst="10.96.0.90", dport=80), {"ACCEPT"}, {"10.244.2.17:8080": 1.0}, False),
    ("only terminating endpoints: they are used",
     dict(src=POD, dst="10.96.0.91", dport=80), {"ACCEPT"},
     {"10.244.2.19:8080": 0.5, "10.244.3.20:8080": 0.5}, False),
    ("UDP service", dict(src=POD, dst="10.96.0.100", dport=53, proto="udp"), {"ACCEPT"},
     {"10.244.1.21:5353": 1.0}, False),
    ("TCP to a UDP-only service port: no DNAT", dict(src=POD, dst="10.96.0.100", dport=53),
     {"ACCEPT"}, {None: 1.0}, False),
    ("established packets skip nat", dict(src=POD, dst="10.96.0.10", dport=80,
                                          ct_state="ESTABLISHED"), {"ACCEPT"}, {None: 1.0}, False),
]


@pytest.mark.parametrize(("name", "packet", "verdicts", "dnats", "masq"), CASES,
                         ids=[c[0] for c in CASES])
def test_trace_table(name: str, packet: dict[str, object], verdicts: set[str],
                     dnats: dict[str | None, float], masq: bool) -> None:
    res = trace(**packet)
    assert {o.verdict for o in res.outcomes} == verdicts
    got = dnat_table(res)
    assert got.keys() == dnats.keys()
    for key, p in dnats.items():
        assert got[key] == pytest.approx(p, abs=1e-15), key
    assert {o.masquerade for o in res.outcomes} == {masq}


@pytest.mark.parametrize(("packet", "verdict", "chain"), [
    (dict(src=OUTSIDE, dst="203.0.113.10", dport=443), "DROP", "KUBE-PROXY-FIREWALL"),
    (dict(src=POD, dst="10.96.0.60", dport=80), "REJECT", "KUBE-SERVICES"),
    (dict(src=OUTSIDE, dst=NODE, dport=30090), "REJECT", "KUBE-EXTERNAL-SERVICES"),
    (dict(src=POD, dst="10.96.0.80", dport=80), "DROP", "KUBE-SERVICES"),
    (dict(src=OUTSIDE, dst="127.0.0.1", dport=22), "DROP", "KUBE-FIREWALL"),
])
def test_blocked(packet: dict[str, object], verdict: str, chain: str) -> None:
    res = trace(**packet)
    (o,) = res.outcomes
    assert o.verdict == verdict
    last = o.path[-1]
    assert (last.table, last.chain) == ("filter", chain)
    assert f"-A {chain} " in last.text


def test_hairpin_masquerades_only_the_branch_back_to_itself() -> None:
    res = trace(src="10.244.1.5", dst="10.96.0.10", dport=80)
    masq = {o.dnat: o.masquerade for o in res.outcomes}
    assert masq == {"10.244.1.5:8080": True, "10.244.2.6:8080": False, "10.244.3.7:8080": False}


def test_session_affinity_sticks() -> None:
    pk = Packet(src=POD, dst="10.96.0.70", dport=80)
    first, second, third = tracer().trace_sequence([pk, pk, pk])
    assert dnat_table(first) == {"10.244.2.14:8080": 0.5, "10.244.3.15:8080": 0.5}
    assert second.same_as_previous == 1.0 and third.same_as_previous == 1.0
    # the second packet goes through the recent --rcheck rule, not the statistic rule
    for o in second.outcomes:
        svc_hop = next(h for h in o.path if h.chain.startswith("KUBE-SVC-"))
        assert "--rcheck" in svc_hop.text
    other = tracer().trace_sequence([pk, Packet(src="10.244.1.51", dst="10.96.0.70", dport=80)])
    # a different client is split again, and "same endpoint as before" is not said of it:
    # there is no earlier packet of that client to that Service
    assert other[1].same_as_previous is None
    assert dnat_table(other[1]) == {"10.244.2.14:8080": 0.5, "10.244.3.15:8080": 0.5}


def test_ipv6_cluster_ip_and_nodeport() -> None:
    res = trace("ipv6", src="fd00:10:244:1::50", dst="fd00:96::10", dport=80)
    assert dnat_table(res) == {"[fd00:10:244:1::5]:8080": 0.5, "[fd00:10:244:2::6]:8080": 0.5}
    assert not any(o.masquerade for o in res.outcomes)
    res = trace("ipv6", src="2001:db8::7", dst="fd00:192::10", dport=30100)
    assert dnat_table(res) == {"[fd00:10:244:1::5]:8080": 0.5, "[fd00:10:244:2::6]:8080": 0.5}
    assert all(o.masquerade for o in res.outcomes)
    res = trace("ipv6", src="fd00:10:244:1::50", dst="fd00:96::20", dport=80)
    assert [o.verdict for o in res.outcomes] == ["REJECT"]
    assert "icmp6-port-unreachable" in res.outcomes[0].path[-1].text


def test_paths_name_lines_and_rule_text() -> None:
    res = trace(src=OUTSIDE, dst=NODE, dport=30081)
    (o,) = res.outcomes
    chains = [h.chain for h in o.path]
    assert chains[:3] == ["PREROUTING", "KUBE-SERVICES", "KUBE-NODEPORTS"]
    assert any(c.startswith("KUBE-SVL-") for c in chains)
    assert all(h.text.startswith(("-A ", "-P ")) for h in o.path)
    assert o.path[-1].text.startswith("-P POSTROUTING ACCEPT")


def _tracer_with(**flags: object) -> Tracer:
    params = {"inputs": (str(DATA / "cluster.yaml"),), "family": "ipv4", **flags}
    return Tracer(build_ruleset(params), local_ips=node_local_ips(params))


def test_bridge_interface_detector_needs_the_interface() -> None:
    t = _tracer_with(detect_local_mode="BridgeInterface", bridge_interface="cni0")
    pod = t.trace(Packet(src=POD, dst="10.96.0.10", dport=80, in_interface="cni0"))
    assert {o.masquerade for o in pod.outcomes} == {False}
    other = t.trace(Packet(src=POD, dst="10.96.0.10", dport=80, in_interface="eth0"))
    assert {o.masquerade for o in other.outcomes} == {True}
    unknown = t.trace(Packet(src=POD, dst="10.96.0.10", dport=80))
    (o,) = unknown.outcomes  # decided before the statistic fork: one branch
    assert o.verdict == "UNKNOWN" and "--in-interface" in (o.reason or "")
    assert "! -i cni0" in o.path[-1].text


def test_masquerade_all() -> None:
    t = _tracer_with(masquerade_all=True)
    res = t.trace(Packet(src=POD, dst="10.96.0.10", dport=80))
    assert {o.masquerade for o in res.outcomes} == {True}
    assert sum(o.probability for o in res.outcomes) == pytest.approx(1.0)
