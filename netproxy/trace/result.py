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

    __slots__ = ("table", "chain", "rule", "line", "depth", "_text", "_render", "family",
                 "handle", "source")

    def __init__(self, table: str, chain: str, rule: int | None, line: int,
                 text: str | None = None, render: Callable[[], str] | None = None,
                 depth: int = 0, family: str | None = None, handle: int | None = None,
                 source: str | None = None) -> None:
        self.table = table
        self.chain = chain
        self.rule = rule
        self.line = line
        self.depth = depth
        self.family = family
        """For an nftables chain: the table's family (``ip``, ``inet``); None for iptables."""
        self.handle = handle
        """For an nftables rule: its handle, when the listing showed handles (``nft -a``)."""
        self.source = source
        """The file the rule was read from, when several were walked together."""
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
        line = f" (line {self.line})" if self.line else (
            f" (handle {self.handle})" if self.handle is not None else "")
        if self.source is not None and self.line:
            line = f" ({self.source}:{self.line})"
        table = f"{self.family} {self.table}" if self.family is not None else self.table
        return f"{table}/{self.chain} {where}{line}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"table": self.table, "chain": self.chain, "rule": self.rule,
                               "line": self.line or None, "text": self.text}
        if self.family is not None:
            out["family"] = self.family
            out["handle"] = self.handle
        if self.source is not None:
            out["file"] = self.source
        return out

    def __repr__(self) -> str:
        return f"Hop({self.label()}: {self.text})"


def delivered_text(delivered: str | None) -> str | None:
    """How an outcome's ``delivered`` reads."""
    if delivered == "ipvs":
        return "delivered to the node where IPVS takes over"
    return delivered


class Outcome:
    """One branch of the walk: its probability, verdict, NAT results and path.

    The engine fills outcomes lazily (the path as raw positions, the DNAT destination as
    numbers); ``path``, ``dnat`` and ``final`` are built on first access.
    """

    __slots__ = ("probability", "verdict", "_dnat", "masquerade", "snat", "_path", "reason",
                 "delivered", "memory", "masquerade_flags", "_final", "_lazy", "assumes",
                 "assumed", "reverse", "raw_dnat", "_ends", "route")

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
        """For ACCEPT: ``local`` (a process on the node), ``ipvs`` (the node, at a Service
        address of kube-proxy's IPVS mode: IPVS takes over, not traced), ``forwarded`` or
        ``sent``."""
        self.memory = memory
        self.masquerade_flags = masquerade_flags
        self._final = final
        self._lazy: Any = None
        self._ends: Any = None
        self.route: Any = None
        """The node's routing decision on this branch (traces with a node snapshot)."""
        self.assumes: tuple[tuple[bool, Any], ...] = ()
        """The unknown facts this outcome assumed: (value, :class:`Cond`) pairs. Its
        probability is within that case (the outcomes of each case sum to 1)."""
        self.assumed: frozenset[str] = frozenset()
        """Stated defaults it relied on (an interface no rule names, not bridged)."""
        self.reverse: str | None = None
        """A reply of a NATed connection: what its reverse NAT restored."""
        self.raw_dnat: Any = None
        """The DNAT destination as the engine holds it (address and port numbers): compared
        without rendering text."""

    @classmethod
    def lazy(cls, probability: float, verdict: str, masquerade: bool, snat: str | None,
             reason: str | None, delivered: str | None, memory: Memory, flags: str,
             build: Any, ends: Any) -> Outcome:
        """An outcome whose path comes from ``build()`` and dnat/final from ``ends() ->
        (dnat, final)``, each on first use (a summary never renders the hops)."""
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
        o._ends = ends
        o.route = None
        o.assumes = ()
        o.assumed = frozenset()
        o.reverse = None
        o.raw_dnat = None
        return o

    def _fill(self) -> None:
        if self._lazy is not None:
            self._path = self._lazy()
            self._lazy = None

    def _fill_ends(self) -> None:
        if self._ends is not None:
            self._dnat, self._final = self._ends()
            self._ends = None

    @property
    def path(self) -> list[Hop]:
        self._fill()
        assert self._path is not None
        return self._path

    @property
    def dnat(self) -> str | None:
        """The destination after DNAT (``ip:port``), or None when no DNAT happened."""
        self._fill_ends()
        return self._dnat

    @property
    def final(self) -> str:
        """Destination after the walk (``ip:port``)."""
        self._fill_ends()
        return self._final

    def key(self) -> tuple[Any, ...]:
        """Identity of the outcome apart from its probability (to merge equal branches)."""
        return (self.verdict, self.dnat, self.masquerade, self.snat, self.reason,
                self.delivered, tuple((h.table, h.chain, h.rule) for h in self.path),
                self.conditions(), self.reverse, self.route)

    def conditions(self) -> tuple[str, ...]:
        """The assumed facts as text ("10.96.0.10,udp:53 in KUBE-CLUSTER-IP")."""
        return tuple(c.state(v) for v, c in self.assumes)

    def ending(self) -> tuple[Any, ...]:
        """What the outcome amounts to, path aside (to compare the cases of a fork)."""
        return (self.verdict, self.dnat, self.masquerade, self.snat, self.delivered,
                self.reason if self.verdict == "UNKNOWN" else None)

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
        if self.assumes:
            out["assumes"] = list(self.conditions())
        if self.reverse:
            out["reverse_nat"] = self.reverse
        out["path"] = [h.to_dict() for h in self.path]
        return out

    def __repr__(self) -> str:
        return (f"Outcome({self.probability:.6f} {self.verdict} dnat={self.dnat} "
                f"masq={self.masquerade} hops={len(self.path)})")


