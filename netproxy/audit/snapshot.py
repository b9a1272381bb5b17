"""Node snapshots (``# netproxy node snapshot v2`` or ``v1``, written by ``netproxy snapshot``): the
node's name and the rules the audit judges, read with the snapshot reader of
:mod:`netproxy.node.snapshot`."""

from __future__ import annotations

from netproxy.audit.nodes import NodeText, classify
from netproxy.errors import InputError


def iptables_from_snapshot(got: NodeText, family: str = "ipv4") -> NodeText:
    """The snapshot's iptables rules of ``family`` (the variant holding kube-proxy's chains),
    or its nftables ruleset when kube-proxy's table is there and iptables holds none of its
    chains; named after the snapshot's hostname."""
    try:
        from netproxy.node.snapshot import parse_snapshot
    except ImportError:
        raise InputError("this netproxy cannot read node snapshots; give the node's "
                         "iptables-save output", where=got.name) from None
    snapshot = parse_snapshot(got.text, source=got.name)
    name = snapshot.hostname.strip().lower() or got.name
    sections = snapshot.rules_sections(family)

    def weight(lines: list[str]) -> tuple[bool, int]:
        rules = [ln for ln in lines if ln.startswith("-A ")]
        return (any(" KUBE-" in ln for ln in rules), len(rules))

    best = max(sections, key=lambda s: weight(s.lines), default=None)
    nft = snapshot.nft_ruleset
    if (best is None or not weight(best.lines)[0]) and nft and "table ip kube-proxy" in nft:
        return NodeText(classify(nft, name).kind, nft, name)
    if best is None:
        raise InputError(f"the snapshot holds no {family} iptables rules", where=got.name)
    return NodeText("iptables", best.text, name)
