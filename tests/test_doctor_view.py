"""Recovering Service ports from kube-proxy's comments and chain structure."""

from __future__ import annotations

from pathlib import Path

import pytest

from netproxy.kubeview import build_view, is_redacted
from netproxy.kubeview.comments import matches_selector, parse_comment
from netproxy.parser import parse_rules


@pytest.mark.parametrize(
    ("text", "spn", "kind"),
    [
        ("default/web:http cluster IP", "default/web:http", "cluster-ip"),
        ("default/hostnames: cluster IP", "default/hostnames:", "cluster-ip"),
        ("default/web:http -> 10.244.1.5:8080", "default/web:http", "endpoint"),
        ("ns/svc -> [fd00::1]:80", "ns/svc", "endpoint"),
        ("default/echo", "default/echo", "bare"),
        ("kube-system/kube-dns:dns has no endpoints", "kube-system/kube-dns:dns", "no-endpoints"),
        ("default/echo has no local endpoints", "default/echo", "no-local-endpoints"),
        ("masquerade traffic for default/t:web external destinations", "default/t:web", "ext-masq"),
        ("route LOCAL traffic for default/lb:http LB IP to service chain", "default/lb:http",
         "xlb-local-route"),
        ("Balancing rule 0 for default/api:https", "default/api:https", "xlb-balance"),
        ("default/shop:https health check node port", "default/shop:https", "health-check"),
    ],
)
def test_comment_grammar(text: str, spn: str, kind: str) -> None:
    found = parse_comment(text)
    assert found is not None and (found.spn, found.kind) == (spn, kind)


@pytest.mark.parametrize("text", ["kubernetes service portals", "flanneld masq", "AWS, SNAT", None])
def test_other_comments(text: str | None) -> None:
    assert parse_comment(text) is None


def test_selector() -> None:
    assert matches_selector("default/web:http", "default/web")
    assert matches_selector("default/web:http", "default/web:http")
    assert matches_selector("default/web:http", "default/web:80", {80})
    assert not matches_selector("default/web:http", "default/web:81", {80})
    assert not matches_selector("default/web2:http", "default/web")


CURRENT = """*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-EXT-HV6DMF63W6MGLRDE - [0:0]
:KUBE-SVC-HV6DMF63W6MGLRDE - [0:0]
:KUBE-SVL-HV6DMF63W6MGLRDE - [0:0]
:KUBE-SEP-D67JQUDAKRP7USVT - [0:0]
:KUBE-SEP-L5QMNQ7OSVWN2BEA - [0:0]
:KUBE-SEP-ZZZZZZZZZZZZZZZZ - [0:0]
-A KUBE-SERVICES -d 10.96.20.20/32 -p tcp -m comment --comment "default/echo cluster IP" -m tcp --dport 8080 -j KUBE-SVC-HV6DMF63W6MGLRDE
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/echo" -m tcp --dport 30080 -j KUBE-EXT-HV6DMF63W6MGLRDE
-A KUBE-EXT-HV6DMF63W6MGLRDE -j KUBE-SVL-HV6DMF63W6MGLRDE
-A KUBE-SVC-HV6DMF63W6MGLRDE -m comment --comment "default/echo -> 10.244.0.5:5678" -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-D67JQUDAKRP7USVT --rsource -j KUBE-SEP-D67JQUDAKRP7USVT
-A KUBE-SVC-HV6DMF63W6MGLRDE -m comment --comment "default/echo -> 10.244.0.5:5678" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-D67JQUDAKRP7USVT
-A KUBE-SVC-HV6DMF63W6MGLRDE -m comment --comment "default/echo -> 10.244.1.9:5678" -j KUBE-SEP-L5QMNQ7OSVWN2BEA
-A KUBE-SVL-HV6DMF63W6MGLRDE -m comment --comment "default/echo -> 10.244.0.5:5678" -j KUBE-SEP-D67JQUDAKRP7USVT
-A KUBE-SEP-D67JQUDAKRP7USVT -s 10.244.0.5/32 -m comment --comment "default/echo" -j KUBE-MARK-MASQ
-A KUBE-SEP-D67JQUDAKRP7USVT -p tcp -m comment --comment "default/echo" -m tcp -j DNAT --to-destination 10.244.0.5:5678
-A KUBE-SEP-L5QMNQ7OSVWN2BEA -s 10.244.1.9/32 -m comment --comment "default/echo" -j KUBE-MARK-MASQ
-A KUBE-SEP-L5QMNQ7OSVWN2BEA -p tcp -m comment --comment "default/echo" -m tcp -j DNAT --to-destination 10.244.1.9:5678
-A KUBE-SEP-ZZZZZZZZZZZZZZZZ -p tcp -m comment --comment "default/echo" -m tcp -j DNAT --to-destination 10.244.9.9:5678
COMMIT
*filter
:KUBE-EXTERNAL-SERVICES - [0:0]
-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "default/gone has no endpoints" -m addrtype --dst-type LOCAL -m tcp --dport 31000 -j REJECT --reject-with icmp-port-unreachable
COMMIT
"""


