"""EndpointSlices to kube-proxy's per-service-port endpoint lists (``endpointslicecache.go``).

Endpoints of all slices of a service are merged per service port, de-duplicated by
``ip:port`` (a non-terminating entry wins over a terminating one) and sorted by that string,
byte-wise, exactly as kube-proxy sorts them.
"""

from __future__ import annotations

from operator import itemgetter
from typing import NamedTuple

from netproxy.k8s.ipaddr import all_canonical_ipv4, canonical_ip, is_canonical_ipv4
from netproxy.k8s.objects import Endpoint, EndpointSlice
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
_new = tuple.__new__
_by_endpoint = itemgetter(2)  # EndpointInfo.endpoint

Merged = dict[ServicePortName, list[EndpointInfo] | dict[str, EndpointInfo]]
"""Per service port: a sorted list while only one slice with distinct addresses contributed
(the common case), else the ``ip:port`` -> endpoint dict the general merge works on."""


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
    merged: Merged = {}
    for (namespace, _), eps in sorted(latest.items()):
        if not eps.service_name or eps.address_type == "FQDN" or is_ignored(eps.labels):
            continue
        ips = None if want6 else _distinct_canonical_ipv4(eps)
        parsed: list[tuple[str, Endpoint]] | None = None
        for port in eps.ports:
            if port.port == 0:
                continue
            key = _new(ServicePortName, (namespace, eps.service_name, port.name, port.protocol))
            found = merged.get(key)
            if found is None and ips is not None:
                merged[key] = _one_slice(ips, eps.endpoints, port.port, node_name, node_hints)
                continue
            if found is None:
                found = merged[key] = {}
            elif isinstance(found, list):
                found = merged[key] = {ep.endpoint: ep for ep in found}
            if parsed is None:
                parsed = _parsed(eps.endpoints, want6)
            _merge(found, parsed, port.port, want6, node_name, node_hints)
    return {key: found if isinstance(found, list) else [found[k] for k in sorted(found)]
            for key, found in merged.items()}


def _distinct_canonical_ipv4(eps: EndpointSlice) -> list[str] | None:
    """The slice's endpoint addresses if they are distinct, canonically printed IPv4 addresses.

    Then :func:`_parsed` would keep every endpoint for IPv4 with its address unchanged, and
    :func:`_merge` into an empty dict would keep one entry per endpoint: :func:`_one_slice`
    builds the same list without the dict. None when they are not (the general merge runs).
    """
    ips = [ep[0][0] for ep in eps.endpoints]
    if not all_canonical_ipv4(ips):
        return None
    return ips if len(set(ips)) == len(ips) else None


def _one_slice(ips: list[str], endpoints: list[Endpoint], num: int, node_name: str,
               node_hints: bool) -> list[EndpointInfo]:
    """The sorted endpoints of a service port that only this slice feeds (see above);
    ``ips`` are the endpoints' first addresses."""
    suffix = f":{num}"
    local = bool(node_name)
    out = [_new(EndpointInfo, (ip, num, ip + suffix, ready, serving, terminating,
                               local and node == node_name, zones,
                               nodes if node_hints else _NONE))
           for ip, (_, ready, serving, terminating, node, _, zones, nodes)
           in zip(ips, endpoints, strict=True)]
    out.sort(key=_by_endpoint)  # the strings are distinct: same order as sorting the dict keys
    return out


def _parsed(endpoints: list[Endpoint], want6: bool) -> list[tuple[str, Endpoint]]:
    """``(canonical address, endpoint)`` for the endpoints of the wanted family."""
    parsed = []
    for ep in endpoints:
        text = ep.addresses[0]
        addr = text if is_canonical_ipv4(text) else canonical_ip(text)
        if addr is None or (":" in addr) != want6:
            continue
        parsed.append((addr, ep))
    return parsed


def _merge(target: dict[str, EndpointInfo], parsed: list[tuple[str, Endpoint]], num: int,
           want6: bool, node_name: str, node_hints: bool) -> None:
    """Add one slice's endpoints for port ``num``; a non-terminating duplicate wins."""
    local = bool(node_name)
    for ip, ep in parsed:
        text = f"[{ip}]:{num}" if want6 else f"{ip}:{num}"
        terminating = ep.terminating
        if terminating and text in target:
            continue  # a non-terminating duplicate wins
        target[text] = _new(EndpointInfo, (
            ip, num, text, ep.ready, ep.serving, terminating,
            local and ep.node_name == node_name, ep.zone_hints,
            ep.node_hints if node_hints else _NONE))
