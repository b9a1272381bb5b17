"""Services to kube-proxy's per-port model (``pkg/proxy/serviceport.go``), for one IP family."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from netproxy.k8s.ipaddr import canonical_ip, family_of, is_canonical_ipv4, parse_cidr
from netproxy.k8s.objects import Service

IGNORED_LABELS = ("service.kubernetes.io/service-proxy-name", "service.kubernetes.io/headless")
"""Objects carrying any of these labels are invisible to kube-proxy (its informers filter them)."""


class ServicePortName(NamedTuple):
    """``namespace/name:port`` plus protocol (upper case, as in the API): a service port's key.

    A tuple, so sorting by (namespace, name, port name, protocol) and hashing are cheap.
    """

    namespace: str
    name: str
    port: str
    protocol: str

    def __str__(self) -> str:
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port}" if self.port else base


@dataclass(slots=True)
class ServicePortInfo:
    """Everything kube-proxy knows about one service port, filtered to one IP family."""

    name: ServicePortName
    cluster_ip: str
    port: int
    protocol: str
    """Lower case (``tcp``), as written into rules and hashed into chain names."""
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    lb_vips: tuple[str, ...] = ()
    source_ranges: tuple[str, ...] = ()
    client_ip_affinity: bool = False
    sticky_seconds: int = 0
    external_policy_local: bool = False
    internal_policy_local: bool = False
    health_check_node_port: int = 0

    @property
    def spn(self) -> str:
        return str(self.name)

    @property
    def externally_accessible(self) -> bool:
        return self.node_port != 0 or bool(self.lb_vips) or bool(self.external_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        return not self.internal_policy_local or self.externally_accessible

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or (self.external_policy_local and self.externally_accessible)


def is_ignored(labels: dict[str, str]) -> bool:
    return bool(labels) and not labels.keys().isdisjoint(IGNORED_LABELS)


def cluster_ip_for(svc: Service, family: str) -> str:
    """The service's cluster IP of ``family`` (``GetClusterIPByFamily``), or ``""``."""
    if svc.cluster_ip in ("", "None"):
        return ""
    want = "IPv4" if family == "ipv4" else "IPv6"
    if not svc.ip_families:
        return _of_family(svc.cluster_ip, family)
    for i, fam in enumerate(svc.ip_families):
        if fam == want and i < len(svc.cluster_ips):
            return _of_family(svc.cluster_ips[i], family)
    return ""


def _of_family(text: str, family: str) -> str:
    """The canonical form of address ``text`` if it belongs to ``family``, else ``""``."""
    addr = text if is_canonical_ipv4(text) else canonical_ip(text)
    if addr is None or (":" in addr) != (family == "ipv6"):
        return ""
    return addr


def _ips_of_family(values: list[str], family: str) -> tuple[str, ...]:
    if not values:
        return ()
    return tuple(a for a in (_of_family(v, family) for v in values) if a)


_new = tuple.__new__


def service_ports(svc: Service, family: str) -> list[ServicePortInfo]:
    """The service ports kube-proxy programs for ``svc`` in ``family`` (none when skipped)."""
    if svc.type == "ExternalName" or is_ignored(svc.labels):
        return []
    cluster_ip = cluster_ip_for(svc, family)
    if not cluster_ip:
        return []
    external_ips = _ips_of_family(svc.external_ips, family)
    lb_vips = _ips_of_family([i.ip for i in svc.lb_ingress if i.ip and i.ip_mode in ("", "VIP")],
                             family) if svc.lb_ingress else ()
    ranges = []
    for text in svc.lb_source_ranges:
        net = parse_cidr(text.strip())
        if net is not None and family_of(net) == family:
            ranges.append(str(net))
    source_ranges = tuple(ranges)
    external_local = (svc.type in ("NodePort", "LoadBalancer") or bool(svc.external_ips)) \
        and svc.external_traffic_policy == "Local"
    affinity = svc.session_affinity == "ClientIP"
    sticky = svc.affinity_timeout if affinity else 0
    internal_local = svc.internal_traffic_policy == "Local"
    hc = svc.health_check_node_port if svc.type == "LoadBalancer" and external_local else 0
    namespace, name = svc.namespace, svc.name
    # Positional, in field order: the same objects the keyword form builds, a little cheaper.
    return [ServicePortInfo(
        _new(ServicePortName, (namespace, name, spec.name, spec.protocol)), cluster_ip, spec.port,
        spec.protocol.lower(), spec.node_port, external_ips, lb_vips, source_ranges, affinity,
        sticky, external_local, internal_local, hc) for spec in svc.ports]


def all_service_ports(services: list[Service], family: str) -> list[ServicePortInfo]:
    """Every service port of ``family``, sorted by (namespace, name, port name, protocol).

    kube-proxy iterates a Go map (random order); sorting makes our output deterministic.
    A later duplicate of the same Service replaces the earlier one, like an informer update.
    """
    latest: dict[tuple[str, str], Service] = {}
    for svc in services:
        latest[(svc.namespace, svc.name)] = svc  # svc.key, without the property call
    ports: dict[ServicePortName, ServicePortInfo] = {}
    for svc in latest.values():
        for info in service_ports(svc, family):
            ports[info.name] = info
    return [ports[k] for k in sorted(ports)]
