"""The Kubernetes input side: objects, YAML/JSON loading, KubeProxyConfiguration.

Knows nothing about iptables; :mod:`netproxy.proxy` turns these objects into kube-proxy's
service-port and endpoint model.
"""

from __future__ import annotations

from netproxy.k8s.config import KubeProxyConfig, load_config
from netproxy.k8s.loader import Cluster, load_inputs
from netproxy.k8s.objects import (
    Endpoint,
    EndpointPort,
    EndpointSlice,
    Node,
    Service,
    ServicePortSpec,
)

__all__ = [
    "Cluster",
    "Endpoint",
    "EndpointPort",
    "EndpointSlice",
    "KubeProxyConfig",
    "Node",
    "Service",
    "ServicePortSpec",
    "load_config",
    "load_inputs",
]