class TraceResult:
    """Every outcome of one packet; probabilities sum to 1."""

    __slots__ = ("packet", "outcomes", "notes", "same_as_previous", "independent",
                 "skipped", "inferred")

    def __init__(self, packet: Resolved, outcomes: list[Outcome], notes: list[str] | None = None,
                 same_as_previous: float | None = None) -> None:
        self.packet = packet
        self.outcomes = outcomes
        self.notes = notes or []
        self.same_as_previous = same_as_previous
        """In a packet sequence: the probability that this packet reached the same DNAT
        destination as the previous packet of its world (session affinity)."""
        self.inferred: dict[str, str] = {}
        """Packet fields the tracer filled in from the node's context (``in_interface``,
        ``src``), each also explained in a note."""
        self.independent: list[str] = []
        """Unknown facts the walk forked on whose cases all ended alike: the answer did not
        depend on them."""
        self.skipped: str | None = None

    def conditions(self) -> list[Any]:
        """The unknown facts (:class:`Cond`) the outcomes depend on, in order of appearance."""
        seen: dict[Any, Any] = {}
        for o in self.outcomes:
            for _v, c in o.assumes:
                seen.setdefault(c.key, c)
        return list(seen.values())

    def assumptions(self) -> list[str]:
        """The stated defaults the outcomes relied on."""
        return sorted({a for o in self.outcomes for a in o.assumed})

    def missing(self) -> list[str]:
        """Every missing fact that mattered, with the flag that supplies it (grouped by flag;
        a stated default shows only its flag, the ``assumed:`` line says the rest)."""
        from netproxy.trace.missing import ASSUMED, missing_facts

        out: dict[str, list[str]] = {}
        for flag, fact, kind in missing_facts(self):
            what = out.setdefault(flag, [])
            if kind != ASSUMED:
                what.append(fact)
        return [f"{flag} ({'; '.join(what)})" if what else flag for flag, what in out.items()]

    def total(self) -> float:
        return sum(o.probability for o in self.outcomes)

    def to_dict(self, *, missing: bool = True) -> dict[str, Any]:
        """The packet's JSON; ``missing=False`` leaves its missing facts out (a packet
        sequence lists them once, after the last packet: :mod:`netproxy.trace.missing`)."""
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
        for name in ("physdev_in", "physdev_out", "tos", "uid"):  # given or inferred only
            value = getattr(p.packet, name)
            if value is not None:
                out["packet"][name] = value
        if self.same_as_previous is not None:
            out["same_as_previous"] = self.same_as_previous
        if self.inferred:
            out["inferred"] = dict(self.inferred)
        assumptions = self.assumptions()
        if assumptions:
            out["assumptions"] = assumptions
        if self.independent:
            out["did_not_depend_on"] = self.independent
        facts = self.missing() if missing else []
        if facts:
            out["missing"] = facts
        if self.notes:
            out["notes"] = self.notes
        return out

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def percent(p: float) -> str:
    text = f"{p * 100:.1f}"
    return text.rstrip("0").rstrip(".") + "%" if "." in text else text + "%"


