"""Per service-port rules (spec §2.3), one small function per chain family.

The order of calls in :func:`write_service_port` is the order kube-proxy's ``syncProxyRules``
writes lines, so the payload matches byte for byte.
"""

from __future__ import annotations

import ipaddress
from functools import cache

from netproxy.compiler.build import (
    COMMENT,
    addrtype,
    comment,
    dest,
    dport,
    in_iface,
    module,
    nfacct,
    probability,
    proto,
    rule,
    source,
)
from netproxy.compiler.fixed import LOCALHOST_NP_COUNTER
from netproxy.compiler.plan import Plan, plan
from netproxy.compiler.writer import PayloadWriter
from netproxy.netfilter.model import Chain, Option, Rule, Target
from netproxy.proxy.endpoints import EndpointInfo
from netproxy.proxy.localdetect import LocalDetector
from netproxy.proxy.serviceport import ServicePortInfo
from netproxy.proxy.settings import ProxySettings
from netproxy.proxy.topology import Categorized

MARK_MASQ = "KUBE-MARK-MASQ"
RECENT = module("recent")
RCHECK = Option("recent", "rcheck")
REAP = Option("recent", "reap")
SET = Option("recent", "set")
_new_tuple = tuple.__new__


def _opt(mod: str, name: str, args: tuple[str, ...]) -> Option:
    """A non-negated option, built without NamedTuple's Python-level constructor."""
    return _new_tuple(Option, (mod, name, args, False))


def _dst_port(pl: Plan, addr: str, port: int) -> tuple[Option, ...]:
    """``-m P -p P -d ADDR --dport PORT`` in kube-proxy's order."""
    return (*proto(pl.p), dest(addr), dport(pl.p, port))


def write_cluster_ip(out: PayloadWriter, pl: Plan) -> None:
    svc = pl.svc
    match = _dst_port(pl, svc.cluster_ip, svc.port)
    if pl.has_internal:
        pl.cluster_match = comment(f"{pl.spn} cluster IP") + match
        out.add_nat("KUBE-SERVICES", rule(pl.cluster_match, pl.internal_chain))
    else:
        out.add_filter("KUBE-SERVICES", rule(comment(pl.int_comment) + match, pl.int_target))


def write_external_ips(out: PayloadWriter, pl: Plan) -> None:
    svc = pl.svc
    for addr in svc.external_ips:
        match = _dst_port(pl, addr, svc.port)
        if pl.cat.has_any:
            out.add_nat("KUBE-SERVICES", rule(comment(f"{pl.spn} external IP") + match, pl.ext_chain))
        if not pl.has_external:
            out.add_filter("KUBE-EXTERNAL-SERVICES", rule(comment(pl.ext_comment) + match, pl.ext_target))


def write_load_balancer_ips(out: PayloadWriter, pl: Plan) -> None:
    svc = pl.svc
    for addr in svc.lb_vips:
        match = _dst_port(pl, addr, svc.port)
        if pl.cat.has_any:
            out.add_nat("KUBE-SERVICES", rule(comment(f"{pl.spn} loadbalancer IP") + match, pl.lb_target))
        if pl.uses_fw_chain:
            out.add_filter("KUBE-PROXY-FIREWALL", rule(
                comment(f"{pl.spn} traffic not accepted by {pl.fw_chain}") + match, "DROP"))
    if not pl.has_external:
        for addr in svc.lb_vips:
            out.add_filter("KUBE-EXTERNAL-SERVICES", rule(
                comment(pl.ext_comment) + _dst_port(pl, addr, svc.port), pl.ext_target))


def write_node_port(out: PayloadWriter, pl: Plan, settings: ProxySettings) -> None:
    svc = pl.svc
    if not svc.node_port:
        return
    if pl.cat.has_any:
        if settings.localhost_nodeports_effective and settings.nfacct:
            out.add_nat("KUBE-NODEPORTS", rule(
                comment(pl.spn) + (*proto(pl.p), dest("127.0.0.0/8"), dport(pl.p, svc.node_port))
                + nfacct(LOCALHOST_NP_COUNTER), pl.ext_chain))
        out.add_nat("KUBE-NODEPORTS", rule(
            comment(pl.spn) + (*proto(pl.p), dport(pl.p, svc.node_port)), pl.ext_chain))
    if not pl.has_external:
        out.add_filter("KUBE-EXTERNAL-SERVICES", rule(
            comment(pl.ext_comment) + addrtype("dst-type") + (*proto(pl.p), dport(pl.p, svc.node_port)),
            pl.ext_target))


