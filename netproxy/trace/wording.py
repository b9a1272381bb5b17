"""The summary line of an answer that depends on unknown facts, kept readable.

A walk that forked on facts nobody can know gives one answer per case. With few cases the
line spells each out (``if A: ...; if not A: ...``). With many it says the same compactly,
and exactly, in one of two ways:

* **independent facts** -- facts that never meet on one branch (whether each endpoint's
  address is the node's) each decide only the share of the branches that asked them. The
  line gives the answer when none of them holds, then how each one that holds changes its
  own share, grouped by the change (``not masqueraded for each endpoint that is a node
  address (10.42.2.218:8080, ...)``) instead of multiplying the cases (2^9 for nine
  endpoints);
* **facts that depend on each other** -- the cases are grouped by answer; the most common
  answer is ``otherwise``, and each other answer gets the exact condition of its cases, with
  what they share said once (``if A and D and ((B and C) or not B): ...``).

Every fact stays listed under ``missing:``, and the outcomes (JSON ``assumes``) keep the
full structure.
"""

from __future__ import annotations

from typing import Any

from netproxy.trace.result import Outcome, TraceResult, percent, summarize

LONG = 400
"""A summary longer than this is said compactly."""
TOO_LONG = 1000
"""Exact conditions longer than this are cut down to what each answer needs."""
SHOWN = 6
"""Endpoints named in one compact group before the rest are counted."""

Literal = tuple[Any, bool]
"""One fact with the value a case assumes."""


def conditional(result: TraceResult) -> str:
    """The summary of a result whose outcomes depend on unknown facts."""
    from netproxy.trace.cases import MAX_CASES, case_list

    groups, fixed = _independent_groups(result.outcomes)
    relevant: list[list[Outcome]] = []
    alike = False
    count = 1
    for outs in groups:
        cases = _cases(result, outs)
        if len(cases) == 1:
            # Every case of these facts reads alike (the engine kept them for what they
            # leave in the kernel's memory, or there were too many to settle): the line
            # does not split on them.
            fixed += [_without_facts(o) for o in cases[0][1]]
            alike = True
            continue
        relevant.append(outs)
        count = min(count * len(cases), MAX_CASES + 1)
    if not relevant:
        return summarize(fixed)
    if alike:
        result = TraceResult(result.packet, fixed + [o for outs in relevant for o in outs])
    if len(relevant) > 1 and count > MAX_CASES:
        return _per_fact(result, relevant, fixed)
    cases = case_list(result) or []
    text = each_case(result, cases)
    if len(text) <= LONG:
        return text
    if len(relevant) > 1:
        return _per_fact(result, relevant, fixed)
    return _by_answer(result, cases, truncated=len(cases) >= MAX_CASES)


def _without_facts(o: Outcome) -> Outcome:
    """A copy of ``o`` that assumes nothing (the result's own outcomes stay as they are)."""
    from copy import copy

    plain = copy(o)
    plain.assumes = ()
    return plain


def each_case(result: TraceResult, cases: list[tuple[list[str], list[Outcome]]]) -> str:
    """``if A: X; if B: Y`` -- every case spelled out (cases alike in their short form are
    told apart by naming their endpoints)."""
    if len(cases) == 1 and not cases[0][0]:
        return summarize(cases[0][1])  # the cases differ only in what a summary leaves out
    texts = [summarize(outs) for _cond, outs in cases]
    if len(set(texts)) < len(texts):
        texts = [summarize(outs, named=True) for _cond, outs in cases]
    grouped: dict[str, list[str]] = {}
    for (cond, _outs), what in zip(cases, texts, strict=True):
        grouped.setdefault(what, []).append(" and ".join(cond) or "otherwise")
    parts = []
    for what, conds in grouped.items():
        if len(conds) > 1:
            conds = [f"({c})" if " and " in c else c for c in conds]
        parts.append(f"if {' or '.join(conds)}: {what}")
    return "; ".join(parts)


# -- independent facts ------------------------------------------------------------------

