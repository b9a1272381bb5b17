"""The probe packets of a migration check, from the Kubernetes side: every frontend of every
Service port (ClusterIP, NodePort on each node address and on localhost, ExternalIP,
LoadBalancer IP) from every kind of source, plus the addresses only one mode answers for
(other ports and protocols of a ClusterIP, unallocated addresses of the ServiceCIDRs)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain, islice

from netproxy.proxy.model import ProxyModel
from netproxy.proxy.settings import ProxySettings
from netproxy.trace import Packet

POD_IF = "probe-pod0"
"""The probes' pod interface (the same in both modes, so outcomes stay comparable)."""
NODE_IF = "eth0"
EXTERNAL = {"ipv4": "203.0.113.77", "ipv6": "2001:db8:ffff::77"}
PROTOCOLS = ("tcp", "udp", "sctp")

# frontend kinds
CLUSTER_IP = "cluster-ip"
NODE_PORT = "node-port"
LOCALHOST_NODE_PORT = "localhost-node-port"
EXTERNAL_IP = "external-ip"
LB_IP = "load-balancer-ip"
OTHER_PORT = "cluster-ip-other-port"
UNALLOCATED = "unallocated-service-ip"

# source kinds
POD_HERE = "pod on this node"
POD_ELSEWHERE = "pod on another node"
NODE = "the node"
LOCALHOST = "localhost"
OUTSIDE = "outside"
IN_RANGE = "outside, inside the source ranges"
OUT_OF_RANGE = "outside, not in the source ranges"
ENDPOINT_HERE = "an endpoint of it on this node (hairpin)"
ENDPOINT_ELSEWHERE = "an endpoint of it on another node (hairpin)"


@dataclass(frozen=True, slots=True)
class Probe:
    """One packet and what it stands for."""

    service: str
    """``namespace/name:port`` of the Service port whose frontend this is ("" for none)."""
    frontend: str
    """One of the frontend kinds above."""
    source: str
    """One of the source kinds above."""
    packet: Packet
    ranges: tuple[str, ...] = ()
    """The frontend's loadBalancerSourceRanges (for a load-balancer IP)."""
    affinity: bool = True
    """Compare session affinity (a second connection of the client); False for a Service
    port known to have none, where it only costs time."""

    @property
    def text(self) -> str:
        p = self.packet
        dst = f"[{p.dst}]" if ":" in p.dst else p.dst
        src = p.src or "its own address"
        return f"{p.proto} {dst}:{p.dport} ({self.frontend}) from {self.source} {src}"


@dataclass(frozen=True, slots=True)
class Sources:
    """The source addresses of one family."""

    pod_here: str
    pod_elsewhere: str | None
    node_ip: str
    loopback: str
    external: str
    local_endpoints: frozenset[str] | None = None
    """The endpoint addresses of this node (None: not known), for the hairpin probes."""
    note: str | None = None
    """Said when a source is not what it stands for (the pod here is an endpoint too)."""


def _host_in(net: ipaddress.IPv4Network | ipaddress.IPv6Network, nth: int) -> str:
    n = min(nth, max(net.num_addresses - 2, 0))
    return str(net.network_address + n)


def _free_host(net: ipaddress.IPv4Network | ipaddress.IPv6Network, nth: int,
               taken: set[str]) -> str | None:
    """A host of ``net`` from the ``nth`` on (then from its first) that is no endpoint's
    address (a client that is not itself an endpoint: no hairpin); None when none of the
    first 4,096 tried is free."""
    last = max(net.num_addresses - 2, 0)  # the highest host (broadcast aside)
    order = chain(range(min(nth, last), last + 1), range(1, min(nth, last)))
    for n in islice(order, 4096):
        cand = _host_in(net, n)
        if cand not in taken:
            return cand
    return None


def sources(settings: ProxySettings, pod_cidrs: Iterable[str], node_pod_cidrs: Iterable[str],
            node_ip: str, taken: Iterable[str] = (),
            local_endpoints: frozenset[str] | None = None) -> Sources:
    """A pod of this node (inside its podCIDR), a pod elsewhere (the cluster CIDR outside
    it), the node, loopback, an outside client; the pods' addresses are none of ``taken``
    (the endpoints')."""
    return pod_sources(settings.family, pod_cidrs, node_pod_cidrs, node_ip, taken,
                       local_endpoints)


