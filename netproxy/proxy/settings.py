"""The effective settings of one kube-proxy instance (one IP family) on one node."""

from __future__ import annotations

from dataclasses import dataclass, field

from netproxy.proxy.localdetect import NO_OP, LocalDetector
from netproxy.proxy.nodeports import NodePortAddresses, nodeport_addresses


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """Everything besides Services and EndpointSlices that changes the rules kube-proxy writes."""

    family: str = "ipv4"
    node_name: str = ""
    node_ips: tuple[str, ...] = ()
    """The node's addresses of this family; the first is the primary node IP."""
    zone: str = ""
    detector: LocalDetector = NO_OP
    masquerade_bit: int = 14
    masquerade_all: bool = False
    localhost_nodeports: bool = True
    """As configured; see :attr:`localhost_nodeports_effective`."""
    nodeports: NodePortAddresses = field(default_factory=lambda: nodeport_addresses((), "ipv4"))
    random_fully: bool = True
    nfacct: bool = True
    tcp_be_liberal: bool = False
    prefer_same_node: bool = True
    large_cluster_endpoints: int = 1000
    """Above this many endpoints (all service ports together) per-endpoint comments are dropped."""

    @property
    def ipv6(self) -> bool:
        return self.family == "ipv6"

    @property
    def primary_ip(self) -> str:
        return self.node_ips[0] if self.node_ips else ""

    @property
    def localhost_nodeports_effective(self) -> bool:
        """kube-proxy turns localhost NodePorts off for IPv6 and without loopback in nodePortAddresses."""
        return self.localhost_nodeports and not self.ipv6 and self.nodeports.contains_ipv4_loopback

    @property
    def local_addresses(self) -> list[str]:
        """The host's addresses of this family in interface order: loopback first, then node IPs."""
        return ["::1" if self.ipv6 else "127.0.0.1", *self.node_ips]

    @property
    def mark(self) -> str:
        """The masquerade mark as kube-proxy writes it (Go ``%#08x``: ``0x00004000``)."""
        return f"0x{1 << self.masquerade_bit:08x}"