def write_health_check(out: PayloadWriter, pl: Plan) -> None:
    hc = pl.svc.health_check_node_port
    if hc:
        out.add_filter("KUBE-NODEPORTS", rule(
            comment(f"{pl.spn} health check node port") + (*proto("tcp"), dport("tcp", hc)), "ACCEPT"))


def detector_matches(settings: ProxySettings, local: bool) -> tuple[Option, ...]:
    """``-s CIDR`` / ``-i IFACE`` (local) or their negations (not local); empty when no-op."""
    return _detector_matches(settings.detector, local)


@cache
def _detector_matches(det: LocalDetector, local: bool) -> tuple[Option, ...]:
    """The same items for every service port (shared, like the other common items)."""
    if det.kind == "source":
        return (source(det.value, not local),)
    if det.kind == "interface":
        return (in_iface(det.value, not local),)
    return ()


def write_internal_masquerade(out: PayloadWriter, pl: Plan, settings: ProxySettings) -> None:
    if not pl.has_internal:
        return
    svc = pl.svc
    match = pl.cluster_match or comment(f"{pl.spn} cluster IP") + _dst_port(pl, svc.cluster_ip, svc.port)
    if settings.masquerade_all:
        out.add_nat(pl.internal_chain, rule(match, MARK_MASQ))
    elif settings.detector.implemented:
        out.add_nat(pl.internal_chain, rule(match + detector_matches(settings, False), MARK_MASQ))


def write_ext_chain(out: PayloadWriter, pl: Plan, settings: ProxySettings) -> None:
    if not pl.uses_ext_chain:
        return
    ext, spn = pl.ext_chain, pl.spn
    if not pl.svc.external_policy_local:
        out.add_nat(ext, rule(comment(f"masquerade traffic for {spn} external destinations"), MARK_MASQ))
    else:
        if settings.detector.implemented:
            out.add_nat(ext, rule(comment(f"pod traffic for {spn} external destinations")
                                  + detector_matches(settings, True), pl.svc_chain))
        out.add_nat(ext, rule(comment(f"masquerade LOCAL traffic for {spn} external destinations")
                              + addrtype("src-type"), MARK_MASQ))
        out.add_nat(ext, rule(comment(f"route LOCAL traffic for {spn} external destinations")
                              + addrtype("src-type"), pl.svc_chain))
    if pl.has_external:
        out.add_nat(ext, rule((), pl.external_policy_chain))


def write_fw_chain(out: PayloadWriter, pl: Plan, settings: ProxySettings) -> None:
    if not pl.uses_fw_chain:
        return
    fw, spn, svc = pl.fw_chain, pl.spn, pl.svc
    lb_comment = comment(f"{spn} loadbalancer IP")
    node_ip = settings.primary_ip
    allow_from_node = False
    for cidr in svc.source_ranges:
        out.add_nat(fw, rule(lb_comment + (source(cidr),), pl.ext_chain))
        if node_ip and _contains(cidr, node_ip):
            allow_from_node = True
    if allow_from_node:
        for addr in svc.lb_vips:
            out.add_nat(fw, rule(lb_comment + (source(addr),), pl.ext_chain))
    out.add_nat(fw, rule(comment(f"other traffic to {spn} will be dropped by KUBE-PROXY-FIREWALL"), None))


def _contains(cidr: str, ip: str) -> bool:
    """Whether node address ``ip`` is inside source range ``cidr`` (both canonical already)."""
    net = ipaddress.ip_network(cidr)
    addr = ipaddress.ip_address(ip)
    return addr.version == net.version and addr in net


