"""Service ports and endpoint lists as kube-proxy builds them (tables)."""

from __future__ import annotations

import pytest

from netproxy.k8s.objects import (
    Endpoint,
    EndpointPort,
    EndpointSlice,
    LoadBalancerIngress,
    Service,
    ServicePortSpec,
)
from netproxy.proxy.endpoints import endpoints_map
from netproxy.proxy.localdetect import local_detector
from netproxy.proxy.nodeports import nodeport_addresses
from netproxy.proxy.serviceport import ServicePortName, all_service_ports, service_ports


def service(**kw: object) -> Service:
    base: dict[str, object] = dict(namespace="ns", name="s", cluster_ip="10.96.0.5",
                                   ports=[ServicePortSpec("http", "TCP", 80)])
    base.update(kw)
    return Service(**base)  # type: ignore[arg-type]


def test_service_port_fields_and_family_filtering() -> None:
    svc = service(type="LoadBalancer", cluster_ip="10.96.0.5", cluster_ips=["10.96.0.5", "fd00::5"],
                  ip_families=["IPv4", "IPv6"],
                  external_ips=["1.2.3.4", "2001:db8::4", "1.2.3.4"],
                  lb_ingress=[LoadBalancerIngress("203.0.113.1"), LoadBalancerIngress("203.0.113.2", "Proxy"),
                              LoadBalancerIngress("", hostname="lb.example"),
                              LoadBalancerIngress("2001:db8::1", "VIP")],
                  lb_source_ranges=[" 203.0.113.5/25 ", "2001:db8::/64"],
                  external_traffic_policy="Local", health_check_node_port=32000,
                  ports=[ServicePortSpec("http", "TCP", 80, 30080)])
    (v4,) = service_ports(svc, "ipv4")
    assert v4.cluster_ip == "10.96.0.5"
    assert v4.external_ips == ("1.2.3.4", "1.2.3.4")  # duplicates kept, like kube-proxy
    assert v4.lb_vips == ("203.0.113.1",)  # ipMode Proxy and hostname-only ignored
    assert v4.source_ranges == ("203.0.113.0/25",)
    assert v4.external_policy_local and v4.health_check_node_port == 32000
    (v6,) = service_ports(svc, "ipv6")
    assert (v6.cluster_ip, v6.external_ips, v6.lb_vips, v6.source_ranges) == (
        "fd00::5", ("2001:db8::4",), ("2001:db8::1",), ("2001:db8::/64",))


@pytest.mark.parametrize("kw, expected", [
    ({"cluster_ip": "None"}, 0),
    ({"cluster_ip": ""}, 0),
    ({"type": "ExternalName"}, 0),
    ({"labels": {"service.kubernetes.io/service-proxy-name": "other"}}, 0),
    ({"labels": {"service.kubernetes.io/headless": ""}}, 0),
    ({"cluster_ip": "fd00::1"}, 0),  # no IPv4 cluster IP
    ({"ip_families": ["IPv6"], "cluster_ips": ["fd00::1"]}, 0),
    ({}, 1),
])
def test_skipped_services(kw: dict, expected: int) -> None:
    assert len(service_ports(service(**kw), "ipv4")) == expected


@pytest.mark.parametrize("kw, ext_local, hc", [
    ({"type": "NodePort", "external_traffic_policy": "Local"}, True, 0),
    ({"type": "ClusterIP", "external_traffic_policy": "Local"}, False, 0),
    ({"type": "ClusterIP", "external_traffic_policy": "Local", "external_ips": ["1.1.1.1"]}, True, 0),
    ({"type": "LoadBalancer", "external_traffic_policy": "Local", "health_check_node_port": 31000}, True, 31000),
    ({"type": "LoadBalancer", "external_traffic_policy": "Cluster", "health_check_node_port": 31000}, False, 0),
])
def test_external_policy(kw: dict, ext_local: bool, hc: int) -> None:
    (info,) = service_ports(service(**kw), "ipv4")
    assert (info.external_policy_local, info.health_check_node_port) == (ext_local, hc)


def test_sorted_and_latest_wins() -> None:
    a = service(name="b", ports=[ServicePortSpec("z", "TCP", 1), ServicePortSpec("a", "UDP", 2)])
    b = service(name="a")
    b2 = service(name="a", cluster_ip="10.96.0.9")
    names = [(p.name.name, p.name.port) for p in all_service_ports([a, b, b2], "ipv4")]
    assert names == [("a", "http"), ("b", "a"), ("b", "z")]
    assert all_service_ports([a, b, b2], "ipv4")[0].cluster_ip == "10.96.0.9"


def slice_(name: str, *eps: Endpoint, svc: str = "s", ports: list[EndpointPort] | None = None,
           address_type: str = "IPv4", labels: dict | None = None) -> EndpointSlice:
    lab = {"kubernetes.io/service-name": svc} if svc else {}
    lab.update(labels or {})
    return EndpointSlice("ns", name, svc, address_type,
                         ports if ports is not None else [EndpointPort("http", "TCP", 8080)],
                         list(eps), labels=lab)


