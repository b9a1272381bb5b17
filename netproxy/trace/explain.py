"""Human views of a trace: an indented path per outcome, and a graphviz graph."""

from __future__ import annotations

from netproxy.trace.result import Outcome, TraceResult, percent, summary


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
        head += f", {o.delivered}" if o.delivered else ""
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


def render_text(result: TraceResult, *, verbose: bool = True) -> str:
    lines = [f"packet: {describe_packet(result)}",
             f"summary: {summary(result)}"]
    if result.same_as_previous is not None:
        lines.append(f"same endpoint as the previous packet: {percent(result.same_as_previous)}")
    for note in result.notes:
        lines.append(f"note: {note}")
    for text in result.assumptions():
        lines.append(f"assumed: {text}")
    missing = result.missing()
    if missing:
        lines.append("missing: " + ", ".join(missing))
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
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_dot(result: TraceResult) -> str:
    """Only the chains the packet visited; edges weighted by the probability through them."""
    nodes: dict[str, str] = {}
    edges: dict[tuple[str, str, str], float] = {}
    ends: dict[str, str] = {}
    for o in result.outcomes:
        prev: str | None = None
        for hop in o.path:
            node = f"{hop.table}/{hop.chain}"
            nodes.setdefault(node, node)
            if prev is not None and prev != node:
                label = ""
                key = (prev, node, label)
                edges[key] = edges.get(key, 0.0) + o.probability
            prev = node
        end = o.verdict + (f"\\n{o.dnat}" if o.dnat else "") + ("\\nmasqueraded" if o.masquerade else "")
        end_id = f"end:{end}"
        ends[end_id] = end
        if prev is not None:
            key = (prev, end_id, "")
            edges[key] = edges.get(key, 0.0) + o.probability
    out = ["digraph trace {", "  rankdir=LR;", "  node [shape=box, fontname=monospace];",
           f"  label={_q(describe_packet(result))};"]
    for node in nodes:
        out.append(f"  {_q(node)};")
    for end_id, label in ends.items():
        color = {"ACCEPT": "darkgreen", "DROP": "red", "REJECT": "red"}.get(
            label.split("\\n")[0], "orange")
        out.append(f'  {_q(end_id)} [label="{label}", shape=ellipse, color={color}];')
    for (a, b, _), p in edges.items():
        out.append(f"  {_q(a)} -> {_q(b)} [label={_q(percent(p))}];")
    out.append("}")
    return "\n".join(out) + "\n"
