"""Probes for two node states in different modes (an iptables-mode dump before, an
nftables-mode listing after): the frontends come from the rules themselves -- kube-proxy's
frontend rules and comments on the iptables side, its verdict maps and chain names on the
nftables side -- instead of from cluster objects."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from netproxy.diff.behaviour import frontends, rule_frontend
from netproxy.migrate import probes as p
from netproxy.netfilter.model import Ruleset
from netproxy.netfilter.nft import NFT_FAMILY, NftRuleset, NftTable
from netproxy.proxy.nodeports import NodePortAddresses

_KIND_WORDS = (("cluster IP", p.CLUSTER_IP), ("external IP", p.EXTERNAL_IP),
               ("loadbalancer IP", p.LB_IP))
_CIDR = re.compile(r"[0-9a-fA-F.:]+/\d+")


@dataclass(frozen=True, slots=True)
class Seen:
    kind: str
    service: str
    ranges: tuple[str, ...] = ()


def _spn_of_chain(name: str) -> str:
    """``service-ULMVA6XW-ns1/svc1/tcp/p80`` -> ``ns1/svc1:p80``."""
    parts = name.split("-", 2)[-1].split("/") if "/" in name else []
    if len(parts) == 4:
        ns, svc, _proto, port = parts
        return f"{ns}/{svc}:{port}" if port else f"{ns}/{svc}"
    return ""


def kube_table(listing: NftRuleset, family: str) -> NftTable | None:
    key = (NFT_FAMILY[family], "kube-proxy")
    return listing.tables.get(key)


def nft_frontends(table: NftTable) -> dict[tuple[str, str, int], Seen]:
    """``(address or "", proto, port) -> kind and Service`` from kube-proxy's maps."""
    out: dict[tuple[str, str, int], Seen] = {}
    cluster_ips = {str(e.key) for e in table.sets["cluster-ips"].elements} \
        if "cluster-ips" in table.sets else set()
    firewalled: dict[tuple[object, ...], tuple[str, ...]] = {}
    for e in table.sets["firewall-ips"].elements if "firewall-ips" in table.sets else ():
        target = e.value.get("goto", {}).get("target", "") if isinstance(e.value, dict) else ""
        chain = table.chains.get(target)
        firewalled[tuple(e.key["concat"])] = tuple(
            c for r in (chain.rules if chain is not None else ()) for c in _CIDR.findall(r.text))
    for name in ("service-ips", "no-endpoint-services"):
        for e in table.sets[name].elements if name in table.sets else ():
            key = e.key.get("concat") if isinstance(e.key, dict) else None
            if not key or len(key) != 3:
                continue
            ip, proto, port = str(key[0]), str(key[1]), int(key[2])
            ranges = firewalled.get((key[0], key[1], key[2]))
            kind = p.CLUSTER_IP if ip in cluster_ips else (
                p.LB_IP if ranges is not None else p.EXTERNAL_IP)
            out.setdefault((ip, proto, port), Seen(kind, _service(e), ranges or ()))
    for name in ("service-nodeports", "no-endpoint-nodeports"):
        for e in table.sets[name].elements if name in table.sets else ():
            key = e.key.get("concat") if isinstance(e.key, dict) else None
            if key and len(key) == 2:
                out.setdefault(("", str(key[0]), int(key[1])), Seen(p.NODE_PORT, _service(e)))
    return out


def _service(element: object) -> str:
    comment = getattr(element, "comment", None)
    if comment:
        return str(comment)
    value = getattr(element, "value", None)
    if isinstance(value, dict):
        for verdict in ("goto", "jump"):
            target = value.get(verdict)
            if isinstance(target, dict):
                return _spn_of_chain(str(target.get("target", "")))
    return ""


def iptables_frontends(ruleset: Ruleset) -> dict[tuple[str, str, int], Seen]:
    """The same from an iptables-mode ruleset (kind and Service from the rule comments)."""
    out: dict[tuple[str, str, int], Seen] = {}
    found = frontends(ruleset)
    for table in ruleset.tables.values():
        for chain in table.chains.values():
            for rule in chain.rules:
                opt = rule.option("comment", "comment")
                if opt is None or not opt.args:
                    continue
                text = opt.args[0]
                f = rule_frontend(rule) if rule.opaque is None else None
                if f is None or f not in found:
                    continue
                kind = p.NODE_PORT if not f.dst else next(
                    (k for word, k in _KIND_WORDS if word in text), p.CLUSTER_IP)
                out.setdefault((f.dst, f.proto, f.port), Seen(kind, text.split(" ")[0]))
    for f in found:
        out.setdefault((f.dst, f.proto, f.port),
                       Seen(p.NODE_PORT if not f.dst else p.CLUSTER_IP, ""))
    return out


