"""What a trace returns: outcomes (one per branch) with their hops, as objects and JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from netproxy.trace.packet import Resolved
from netproxy.trace.state import Memory


class Hop:
    """One matched rule (or an applied chain policy) on a branch's path.

    ``rule`` is the 1-based position in the chain, ``None`` for the chain policy. The rule
    text is rendered on first use, so tracing many packets does not pay for it.
    """

    __slots__ = ("table", "chain", "rule", "line", "depth", "_text", "_render")

    def __init__(self, table: str, chain: str, rule: int | None, line: int,
                 text: str | None = None, render: Callable[[], str] | None = None,
                 depth: int = 0) -> None:
        self.table = table
        self.chain = chain
        self.rule = rule
        self.line = line
        self.depth = depth
        """How many user chains deep the hop is (0 for a built-in chain)."""
        self._text = text
        self._render = render

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self._render() if self._render is not None else ""
        return self._text

    def label(self) -> str:
        where = f"#{self.rule}" if self.rule is not None else "policy"
        line = f" (line {self.line})" if self.line else ""
        return f"{self.table}/{self.chain} {where}{line}"

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "chain": self.chain, "rule": self.rule,
                "line": self.line or None, "text": self.text}

    def __repr__(self) -> str:
        return f"Hop({self.label()}: {self.text})"


class Outcome:
    """One branch of the walk: its probability, verdict, NAT results and path.

    The engine fills outcomes lazily (the path as raw positions, the DNAT destination as
    numbers); ``path``, ``dnat`` and ``final`` are built on first access.
    """

    __slots__ = ("probability", "verdict", "_dnat", "masquerade", "snat", "_path", "reason",
                 "delivered", "memory", "masquerade_flags", "_final", "_lazy", "route")

    def __init__(self, probability: float, verdict: str, dnat: str | None, masquerade: bool,
                 snat: str | None, path: list[Hop], reason: str | None = None,
                 delivered: str | None = None, memory: Memory | None = None,
                 masquerade_flags: str = "", final: str = "") -> None:
        self.probability = probability
        self.verdict = verdict
        self._dnat = dnat
        self.masquerade = masquerade
        self.snat = snat
        self._path: list[Hop] | None = path
        self.reason = reason
        """For UNKNOWN: why the last hop could not be decided."""
        self.delivered = delivered
        """For ACCEPT: ``local`` (a process on the node), ``forwarded`` or ``sent``."""
        self.memory = memory
        self.masquerade_flags = masquerade_flags
        self._final = final
        self._lazy: Any = None
        self.route: Any = None
        """The node's routing decision on this branch (traces with a node snapshot)."""

    @classmethod
    def lazy(cls, probability: float, verdict: str, masquerade: bool, snat: str | None,
             reason: str | None, delivered: str | None, memory: Memory, flags: str,
             build: Any) -> Outcome:
        """An outcome whose path/dnat/final come from ``build() -> (path, dnat, final)``."""
        o = cls.__new__(cls)
        o.probability = probability
        o.verdict = verdict
        o.masquerade = masquerade
        o.snat = snat
        o.reason = reason
        o.delivered = delivered
        o.memory = memory
        o.masquerade_flags = flags
        o._path = None
        o._dnat = None
        o._final = ""
        o._lazy = build
        o.route = None
        return o

    def _fill(self) -> None:
        if self._lazy is not None:
            self._path, self._dnat, self._final = self._lazy()
            self._lazy = None

    @property
    def path(self) -> list[Hop]:
        self._fill()
        assert self._path is not None
        return self._path

    @property
    def dnat(self) -> str | None:
        """The destination after DNAT (``ip:port``), or None when no DNAT happened."""
        self._fill()
        return self._dnat

    @property
    def final(self) -> str:
        """Destination after the walk (``ip:port``)."""
        self._fill()
        return self._final

    def key(self) -> tuple[Any, ...]:
        """Identity of the outcome apart from its probability (to merge equal branches)."""
        return (self.verdict, self.dnat, self.masquerade, self.snat, self.reason,
                self.delivered, tuple((h.table, h.chain, h.rule) for h in self.path), self.route)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"probability": self.probability, "verdict": self.verdict,
                               "dnat": self.dnat, "masquerade": self.masquerade,
                               "snat": self.snat, "delivered": self.delivered,
                               "destination": self.final}
        if self.reason is not None:
            out["reason"] = self.reason
        if self.route is not None:
            r = self.route
            out["route"] = {"kind": r.kind, "dev": r.dev, "gateway": r.gateway, "src": r.src,
                            "table": r.table, "rule": r.rule, "route": r.route}
        out["path"] = [h.to_dict() for h in self.path]
        return out

    def __repr__(self) -> str:
        return (f"Outcome({self.probability:.6f} {self.verdict} dnat={self.dnat} "
                f"masq={self.masquerade} hops={len(self.path)})")


