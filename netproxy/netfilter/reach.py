"""Which user chains packets can reach: a chain is walked only through jumps (or gotos) from
the built-in chains of its table, so a table whose built-in chains jump nowhere -- an
``iptables-restore`` payload of kube-proxy's on its own, without the jumps kube-proxy adds
with ``iptables -I`` -- holds rules no packet ever sees."""

from __future__ import annotations

from netproxy.netfilter.model import Ruleset


def unreached_roots(ruleset: Ruleset) -> dict[str, list[str]]:
    """Per table whose built-in chains jump to no user chain while it holds user chains with
    rules: those of its user chains with rules that no rule jumps to (the entry points a
    built-in chain would have to jump to), in declaration order."""
    out: dict[str, list[str]] = {}
    for name, table in ruleset.tables.items():
        user = {c.name for c in table.chains.values() if not c.builtin}
        if not any(c.rules for c in table.chains.values() if c.name in user):
            continue
        if any(r.jump in user for c in table.chains.values() if c.builtin for r in c.rules):
            continue
        jumped = {r.jump for c in table.chains.values() for r in c.rules if r.jump in user}
        roots = [c.name for c in table.chains.values()
                 if c.name in user and c.rules and c.name not in jumped]
        if roots:
            out[name] = roots
    return out


def unreached_note(ruleset: Ruleset) -> str | None:
    """One line saying that nothing reaches a table's chains, or None when every table with
    user chains is entered from a built-in chain."""
    roots = unreached_roots(ruleset)
    if not roots:
        return None
    parts = []
    for table, names in roots.items():
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        parts.append(f"{table}: {shown}")
    return (f"{ruleset.source}: no built-in chain jumps to {'; '.join(parts)}, so no packet "
            "reaches them and the trace passes them by (an iptables-restore payload on its own? "
            "kube-proxy adds those jumps separately, e.g. -A PREROUTING -j KUBE-SERVICES; trace "
            "the node's iptables-save instead)")