KEY = ServicePortName("ns", "s", "http", "TCP")


def test_merge_dedup_sort() -> None:
    got = endpoints_map([
        slice_("s-1", Endpoint(["10.0.0.2"]), Endpoint(["10.0.0.10"], node_name="node-1")),
        slice_("s-2", Endpoint(["10.0.0.2"], ready=False, terminating=True), Endpoint(["10.0.0.3"])),
    ], "ipv4", "node-1")
    eps = got[KEY]
    # byte-wise string sort: "10.0.0.10:8080" < "10.0.0.2:8080"
    assert [e.endpoint for e in eps] == ["10.0.0.10:8080", "10.0.0.2:8080", "10.0.0.3:8080"]
    assert eps[0].is_local and not eps[1].is_local
    assert eps[1].ready  # the non-terminating duplicate wins


def test_slices_ignored_or_filtered() -> None:
    got = endpoints_map([
        slice_("no-label", Endpoint(["10.0.0.1"]), svc=""),
        slice_("fqdn", Endpoint(["db.example"]), address_type="FQDN"),
        slice_("v6", Endpoint(["fd00::1"]), address_type="IPv6"),
        slice_("proxy-name", Endpoint(["10.0.0.4"]), labels={"service.kubernetes.io/service-proxy-name": "x"}),
        slice_("port0", Endpoint(["10.0.0.5"]), ports=[EndpointPort("http", "TCP", 0)]),
        slice_("ok", Endpoint(["010.000.000.006"])),
    ], "ipv4", "node-1")
    assert [e.endpoint for e in got[KEY]] == ["10.0.0.6:8080"]  # leading zeros parsed sloppily
    v6 = endpoints_map([slice_("v6", Endpoint(["FD00:0::1"]), address_type="IPv6")], "ipv6", "")
    assert [e.endpoint for e in v6[KEY]] == ["[fd00::1]:8080"]


def test_unnamed_port_and_protocol_key() -> None:
    got = endpoints_map([slice_("s-1", Endpoint(["10.0.0.1"]),
                                ports=[EndpointPort("", "UDP", 53), EndpointPort("", "TCP", 53)])],
                        "ipv4", "")
    assert set(got) == {ServicePortName("ns", "s", "", "UDP"), ServicePortName("ns", "s", "", "TCP")}


@pytest.mark.parametrize("mode, family, kw, kind, value", [
    ("ClusterCIDR", "ipv4", {"cluster_cidrs": ("10.244.1.7/16", "fd00::/48")}, "source", "10.244.0.0/16"),
    ("ClusterCIDR", "ipv6", {"cluster_cidrs": ("10.244.0.0/16", "fd00::/48")}, "source", "fd00::/48"),
    ("ClusterCIDR", "ipv6", {"cluster_cidrs": ("10.244.0.0/16",)}, "", ""),
    ("ClusterCIDR", "ipv4", {}, "", ""),
    ("NodeCIDR", "ipv4", {"node_pod_cidrs": ["10.244.3.0/24"]}, "source", "10.244.3.0/24"),
    ("BridgeInterface", "ipv6", {"bridge_interface": "cbr0"}, "interface", "cbr0"),
    ("InterfaceNamePrefix", "ipv4", {"interface_prefix": "veth"}, "interface", "veth+"),
])
def test_local_detector(mode: str, family: str, kw: dict, kind: str, value: str) -> None:
    det = local_detector(mode, family, **kw)
    assert (det.kind, det.value) == (kind, value)


@pytest.mark.parametrize("cidrs, family, match_all, loopback, listen", [
    ((), "ipv4", True, True, None),
    (("0.0.0.0/0",), "ipv4", True, True, None),
    (("fd00::/64",), "ipv4", True, True, None),  # nothing of this family left: match all
    (("192.168.0.0/24",), "ipv4", False, False, ["192.168.0.10"]),
    (("127.0.0.0/8", "192.168.0.0/24"), "ipv4", False, True, ["127.0.0.1", "192.168.0.10"]),
    (("::/0",), "ipv6", True, False, None),
    (("2001:db8::/64",), "ipv6", False, False, ["2001:db8::10"]),
])
def test_nodeport_addresses(cidrs: tuple, family: str, match_all: bool, loopback: bool,
                            listen: list | None) -> None:
    npa = nodeport_addresses(cidrs, family)
    assert (npa.match_all, npa.contains_ipv4_loopback) == (match_all, loopback)
    if listen is not None:
        hosts = ["127.0.0.1", "192.168.0.10", "10.0.0.1"] if family == "ipv4" else ["::1", "2001:db8::10"]
        assert npa.local_addresses(hosts) == listen


def test_nodeport_primary() -> None:
    npa = nodeport_addresses(("primary",), "ipv4", ["192.168.0.10"])
    assert not npa.match_all and npa.local_addresses(["127.0.0.1", "192.168.0.10"]) == ["192.168.0.10"]