def pod_sources(fam: str, pod_cidrs: Iterable[str], node_pod_cidrs: Iterable[str],
                node_ip: str, taken: Iterable[str] = (),
                local_endpoints: frozenset[str] | None = None) -> Sources:
    """:func:`sources` for a family."""
    busy = set(taken)
    want = 6 if fam == "ipv6" else 4
    mine = [ipaddress.ip_network(c, strict=False) for c in node_pod_cidrs]
    mine = [n for n in mine if n.version == want]
    cluster = [ipaddress.ip_network(c, strict=False) for c in pod_cidrs]
    cluster = [n for n in cluster if n.version == want]
    note = None
    if mine or cluster:
        net = mine[0] if mine else cluster[0]
        found = _free_host(net, 250, busy)
        if found is None:
            found = _host_in(net, 250)
            note = (f"every address of {net} tried is an endpoint's: the probes from a pod on "
                    f"this node come from {found}, itself an endpoint (hairpin connections)")
        here = found
    else:
        here = "10.244.0.250" if want == 4 else "fd00:10:244::250"
    elsewhere = None
    for net in cluster:
        for start in (net.num_addresses // 2 + 250, 250):
            for nth in range(start, min(start + 4096, net.num_addresses - 1)):
                cand = net.network_address + nth
                if (not any(cand in m for m in mine) and str(cand) != here
                        and str(cand) not in busy):
                    elsewhere = str(cand)
                    break
            if elsewhere:
                break
        if elsewhere:
            break
    return Sources(here, elsewhere, node_ip, "::1" if want == 6 else "127.0.0.1",
                   EXTERNAL[fam], local_endpoints, note)


def _pod(s: Sources, dst: str, proto: str, port: int) -> Packet:
    return Packet(dst, s.pod_here, proto, port, origin="pod", in_interface=POD_IF,
                  out_interface=NODE_IF)


def _remote(src: str, dst: str, proto: str, port: int) -> Packet:
    return Packet(dst, src, proto, port, origin="external", in_interface=NODE_IF,
                  out_interface=NODE_IF)


def node_packet(src: str, dst: str, proto: str, port: int, origin: str = "node") -> Packet:
    """A packet the node sends (``origin="localhost"`` for one from loopback)."""
    return Packet(dst, src, proto, port, origin=origin, out_interface=NODE_IF)


def frontend_probes(spn: str, kind: str, s: Sources, dst: str, proto: str, port: int,
                    ranges: tuple[str, ...] = (), family: str = "ipv4",
                    affinity: bool = True) -> list[Probe]:
    """One frontend from a pod here, a pod elsewhere, the node and outside (with source
    ranges: a client inside them and one outside)."""
    out = [Probe(spn, kind, POD_HERE, _pod(s, dst, proto, port), ranges, affinity)]
    if s.pod_elsewhere:
        out.append(Probe(spn, kind, POD_ELSEWHERE, _remote(s.pod_elsewhere, dst, proto, port),
                         ranges, affinity))
    out.append(Probe(spn, kind, NODE, node_packet(s.node_ip, dst, proto, port), ranges,
                     affinity))
    if ranges:
        inside, outside = _range_sources(ranges, family, s.external)
        if inside:
            out.append(Probe(spn, kind, IN_RANGE, _remote(inside, dst, proto, port), ranges,
                             affinity))
        out.append(Probe(spn, kind, OUT_OF_RANGE, _remote(outside, dst, proto, port), ranges,
                         affinity))
    else:
        out.append(Probe(spn, kind, OUTSIDE, _remote(s.external, dst, proto, port), (),
                         affinity))
    return out


def hairpin_probes(probe: Probe, endpoints: Iterable[str],
                   local: frozenset[str] | None) -> list[Probe]:
    """The ClusterIP ``probe`` again, sent by one of the Service's own endpoints on this node
    and one on another node (their traffic may come back to them: hairpin). ``local``: this
    node's endpoint addresses; None when not known (no probe then)."""
    if local is None:
        return []
    p = probe.packet
    eps = sorted(set(endpoints), key=ipaddress.ip_address)
    out: list[Probe] = []
    here = next((ip for ip in eps if ip in local), None)
    there = next((ip for ip in eps if ip not in local), None)
    if here is not None:
        out.append(Probe(probe.service, probe.frontend, ENDPOINT_HERE,
                         Packet(p.dst, here, p.proto, p.dport, origin="pod",
                                in_interface=POD_IF, out_interface=NODE_IF),
                         probe.ranges, probe.affinity))
    if there is not None:
        out.append(Probe(probe.service, probe.frontend, ENDPOINT_ELSEWHERE,
                         _remote(there, p.dst, p.proto, p.dport or 0), probe.ranges,
                         probe.affinity))
    return out


def _range_sources(ranges: tuple[str, ...], family: str, external: str) -> tuple[str | None, str]:
    """A client inside the source ranges (None when none are of the family) and one outside."""
    want = 6 if family == "ipv6" else 4
    nets = [ipaddress.ip_network(r, strict=False) for r in ranges]
    nets = [n for n in nets if n.version == want]
    inside = _host_in(nets[0], 7) if nets else None
    outside = external
    candidates = ["203.0.113.77", "192.0.2.77", "198.18.0.77", "100.64.0.77"] if want == 4 else \
        ["2001:db8:ffff::77", "2001:db8:eeee::77", "fd99::77"]
    for cand in [external, *candidates]:
        addr = ipaddress.ip_address(cand)
        if not any(addr in n for n in nets):
            outside = cand
            break
    return inside, outside


def cluster_probes(model: ProxyModel, settings: ProxySettings, s: Sources,
                   node_ips: list[str], service_cidrs: Iterable[str] = ()) -> list[Probe]:
    """Every probe of the cluster for one family, Service by Service."""
    out: list[Probe] = []
    fam = settings.family
    used: dict[str, set[tuple[str, int]]] = {}
    names: dict[str, str] = {}
    for sp in model.service_ports:
        proto = sp.protocol.lower()
        if proto not in PROTOCOLS or not sp.cluster_ip:
            continue
        spn = sp.spn
        used.setdefault(sp.cluster_ip, set()).add((proto, sp.port))
        names.setdefault(sp.cluster_ip, f"{sp.name.namespace}/{sp.name.name}")
        sticky = sp.client_ip_affinity
        out += frontend_probes(spn, CLUSTER_IP, s, sp.cluster_ip, proto, sp.port,
                               affinity=sticky)
        if sp.node_port:
            for ip in node_ips:
                out += frontend_probes(spn, NODE_PORT, s, ip, proto, sp.node_port,
                                       affinity=sticky)
            if fam == "ipv4":
                out.append(Probe(spn, LOCALHOST_NODE_PORT, LOCALHOST,
                                 node_packet(s.loopback, s.loopback, proto, sp.node_port,
                                             origin="localhost"), affinity=sticky))
        for ip in sp.external_ips:
            out += frontend_probes(spn, EXTERNAL_IP, s, ip, proto, sp.port, affinity=sticky)
        for ip in sp.lb_vips:
            out += frontend_probes(spn, LB_IP, s, ip, proto, sp.port, sp.source_ranges, fam,
                                   affinity=sticky)
    return out + extra_probes(used, names, s, service_cidrs)


def extra_probes(used: dict[str, set[tuple[str, int]]], names: dict[str, str], s: Sources,
                 service_cidrs: Iterable[str]) -> list[Probe]:
    """A TCP and a UDP port each ClusterIP does not serve; an unallocated address of each
    ServiceCIDR (``used``: ClusterIP -> its (protocol, port) pairs)."""
    out: list[Probe] = []
    for ip in sorted(used):
        for proto in ("tcp", "udp"):
            port = free_port({p for pr, p in used[ip] if pr == proto})
            out.append(Probe(names.get(ip, ""), OTHER_PORT, POD_HERE, _pod(s, ip, proto, port)))
    taken = {ipaddress.ip_address(ip) for ip in used}
    for cidr in service_cidrs:
        addr = unallocated(ipaddress.ip_network(cidr, strict=False), taken)
        if addr is not None:
            out.append(Probe("", UNALLOCATED, POD_HERE, _pod(s, addr, "tcp", 80)))
    return out


def free_port(ports: set[int]) -> int:
    for port in (8081, 9999, 12345, 54321):
        if port not in ports:
            return port
    return max(ports) + 1


def unallocated(net: ipaddress.IPv4Network | ipaddress.IPv6Network,
                 taken: set[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> str | None:
    for nth in (4321, 250, 77, 3):
        if nth < net.num_addresses - 1:
            cand = net.network_address + nth
            if cand not in taken:
                return str(cand)
    return None