def summary(result: TraceResult) -> str:
    """One line: "3 endpoints, 33.3% each, masqueraded" and the like; with unknown facts
    that matter, what each case ends in, said compactly when there are many
    (:mod:`netproxy.trace.wording`)."""
    if any(o.assumes for o in result.outcomes):
        from netproxy.trace.wording import conditional

        text = conditional(result)
    else:
        text = summarize(result.outcomes)
    if result.independent:
        text += f" (did not depend on: {'; '.join(result.independent)})"
    return text


def summarize(outcomes: list[Outcome], named: bool = False) -> str:
    """The one-line summary of outcomes that sum to 1; ``named``: endpoints with equal
    shares are named too (``2 endpoints (a, b), 50% each``)."""
    parts: list[str] = []
    accepted = [o for o in outcomes if o.verdict == "ACCEPT"]
    # Endpoints grouped by the engine's numbers where an outcome has them (the same
    # endpoint, the same text); their text is made only where the line names them.
    dnat: dict[Any, float] = {}
    shown_by: dict[Any, Outcome] = {}
    for o in accepted:
        k = o.raw_dnat if o.raw_dnat is not None else o.dnat
        if k in dnat:
            dnat[k] += o.probability
        else:
            dnat[k] = o.probability
            shown_by[k] = o
    total = sum(o.probability for o in outcomes) or 1.0
    if accepted:
        targets = {k: v for k, v in dnat.items() if k is not None}
        if targets:
            values = list(targets.values())
            n = len(targets)
            if n == 1:
                parts.append(f"1 endpoint {shown_by[next(iter(targets))].dnat}"
                             + ("" if abs(values[0] - total) < 1e-9 else f" {percent(values[0])}"))
            elif len({percent(v) for v in values}) == 1:
                names = f" ({', '.join(str(shown_by[k].dnat) for k in targets)})" if named else ""
                parts.append(f"{n} endpoints{names}, {percent(values[0])} each")
            else:
                parts.append(f"{n} endpoints, " + ", ".join(
                    f"{shown_by[k].dnat} {percent(v)}" for k, v in targets.items()))
        if None in dnat:
            where = sorted({delivered_text(o.delivered) or "accepted"
                            for o in accepted if o.dnat is None})
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
        reverse = sorted({o.reverse for o in accepted if o.reverse})
        if reverse:
            parts.append("reply: " + "; ".join(reverse))
    for verdict in ("DROP", "REJECT"):
        share = sum(o.probability for o in outcomes if o.verdict == verdict)
        if share > 0:
            first = next(o for o in outcomes if o.verdict == verdict)
            by = first.path[-1].label() if first.path else ""
            if first.route is not None and first.route.refused and first.reason:
                by = first.reason  # the routing decision discarded it, not a rule
            parts.append(f"{verdict} {percent(share)}" + (f" by {by}" if by else ""))
    unknown = [o for o in outcomes if o.verdict == "UNKNOWN"]
    if unknown:
        share = sum(o.probability for o in unknown)
        first = unknown[0]
        line = f"line {first.path[-1].line}: " if first.path and first.path[-1].line else ""
        # What was decided before the unknown: the DNAT endpoints and their shares.
        after: dict[str, float] = {}
        for o in unknown:
            if o.dnat is not None:
                after[o.dnat] = after.get(o.dnat, 0.0) + o.probability
        decided = ""
        if after:
            decided = " after DNAT to " + ", ".join(
                f"{ep} {percent(p)}" for ep, p in after.items())
        parts.append(f"UNKNOWN {percent(share)}{decided} ({line}{first.reason})")
    return ", ".join(parts) if parts else "no outcome"
