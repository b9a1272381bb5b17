"""``netproxy diff --behaviour BEFORE AFTER`` across modes: an iptables-mode dump or
snapshot before, an nftables-mode listing or snapshot after, compared as ``netproxy
migrate`` compares compiled rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netproxy.errors import InputError
from netproxy.migrate.report import MigrationReport

_FALLBACK_NODE = {"ipv4": "192.0.2.10", "ipv6": "2001:db8:1::10"}


def _snapshot(name: str) -> Any:
    from netproxy.node.snapshot import is_snapshot, read_snapshot

    if name == "-" or not Path(name).is_file():
        return None
    with open(name, encoding="utf-8", errors="surrogateescape") as f:
        head = f.read(4096)
    return read_snapshot(name) if is_snapshot(head) else None


def _nft_of(name: str, snapshot: Any, strict: bool) -> Any:
    """The nftables listing of AFTER (a listing file, or a snapshot's ``nft list ruleset``)."""
    from netproxy.commands.nftrules import is_nft_file, read_nft_listing
    from netproxy.parser.nftables import parse_nft

    if snapshot is not None:
        text = snapshot.nft_ruleset
        if not text or "kube-proxy" not in text:
            return None
        return parse_nft(text, source=f"{name} (nft list ruleset)", strict=strict)
    if is_nft_file(name):
        return read_nft_listing(name, strict=strict)
    return None


def is_across_modes(inputs: tuple[str, ...]) -> bool:
    """True when OLD NEW are an iptables-mode and an nftables-mode state (in either order)."""
    from netproxy.commands.nftrules import is_nft_file

    if len(inputs) != 2 or "-" in inputs:
        return False
    kinds = []
    for name in inputs:
        snap = _snapshot(name)
        if snap is not None:
            text = snap.nft_ruleset or ""
            kinds.append("nft" if "table ip kube-proxy" in text or "table ip6 kube-proxy" in text
                         else "iptables")
        else:
            kinds.append("nft" if is_nft_file(name) else "iptables")
    return kinds[0] != kinds[1]


def across_modes(inputs: tuple[str, ...], *, family: str | None, local_ips: list[str],
                 strict: bool) -> list[MigrationReport]:
    """Compare BEFORE (iptables mode) and AFTER (nftables mode), one report per family
    kube-proxy's nftables table covers."""
    from netproxy.diff.load import load_ruleset
    from netproxy.migrate.report import compare
    from netproxy.migrate.ruleprobes import kube_table, nodeport_addresses, rule_probes
    from netproxy.netfilter.model import Ruleset
    from netproxy.proxy.nodeports import NodePortAddresses
    from netproxy.trace import Tracer

    before, after = inputs
    snap_before, snap_after = _snapshot(before), _snapshot(after)
    listing = _nft_of(after, snap_after, strict)
    if listing is None:
        if _nft_of(before, snap_before, strict) is not None:
            raise InputError("across modes the iptables-mode state comes first: netproxy diff "
                             f"--behaviour {after} {before}", where=before)
        raise InputError("no kube-proxy nftables table in it", where=after)
    families = [f for f in ("ipv4", "ipv6") if kube_table(listing, f) is not None]
    if family:
        families = [family]
    reports = []
    for fam in families:
        old = (snap_before.ruleset(fam, strict=strict) if snap_before is not None
               else load_ruleset(before, strict=strict))
        if old.family != fam:
            continue
        table = kube_table(listing, fam)
        ips = [ip for ip in local_ips if (":" in ip) == (fam == "ipv6")]
        for snap in (snap_after, snap_before):
            if not ips and snap is not None:
                ips = [ip for ip in snap.addresses(fam)
                       if ip not in ("127.0.0.1", "::1")]
        context = [f"{fam}"]
        if not ips and table is not None and "nodeport-ips" in table.sets:
            ips = [str(e.key) for e in table.sets["nodeport-ips"].elements]
            context.append("node addresses from the nodeport-ips set (more with --local-ip)")
        if not ips:
            ips = [_FALLBACK_NODE[fam]]
            context.append(f"no node address known (--local-ip): probing {ips[0]}")
        loopback = "::1" if fam == "ipv6" else "127.0.0.1"
        probes = rule_probes(old, listing, ips)
        context.append(f"node addresses {', '.join(ips)}; iptables mode taken to accept "
                       "NodePorts on every node address")
        report = MigrationReport(old=before, new=after, context=context, family=fam)
        t_old = Tracer(old, local_ips=[loopback, *ips])
        t_new = Tracer(Ruleset(family=fam, source=listing.source), local_ips=[loopback, *ips],
                       nft=[listing])
        compare(report, probes, t_old, t_new,
                old_nodeports=NodePortAddresses((), True, fam == "ipv4"),
                new_nodeports=nodeport_addresses(table))
        reports.append(report)
    if not reports:
        raise InputError(f"no {family or 'ipv4/ipv6'} rules to compare", where=before)
    return reports
