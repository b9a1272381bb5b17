"""``--nodeport-addresses`` (``pkg/proxy/util/nodeport_addresses.go``) for one IP family."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netproxy.k8s.ipaddr import IPNetwork, family_of, parse_cidr, parse_ip

_V4_LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


@dataclass(frozen=True, slots=True)
class NodePortAddresses:
    """The family's NodePort CIDRs; ``match_all`` when none remain or one is ``0.0.0.0/0``/``::/0``."""

    cidrs: tuple[IPNetwork, ...]
    match_all: bool
    contains_ipv4_loopback: bool

    def local_addresses(self, host_ips: list[str]) -> list[str]:
        """Which of the host's addresses (in interface order) NodePorts listen on, de-duplicated."""
        out: list[str] = []
        for text in host_ips:
            addr = parse_ip(text)
            if addr is None:
                continue
            if any(addr in net for net in self.cidrs) and str(addr) not in out:
                out.append(str(addr))
        return out


def nodeport_addresses(cidrs: tuple[str, ...] | list[str], family: str,
                       primary_ips: list[str] | tuple[str, ...] = ()) -> NodePortAddresses:
    """Filter ``cidrs`` to ``family`` the way kube-proxy does; ``primary`` = the node IPs."""
    texts: list[str] = []
    for text in cidrs:
        if text == "primary":
            texts.extend(f"{ip}/{32 if ':' not in ip else 128}" for ip in primary_ips)
        else:
            texts.append(text)
    nets = [n for n in (parse_cidr(t) for t in texts) if n is not None and family_of(n) == family]
    if not nets:
        nets = [ipaddress.ip_network("0.0.0.0/0" if family == "ipv4" else "::/0")]
    loopback = False
    kept: list[IPNetwork] = []
    for net in nets:
        if net.version == 4 and (net.network_address.is_loopback or _V4_LOOPBACK in net):
            loopback = True
        if net.prefixlen == 0:
            return NodePortAddresses((), True, loopback)
        kept.append(net)
    return NodePortAddresses(tuple(kept), False, loopback)
