"""Where kube-proxy's masquerade mark is set, and whether nat POSTROUTING masquerades it.

Only mark logic is followed: rules that also test addresses, interfaces or sets belong to
other software (Docker, flannel, IPVS) and are stepped over, because they do not decide
whether *every* marked packet is masqueraded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netproxy.kubeview.model import ENDPOINT_PREFIX, RuleRef, RulesetView
from netproxy.netfilter.model import Rule, Table
from netproxy.netfilter.values import parse_mark

_NEUTRAL_MODULES = {"comment", "mark"}


def mark_set_by(rule: Rule, current: int = 0) -> int | None:
    """The packet mark after ``rule``'s MARK target, or None when it is not a MARK rule."""
    target = rule.target
    if target is None or target.name != "MARK":
        return None
    for opt in target.options:
        if not opt.args:
            continue
        try:
            if opt.name == "set-xmark":
                value, mask = parse_mark(opt.args[0])
                return (current & ~mask & 0xFFFFFFFF) ^ value
            if opt.name == "set-mark":
                value, mask = parse_mark(opt.args[0])
                return (current & ~mask & 0xFFFFFFFF) | value
            if opt.name == "or-mark":
                return current | parse_mark(opt.args[0])[0]
            if opt.name == "xor-mark":
                return current ^ parse_mark(opt.args[0])[0]
            if opt.name == "and-mark":
                return current & parse_mark(opt.args[0])[0]
        except ValueError:
            return None
    return None


def _only_mark_conditions(rule: Rule) -> bool:
    return rule.opaque is None and all(
        (o.module in _NEUTRAL_MODULES) for o in rule.matches
    )


def _mark_ok(rule: Rule, mark: int) -> bool:
    """Whether every ``-m mark`` condition of ``rule`` holds for ``mark``."""
    for opt in rule.matches:
        if opt.module == "mark" and opt.name == "mark" and opt.args:
            try:
                value, mask = parse_mark(opt.args[0])
            except ValueError:
                return False
            if ((mark & mask) == value) == opt.negated:
                return False
    return True


@dataclass(slots=True)
class Masquerading:
    """The answer for one mark value."""

    mark: int
    masqueraded: bool
    path: list[RuleRef] = field(default_factory=list)


def follow(nat: Table, mark: int, chain: str = "POSTROUTING", depth: int = 0) -> Masquerading:
    """Walk nat ``chain`` for a packet carrying ``mark``; did it reach a MASQUERADE?"""
    result = Masquerading(mark, False)
    found = nat.chains.get(chain)
    if found is None or depth > 8:
        return result
    current = mark
    for i, rule in enumerate(found.rules):
        if not _only_mark_conditions(rule) or not _mark_ok(rule, current):
            continue
        ref = RuleRef(nat.name, chain, i, rule)
        target = rule.jump
        if target is None:
            continue
        if target == "MASQUERADE":
            result.masqueraded = True
            result.path.append(ref)
            return result
        if target in ("RETURN", "ACCEPT", "DROP"):
            result.path.append(ref)
            return result
        if target == "MARK":
            result.path.append(ref)
            current = mark_set_by(rule, current) or 0
            continue
        if target in nat.chains:
            inner = follow(nat, current, target, depth + 1)
            if inner.masqueraded or (inner.path and inner.path[-1].rule.jump in ("ACCEPT", "DROP")):
                result.masqueraded = inner.masqueraded
                result.path += [ref, *inner.path]
                return result
            result.path += [ref, *inner.path]
    return result


def masquerade_marks(view: RulesetView) -> list[tuple[int, RuleRef]]:
    """Marks kube-proxy sets to request SNAT: in KUBE-MARK-MASQ, or inline in SEP chains."""
    nat = view.table("nat")
    if nat is None:
        return []
    found: list[tuple[int, RuleRef]] = []
    seen: set[int] = set()
    for chain in nat.chains.values():
        if chain.name != "KUBE-MARK-MASQ" and not chain.name.startswith(ENDPOINT_PREFIX):
            continue
        for i, rule in enumerate(chain.rules):
            mark = mark_set_by(rule)
            if mark is None or mark in seen:
                continue
            seen.add(mark)
            found.append((mark, RuleRef("nat", chain.name, i, rule)))
    return found


def masquerade_rules(nat: Table) -> list[RuleRef]:
    """Every MASQUERADE rule of nat POSTROUTING and KUBE-POSTROUTING (for quoting)."""
    refs: list[RuleRef] = []
    for name in ("POSTROUTING", "KUBE-POSTROUTING"):
        chain = nat.chains.get(name)
        if chain is None:
            continue
        for i, rule in enumerate(chain.rules):
            if rule.jump in ("MASQUERADE", "KUBE-POSTROUTING") or (name == "KUBE-POSTROUTING"):
                refs.append(RuleRef("nat", name, i, rule))
    return refs