def _independent_groups(outcomes: list[Outcome]) -> tuple[list[list[Outcome]], list[Outcome]]:
    """The outcomes that assume facts, grouped so that no two groups share a fact (facts
    asked on one branch belong together), and the outcomes that assume none."""
    parent: dict[Any, Any] = {}

    def root(key: Any) -> Any:
        while parent[key] is not key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    fixed: list[Outcome] = []
    for o in outcomes:
        keys = [c.key for _v, c in o.assumes]
        if not keys:
            fixed.append(o)
            continue
        for k in keys:
            parent.setdefault(k, k)
        first = root(keys[0])
        for k in keys[1:]:
            other = root(k)
            if other is not first:
                parent[other] = first
    groups: dict[Any, list[Outcome]] = {}
    for o in outcomes:
        if o.assumes:
            groups.setdefault(root(o.assumes[0][1].key), []).append(o)
    return list(groups.values()), fixed


def _cases(result: TraceResult, outs: list[Outcome]) -> list[tuple[list[str], list[Outcome]]]:
    """The cases of one group of facts (its outcomes alone)."""
    from netproxy.trace.cases import case_list

    return case_list(TraceResult(result.packet, outs)) or [([], outs)]


def _values(outs: list[Outcome]) -> dict[str, Literal]:
    """A condition's text -> (fact, value)."""
    out: dict[str, Literal] = {}
    for o in outs:
        for _v, c in o.assumes:
            out[c.state(True)] = (c.key, True)
            out[c.state(False)] = (c.key, False)
    return out


def _per_fact(result: TraceResult, groups: list[list[Outcome]], fixed: list[Outcome]) -> str:
    """The answer when no fact holds, then what each fact that holds changes."""
    base = list(fixed)
    changes: dict[str, list[tuple[str, str, list[Outcome]]]] = {}
    facts = 0
    for outs in groups:
        cases = _cases(result, outs)
        values = _values(outs)
        # The case where every fact asked is false exists (each split has both sides).
        default = next((c for c in cases if all(not values[t][1] for t in c[0])), cases[0])
        base += default[1]
        facts += len({c.key for o in outs for _v, c in o.assumes})
        before = summarize(default[1], named=True)
        for conds, case_outs in cases:
            if case_outs is default[1]:
                continue
            after = summarize(case_outs, named=True)
            change, what = _difference(before, after)
            if not what:
                share = sum(o.probability for o in case_outs)
                what = f"its {percent(share)}"
            changes.setdefault(change, []).append((what, " and ".join(conds), case_outs))
    own = {change: _own_endpoints(items) for change, items in changes.items()}
    if all(own.values()):
        parts = [f"for any endpoint that is a node address ({names}), its share: {change}"
                 for change, names in own.items()]
        return f"{summarize(base)}; but {'; '.join(parts)}"
    parts = [f"{change} for " + (f"any endpoint that is a node address ({own[change]})"
                                 if own[change] else _each_fact(items))
             for change, items in changes.items()]
    return (f"if none of {facts} unknown facts holds: {summarize(base)}; where one holds, its "
            f"own share changes: {'; '.join(parts)}")


def _difference(before: str, after: str) -> tuple[str, str]:
    """(what ``after`` says that ``before`` does not, what they share): ``1 endpoint A,
    masqueraded`` and ``1 endpoint A, not masqueraded`` -> (``not masqueraded``, ``A``)."""
    old = before.split(", ")
    new = after.split(", ")
    changed = [p for p in new if p not in old]
    same = [p for p in new if p in old]
    if not changed or not same:
        return after, ""
    what = ", ".join(same)
    if what.startswith("1 endpoint "):
        what = what[len("1 endpoint "):]
    return ", ".join(changed), what


def _each_fact(items: list[tuple[str, str, list[Outcome]]]) -> str:
    """``A if X, B if Y`` (the first ``2 * SHOWN``; the rest counted)."""
    text = ", ".join(f"{what} if {cond}" for what, cond, _o in items[:2 * SHOWN])
    rest = len(items) - 2 * SHOWN
    return text + (f" and {rest} more, each if its own fact holds (listed under missing)"
                   if rest > 0 else "")


def _own_endpoints(items: list[tuple[str, str, list[Outcome]]]) -> str:
    """``N unknown facts: A, B, ...`` when every case's only fact is "the endpoint's own
    address is the node's" (and there are several), else ``""``."""
    if len(items) < 2 or not all(_endpoint_is_fact(what, outs) for what, _c, outs in items):
        return ""
    names = [what for what, _c, _o in items]
    shown = ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more"
                                         if len(names) > SHOWN else "")
    return f"{len(names)} unknown facts: {shown}"


