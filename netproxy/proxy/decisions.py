"""What kube-proxy decides for one service port before it writes anything (the top of the
service loop of ``syncProxyRules``, the same in iptables and nftables mode): which endpoint
lists are used, where cluster-IP and external traffic go, and what happens to traffic when
there are no (local) endpoints.

The rule writers only name these decisions: ``KUBE-SVC-``/``service-`` chains for
``uses_cluster``, ``REJECT``/``goto reject-chain`` for :data:`REJECT`, and so on.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netproxy.proxy.serviceport import ServicePortInfo
from netproxy.proxy.topology import Categorized

REJECT = "reject"
"""No usable endpoint anywhere: traffic is rejected."""
DROP = "drop"
"""Local traffic policy without a local endpoint: traffic is dropped."""


@dataclass(frozen=True, slots=True)
class PortDecisions:
    """kube-proxy's decisions for one service port (names as in ``syncProxyRules``)."""

    has_endpoints: bool
    """Any usable endpoint on any node (``hasEndpoints``)."""
    has_internal: bool
    """Cluster-IP traffic has somewhere to go (``hasInternalEndpoints``)."""
    has_external: bool
    """External traffic has somewhere to go (``hasExternalEndpoints``)."""
    internal_local: bool
    """Cluster-IP traffic uses the local-endpoint list (internalTrafficPolicy Local)."""
    external_local: bool
    """External traffic uses the local-endpoint list (externalTrafficPolicy Local)."""
    uses_cluster: bool
    """The cluster-policy endpoint list is written (``usesClusterPolicyChain``)."""
    uses_local: bool
    """The local-policy endpoint list is written (``usesLocalPolicyChain``)."""
    uses_external: bool
    """The external-traffic chain is written (``usesExternalTrafficChain``)."""
    uses_source_ranges: bool
    """LB VIPs with loadBalancerSourceRanges of this family (iptables mode also needs
    endpoints to write its firewall chain; nftables mode does not)."""
    internal_verdict: str
    """``""``, :data:`REJECT` or :data:`DROP` for cluster-IP traffic."""
    external_verdict: str
    """``""``, :data:`REJECT` or :data:`DROP` for external traffic."""


def decide(svc: ServicePortInfo, cat: Categorized) -> PortDecisions:
    """kube-proxy's decisions for ``svc`` with the endpoint selection ``cat``."""
    has_eps = cat.has_any
    has_internal = has_eps and (not svc.internal_policy_local or bool(cat.local))
    has_external = has_eps and (not svc.external_policy_local or bool(cat.local))
    if not has_eps:
        internal_verdict = external_verdict = REJECT
    else:
        internal_verdict = "" if has_internal else DROP
        external_verdict = "" if has_external else DROP
    return PortDecisions(
        has_endpoints=has_eps, has_internal=has_internal, has_external=has_external,
        internal_local=svc.internal_policy_local, external_local=svc.external_policy_local,
        uses_cluster=bool(cat.cluster) and svc.uses_cluster_endpoints,
        uses_local=bool(cat.local) and svc.uses_local_endpoints,
        uses_external=has_eps and svc.externally_accessible,
        uses_source_ranges=bool(svc.lb_vips) and bool(svc.source_ranges),
        internal_verdict=internal_verdict, external_verdict=external_verdict,
    )


def allow_from_node(svc: ServicePortInfo, node_ip: str) -> bool:
    """Whether the node's primary IP lies in one of the source ranges: then kube-proxy also
    lets the LB VIPs through the firewall (a VIP bound locally loops back with itself as
    source)."""
    if not node_ip:
        return False
    addr = ipaddress.ip_address(node_ip)
    for cidr in svc.source_ranges:
        net = ipaddress.ip_network(cidr)
        if addr.version == net.version and addr in net:
            return True
    return False
