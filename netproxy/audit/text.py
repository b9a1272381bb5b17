"""The audit as text for people: the fleet first, then the nodes that need a look."""

from __future__ import annotations

from netproxy.audit.fleet import Fleet, ServiceProblem
from netproxy.audit.node import DIFFERENT, EQUAL, ERROR, NOT_AUDITED

MAX_NODES_LISTED = 8


def _nodes(p: ServiceProblem) -> str:
    names = p.nodes[:MAX_NODES_LISTED]
    more = len(p.nodes) - len(names)
    return ", ".join(names) + (f" and {more} more" if more else "")


def _of(count: int, total: int) -> str:
    return f"on {count:,} of {total:,} node{'s' if total != 1 else ''}"


def render_text(fleet: Fleet, *, details: bool = True) -> str:
    total = len(fleet.nodes)
    c = fleet.counts()
    out = [f"netproxy audit: {total:,} node(s), {fleet.service_ports:,} Service port(s) in the "
           f"API state: {c[EQUAL]:,} equal, {c[DIFFERENT]:,} different, {c[ERROR]:,} error, "
           f"{c[NOT_AUDITED]:,} not audited"]
    if fleet.problems:
        out += ["", "Service ports wrong on some nodes:"]
        for p in fleet.problems:
            label = f"{p.service} ({p.protocol})" if p.protocol else p.service
            out.append(f"  {label} {p.problem} {_of(len(p.nodes), total)}: {_nodes(p)}")
    if fleet.node_problems:
        out += ["", "Node-wide problems:"]
        for p in fleet.node_problems:
            out.append(f"  {p.problem} {_of(len(p.nodes), total)}: {_nodes(p)}")
    if fleet.stuck:
        out += ["", f"Nodes that look stuck ({fleet.stuck_threshold} or more Service ports "
                    "differ from the API state at once):"]
        for r in fleet.stuck:
            out.append(f"  {r.node}: {len(r.service_ports):,} Service port(s) differ")
    if fleet.other:
        out += ["", "Nodes in another proxy mode or with rules of another kube-proxy version:"]
        for r in fleet.other:
            what = "; ".join(f.problem for f in r.findings if f.kind in ("version", "other-mode"))
            out.append(f"  {r.node} ({r.mode}): {what or r.status}")
    if details:
        shown = [r for r in fleet.nodes if r.status != EQUAL]
        if shown:
            out += ["", "Nodes:"]
        for r in shown:
            out.append(f"  {r.node}: {r.status} ({r.source})")
            for note in r.notes:
                out.append(f"      note: {note}")
            for f in r.findings:
                where = f"{f.service} ({f.protocol}) " if f.service else ""
                out.append(f"      {where}{f.detail}")
    out += ["", fleet.status if fleet.status != EQUAL else "equal"]
    return "\n".join(out) + "\n"
