"""The Kubernetes objects netproxy reads, reduced to the fields kube-proxy looks at.

API defaults are applied when decoding (:mod:`netproxy.k8s.decode`), so these objects hold
what the API server would return: protocol ``TCP``, type ``ClusterIP``, affinity timeout 10800.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


@dataclass(slots=True)
class ServicePortSpec:
    """One entry of ``spec.ports``."""

    name: str
    protocol: str
    port: int
    node_port: int = 0
    target_port: str = ""


@dataclass(slots=True)
class LoadBalancerIngress:
    """One entry of ``status.loadBalancer.ingress``."""

    ip: str
    ip_mode: str = ""
    hostname: str = ""


@dataclass(slots=True)
class Service:
    """A ``v1`` Service."""

    namespace: str
    name: str
    type: str = "ClusterIP"
    cluster_ip: str = ""
    cluster_ips: list[str] = field(default_factory=list)
    ip_families: list[str] = field(default_factory=list)
    ports: list[ServicePortSpec] = field(default_factory=list)
    external_ips: list[str] = field(default_factory=list)
    lb_ingress: list[LoadBalancerIngress] = field(default_factory=list)
    lb_source_ranges: list[str] = field(default_factory=list)
    external_traffic_policy: str = ""
    internal_traffic_policy: str = ""
    health_check_node_port: int = 0
    session_affinity: str = "None"
    affinity_timeout: int = 10800
    selector: dict[str, str] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    traffic_distribution: str = ""
    source: str = ""
    """Where the object was read from (``file, document N``), for messages."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(slots=True)
class EndpointPort:
    """One entry of an EndpointSlice's ``ports``; ``port`` 0 means unset (kube-proxy skips it)."""

    name: str
    protocol: str
    port: int


class Endpoint(NamedTuple):
    """One entry of an EndpointSlice's ``endpoints`` (conditions already defaulted).

    A tuple: big clusters have hundreds of thousands of these.
    """

    addresses: list[str]
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str = ""
    zone: str = ""
    zone_hints: frozenset[str] = frozenset()
    node_hints: frozenset[str] = frozenset()


@dataclass(slots=True)
class EndpointSlice:
    """A ``discovery.k8s.io/v1`` EndpointSlice (or one mirrored from a ``v1`` Endpoints)."""

    namespace: str
    name: str
    service_name: str
    address_type: str
    ports: list[EndpointPort] = field(default_factory=list)
    endpoints: list[Endpoint] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    source: str = ""


@dataclass(slots=True)
class Node:
    """A ``v1`` Node: name, addresses, labels (topology zone), pod CIDRs."""

    name: str
    addresses: list[tuple[str, str]] = field(default_factory=list)
    """``(type, address)`` pairs in status order, e.g. ``("InternalIP", "192.168.0.10")``."""
    labels: dict[str, str] = field(default_factory=dict)
    pod_cidrs: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def zone(self) -> str:
        return self.labels.get("topology.kubernetes.io/zone", "")
