"""The cases of a walk that forked on unknown facts.

A fact the tracer cannot know (an ipset's contents, whether an address is the node's) forks
the walk without splitting its probability: each outcome carries the facts it assumed, and
the outcomes of every case (one value for each fact) sum to 1. An outcome that assumed
nothing belongs to every case.

:func:`settle` removes the facts the answer does not depend on (every case ends alike);
:func:`case_list` groups what remains by case for the summary.
"""

from __future__ import annotations

from itertools import product
from typing import Any

from netproxy.trace.result import Outcome, TraceResult

MAX_FACTS = 10
"""Facts compared case by case (2^n cases); beyond this the outcomes keep every condition."""
MAX_CASES = 64
"""Cases spelled out in a summary line (the rest are left out)."""


def _facts(outcomes: list[Outcome]) -> dict[Any, Any]:
    seen: dict[Any, Any] = {}
    for o in outcomes:
        for _v, c in o.assumes:
            seen.setdefault(c.key, c)
    return seen


def _fits(o: Outcome, case: dict[Any, bool]) -> bool:
    return all(case.get(c.key, v) == v for v, c in o.assumes)


def _distribution(outcomes: list[Outcome], case: dict[Any, bool]) -> dict[Any, float]:
    """What the outcomes of ``case`` amount to, with their shares. What an outcome leaves
    in the kernel's memory (a recent entry, an nth counter) counts too: a later packet of a
    sequence sees it, so cases that remember differently do not end alike; so does what a
    reply's reverse NAT restored."""
    out: dict[Any, float] = {}
    for o in outcomes:
        if _fits(o, case):
            k = o.ending()
            route = o.route
            if route is not None:  # the same verdict by another route is another case
                k = (k, route.kind, route.dev, route.gateway, route.table)
            if o.reverse:
                k = (k, o.reverse)
            if o.memory is not None and o.memory.writes:
                k = (k, o.memory.key())
            out[k] = out.get(k, 0.0) + o.probability
    return out


def _same(a: dict[Any, float], b: dict[Any, float]) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-9 for k in a)


def settle(outcomes: list[Outcome]) -> tuple[list[Outcome], list[str]]:
    """Drop every fact whose cases all end alike; returns the outcomes of the remaining
    cases (those of the fact's "true" case stand for both) and the dropped facts as text."""
    facts = _facts(outcomes)
    if not facts or len(facts) > MAX_FACTS:
        return outcomes, []
    dropped: list[str] = []
    changed = True
    while changed:
        changed = False
        for key, cond in list(facts.items()):
            others = [k for k in facts if k != key]
            alike = True
            for values in product((True, False), repeat=len(others)):
                case = dict(zip(others, values, strict=True))
                if not _same(_distribution(outcomes, {**case, key: True}),
                             _distribution(outcomes, {**case, key: False})):
                    alike = False
                    break
            if not alike:
                continue
            kept: list[Outcome] = []
            for o in outcomes:
                value = next((v for v, c in o.assumes if c.key == key), None)
                if value is False:
                    continue
                if value is not None:
                    o.assumes = tuple((v, c) for v, c in o.assumes if c.key != key)
                kept.append(o)
            outcomes = kept
            del facts[key]
            dropped.append(f"whether {cond.text}")
            changed = True
            break
    return outcomes, dropped


def case_list(result: TraceResult) -> list[tuple[list[str], list[Outcome]]] | None:
    """(conditions, outcomes) for each case of the facts the result depends on, split one
    fact at a time (a fact asked only in some cases splits only those, and a fact whose two
    sides end alike within a case is not split on there); None when the result depends on
    none."""
    if not _facts(result.outcomes):
        return None
    return _split(result.outcomes, {})[:MAX_CASES]


def _split(outs: list[Outcome], case: dict[Any, bool]) -> list[tuple[list[str], list[Outcome]]]:
    from netproxy.trace.result import summarize

    cond = next((c for o in outs for _v, c in o.assumes if c.key not in case), None)
    if cond is None:
        return [([], outs)]
    sides = []
    for value in (True, False):
        sub = {**case, cond.key: value}
        sides.append((value, _split([o for o in outs if _fits(o, sub)], sub)))
    # Compared with the endpoints named: cases that reach different endpoints with equal
    # shares are different cases.
    texts = [[(c, summarize(o, named=True)) for c, o in cases] for _v, cases in sides]
    if texts[0] == texts[1]:
        return sides[0][1]  # alike on both sides: not a condition here
    return [([cond.state(value)] + conds, o) for value, cases in sides for conds, o in cases]