class TraceResult:
    """Every outcome of one packet; probabilities sum to 1."""

    __slots__ = ("packet", "outcomes", "notes", "same_as_previous", "inferred")

    def __init__(self, packet: Resolved, outcomes: list[Outcome], notes: list[str] | None = None,
                 same_as_previous: float | None = None) -> None:
        self.packet = packet
        self.outcomes = outcomes
        self.notes = notes or []
        self.same_as_previous = same_as_previous
        self.inferred: dict[str, str] = {}
        """Packet fields the tracer filled in from the node's context (``in_interface``,
        ``src``), each also explained in a note."""
        """In a packet sequence: the probability that this packet reached the same DNAT
        destination as the previous packet of its world (session affinity)."""

    def total(self) -> float:
        return sum(o.probability for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        p = self.packet
        out: dict[str, Any] = {
            "packet": {"family": p.family, "src": p.src_text, "dst": p.packet.dst,
                       "proto": p.packet.proto, "sport": p.packet.sport,
                       "dport": p.packet.dport, "origin": p.origin,
                       "ct_state": ",".join(sorted(p.ct)),
                       "in_interface": p.packet.in_interface,
                       "out_interface": p.packet.out_interface},
            "summary": summary(self),
            "outcomes": [o.to_dict() for o in self.outcomes],
        }
        if self.same_as_previous is not None:
            out["same_as_previous"] = self.same_as_previous
        if self.inferred:
            out["inferred"] = dict(self.inferred)
        if self.notes:
            out["notes"] = self.notes
        return out

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def percent(p: float) -> str:
    text = f"{p * 100:.1f}"
    return text.rstrip("0").rstrip(".") + "%" if "." in text else text + "%"


def summary(result: TraceResult) -> str:
    """One line: "3 endpoints, 33.3% each, masqueraded" and the like."""
    parts: list[str] = []
    accepted = [o for o in result.outcomes if o.verdict == "ACCEPT"]
    dnat: dict[str | None, float] = {}
    for o in accepted:
        dnat[o.dnat] = dnat.get(o.dnat, 0.0) + o.probability
    total = result.total() or 1.0
    if accepted:
        targets = {k: v for k, v in dnat.items() if k is not None}
        if targets:
            values = list(targets.values())
            n = len(targets)
            if n == 1:
                parts.append(f"1 endpoint {next(iter(targets))}"
                             + ("" if abs(values[0] - total) < 1e-9 else f" {percent(values[0])}"))
            elif len({percent(v) for v in values}) == 1:
                parts.append(f"{n} endpoints, {percent(values[0])} each")
            else:
                parts.append(f"{n} endpoints, " + ", ".join(
                    f"{k} {percent(v)}" for k, v in targets.items()))
        if None in dnat:
            where = sorted({o.delivered or "accepted" for o in accepted if o.dnat is None})
            parts.append(f"no DNAT ({'/'.join(where)}) {percent(dnat[None])}"
                         if len(dnat) > 1 or dnat[None] < total - 1e-9
                         else f"accepted without DNAT ({'/'.join(where)})")
        masq = sum(o.probability for o in accepted if o.masquerade)
        acc = sum(o.probability for o in accepted)
        if masq <= 1e-12:
            parts.append("not masqueraded")
        elif abs(masq - acc) < 1e-9:
            parts.append("masqueraded")
        else:
            parts.append(f"masqueraded {percent(masq / acc)} of accepted")
        snat = sorted({o.snat for o in accepted if o.snat})
        if snat:
            parts.append("SNAT to " + ", ".join(snat))
    for verdict in ("DROP", "REJECT"):
        share = sum(o.probability for o in result.outcomes if o.verdict == verdict)
        if share > 0:
            first = next(o for o in result.outcomes if o.verdict == verdict)
            by = first.path[-1].label() if first.path else ""
            if first.route is not None and first.route.refused and first.reason:
                by = first.reason  # the routing decision discarded it, not a rule
            parts.append(f"{verdict} {percent(share)}" + (f" by {by}" if by else ""))
    unknown = [o for o in result.outcomes if o.verdict == "UNKNOWN"]
    if unknown:
        share = sum(o.probability for o in unknown)
        first = unknown[0]
        line = f"line {first.path[-1].line}: " if first.path and first.path[-1].line else ""
        parts.append(f"UNKNOWN {percent(share)} ({line}{first.reason})")
    return ", ".join(parts) if parts else "no outcome"
