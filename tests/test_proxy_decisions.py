"""kube-proxy's per-port decisions, shared by the iptables and nftables writers, as a table;
and the two writers naming the same decision."""

from __future__ import annotations

import pytest

from netproxy.compiler.plan import plan
from netproxy.proxy.decisions import DROP, REJECT, allow_from_node, decide
from netproxy.proxy.endpoints import EndpointInfo, endpoint_string
from netproxy.proxy.serviceport import ServicePortInfo, ServicePortName
from netproxy.proxy.topology import categorize

NODE = "node-1"


def ep(ip: str, *, local: bool = False, ready: bool = True) -> EndpointInfo:
    return EndpointInfo(ip=ip, port=80, endpoint=endpoint_string(ip, 80), ready=ready,
                        serving=ready, is_local=local)


def svc(*, itp_local: bool = False, etp_local: bool = False, node_port: int = 0,
        lb_vips: tuple[str, ...] = (), ranges: tuple[str, ...] = ()) -> ServicePortInfo:
    return ServicePortInfo(ServicePortName("ns", "s", "", "TCP"), "10.96.0.1", 80, "tcp",
                           node_port=node_port, lb_vips=lb_vips, source_ranges=ranges,
                           external_policy_local=etp_local, internal_policy_local=itp_local)


REMOTE, LOCAL = ep("10.0.0.1"), ep("10.0.0.2", local=True)

CASES = [
    # id, service, endpoints, (internal verdict, external verdict, uses cluster/local/external)
    ("no endpoints", svc(node_port=30000), [], (REJECT, REJECT, False, False, False)),
    ("cluster policies", svc(node_port=30000), [REMOTE, LOCAL], ("", "", True, False, True)),
    ("clusterIP only: no external chain", svc(), [REMOTE], ("", "", True, False, False)),
    ("iTP Local without local endpoints", svc(itp_local=True), [REMOTE], (DROP, "", False, False, False)),
    ("iTP Local with a local endpoint", svc(itp_local=True), [REMOTE, LOCAL], ("", "", False, True, False)),
    ("eTP Local without local endpoints", svc(etp_local=True, node_port=30000), [REMOTE],
     ("", DROP, True, False, True)),
    ("eTP Local with a local endpoint", svc(etp_local=True, node_port=30000), [REMOTE, LOCAL],
     ("", "", True, True, True)),
    ("only not-ready endpoints", svc(), [ep("10.0.0.3", ready=False)], (REJECT, REJECT, False, False, False)),
]


@pytest.mark.parametrize(("service", "endpoints", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_decisions(service: ServicePortInfo, endpoints: list[EndpointInfo],
                   expected: tuple[str, str, bool, bool, bool]) -> None:
    d = decide(service, categorize(endpoints, service, NODE, ""))
    assert (d.internal_verdict, d.external_verdict, d.uses_cluster, d.uses_local,
            d.uses_external) == expected


def test_source_ranges_need_endpoints_only_in_iptables_mode() -> None:
    service = svc(lb_vips=("203.0.113.1",), ranges=("198.51.100.0/24",), node_port=30000)
    cat = categorize([], service, NODE, "")
    assert decide(service, cat).uses_source_ranges  # nftables: firewall chain regardless
    assert not plan(service, cat).uses_fw_chain    # iptables: no KUBE-FW without endpoints


def test_the_iptables_plan_names_the_decisions() -> None:
    service = svc(itp_local=True)
    p = plan(service, categorize([REMOTE], service, NODE, ""))
    assert (p.int_target, p.int_comment) == ("DROP", "ns/s has no local endpoints")
    p = plan(svc(), categorize([], svc(), NODE, ""))
    assert (p.int_target, p.int_comment) == ("REJECT", "ns/s has no endpoints")


@pytest.mark.parametrize(("node_ip", "expected"), [
    ("192.168.0.10", True), ("192.168.1.10", False), ("", False), ("2001:db8::1", False)])
def test_allow_from_node(node_ip: str, expected: bool) -> None:
    service = svc(lb_vips=("203.0.113.1",), ranges=("10.0.0.0/8", "192.168.0.0/24"))
    assert allow_from_node(service, node_ip) is expected
