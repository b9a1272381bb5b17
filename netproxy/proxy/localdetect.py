"""Local-traffic detection (``pkg/proxy/util/localdetector.go`` and ``getLocalDetectors``).

A detector says how to recognise traffic that comes from a pod on this node: by source CIDR
(ClusterCIDR / NodeCIDR modes) or by input interface (BridgeInterface / InterfaceNamePrefix).
The compiler turns it into ``-s``/``-i`` matches.
"""

from __future__ import annotations

from dataclasses import dataclass

from netproxy.k8s.ipaddr import family_of, parse_cidr


@dataclass(frozen=True, slots=True)
class LocalDetector:
    """``kind`` is ``"source"`` (value = CIDR), ``"interface"`` (value = name) or ``""`` (no-op)."""

    kind: str = ""
    value: str = ""

    @property
    def implemented(self) -> bool:
        return bool(self.kind)


NO_OP = LocalDetector()


def _first_cidr(cidrs: list[str] | tuple[str, ...], family: str) -> str:
    for text in cidrs:
        net = parse_cidr(text)
        if net is not None and family_of(net) == family:
            return str(net)  # re-printed from the parsed network, like kube-proxy
    return ""


def local_detector(mode: str, family: str, *, cluster_cidrs: tuple[str, ...] = (),
                   node_pod_cidrs: list[str] | tuple[str, ...] = (), bridge_interface: str = "",
                   interface_prefix: str = "") -> LocalDetector:
    """The detector kube-proxy builds for ``family`` in ``detectLocalMode`` ``mode``."""
    if mode == "ClusterCIDR":
        cidr = _first_cidr(cluster_cidrs, family)
        return LocalDetector("source", cidr) if cidr else NO_OP
    if mode == "NodeCIDR":
        cidr = _first_cidr(node_pod_cidrs, family)
        return LocalDetector("source", cidr) if cidr else NO_OP
    if mode == "BridgeInterface" and bridge_interface:
        return LocalDetector("interface", bridge_interface)
    if mode == "InterfaceNamePrefix" and interface_prefix:
        return LocalDetector("interface", interface_prefix + "+")
    return NO_OP
