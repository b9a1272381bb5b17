"""Endpoint selection: kube-proxy's ``CategorizeEndpoints`` (``pkg/proxy/topology.go``).

Chooses the endpoints a service port's cluster chain (SVC) and local chain (SVL) use, with
the ready -> serving-and-terminating fallback and topology hints (PreferSameNode, then
PreferSameZone).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter

from netproxy.proxy.endpoints import EndpointInfo
from netproxy.proxy.serviceport import ServicePortInfo

SAME_NODE = "PreferSameNode"
SAME_ZONE = "PreferSameZone"


@dataclass(slots=True)
class Categorized:
    """The result of endpoint selection for one service port."""

    cluster: list[EndpointInfo]
    local: list[EndpointInfo]
    all_reachable: list[EndpointInfo]
    has_any: bool
    topology_mode: str = ""


def topology_mode(endpoints: list[EndpointInfo], node_name: str, zone: str,
                  prefer_same_node: bool = True) -> str:
    """Which hints apply: ``PreferSameNode``, ``PreferSameZone`` or ``""`` (none)."""
    all_node_hints = all_zone_hints = True
    for_node = for_zone = False
    for ep in endpoints:
        if not ep.ready:
            continue
        if not ep.zone_hints:
            all_zone_hints = False
        elif zone in ep.zone_hints:
            for_zone = True
        if not ep.node_hints:
            all_node_hints = False
        elif node_name in ep.node_hints:
            for_node = True
        if not (all_node_hints or all_zone_hints):
            return ""  # neither mode can apply any more: usually decided by the first endpoint
    if prefer_same_node and all_node_hints and for_node:
        return SAME_NODE
    if all_zone_hints and for_zone:
        return SAME_ZONE
    return ""


def _available(ep: EndpointInfo, mode: str, node_name: str, zone: str) -> bool:
    if mode == SAME_NODE:
        return node_name in ep.node_hints
    if mode == SAME_ZONE:
        return zone in ep.zone_hints
    return True


def _pick(endpoints: list[EndpointInfo], keep: Callable[[EndpointInfo], bool]) -> list[EndpointInfo]:
    return [ep for ep in endpoints if keep(ep)]


_ready = itemgetter(3)  # EndpointInfo.ready


def categorize(endpoints: list[EndpointInfo], svc: ServicePortInfo, node_name: str, zone: str,
               *, prefer_same_node: bool = True) -> Categorized:
    """Split a service port's sorted endpoints into cluster, local and reachable lists."""
    mode = ""
    use_serving_terminating = False
    cluster: list[EndpointInfo] = []
    local: list[EndpointInfo] = []
    has_any = False
    uses_cluster = svc.uses_cluster_endpoints
    if uses_cluster:
        mode = topology_mode(endpoints, node_name, zone, prefer_same_node)
        if mode:
            cluster = _pick(endpoints, lambda ep: ep.ready and _available(ep, mode, node_name, zone))
        else:  # no hints apply: every ready endpoint (the common case; filtered in C)
            cluster = list(filter(_ready, endpoints))
        if not cluster:
            cluster = _pick(endpoints, lambda ep: ep.serving and ep.terminating)
        has_any = bool(cluster)
    if not svc.uses_local_endpoints:
        return Categorized(cluster, [], cluster, has_any, mode)
    local_ready = local_serving_terminating = False
    for ep in endpoints:
        if ep.ready:
            has_any = True
            local_ready = local_ready or ep.is_local
        elif ep.serving and ep.terminating:
            has_any = True
            local_serving_terminating = local_serving_terminating or ep.is_local
    if local_ready:
        local = _pick(endpoints, lambda ep: ep.is_local and ep.ready)
    elif local_serving_terminating:
        use_serving_terminating = True
        local = _pick(endpoints, lambda ep: ep.is_local and ep.serving and ep.terminating)
    if not uses_cluster:
        return Categorized([], local, local, has_any, mode)
    if mode == "" and not use_serving_terminating:
        return Categorized(cluster, local, cluster, has_any, mode)
    union = {ep.endpoint: ep for ep in cluster}
    for ep in local:
        union.setdefault(ep.endpoint, ep)
    # kube-proxy builds this union in a Go map (random order); we keep the sorted order.
    return Categorized(cluster, local, [union[k] for k in sorted(union)], has_any, mode)