def write_endpoint_choice(out: PayloadWriter, pl: Plan, chain: str, eps: list[EndpointInfo],
                          large: bool) -> None:
    """SVC/SVL: affinity checks, then one probability rule per endpoint (spec §2.3.12).

    This and :func:`write_endpoint_chains` write most of a big payload, so they build
    options and rules directly instead of through the small helpers.
    """
    spn = pl.spn
    sep_of = pl.sep_names
    seps = [sep_of.get(ep.endpoint) or pl.sep(ep.endpoint) for ep in eps]
    targets = [Target(sep) for sep in seps]
    rules = out.nat.chains[chain].rules
    writes = out.nat.writes
    assert writes is not None
    if pl.svc.client_ip_affinity:
        seconds = _new_tuple(Option, ("recent", "seconds", (str(pl.svc.sticky_seconds),), False))
        for ep, sep, target in zip(eps, seps, targets, strict=True):
            cm: tuple[Option, ...] = () if large else (COMMENT, _opt("comment", "comment", (f"{spn} -> {ep.endpoint}",)))
            new = Rule(cm + (RECENT, _opt("recent", "name", (sep,)), RCHECK, seconds, REAP), target)
            rules.append(new)
            writes.append((chain, new))
    n = len(eps)
    if large:
        # No comments: the match parts are the shared probability tuples (and none for the last).
        new_rules = [Rule(probability(n - i), target) for i, target in enumerate(targets[:-1])]
        if targets:
            new_rules.append(Rule((), targets[-1]))
    else:
        new_rules = []
        for i, ep in enumerate(eps):
            cm = (COMMENT, _opt("comment", "comment", (f"{spn} -> {ep.endpoint}",)))
            if i < n - 1:
                cm = cm + probability(n - i)
            new_rules.append(Rule(cm, targets[i]))
    rules.extend(new_rules)
    writes.extend([(chain, new) for new in new_rules])


_MASQ_TARGET = Target(MARK_MASQ)
"""Shared by every hairpin rule (the compiler never changes a rule's target after writing it)."""


def write_endpoint_chains(out: PayloadWriter, pl: Plan, large: bool) -> None:
    """KUBE-SEP: hairpin masquerade and DNAT for every reachable endpoint (spec §2.3.13)."""
    cm = () if large else comment(pl.spn)
    affinity = pl.svc.client_ip_affinity
    dnat_tail = proto(pl.p)
    chains = out.nat.chains
    writes = out.nat.writes
    assert writes is not None
    sep_of = pl.sep_names
    new = _new_tuple
    masq_target = _MASQ_TARGET
    dnat_matches = cm + dnat_tail
    for ep in pl.cat.all_reachable:
        ip, endpoint = ep.ip, ep.endpoint
        sep = sep_of[endpoint]  # the plan named every reachable endpoint's chain
        masq = Rule(cm + (new(Option, ("", "source", (ip,), False)),), masq_target)
        if affinity:
            dnat_matches = cm + (RECENT, new(Option, ("recent", "name", (sep,), False)), SET) + dnat_tail
        dnat = Rule(dnat_matches,
                    Target("DNAT", (new(Option, ("DNAT", "to-destination", (endpoint,), False)),)))
        chains[sep] = Chain(sep, None, None, [masq, dnat])
        writes += ((sep, masq), (sep, dnat))


def write_service_port(out: PayloadWriter, svc: ServicePortInfo, cat: Categorized,
                       settings: ProxySettings, large: bool) -> None:
    """Every line kube-proxy writes for one service port, in its order."""
    pl = plan(svc, cat)
    write_cluster_ip(out, pl)
    write_external_ips(out, pl)
    write_load_balancer_ips(out, pl)
    write_node_port(out, pl, settings)
    write_health_check(out, pl)
    # Chains are declared where kube-proxy writes their chain lines: EXT, FW, SVC, SVL, SEP.
    if pl.uses_ext_chain:
        out.declare(out.nat, pl.ext_chain)
    if pl.uses_fw_chain:
        out.declare(out.nat, pl.fw_chain)
    if pl.uses_cluster_chain:
        out.declare(out.nat, pl.svc_chain)
    if pl.uses_local_chain:
        out.declare(out.nat, pl.svl_chain)
    write_internal_masquerade(out, pl, settings)
    write_ext_chain(out, pl, settings)
    write_fw_chain(out, pl, settings)
    if pl.uses_cluster_chain:
        write_endpoint_choice(out, pl, pl.svc_chain, cat.cluster, large)
    if pl.uses_local_chain:
        write_endpoint_choice(out, pl, pl.svl_chain, cat.local, large)
    write_endpoint_chains(out, pl, large)