def nodeport_addresses(table: NftTable | None) -> NodePortAddresses:
    """What the nftables table accepts NodePorts on: ``nodeport-ips``, else every
    non-loopback local address."""
    if table is None or "nodeport-ips" not in table.sets:
        return NodePortAddresses((), True, False)
    nets = tuple(ipaddress.ip_network(str(e.key)) for e in table.sets["nodeport-ips"].elements)
    return NodePortAddresses(nets, False, False)


def iptables_nodeports(ruleset: Ruleset) -> tuple[NodePortAddresses, str]:
    """What the iptables rules accept NodePorts on, read from KUBE-SERVICES' jumps to
    KUBE-NODEPORTS (``-m addrtype --dst-type LOCAL``: every local address, kube-proxy's
    default; ``-d IP``: the addresses ``--nodeport-addresses`` chose), and how it was known."""
    nat = ruleset.tables.get("nat")
    chain = nat.chains.get("KUBE-SERVICES") if nat is not None else None
    hosts: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    every = False
    for rule in chain.rules if chain is not None else ():
        if rule.target is None or rule.target.name != "KUBE-NODEPORTS":
            continue
        dst = rule.builtin("destination")
        if dst is None or not dst.args or dst.negated:
            every = True
            continue
        try:
            hosts.append(ipaddress.ip_network(dst.args[0], strict=False))
        except ValueError:
            continue
    loopback = ruleset.family == "ipv4"
    if every:
        return (NodePortAddresses((), True, loopback),
                "every local address (KUBE-SERVICES: -m addrtype --dst-type LOCAL)")
    if hosts:
        return (NodePortAddresses(tuple(hosts), False, False),
                "only " + ", ".join(str(h) for h in hosts) + " (KUBE-SERVICES: -d, from "
                "--nodeport-addresses)")
    return (NodePortAddresses((), True, loopback),
            "no jump to KUBE-NODEPORTS: taken as every local address, kube-proxy's default")


def nodeport_hosts(old: Ruleset, table: NftTable | None) -> list[str]:
    """Node addresses the rules name for NodePorts: iptables' ``-d IP -j KUBE-NODEPORTS``
    and the nftables ``nodeport-ips`` set."""
    out: list[str] = []
    np, _ = iptables_nodeports(old)
    for net in np.cidrs:
        if net.num_addresses == 1 and str(net.network_address) not in out:
            out.append(str(net.network_address))
    for e in table.sets["nodeport-ips"].elements if table is not None and \
            "nodeport-ips" in table.sets else ():
        if str(e.key) not in out:
            out.append(str(e.key))
    return out


_ADDR = re.compile(r"(?<![\w.:])(\d{1,3}(?:\.\d{1,3}){3}|[0-9a-fA-F]*:[0-9a-fA-F:]+)"
                   r"(?:/\d+)?")


def _addresses(text: str, family: str) -> list[str]:
    out = []
    for m in _ADDR.finditer(text):
        if m.group(0) != m.group(1):  # a CIDR, not an address
            continue
        try:
            addr = ipaddress.ip_address(m.group(1))
        except ValueError:
            continue
        if (addr.version == 6) == (family == "ipv6"):
            out.append(str(addr))
    return out


def endpoints(old: Ruleset, table: NftTable | None) -> set[str]:
    """Every DNAT destination either side names (the Services' endpoints)."""
    out: set[str] = set()
    for t in old.tables.values():
        for chain in t.chains.values():
            for rule in chain.rules:
                opt = rule.target.get("to-destination") if rule.target is not None and \
                    rule.target.name == "DNAT" else None
                if opt is not None and opt.args:
                    out.add(opt.args[0].rsplit(":", 1)[0].strip("[]"))
    for text in _nft_texts(table):
        if "dnat" in text:
            out.update(_addresses(text.split("dnat", 1)[1], old.family))
    return out


def _nft_texts(table: NftTable | None) -> list[str]:
    return [r.text for c in (table.chains.values() if table is not None else ()) for r in c.rules]


def local_endpoints(table: NftTable | None) -> frozenset[str] | None:
    """This node's endpoints: the nftables ``hairpin-connections`` set holds exactly them
    (None without it)."""
    if table is None or "hairpin-connections" not in table.sets:
        return None
    return frozenset(str(e.key["concat"][0]) for e in table.sets["hairpin-connections"].elements
                     if isinstance(e.key, dict) and e.key.get("concat"))


