"""EndpointSlices to kube-proxy's per-service-port endpoint lists (``endpointslicecache.go``).

Endpoints of all slices of a service are merged per service port, de-duplicated by
``ip:port`` (a non-terminating entry wins over a terminating one) and sorted by that string,
byte-wise, exactly as kube-proxy sorts them.
"""

from __future__ import annotations

from typing import NamedTuple

from netproxy.k8s.ipaddr import canonical_ip, is_canonical_ipv4
from netproxy.k8s.objects import EndpointSlice
from netproxy.proxy.serviceport import ServicePortName, is_ignored


class EndpointInfo(NamedTuple):
    """One endpoint of one service port, as kube-proxy's ``BaseEndpointInfo`` (a tuple: there
    are as many of these as endpoints in the cluster)."""

    ip: str
    port: int
    endpoint: str
    """``ip:port``, or ``[ip]:port`` for IPv6 (used in DNAT, comments and SEP hashes)."""
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    is_local: bool = False
    zone_hints: frozenset[str] = frozenset()
    node_hints: frozenset[str] = frozenset()


def endpoint_string(ip: str, port: int) -> str:
    """``ip:port``, or ``[ip]:port`` for IPv6."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


_NONE: frozenset[str] = frozenset()


def endpoints_map(slices: list[EndpointSlice], family: str, node_name: str,
                  *, node_hints: bool = True) -> dict[ServicePortName, list[EndpointInfo]]:
    """Sorted, de-duplicated endpoints per service port for ``family``.

    ``node_hints`` models the PreferSameTrafficDistribution gate (node hints ignored when off).
    Later slices with the same namespace and name replace earlier ones, like informer updates.
    """
    latest: dict[tuple[str, str], EndpointSlice] = {}
    for eps in slices:
        latest[(eps.namespace, eps.name)] = eps
    want6 = family == "ipv6"
    local = bool(node_name)
    new = tuple.__new__
    merged: dict[ServicePortName, dict[str, EndpointInfo]] = {}
    for (namespace, _), eps in sorted(latest.items()):
        if not eps.service_name or eps.address_type == "FQDN" or is_ignored(eps.labels):
            continue
        parsed = []
        for ep in eps.endpoints:
            text = ep.addresses[0]
            addr = text if is_canonical_ipv4(text) else canonical_ip(text)
            if addr is None or (":" in addr) != want6:
                continue
            parsed.append((addr, ep))
        for port in eps.ports:
            if port.port == 0:
                continue
            key = ServicePortName(namespace, eps.service_name, port.name, port.protocol)
            target = merged.setdefault(key, {})
            num = port.port
            for ip, ep in parsed:
                text = f"[{ip}]:{num}" if want6 else f"{ip}:{num}"
                terminating = ep.terminating
                if terminating and text in target:
                    continue  # a non-terminating duplicate wins
                target[text] = new(EndpointInfo, (
                    ip, num, text, ep.ready, ep.serving, terminating,
                    local and ep.node_name == node_name, ep.zone_hints,
                    ep.node_hints if node_hints else _NONE))
    return {key: [found[k] for k in sorted(found)] for key, found in merged.items()}
