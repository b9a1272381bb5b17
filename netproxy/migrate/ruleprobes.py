"""Probes for two node states in different modes (an iptables-mode dump before, an
nftables-mode listing after): the frontends come from the rules themselves -- kube-proxy's
frontend rules and comments on the iptables side, its verdict maps and chain names on the
nftables side -- instead of from cluster objects."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from netproxy.diff.behaviour import frontends, pod_source, rule_frontend
from netproxy.migrate import probes as p
from netproxy.netfilter.model import Ruleset
from netproxy.netfilter.nft import NftRuleset, NftTable
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
    key = ("ip6" if family == "ipv6" else "ip", "kube-proxy")
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


def service_cidrs(table: NftTable | None) -> list[str]:
    chain = table.chains.get("cluster-ips-check") if table is not None else None
    out: list[str] = []
    for rule in chain.rules if chain is not None else ():
        if "drop" in rule.text:
            out += [c for c in _CIDR.findall(rule.text) if c not in out]
    return out


def rule_probes(old: Ruleset, listing: NftRuleset, node_ips: list[str]) -> list[p.Probe]:
    """Every frontend either side has, from every source kind (as :func:`cluster_probes`),
    plus other ports of each ClusterIP and unallocated service addresses."""
    family = old.family
    table = kube_table(listing, family)
    seen = iptables_frontends(old)
    for key, found in (nft_frontends(table) if table is not None else {}).items():
        if key not in seen or not seen[key].service or found.ranges:
            seen[key] = found
    s = p.Sources(pod_source([old], family), None, node_ips[0],
                  "::1" if family == "ipv6" else "127.0.0.1", p.EXTERNAL[family])
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
