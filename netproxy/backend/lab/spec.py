"""What a lab is made of, derived from the cluster and its compiled rules (no kernel calls).

Addresses: pods keep their endpoint IPs; the node keeps its node IPs; the external client
lives in 198.51.100.0/24 (TEST-NET-2) plus one address inside each LoadBalancer source
range; the node's side of every pod link carries 169.254.1.1, which is therefore the source
an endpoint sees for masqueraded traffic. Extra node addresses (``lab up --local-ip``) sit
on the node's external link beside its node IPs.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from typing import Any

from netproxy.netfilter.model import Ruleset

NODE_GATEWAY = "169.254.1.1"
EXTERNAL_NET = "198.51.100.0/24"
NODE_EXTERNAL = "198.51.100.1"
EXTERNAL_CLIENT = "198.51.100.10"
DEFAULT_NODE_IP = "192.0.2.10"


@dataclass(slots=True)
class Pod:
    ip: str
    tcp: list[int] = field(default_factory=list)
    udp: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Frontend:
    """One address:port a service answers on, with what the check needs to know."""

    service: str
    kind: str
    """cluster-ip, node-port, localhost-node-port, external-ip, load-balancer; and where
    only one mode answers: cluster-ip-other-port (a port the ClusterIP does not serve),
    unallocated-service-ip (an address of a ServiceCIDR no Service has); and
    cluster-ip-hairpin: the ClusterIP sent to by one of the Service's endpoints (``client``),
    which may be sent back to itself."""
    ip: str
    port: int
    proto: str
    affinity: bool = False
    source_ranges: list[str] = field(default_factory=list)
    client: str = ""
    """cluster-ip-hairpin: the Service's own endpoint that sends (from its namespace)."""
    client_local: bool = False
    """cluster-ip-hairpin: that endpoint is this node's (else another node's)."""


@dataclass(slots=True)
class LabSpec:
    node_ips: list[str]
    pods: list[Pod]
    pod_client: str
    external_sources: list[str]
    frontends: list[Frontend]
    localhost_nodeports: bool = True
    beyond: list[Pod] = field(default_factory=list)
    """Addresses the external namespace answers for (TCP echo, a local route there): where
    a packet the node routes away unchanged arrives, so that 'sent on' shows as an answer
    (from that address) instead of silence."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabSpec:
        return cls(
            node_ips=list(data["node_ips"]),
            pods=[Pod(**p) for p in data["pods"]],
            pod_client=data["pod_client"],
            external_sources=list(data["external_sources"]),
            frontends=[Frontend(**f) for f in data["frontends"]],
            localhost_nodeports=bool(data.get("localhost_nodeports", True)),
            beyond=[Pod(**p) for p in data.get("beyond", [])],
        )


def endpoints_of(ruleset: Ruleset) -> list[Pod]:
    """Every DNAT destination of the rules, grouped by pod address."""
    pods: dict[str, Pod] = {}
    for table in ruleset.tables.values():
        for _, _, rule in table.rules():
            if rule.target is None or rule.target.name != "DNAT":
                continue
            opt = rule.target.get("to-destination")
            proto = rule.builtin("protocol")
            if opt is None or proto is None or not opt.args:
                continue
            host, _, port = opt.args[0].rpartition(":")
            pod = pods.setdefault(host, Pod(host))
            ports = pod.tcp if proto.value == "tcp" else pod.udp if proto.value == "udp" else None
            if ports is not None and int(port) not in ports:
                ports.append(int(port))
    return sorted(pods.values(), key=lambda p: ipaddress.ip_address(p.ip))


def pick_client(cluster_cidrs: list[str], taken: set[str]) -> str:
    """An unused address inside the pod network (the first cluster CIDR, else 10.244.0.0/16)."""
    cidr = next((c for c in cluster_cidrs if ":" not in c), "10.244.0.0/16")
    net = ipaddress.ip_network(cidr, strict=False)
    for offset in range(250, 2, -1):
        candidate = str(net.network_address + offset)
        if candidate not in taken and ipaddress.ip_address(candidate) in net:
            return candidate
    raise ValueError(f"no free address for the pod client in {cidr}")


def source_for_range(cidr: str, taken: set[str]) -> str | None:
    """An external client address inside a LoadBalancer source range, not used by a pod or
    the node (None for 'any' or when the range is full)."""
    net = ipaddress.ip_network(cidr, strict=False)
    if net.version != 4 or net.prefixlen == 0:
        return None
    if ipaddress.ip_address(EXTERNAL_CLIENT) in net:
        return EXTERNAL_CLIENT
    for offset in range(200, 0, -1):
        if offset < net.num_addresses - 1 and str(net.network_address + offset) not in taken:
            return str(net.network_address + offset)
    return None


def source_outside(ranges: list[str]) -> str | None:
    """An external client address outside every LoadBalancer source range."""
    nets = [ipaddress.ip_network(c, strict=False) for c in ranges]
    for candidate in (EXTERNAL_CLIENT, "100.64.0.10", "172.31.255.10", "192.0.2.99"):
        addr = ipaddress.ip_address(candidate)
        if not any(addr.version == n.version and addr in n for n in nets):
            return candidate
    return None
