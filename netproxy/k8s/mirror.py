"""Legacy ``v1`` Endpoints to EndpointSlices, the way the EndpointSlice mirroring controller does.

One slice per subset and address family; ``addresses`` become ready endpoints and
``notReadyAddresses`` not-ready ones. The controller sets only the ``ready`` condition, so
``serving`` reads as true and ``terminating`` as false, exactly what kube-proxy then sees.
"""

from __future__ import annotations

from typing import Any

from netproxy.k8s.ipaddr import parse_ip
from netproxy.k8s.objects import Endpoint, EndpointPort, EndpointSlice

SKIP_MIRROR = "endpointslice.kubernetes.io/skip-mirror"


def mirror_endpoints(namespace: str, name: str, labels: dict[str, str], subsets: list[Any],
                     source: str) -> list[EndpointSlice]:
    """The EndpointSlices mirrored from one validated Endpoints object."""
    if labels.get(SKIP_MIRROR) == "true":
        return []
    slice_labels = {k: v for k, v in labels.items() if k != SKIP_MIRROR}
    slice_labels["kubernetes.io/service-name"] = name
    slice_labels["endpointslice.kubernetes.io/managed-by"] = "endpointslicemirroring-controller.k8s.io"
    out: list[EndpointSlice] = []
    for i, subset in enumerate(subsets):
        subset = subset or {}
        ports = [EndpointPort(p.get("name") or "", p.get("protocol") or "TCP", int(p["port"]))
                 for p in subset.get("ports") or []]
        by_type: dict[str, list[Endpoint]] = {}
        for key, ready in (("addresses", True), ("notReadyAddresses", False)):
            for addr in subset.get(key) or []:
                ip = parse_ip(addr["ip"])
                kind = "IPv4" if ip is not None and ip.version == 4 else "IPv6"
                by_type.setdefault(kind, []).append(
                    Endpoint([addr["ip"]], ready=ready, node_name=addr.get("nodeName") or ""))
        for kind in ("IPv4", "IPv6"):
            if kind in by_type:
                out.append(EndpointSlice(namespace, f"{name}-mirror-{i}-{kind.lower()}", name, kind,
                                         ports=list(ports), endpoints=by_type[kind],
                                         labels=dict(slice_labels), source=source))
    return out
