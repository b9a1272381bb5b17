"""What a trace was missing, per packet and once per capture.

A packet's answer can rest on facts the question left out: a fork on an unknowable fact
(``10.96.0.10,udp:53 in KUBE-CLUSTER-IP?``), a stated default (an interface no rule names),
or an UNKNOWN outcome that says which flag would decide it. :func:`missing_facts` lists them
as (flag, fact) pairs; :class:`MissingTally` adds them up over a capture or packets file, so
the facts are listed once at the end -- each with the packets it affected and its flag --
instead of once per packet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ASSUMED = "assumed"
"""Kind of a stated default (the fact is what was assumed)."""
UNKNOWN_FACT = "fork"
"""Kind of an unknowable fact the walk forked on (the fact is the question)."""
UNDECIDED = "unknown"
"""Kind of an UNKNOWN outcome whose reason names the flag that decides it."""

MAX_FACTS = 10_000
"""Distinct facts counted one by one over a capture; beyond this only per flag (flat
memory however many distinct flows a capture holds)."""
SHOWN = 10
"""Facts per flag spelled out in the text summary (all kept ones are in JSON)."""


def missing_facts(result: Any) -> list[tuple[str, str, str]]:
    """(flag, fact, kind) for every missing fact that mattered to ``result`` (a
    :class:`~netproxy.trace.result.TraceResult`), in order of appearance, each once."""
    out: dict[tuple[str, str], str] = {}
    for c in result.conditions():
        out.setdefault((c.flag, f"{c.text}?"), UNKNOWN_FACT)
    for text in result.assumptions():
        head, sep, flag = text.rpartition(" (give ")
        if sep:
            out.setdefault((flag.rstrip(")"), head), ASSUMED)
        else:
            out.setdefault((text, text), ASSUMED)
    for o in result.outcomes:
        if o.verdict == "UNKNOWN" and o.reason and "(give " in o.reason:
            head, _, flag = o.reason.rpartition(" (give ")
            out.setdefault((flag.rstrip(")"), head), UNDECIDED)
    return [(flag, fact, kind) for (flag, fact), kind in out.items()]


@dataclass
class _Flag:
    packets: int = 0
    facts: dict[tuple[str, str], int] = field(default_factory=dict)
    """(fact, kind) -> packets it affected."""
    uncounted: int = 0
    """Packets whose fact was not kept (beyond :data:`MAX_FACTS`)."""


class MissingTally:
    """The missing facts of a packet sequence, added up as its results go by."""

    def __init__(self) -> None:
        self.packets = 0
        self.affected = 0
        self.flags: dict[str, _Flag] = {}
        self._kept = 0

    def add(self, result: Any) -> None:
        self.packets += 1
        facts = missing_facts(result)
        if not facts:
            return
        self.affected += 1
        seen: set[str] = set()
        uncounted: set[str] = set()
        for flag, fact, kind in facts:
            entry = self.flags.get(flag)
            if entry is None:
                entry = self.flags[flag] = _Flag()
            if flag not in seen:
                seen.add(flag)
                entry.packets += 1
            key = (fact, kind)
            if key in entry.facts:
                entry.facts[key] += 1
            elif self._kept < MAX_FACTS:
                entry.facts[key] = 1
                self._kept += 1
            elif flag not in uncounted:
                uncounted.add(flag)
                entry.uncounted += 1

    def lines(self) -> list[str]:
        """The text summary (empty when nothing was missing)."""
        if not self.affected:
            return []
        out = [f"missing in {self.affected:,} of {self.packets:,} packets (each fact that "
               "mattered, the packets it affected, and the flag that supplies it):"]
        for flag, entry in self.flags.items():
            ranked = sorted(entry.facts.items(), key=lambda kv: -kv[1])
            parts = [_fact_text(fact, kind, n) for (fact, kind), n in ranked[:SHOWN]]
            rest = len(ranked) - SHOWN
            if rest > 0:
                n_rest = sum(n for _k, n in ranked[SHOWN:])
                parts.append(f"{rest:,} more fact{'s' if rest != 1 else ''} "
                             f"({n_rest:,} packet{'s' if n_rest != 1 else ''}, all in --json)")
            if entry.uncounted:
                parts.append(f"further facts in {entry.uncounted:,} packets (not counted one "
                             "by one)")
            out.append(f"  {flag}: {entry.packets:,} packet{'s' if entry.packets != 1 else ''}"
                       f": {'; '.join(parts)}")
        return out

    def to_list(self) -> list[dict[str, Any]]:
        """The JSON summary: one object per flag with its facts and their packet counts."""
        out = []
        for flag, entry in self.flags.items():
            item: dict[str, Any] = {
                "flag": flag, "packets": entry.packets,
                "facts": [{"fact": fact, "kind": kind, "packets": n}
                          for (fact, kind), n in sorted(entry.facts.items(),
                                                        key=lambda kv: -kv[1])]}
            if entry.uncounted:
                item["uncounted_packets"] = entry.uncounted
            out.append(item)
        return out


def _fact_text(fact: str, kind: str, n: int) -> str:
    head = f"assumed {fact}" if kind == ASSUMED else fact
    return f"{head} ({n:,} packet{'s' if n != 1 else ''})"
