"""kube-proxy's view of a cluster for one IP family: service ports and their endpoints.

Both rule writers (iptables and nftables mode) start from this model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from netproxy.proxy.endpoints import EndpointInfo, endpoints_map
from netproxy.proxy.serviceport import ServicePortInfo, ServicePortName, all_service_ports

if TYPE_CHECKING:
    from netproxy.k8s.loader import Cluster
    from netproxy.proxy.settings import ProxySettings


@dataclass(slots=True)
class ProxyModel:
    """kube-proxy's view of the cluster for one family: service ports and their endpoints."""

    service_ports: list[ServicePortInfo]
    """Sorted by (namespace, name, port name, protocol): our deterministic iteration order."""
    endpoints: dict[ServicePortName, list[EndpointInfo]]

    def total_endpoints(self) -> int:
        """What kube-proxy compares with the large-cluster threshold."""
        return sum(len(self.endpoints.get(s.name, ())) for s in self.service_ports)


def proxy_model(cluster: Cluster, settings: ProxySettings) -> ProxyModel:
    """Service ports (sorted) and endpoints kube-proxy would see for ``settings.family``."""
    return ProxyModel(
        service_ports=all_service_ports(cluster.services, settings.family),
        endpoints=endpoints_map(cluster.slices, settings.family, settings.node_name,
                                node_hints=settings.prefer_same_node),
    )
