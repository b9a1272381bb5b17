"""``netproxy diff --behaviour BEFORE AFTER`` across modes: an iptables-mode dump or
snapshot before, an nftables-mode listing or snapshot after, compared as ``netproxy
migrate`` compares compiled rules."""

from __future__ import annotations

import ipaddress
from typing import Any

from netproxy.diff.load import Side
from netproxy.errors import InputError
from netproxy.migrate.report import MigrationReport

_FALLBACK_NODE = {"ipv4": "192.0.2.10", "ipv6": "2001:db8:1::10"}


def _nft_of(side: Side, strict: bool) -> Any:
    """The nftables listing of a state in nftables mode (a listing file, or a snapshot's
    ``nft list ruleset`` holding kube-proxy's table), else None."""
    from netproxy.diff.load import load_listing

    return load_listing(side, strict=strict) if side.is_listing else None


def is_across_modes(sides: list[Side]) -> bool:
    """True when OLD NEW are an iptables-mode and an nftables-mode state (in either order)."""
    if len(sides) != 2 or any(side.name == "-" for side in sides):
        return False
    return sides[0].is_listing != sides[1].is_listing


def across_modes(sides: list[Side], *, family: str | None, local_ips: list[str],
                 strict: bool) -> list[MigrationReport]:
    """Compare BEFORE (iptables mode) and AFTER (nftables mode), one report per family
    kube-proxy's nftables table covers."""
    from netproxy.diff.load import load_ruleset
    from netproxy.migrate.ruleprobes import kube_table

    before, after = sides
    listing = _nft_of(after, strict)
    if listing is None:
        if before.is_listing:
            raise InputError("across modes the iptables-mode state comes first: netproxy diff "
                             f"--behaviour {after.name} {before.name}", where=before.name)
        raise InputError("no kube-proxy nftables table in it", where=after.name)
    families = [f for f in ("ipv4", "ipv6") if kube_table(listing, f) is not None]
    if family:
        families = [family]
    reports = []
    for fam in families:
        old = (before.snapshot.ruleset(fam, strict=strict) if before.snapshot is not None
               else load_ruleset(before, strict=strict))
        if old.family != fam:
            continue
        reports.append(_family_report(before.name, after.name, old, listing, fam, local_ips,
                                      [s.snapshot for s in (after, before) if s.snapshot is not None]))
    if not reports:
        raise InputError(f"no {family or 'ipv4/ipv6'} rules to compare", where=before.name)
    return reports


def _family_report(before: str, after: str, old: Any, listing: Any, fam: str,
                   local_ips: list[str], snaps: list[Any]) -> MigrationReport:
    """One family: sources and node addresses read from the two states, every frontend
    probed, what was assumed said in the report's context."""
    from netproxy.migrate import probes as p
    from netproxy.migrate import ruleprobes as rp
    from netproxy.migrate.report import compare
    from netproxy.netfilter.model import Ruleset
    from netproxy.trace import Tracer

    table = rp.kube_table(listing, fam)
    context = [f"{fam}"]
    ips = [ip for ip in local_ips if (":" in ip) == (fam == "ipv6")]
    how = "--local-ip"
    for snap in snaps:
        if not ips:
            ips = [ip for ip in snap.addresses(fam) if not ipaddress.ip_address(ip).is_loopback]
            how = f"the addresses of snapshot {snap.source}"
    named = rp.nodeport_hosts(old, table)
    if not ips:
        how = "the NodePort addresses the rules name (more with --local-ip)"
    ips += [ip for ip in named if ip not in ips]
    if not ips:
        ips = [_FALLBACK_NODE[fam]]
        how = "none known (--local-ip): probing a stand-in"
    old_np, old_how = rp.iptables_nodeports(old)
    new_np = rp.nodeport_addresses(table)
    new_how = ("the nodeport-ips set: " + ", ".join(str(n.network_address) for n in new_np.cidrs)
               if not new_np.match_all else "every local address (no nodeport-ips set)")
    context.append(f"node addresses {', '.join(ips)} ({how})")
    context.append(f"NodePorts in iptables mode: {old_how}; in nftables mode: {new_how}")
    cluster = rp.cluster_cidrs(old, table)
    local = rp.local_endpoints(table)
    routes = None
    for snap in snaps:
        if routes is None and snap.has_routes(fam):
            routes = _routes(snap, fam)
    mine, mine_how = rp.node_pod_cidrs(routes, cluster, local, fam)
    s = p.pod_sources(fam, cluster, mine, ips[0], rp.endpoints(old, table), local)
    context.append(
        f"pod network {', '.join(cluster) or '(not in the rules)'}; this node's pods "
        f"{', '.join(mine) or '(not known)'} ({mine_how}); pod here {s.pod_here}, pod elsewhere "
        f"{s.pod_elsewhere or '(no pod network known: not probed)'}, outside {s.external}; "
        + (s.note or "no probe source is an endpoint"))
    if local is None:
        context.append("this node's endpoints not known (no hairpin-connections set): "
                       "hairpin not probed")
    loopback = "::1" if fam == "ipv6" else "127.0.0.1"
    probes = rp.rule_probes(old, listing, ips, s)
    report = MigrationReport(old=before, new=after, context=context, family=fam)
    t_old = Tracer(old, local_ips=[loopback, *ips])
    t_new = Tracer(Ruleset(family=fam, source=listing.source), local_ips=[loopback, *ips],
                   nft=[listing])
    compare(report, probes, t_old, t_new, old_nodeports=old_np, new_nodeports=new_np,
            local_endpoints=local)
    return report


def _routes(snap: Any, fam: str) -> list[Any]:
    from netproxy.node.routing import RouteDataError, routes_from_json
    from netproxy.node.snapshot import ROUTES

    try:
        return routes_from_json(snap.json(ROUTES[fam]), fam, "routes")
    except RouteDataError as err:
        raise InputError(f"section '{ROUTES[fam]}': {err}", where=snap.source) from None
