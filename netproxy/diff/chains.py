"""Chain-by-chain comparison of two rulesets (netfilter meaning, names via identities).

Chains are paired by identity (see :mod:`netproxy.diff.identity`), so a renamed chain is
paired with its original. A pair is compared first by the rules as parsed (cheap, and enough
for the chains most comparisons have in common), then, if that fails, by canonical keys in
canonical order (:mod:`netproxy.diff.canon`), and only when that fails too is a line diff
computed.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field

from netproxy.diff.canon import canonical_order, rule_key
from netproxy.diff.identity import KubeView
from netproxy.kubeview.names import is_kube_chain
from netproxy.netfilter.model import BUILTIN_CHAINS, Chain, Rule

SCOPES = ("all", "kube")
"""``all``: every table and chain; ``kube``: kube-proxy's chains and the jumps into them."""


@dataclass(slots=True)
class ChainDiff:
    """How one chain (paired by identity) differs between the two sides."""

    table: str
    old: str | None
    """Name on the old side (None: the chain only exists on the new side)."""
    new: str | None
    removed: list[Rule] = field(default_factory=list)
    added: list[Rule] = field(default_factory=list)
    old_policy: str | None = None
    new_policy: str | None = None

    @property
    def renamed(self) -> bool:
        return self.old is not None and self.new is not None and self.old != self.new

    @property
    def changed(self) -> bool:
        """Whether anything besides the name differs."""
        return bool(self.removed or self.added or self.old is None or self.new is None
                    or self.old_policy != self.new_policy)

    @property
    def name(self) -> str:
        return self.new or self.old or ""


def _scoped_rules(chain: Chain, table: str, scope: str) -> list[Rule]:
    if scope == "all" or is_kube_chain(chain.name):
        return chain.rules
    return [r for r in chain.rules if r.target is not None and is_kube_chain(r.target.name)]


def _in_scope(chain: Chain, table: str, scope: str) -> bool:
    if scope == "all" or is_kube_chain(chain.name):
        return True
    return chain.name in BUILTIN_CHAINS.get(table, ())


