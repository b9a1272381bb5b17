"""The differences between kube-proxy's iptables and nftables modes that kube-proxy intends
(its migration notes; the nftables reference, §12), and how a probe's differing outcomes are
recognised as one of them. Anything not recognised is a finding."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from netproxy.diff.behaviour import AFFINITY as _AFFINITY
from netproxy.diff.behaviour import same
from netproxy.migrate import probes as p
from netproxy.proxy.nodeports import NodePortAddresses


@dataclass(frozen=True, slots=True)
class Expected:
    key: str
    title: str
    spec: str
    """Where kube-proxy's migration notes say so (our reference's §12 item)."""
    avoid: str
    """The setting (or change) that avoids the difference, or what to do about it."""


EXPECTED: dict[str, Expected] = {e.key: e for e in (
    Expected("localhost-nodeports", "NodePorts on localhost are not forwarded", "§12.2",
             "reach NodePorts on a node address instead of 127.0.0.1; after v1.36 the feature "
             "gate KubeProxyNFTablesLocalhostNodePorts=true with 127.0.0.0/8 in "
             "nodePortAddresses serves TCP ones by a userspace proxy (check kube-proxy's "
             "iptables_localhost_nodeports_accepted_packets_total before switching)"),
    Expected("nodeport-addresses", "NodePorts only on the primary node IP "
             "(nodePortAddresses defaults to 'primary')", "§12.1",
             "nodePortAddresses: [\"0.0.0.0/0\", \"::/0\"] (--nodeport-addresses 0.0.0.0/0; "
             "'all' in newer releases) keeps NodePorts on every node address"),
    Expected("cluster-ip-other-ports", "ports and protocols a ClusterIP does not serve are "
             "rejected", "§12.5",
             "none needed: clients get a reject instead of a packet sent on to the service "
             "address; add the port to the Service if clients use it"),
    Expected("unallocated-service-ips", "traffic to unallocated addresses of the "
             "ServiceCIDRs is dropped", "§12.5",
             "none needed (the ServiceCIDR objects, or --service-cidr, give the ranges)"),
    Expected("hairpin-local-endpoints-only", "hairpin masquerade only for endpoints on this "
             "node: a Service's endpoint on another node whose connection through this node "
             "comes back to itself is no longer masqueraded", "§12.7",
             "none usually needed (a pod's traffic to a Service is handled by its own node's "
             "rules); masqueradeAll: true (--masquerade-all) masquerades it in both modes"),
    Expected("source-ranges-first", "loadBalancerSourceRanges apply before the endpoint "
             "check, in prerouting and output: clients outside them (the node's own too) are "
             "dropped even when the Service has no endpoints", "§12.6",
             "none needed: a client outside the ranges gets no reply instead of a reject; add "
             "the node's address to the ranges if the node must reach the load balancer"),
)}

NOTES: dict[str, Expected] = {e.key: e for e in (
    Expected("host-firewall", "no ACCEPT rules for NodePorts (a host firewall that drops "
             "them now decides)", "§12.3",
             "open the NodePort range (default 30000-32767) in the host firewall"),
    Expected("health-check-nodeports", "no rules for health-check NodePorts", "§12.11",
             "open the healthCheckNodePorts in the host firewall"),
    Expected("conntrack-invalid", "packets conntrack calls INVALID are not dropped", "§12.4",
             "conntrack.tcpBeLiberal: true (--conntrack-tcp-be-liberal) if kube-proxy's "
             "iptables_ct_state_invalid_dropped_packets_total was non-zero"),
)}


def _dnats(outcomes: dict[str, float]) -> bool:
    return any(" DNAT " in text for text in outcomes)


def _only(outcomes: dict[str, float], verdict: str, *, dnat: bool = False) -> bool:
    """Every outcome is ``verdict`` (without DNAT unless ``dnat``)."""
    return bool(outcomes) and all(
        text.split(" ")[0] == verdict and (dnat or " DNAT " not in text)
        for text in outcomes if text != _AFFINITY)


def _in(addresses: NodePortAddresses, ip: str) -> bool:
    if addresses.match_all:
        return not ipaddress.ip_address(ip).is_loopback
    addr = ipaddress.ip_address(ip)
    return any(addr in net for net in addresses.cidrs)


def _outside(probe: p.Probe) -> bool:
    """The probe's source is outside its frontend's loadBalancerSourceRanges."""
    if not probe.ranges or probe.packet.src is None:
        return False
    addr = ipaddress.ip_address(probe.packet.src)
    nets = [ipaddress.ip_network(r, strict=False) for r in probe.ranges]
    return not any(addr in n for n in nets if n.version == addr.version)


def endpoint_of(text: str) -> str | None:
    """The DNAT address of an outcome text (``ACCEPT DNAT 10.0.0.1:80 masquerade``)."""
    words = text.split(" ")
    if len(words) < 3 or words[1] != "DNAT":
        return None
    return words[2].rsplit(":", 1)[0].strip("[]")


def _hairpin(probe: p.Probe, old: dict[str, float], new: dict[str, float]) -> bool:
    """Only the branches where the client reaches itself differ, masqueraded in iptables
    mode and not in nftables mode (§12.7)."""
    src = probe.packet.src

    def unmasked(outcomes: dict[str, float]) -> dict[str, float]:
        out: dict[str, float] = {}
        for text, prob in outcomes.items():
            if endpoint_of(text) == src:
                text = text.removesuffix(" masquerade")
            out[text] = out.get(text, 0.0) + prob
        return out

    def self_masq(outcomes: dict[str, float]) -> bool:
        return any(endpoint_of(t) == src and t.endswith(" masquerade") for t in outcomes)

    return same(unmasked(old), unmasked(new)) and self_masq(old) and not self_masq(new)


def classify(probe: p.Probe, old: dict[str, float], new: dict[str, float], *,
             old_nodeports: NodePortAddresses, new_nodeports: NodePortAddresses) -> str | None:
    """The key of the intended difference ``old`` (iptables mode) -> ``new`` (nftables mode)
    shows for this probe, or None (a finding)."""
    rules: dict[str, Callable[[], bool]] = {
        p.LOCALHOST_NODE_PORT: lambda: (_dnats(old) or _only(old, "REJECT"))
        and not _dnats(new),
        p.NODE_PORT: lambda: (_in(old_nodeports, probe.packet.dst)
                              and not _in(new_nodeports, probe.packet.dst)
                              and _only(new, "ACCEPT")),
        p.OTHER_PORT: lambda: _only(old, "ACCEPT") and _only(new, "REJECT"),
        p.UNALLOCATED: lambda: _only(old, "ACCEPT") and _only(new, "DROP"),
        p.LB_IP: lambda: (_outside(probe) and _only(new, "DROP")
                          and (_only(old, "REJECT") or _only(old, "ACCEPT"))),
    }
    keys = {p.LOCALHOST_NODE_PORT: "localhost-nodeports", p.NODE_PORT: "nodeport-addresses",
            p.OTHER_PORT: "cluster-ip-other-ports", p.UNALLOCATED: "unallocated-service-ips",
            p.LB_IP: "source-ranges-first"}
    if probe.source == p.ENDPOINT_ELSEWHERE:
        return "hairpin-local-endpoints-only" if _hairpin(probe, old, new) else None
    rule = rules.get(probe.frontend)
    if rule is not None and rule():
        return keys[probe.frontend]
    return None
