"""Settings that only nftables mode has (the rest is :class:`netproxy.proxy.settings.ProxySettings`)."""

from __future__ import annotations

from dataclasses import dataclass

KUBE_PROXY_VERSIONS = ("1.36", "1.37")
"""Layouts netproxy writes: ``1.36`` (one-endpoint services use ``numgen random mod 1 map``,
no localhost-NodePort objects, element comments not cut) and ``1.37`` (the layout of
``proxier.go`` after v1.36: one-endpoint special case, localhost-NodePort gate, comments cut
to 128 bytes)."""

SINGLE_ENDPOINT_FORMS = ("hostport", "addrport")
"""``1.37``'s DNAT for a one-endpoint chain: ``dnat to IP:PORT`` (``proxier.go``) or
``dnat ip addr . port to IP . PORT`` (what upstream's unit tests expect)."""


@dataclass(frozen=True, slots=True)
class NftOptions:
    kube_proxy_version: str = "1.37"
    single_endpoint_dnat: str = "hostport"
    localhost_nodeports_gate: bool = False
    """Feature gate ``KubeProxyNFTablesLocalhostNodePorts`` (1.37 only)."""
    service_cidrs: tuple[str, ...] = ()
    """The family's ServiceCIDRs (drop rule for unallocated ClusterIPs)."""

    @property
    def layout_1_36(self) -> bool:
        return self.kube_proxy_version == "1.36"
