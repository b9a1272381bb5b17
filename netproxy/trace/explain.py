"""Human views of a trace: an indented path per outcome, and a graphviz graph."""

from __future__ import annotations

from netproxy.trace.result import Outcome, TraceResult, delivered_text, percent, summary


def describe_packet(result: TraceResult) -> str:
    p = result.packet
    pk = p.packet
    fam6 = p.family == "ipv6"

    def ep(addr: str, port: int | None) -> str:
        if port is None:
            return addr
        return f"[{addr}]:{port}" if fam6 else f"{addr}:{port}"

    extra = []
    if pk.in_interface:
        extra.append(f"in {pk.in_interface}")
    if pk.out_interface:
        extra.append(f"out {pk.out_interface}")
    if pk.mark:
        extra.append(f"mark {pk.mark:#x}")
    tail = f", {', '.join(extra)}" if extra else ""
    return (f"{pk.proto} {ep(p.src_text, pk.sport)} -> {ep(pk.dst, pk.dport)} "
            f"from {p.origin}, {','.join(sorted(p.ct))}{tail}")


def outcome_head(index: int, o: Outcome) -> str:
    head = f"outcome {index}: {percent(o.probability)} (p={o.probability:.11f}) {o.verdict}"
    if o.verdict == "ACCEPT":
        head += f", {delivered_text(o.delivered)}" if o.delivered else ""
        head += f", DNAT to {o.dnat}" if o.dnat else ", no DNAT"
        if o.masquerade:
            head += ", masqueraded" + (f" ({o.masquerade_flags})" if o.masquerade_flags else "")
        elif o.snat:
            head += f", SNAT to {o.snat}"
        else:
            head += ", source kept"
    elif o.verdict == "UNKNOWN" or o.reason:
        head += f": {o.reason}"
    if o.reverse:
        head += f", reply: {o.reverse}"
    if o.assumes:
        head += f", if {' and '.join(o.conditions())}"
    return head


def render_text(result: TraceResult, *, verbose: bool = True, missing: bool = True) -> str:
    """The packet, its summary, notes and outcomes; ``missing=False`` leaves out the
    ``missing:`` line (a packet sequence lists the missing facts once, at its end)."""
    lines = [f"packet: {describe_packet(result)}",
             f"summary: {summary(result)}"]
    if result.same_as_previous is not None:
        lines.append(f"same endpoint as the previous packet: {percent(result.same_as_previous)}")
    for note in result.notes:
        lines.append(f"note: {note}")
    for text in result.assumptions():
        lines.append(f"assumed: {text}")
    facts = result.missing() if missing else []
    if facts:
        lines.append("missing: " + ", ".join(facts))
    if verbose:
        for n, o in enumerate(result.outcomes, 1):
            lines.append("")
            lines.append(outcome_head(n, o))
            if o.route is not None:
                lines.append(f"  route: {o.route.describe()}")
            for hop in o.path:
                pad = "  " * (hop.depth + 1)
                lines.append(f"{pad}{hop.label()}: {hop.text}")
    return "\n".join(lines) + "\n"


def _q(text: str) -> str:
    """A quoted graphviz string; a newline becomes graphviz's line break."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render_dot(result: TraceResult) -> str:
    """Only the chains the packet visited; edges weighted by the probability through them.

    After a DNAT each endpoint's branch is a path of its own (its chains are drawn once per
    endpoint), so the split shows where it happens; end nodes carry the verdict, the DNAT
    destination, an UNKNOWN's reason and the facts a conditional outcome assumed."""
    nodes: dict[str, str] = {}
    edges: dict[tuple[str, str], float] = {}
    ends: dict[str, str] = {}
    for o in result.outcomes:
        prev: str | None = None
        branch = ""
        for hop in o.path:
            chain = (f"{hop.family} " if hop.family else "") + f"{hop.table}/{hop.chain}"
            node = chain + branch
            nodes.setdefault(node, chain + (f"\n(to {o.dnat})" if branch else ""))
            if prev is not None and prev != node:
                edges[(prev, node)] = edges.get((prev, node), 0.0) + o.probability
            prev = node
            if not branch and o.dnat and (" -j DNAT" in hop.text or " -j REDIRECT" in hop.text
                                          or "dnat " in hop.text or "redirect" in hop.text):
                branch = f" @{o.dnat}"  # from here on, this endpoint's own path
        end = o.verdict + (f"\n{o.dnat}" if o.dnat else "") + (
            "\nmasqueraded" if o.masquerade else "")
        if o.verdict == "UNKNOWN" and o.reason:
            end += "\n" + _wrap(o.reason)
        if o.assumes:
            end += "\nif " + "\nand ".join(o.conditions())
        end_id = f"end:{end}"
        ends[end_id] = end
        if prev is not None:
            edges[(prev, end_id)] = edges.get((prev, end_id), 0.0) + o.probability
    out = ["digraph trace {", "  rankdir=LR;", "  node [shape=box, fontname=monospace];",
           f"  label={_q(describe_packet(result))};"]
    for node, label in nodes.items():
        out.append(f"  {_q(node)}" + (f" [label={_q(label)}]" if label != node else "") + ";")
    for end_id, label in ends.items():
        color = {"ACCEPT": "darkgreen", "DROP": "red", "REJECT": "red"}.get(
            label.split("\n")[0], "orange")
        out.append(f"  {_q(end_id)} [label={_q(label)}, shape=ellipse, color={color}];")
    for (a, b), p in edges.items():
        out.append(f"  {_q(a)} -> {_q(b)} [label={_q(percent(p))}];")
    out.append("}")
    return "\n".join(out) + "\n"


def _wrap(text: str, width: int = 40) -> str:
    """Break a long reason into lines for a graph label."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}".strip()
    lines.append(current)
    return "\n".join(lines)
