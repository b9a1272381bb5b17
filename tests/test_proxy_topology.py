"""Endpoint selection (kube-proxy's CategorizeEndpoints) as tables."""

from __future__ import annotations

import pytest

from netproxy.proxy.endpoints import EndpointInfo, endpoint_string
from netproxy.proxy.serviceport import ServicePortInfo, ServicePortName
from netproxy.proxy.topology import SAME_NODE, SAME_ZONE, categorize, topology_mode

NODE, ZONE = "node-1", "zone-a"


def ep(ip: str, *, ready: bool = True, serving: bool | None = None, terminating: bool = False,
       local: bool = False, zones: str = "", nodes: str = "") -> EndpointInfo:
    return EndpointInfo(ip=ip, port=80, endpoint=endpoint_string(ip, 80), ready=ready,
                        serving=ready if serving is None else serving, terminating=terminating,
                        is_local=local, zone_hints=frozenset(z for z in zones.split(",") if z),
                        node_hints=frozenset(n for n in nodes.split(",") if n))


def svc(*, itp_local: bool = False, etp_local: bool = False, node_port: int = 0) -> ServicePortInfo:
    return ServicePortInfo(ServicePortName("ns", "s", "", "TCP"), "10.96.0.1", 80, "tcp",
                           node_port=node_port, external_policy_local=etp_local,
                           internal_policy_local=itp_local)


def ips(eps: list[EndpointInfo]) -> list[str]:
    return [e.ip for e in eps]


A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"

CASES = [
    # id, service, endpoints, cluster, local, reachable, has_any
    ("no endpoints", svc(), [], [], [], [], False),
    ("all ready, cluster policy", svc(), [ep(A), ep(B)], [A, B], [], [A, B], True),
    ("not-ready dropped", svc(), [ep(A), ep(B, ready=False, serving=False)], [A], [], [A], True),
    ("ready preferred over terminating", svc(),
     [ep(A), ep(B, ready=False, serving=True, terminating=True)], [A], [], [A], True),
    ("fallback to serving+terminating", svc(),
     [ep(A, ready=False, serving=True, terminating=True),
      ep(B, ready=False, serving=False, terminating=True)], [A], [], [A], True),
    ("not serving, not ready: nothing", svc(),
     [ep(A, ready=False, serving=False)], [], [], [], False),
    ("ITP local: only local ready", svc(itp_local=True), [ep(A, local=True), ep(B)],
     [], [A], [A], True),
    ("ITP local, no local endpoints: has_any stays true", svc(itp_local=True), [ep(A), ep(B)],
     [], [], [], True),
    ("ITP local: local serving+terminating fallback", svc(itp_local=True),
     [ep(A, ready=False, serving=True, terminating=True, local=True), ep(B)], [], [A], [A], True),
    ("ETP local nodeport: cluster and local", svc(etp_local=True, node_port=30000),
     [ep(A, local=True), ep(B)], [A, B], [A], [A, B], True),
    ("ETP local without external access uses cluster only", svc(etp_local=True),
     [ep(A, local=True), ep(B)], [A, B], [], [A, B], True),
    ("ETP local: terminating local endpoint joins reachable", svc(etp_local=True, node_port=30000),
     [ep(A, ready=False, serving=True, terminating=True, local=True), ep(B)],
     [B], [A], [A, B], True),
    ("zone hints: same zone only", svc(),
     [ep(A, zones="zone-a"), ep(B, zones="zone-b"), ep(C, zones="zone-a")], [A, C], [], [A, C], True),
    ("zone hints incomplete: ignored", svc(),
     [ep(A, zones="zone-a"), ep(B)], [A, B], [], [A, B], True),
    ("zone hints for other zones only: ignored", svc(),
     [ep(A, zones="zone-b"), ep(B, zones="zone-c")], [A, B], [], [A, B], True),
    ("not-ready endpoint without hints does not disable hints", svc(),
     [ep(A, zones="zone-a"), ep(B, zones="zone-b"), ep(C, ready=False, serving=False)],
     [A], [], [A], True),
    ("node hints win over zone hints", svc(),
     [ep(A, zones="zone-a", nodes="node-1"), ep(B, zones="zone-a", nodes="node-2")],
     [A], [], [A], True),
    ("node hints not for this node: zone hints apply", svc(),
     [ep(A, zones="zone-a", nodes="node-2"), ep(B, zones="zone-b", nodes="node-3")],
     [A], [], [A], True),
    ("topology + ETP local: union of zone endpoints and local", svc(etp_local=True, node_port=30000),
     [ep(A, zones="zone-b", local=True), ep(B, zones="zone-a")], [B], [A], [A, B], True),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_categorize(case: tuple) -> None:
    _, service, endpoints, cluster, local, reachable, has_any = case
    got = categorize(endpoints, service, NODE, ZONE)
    assert (ips(got.cluster), ips(got.local), ips(got.all_reachable), got.has_any) == (
        cluster, local, reachable, has_any)


def test_topology_modes() -> None:
    assert topology_mode([ep(A, zones="zone-a")], NODE, ZONE) == SAME_ZONE
    assert topology_mode([ep(A, zones="zone-a", nodes="node-1")], NODE, ZONE) == SAME_NODE
    assert topology_mode([ep(A, zones="zone-a", nodes="node-1")], NODE, ZONE,
                         prefer_same_node=False) == SAME_ZONE
    assert topology_mode([ep(A, zones="zone-a")], NODE, "") == ""
    assert topology_mode([ep(A, ready=False, serving=False, zones="zone-a")], NODE, ZONE) == ""