def _endpoint_is_fact(what: str, outs: list[Outcome]) -> bool:
    """Whether the case's only fact is "the address of ``what`` (an endpoint) is the node's"."""
    facts = {c.key for o in outs for _v, c in o.assumes}
    if len(facts) != 1:
        return False
    key = next(iter(facts))
    if not (isinstance(key, tuple) and len(key) == 2 and key[0] == "local"):
        return False
    dnat = {o.raw_dnat[0] if isinstance(o.raw_dnat, tuple) else None for o in outs}
    return dnat == {key[1]} and ":" in what


# -- facts that depend on each other --------------------------------------------------------

def _by_answer(result: TraceResult, cases: list[tuple[list[str], list[Outcome]]], *,
               truncated: bool) -> str:
    """Cases grouped by answer, each answer with the exact condition of its cases; the answer
    whose condition is longest is said as ``otherwise``."""
    found = answers(result, cases)
    if truncated:  # not every case was looked at: no "otherwise"
        return (f"depends on {len(result.conditions())} unknown facts (listed under missing), "
                f"{len(cases)} cases or more; among them: {'; '.join(found)}")
    names = {v: t for t, v in _values(result.outcomes).items()}
    conds = {what: _condition(terms, names) for what, terms in found.items()}
    most = max(conds, key=lambda what: len(conds[what]))
    parts = [f"if {cond}: {what}" for what, cond in conds.items() if what != most]
    text = "; ".join(parts + [f"otherwise: {most}"])
    if len(text) <= TOO_LONG:
        return text
    # Too many facts intertwined to spell out: what each answer needs, which is still true.
    order = list(names)
    needs = []
    for what, terms in found.items():
        common = sorted(frozenset.intersection(*terms), key=order.index) if terms else []
        needs.append(f"{what} only if {' and '.join(names[x] for x in common)}" if common
                     else f"{what} in some cases")
    return (f"depends on {len(result.conditions())} unknown facts (listed under missing): "
            + "; ".join(needs))


def answers(result: TraceResult, cases: list[tuple[list[str], list[Outcome]]]
            ) -> dict[str, list[frozenset[Literal]]]:
    """Each answer (its summary) with the condition of its cases: terms (conjunctions of
    facts with their values) any of which gives it."""
    texts = [summarize(outs) for _cond, outs in cases]
    if len(set(texts)) < len({summarize(outs, named=True) for _c, outs in cases}):
        texts = [summarize(outs, named=True) for _cond, outs in cases]
    values = _values(result.outcomes)
    grouped: dict[str, list[list[Literal]]] = {}
    for (conds, _outs), what in zip(cases, texts, strict=True):
        grouped.setdefault(what, []).append([values[c] for c in conds])
    return {what: _combine(lits) for what, lits in grouped.items()}


def _combine(cases: list[list[Literal]]) -> list[frozenset[Literal]]:
    """The cases (conjunctions of literals) as a shorter equal disjunction: a term holding
    another is dropped (``A or (A and B)`` = ``A``), and a literal whose opposite sits in a
    term whose other literals it holds is dropped (``(A and x) or (A and B and not x)`` =
    ``(A and x) or (A and B)``), until neither applies."""
    terms = list(dict.fromkeys(frozenset(c) for c in cases))
    changed = True
    while changed:
        changed = False
        terms = [t for t in terms if not any(o < t for o in terms)]
        for a in terms:
            for b in terms:
                for key, value in a:
                    opposite = (key, not value)
                    if opposite in b and a - {(key, value)} <= b - {opposite}:
                        terms = list(dict.fromkeys(b - {opposite} if t == b else t
                                                   for t in terms))
                        changed = True
                        break
                if changed:
                    break
            if changed:
                break
    return terms


def _condition(terms: list[frozenset[Literal]], names: dict[Literal, str]) -> str:
    """``A and B and ((C and D) or E)``: the literals every term shares, once."""
    if any(not t for t in terms):
        return "any case"
    common = frozenset.intersection(*terms)
    order = list(names)
    spell = lambda lits: " and ".join(names[x] for x in sorted(lits, key=order.index))  # noqa: E731
    rests = [t - common for t in terms]
    parts = [spell(common)] if common else []
    if all(rests):  # a term that is only the common part covers the others
        alts = [f"({spell(r)})" if len(r) > 1 else spell(r) for r in rests]
        either = " or ".join(alts)
        parts.append(either if len(alts) == 1 or not common else f"({either})")
    return " and ".join(parts)