def cluster_cidrs(old: Ruleset, table: NftTable | None) -> list[str]:
    """The pod network, from the local-traffic detector: iptables' ``! -s CIDR -j
    KUBE-MARK-MASQ``, nftables' ``saddr != CIDR ... mark set``."""
    out: list[str] = []
    nat = old.tables.get("nat")
    for chain in nat.chains.values() if nat is not None else ():
        for rule in chain.rules:
            src = rule.builtin("source")
            if (rule.target is not None and rule.target.name == "KUBE-MARK-MASQ"
                    and src is not None and src.negated and src.args):
                net = str(ipaddress.ip_network(src.args[0], strict=False))
                if net not in out:
                    out.append(net)
    for text in _nft_texts(table):
        m = re.search(r"saddr != ([0-9a-fA-F.:]+/\d+) .*mark set", text)
        if m:
            net = str(ipaddress.ip_network(m.group(1), strict=False))
            if net not in out:
                out.append(net)
    return out


def node_pod_cidrs(routes: list[object] | None, cluster: list[str],
                   local: frozenset[str] | None, family: str) -> tuple[list[str], str]:
    """This node's pod range: a directly connected (or, Calico's, blackhole) route inside the
    cluster CIDR of a snapshot; else the /24 (/64) around this node's endpoints; and how."""
    nets = [ipaddress.ip_network(c) for c in cluster]
    bits = 128 if family == "ipv6" else 32
    found: list[str] = []
    for kind_wanted in ("unicast", "blackhole"):
        for r in routes or ():
            net_int, plen = getattr(r, "net", None), getattr(r, "plen", bits)
            if not isinstance(net_int, int) or not isinstance(plen, int) or plen >= bits:
                continue
            if getattr(r, "kind", "") != kind_wanted or getattr(r, "gateway", None) or \
                    getattr(r, "table", "main") not in ("main", "254"):
                continue
            if kind_wanted == "unicast" and not getattr(r, "dev", None):
                continue
            net = (ipaddress.IPv6Network((net_int, plen)) if family == "ipv6"
                   else ipaddress.IPv4Network((net_int, plen)))
            if any(net.version == c.version and net.subnet_of(c) for c in nets):  # type: ignore[arg-type]
                found.append(str(net))
        if found:
            return found, "from the snapshot's routes"
    if local:
        plen = 64 if family == "ipv6" else 24
        around = sorted({str(ipaddress.ip_network(f"{ip}/{plen}", strict=False)) for ip in local})
        return around, f"assumed: the /{plen} around this node's endpoints"
    return [], "not known"


def service_cidrs(table: NftTable | None) -> list[str]:
    chain = table.chains.get("cluster-ips-check") if table is not None else None
    out: list[str] = []
    for rule in chain.rules if chain is not None else ():
        if "drop" in rule.text:
            out += [c for c in _CIDR.findall(rule.text) if c not in out]
    return out


def rule_probes(old: Ruleset, listing: NftRuleset, node_ips: list[str],
                s: p.Sources) -> list[p.Probe]:
    """Every frontend either side has, from every source kind ``s`` holds (as
    :func:`cluster_probes`), plus other ports of each ClusterIP and unallocated service
    addresses."""
    family = old.family
    table = kube_table(listing, family)
    seen = iptables_frontends(old)
    for key, found in (nft_frontends(table) if table is not None else {}).items():
        if key not in seen or not seen[key].service or found.ranges:
            seen[key] = found
    out: list[p.Probe] = []
    used: dict[str, set[tuple[str, int]]] = {}
    names: dict[str, str] = {}
    for (dst, proto, port), what in sorted(seen.items()):
        if what.kind == p.NODE_PORT:
            for ip in node_ips:
                out += p.frontend_probes(what.service, p.NODE_PORT, s, ip, proto, port)
            if family == "ipv4":
                out.append(p.Probe(what.service, p.LOCALHOST_NODE_PORT, p.LOCALHOST,
                                   p.node_packet(s.loopback, s.loopback, proto, port,
                                                 origin="localhost")))
            continue
        out += p.frontend_probes(what.service, what.kind, s, dst, proto, port, what.ranges,
                                 family)
        if what.kind == p.CLUSTER_IP:
            used.setdefault(dst, set()).add((proto, port))
            names.setdefault(dst, what.service.split(":")[0])
    out += p.extra_probes(used, names, s, service_cidrs(table))
    return out