def test_current_layout() -> None:
    view = build_view(parse_rules(CURRENT, source="t"))
    assert list(view.services) == [("default/echo", "tcp"), ("default/gone", "tcp")]
    echo = view.services[("default/echo", "tcp")]
    assert echo.hash == "HV6DMF63W6MGLRDE"
    assert echo.chains == {"EXT": "KUBE-EXT-HV6DMF63W6MGLRDE", "SVC": "KUBE-SVC-HV6DMF63W6MGLRDE",
                           "SVL": "KUBE-SVL-HV6DMF63W6MGLRDE"}
    assert [(a.kind, a.ip, a.port) for a in echo.addresses] == [
        ("cluster-ip", "10.96.20.20", 8080), ("node-port", None, 30080)]
    assert [(j.sep[-4:], j.probability, j.comment_endpoint) for j in echo.balancing("SVC")] == [
        ("USVT", "0.50000000000", "10.244.0.5:5678"), ("2BEA", None, "10.244.1.9:5678")]
    assert len(echo.affinity) == 1  # the --rcheck rule is not a balancing rule
    assert [j.sep for j in echo.balancing("SVL")] == ["KUBE-SEP-D67JQUDAKRP7USVT"]
    assert echo.endpoints["KUBE-SEP-D67JQUDAKRP7USVT"].destination == "10.244.0.5:5678"
    assert list(echo.orphan_endpoints) == ["KUBE-SEP-ZZZZZZZZZZZZZZZZ"]
    gone = view.services[("default/gone", "tcp")]
    assert len(gone.rejects) == 1 and not gone.chains


def test_old_layout_names_and_inline_mark(dumps_dir: Path) -> None:
    text = (dumps_dir / "00-seed-hostnames.rules").read_text()
    view = build_view(parse_rules(text, source="00"))
    svc = view.services[("default/hostnames", "tcp")]
    assert svc.written_name == "default/hostnames:"
    sep = svc.endpoints["KUBE-SEP-WNBA2IHDGP2BOBGZ"]
    assert [r.rule.jump for r in sep.masq] == ["MARK"]
    assert sep.destination == "10.244.1.7:9376"


def test_unreadable_dnat_keeps_protocol_and_service(dumps_dir: Path) -> None:
    text = (dumps_dir / "11-cilium-ipvs-docker-broken-dnat.rules").read_text()
    view = build_view(parse_rules(text, source="11"))
    # An IPVS-mode node: the iptables-mode chains are left over, set aside from the Services.
    assert view.mode == "ipvs"
    svc = next(v for v in view.leftovers if v.key == ("kube-system/kube-dns:dns", "udp"))
    sep = svc.endpoints["KUBE-SEP-MU7PO7VX34QPS5HP"]
    assert sep.protocol == "udp" and sep.spn == "kube-system/kube-dns:dns"
    assert sep.dnat[0][1].rule.opaque is not None


def test_ipvs_leftovers_named_by_hash(dumps_dir: Path) -> None:
    view = build_view(parse_rules((dumps_dir / "12-calico-vxlan-ipvs-nat.rules").read_text(), source="12"))
    assert view.mode == "ipvs" and view.services == {}
    assert view.pod_cidrs == ["192.168.0.0/16"]
    # No comment names these chains; the hashes of common Service ports do, exactly.
    assert sorted(v.name for v in view.leftovers) == [
        "<unknown WWRFY3PZ7W3FGMQW>", "calico-apiserver/calico-api:apiserver",
        "calico-system/calico-typha:calico-typha", "default/kubernetes:https",
        "kube-system/kube-dns:dns", "kube-system/kube-dns:dns-tcp", "kube-system/kube-dns:metrics"]
    assert len(view.leftover_endpoint_chains) == 13


def test_pod_network_read_from_the_masquerade_rules(dumps_dir: Path) -> None:
    view = build_view(parse_rules(
        (dumps_dir / "10-centos7-flannel-docker-libvirt-reject.rules").read_text(), source="10"))
    assert view.mode == "iptables" and view.pod_cidrs == ["10.1.0.0/16"]
    # Docker's and libvirt's bridges are tied to their own subnets, so neither is the pods'.
    assert "172.17.0.0/16" in view.interface_nets["docker0"]
    assert "192.168.122.0/24" in view.interface_nets["virbr0"]


def test_redacted_addresses_are_recognised(dumps_dir: Path) -> None:
    view = build_view(parse_rules(
        (dumps_dir / "13-kubeproxy16-externalip-docker-redacted.rules").read_text(), source="13"))
    assert view.redacted_lines == {39, 40, 41, 47, 48, 49}
    assert is_redacted("x.x.x.x/32") and is_redacted("10.x.x.x") and not is_redacted("10.0.0.1/32")