def _raw_equal(a: list[Rule], b: list[Rule], ra: Callable[[str], str],
               rb: Callable[[str], str]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x.matches != y.matches or x.opaque != y.opaque:
            return False
        tx, ty = x.target, y.target
        if tx is None or ty is None:
            if tx is not ty:
                return False
            continue
        if tx.options != ty.options or tx.goto != ty.goto:
            return False
        if ra(tx.name) != rb(ty.name):
            return False
    return True


def _canonical(rules: list[Rule], family: str, rename: Callable[[str], str]) -> list[tuple[str, Rule]]:
    keyed = [rule_key(r, family, rename) for r in rules]
    keys = [k for k, _ in keyed]
    order = canonical_order(keys, [d for _, d in keyed])
    return [(keys[i], rules[i]) for i in order]


def _same_canonical(a: list[Rule], b: list[Rule], family: str, ra: Callable[[str], str],
                    rb: Callable[[str], str]) -> bool:
    """Whether the chains are equivalent: same canonical keys, as written or in canonical order."""
    if len(a) != len(b):
        return False
    keyed_a = [rule_key(r, family, ra) for r in a]
    keyed_b = [rule_key(r, family, rb) for r in b]
    ka = [k for k, _ in keyed_a]
    kb = [k for k, _ in keyed_b]
    if ka == kb:
        return True
    if sorted(ka) != sorted(kb):
        return False
    oa = canonical_order(ka, [d for _, d in keyed_a])
    ob = canonical_order(kb, [d for _, d in keyed_b])
    return [ka[i] for i in oa] == [kb[i] for i in ob]


def diff_rules(a: list[Rule], b: list[Rule], family: str, ra: Callable[[str], str],
               rb: Callable[[str], str]) -> tuple[list[Rule], list[Rule]]:
    """Rules only in ``a`` and only in ``b`` (empty lists when the chains are equivalent)."""
    if _raw_equal(a, b, ra, rb) or _same_canonical(a, b, family, ra, rb):
        return [], []
    ca = _canonical(a, family, ra)
    cb = _canonical(b, family, rb)
    ka = [k for k, _ in ca]
    kb = [k for k, _ in cb]
    removed: list[Rule] = []
    added: list[Rule] = []
    matcher = difflib.SequenceMatcher(None, ka, kb, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        removed.extend(r for _, r in ca[i1:i2])
        added.extend(r for _, r in cb[j1:j2])
    return removed, added


def _same_name(name: str) -> str:
    return name


def _same_by_name(a: list[Rule], b: list[Rule]) -> bool:
    """Rules equal as parsed, chain names included (the parser shares equal options)."""
    if len(a) != len(b):
        return False
    return [(x.matches, x.target, x.opaque) for x in a] == [(y.matches, y.target, y.opaque) for y in b]


def compare(old: KubeView, new: KubeView, scope: str = "all") -> list[ChainDiff]:
    """Every chain pair that differs (including pairs that differ only by name).

    Chains equal by name and content are set aside first; only the rest is analysed for
    identities and paired by them.
    """
    family = new.ruleset.family
    tables = list(old.ruleset.tables)
    tables += [t for t in new.ruleset.tables if t not in old.ruleset.tables]
    out: list[ChainDiff] = []
    for table in tables:
        ot = old.ruleset.tables.get(table)
        nt = new.ruleset.tables.get(table)
        ochains = {n: c for n, c in (ot.chains.items() if ot else ()) if _in_scope(c, table, scope)}
        nchains = {n: c for n, c in (nt.chains.items() if nt else ()) if _in_scope(c, table, scope)}
        focus_old: list[str] = []
        focus_new: list[str] = []
        everything = scope == "all"
        for name, och in ochains.items():
            nch = nchains.get(name)
            if nch is None:
                focus_old.append(name)
                continue
            orules = och.rules if everything else _scoped_rules(och, table, scope)
            nrules = nch.rules if everything else _scoped_rules(nch, table, scope)
            if och.policy == nch.policy and (
                    _same_by_name(orules, nrules)
                    or _same_canonical(orules, nrules, family, _same_name, _same_name)):
                continue
            focus_old.append(name)
            focus_new.append(name)
        focus_new += [name for name in nchains if name not in ochains]
        if not focus_old and not focus_new:
            continue
        old.analyse_chains(table, focus_old)
        new.analyse_chains(table, focus_new)
        ra = old.rename(table)
        rb = new.rename(table)
        by_identity = {rb(name): nchains[name] for name in focus_new}
        paired: list[tuple[Chain | None, Chain | None]] = []
        seen: set[str] = set()
        used: set[str] = set()
        old_identities = {ra(n) for n in focus_old}
        new_names = set(focus_new)
        for name in focus_old:
            ident = ra(name)
            seen.add(ident)
            match = by_identity.get(ident)
            if match is None and name in new_names and rb(name) not in old_identities:
                match = nchains[name]  # identity lost on one side (e.g. an emptied chain): by name
            if match is not None:
                used.add(match.name)
            paired.append((ochains[name], match))
        paired += [(None, nchains[n]) for n in focus_new if rb(n) not in seen and n not in used]
        for a, b in paired:
            ar = _scoped_rules(a, table, scope) if a is not None else []
            br = _scoped_rules(b, table, scope) if b is not None else []
            if a is not None and b is not None:
                removed, added = diff_rules(ar, br, family, ra, rb)
            else:
                removed, added = list(ar), list(br)
            name = (a or b).name  # type: ignore[union-attr]
            if scope == "all" or is_kube_chain(name):
                d = ChainDiff(table, a.name if a else None, b.name if b else None, removed, added,
                              a.policy if a else None, b.policy if b else None)
            else:  # a built-in chain seen only for its jumps into kube-proxy's chains
                d = ChainDiff(table, name, name, removed, added)
            if d.changed or d.renamed:
                out.append(d)
    return out
