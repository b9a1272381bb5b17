"""Semantic diff of two nftables listings, in the words of Services and endpoints.

kube-proxy's nftables table (``table ip kube-proxy`` / ``ip6``) is read on both sides by
:mod:`netproxy.kubeview.nftables`, the reader the doctor uses; each Service port's facts
(:mod:`netproxy.diff.nftfacts`) are compared as in iptables mode. Beneath them come the
objects that changed: rules of each chain (paired by name: kube-proxy names every per-port
chain after its Service port, protocol and endpoint, so a name stands for what the chain is)
and elements of each set and map (by key), both grouped by the Service port they belong to.
Other tables are plain rule and element diffs per chain and set. Stale per-port chains and
affinity sets and references to chains or sets that do not exist (a map element pointing
nowhere) are findings, like stale chains and dangling jumps in iptables mode.

Counters, handles, the order of tables, chains, sets and elements are ignored; the order of
rules in a chain is not.
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from netproxy.diff.engine import fact_changes
from netproxy.diff.nftfacts import cluster_ips, nft_facts
from netproxy.diff.report import DiffReport, Fact, FindingLine, Group, RuleLine
from netproxy.gcpause import paused_gc
from netproxy.kubeview.model import NftRef, RulesetView, ServicePortView
from netproxy.kubeview.nftables import (
    TABLE,
    build_nft_view,
    chain_kind,
    kube_proxy_families,
    parse_base,
)
from netproxy.netfilter.nft import NftChain, NftElement, NftRule, NftRuleset, NftSet, NftTable
from netproxy.netfilter.nfttext import expr_text
from netproxy.parser.nftables.refs import REFERS

_COUNTER = re.compile(r"\bcounter packets \d+ bytes \d+")
_SUMMARY_KEYS = (
    "services_added", "services_removed", "services_changed", "endpoints_added",
    "endpoints_removed", "endpoints_changed", "kube_rules_added", "kube_rules_removed",
    "other_rules_added", "other_rules_removed", "chains_renamed", "stale_old", "stale_new",
    "dangling_old", "dangling_new")


# -- rules and elements as comparable text --------------------------------------------------

def _no_counts(stmt: Any) -> Any:
    if isinstance(stmt, dict) and "counter" in stmt:
        return {"counter": None}
    return stmt


def rule_key(rule: NftRule) -> str:
    """Two rules that do the same get the same key (counter values and handles left out)."""
    return json.dumps([_no_counts(s) for s in rule.exprs], sort_keys=True) + "\x1f" + (rule.comment or "")


def rule_shown(rule: NftRule) -> str:
    """The rule as listed, without counter values."""
    return " ".join(_COUNTER.sub("counter", rule.text).split())


def element_key(element: NftElement) -> str:
    return expr_text(element.key)


def element_shown(element: NftElement) -> str:
    body = element_key(element)
    if element.comment:
        body += f' comment "{element.comment}"'
    if element.value is not None:
        body += f" : {expr_text(element.value)}"
    return f"{{ {body} }}"


def _chain_head(chain: NftChain) -> str:
    """A base chain's declaration (type, hook, priority, policy); ``""`` for regular chains."""
    if not chain.base:
        return ""
    priority = chain.priority_text or str(chain.priority)
    device = f" device {chain.device}" if chain.device else ""
    return f"type {chain.type} hook {chain.hook}{device} priority {priority}; policy {chain.policy or 'accept'}"


def _chain_same(a: NftChain, b: NftChain) -> bool:
    """Same declaration; a priority by name (``dstnat - 10``) equals its number (nft's JSON
    listing gives only the number)."""
    return (a.type, a.hook, a.device, a.priority, a.policy or "accept") == \
        (b.type, b.hook, b.device, b.priority, b.policy or "accept")


def _set_head(found: NftSet) -> str:
    parts = [f"{found.kind} type {' . '.join(found.type) or found.typeof or '?'}"]
    if found.map_type:
        parts.append(f": {found.map_type}")
    if found.flags:
        parts.append(f"flags {','.join(found.flags)}")
    if found.timeout is not None:
        parts.append(f"timeout {found.timeout:g}s")
    return " ".join(parts)


def _set_same(a: NftSet, b: NftSet) -> bool:
    """Same declaration; the ``dynamic`` flag does not count (nft's JSON listing leaves it
    out: nft 1.0.6)."""
    return (a.kind, a.type or a.typeof, a.map_type, a.timeout) == (b.kind, b.type or b.typeof, b.map_type, b.timeout) \
        and set(a.flags) - {"dynamic"} == set(b.flags) - {"dynamic"}


def _runtime(found: NftSet, kube: bool) -> bool:
    """Whether the set's elements are what the kernel added while packets passed (a dynamic
    set; kube-proxy's affinity sets, also where a JSON listing does not say dynamic)."""
    return found.dynamic or (kube and found.name.startswith("affinity-"))


# -- grouping ------------------------------------------------------------------------------

class _Groups:
    """Groups of the report: one per Service port, kube-proxy's shared objects, other tables."""

    def __init__(self) -> None:
        self.services: dict[tuple[str, str], Group] = {}
        self.kube: dict[str, Group] = {}
        self.other: dict[str, Group] = {}

    def service(self, key: tuple[str, str]) -> Group:
        found = self.services.get(key)
        if found is None:
            found = self.services[key] = Group("service", f"{key[0]} {key[1]}".rstrip())
        return found

    def shared(self, where: str) -> Group:
        found = self.kube.get(where)
        if found is None:
            found = self.kube[where] = Group("kube-proxy", f"shared chains and sets ({where})")
        return found

    def plain(self, title: str) -> Group:
        found = self.other.get(title)
        if found is None:
            found = self.other[title] = Group("other", title)
        return found


def _chain_owner(name: str) -> tuple[str, str] | None:
    """The Service port a per-port chain or affinity set of kube-proxy's table is named after."""
    if name.startswith("affinity-"):
        parsed = parse_base(name[len("affinity-"):])
    else:
        kind = chain_kind(name)
        parsed = parse_base(kind[1]) if kind is not None else None
    return (parsed[0], parsed[1]) if parsed is not None else None


def _element_owners(view: RulesetView | None) -> dict[tuple[str, str], tuple[str, str]]:
    """``(set, element key)`` to the Service port the element belongs to."""
    out: dict[tuple[str, str], tuple[str, str]] = {}
    if view is None:
        return out
    for key, port in view.services.items():
        for ref in _element_refs(port):
            if ref.set is not None and ref.element is not None:
                out.setdefault((ref.set, element_key(ref.element)), key)
    return out


def _element_refs(port: ServicePortView) -> list[NftRef]:
    refs = [a.ref for a in port.addresses]
    refs += [*port.rejects, *port.local_drops, *port.firewall_rules, *port.hairpins]
    return [r for r in refs if isinstance(r, NftRef) and r.element is not None]


# -- chains and sets -----------------------------------------------------------------------

def _rule_changes(a: list[NftRule], b: list[NftRule]) -> tuple[list[NftRule], list[NftRule]]:
    if [r.text for r in a] == [r.text for r in b]:
        return [], []
    ka = [rule_key(r) for r in a]
    kb = [rule_key(r) for r in b]
    if ka == kb:
        return [], []
    removed: list[NftRule] = []
    added: list[NftRule] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ka, kb, autojunk=False).get_opcodes():
        if tag != "equal":
            removed += a[i1:i2]
            added += b[j1:j2]
    return removed, added


def _compare_table(old: NftTable | None, new: NftTable | None, groups: _Groups, kube: bool,
                   owners: tuple[dict[tuple[str, str], tuple[str, str]], ...]) -> None:
    some = new if new is not None else old
    assert some is not None
    where = some.label

    def home(name: str, kind: str) -> Group:
        if not kube:
            return groups.plain(f"{where} {kind}{name}")
        owner = _chain_owner(name)
        return groups.service(owner) if owner is not None else groups.shared(where)

    ochains = old.chains if old is not None else {}
    nchains = new.chains if new is not None else {}
    for name in [*ochains, *(n for n in nchains if n not in ochains)]:
        a, b = ochains.get(name), nchains.get(name)
        group = home(name, "chain ")
        if a is None or b is None:
            sign, verb = ("+", "added") if a is None else ("-", "removed")
            group.facts.append(Fact(sign, f"chain {where} {name} {verb}"))
        elif not _chain_same(a, b):
            group.facts.append(Fact("~", f"chain {where} {name}: {_chain_head(a) or 'regular'} -> "
                                         f"{_chain_head(b) or 'regular'}"))
        removed, added = _rule_changes(a.rules if a else [], b.rules if b else [])
        group.rules += [RuleLine("-", where, name, rule_shown(r)) for r in removed]
        group.rules += [RuleLine("+", where, name, rule_shown(r)) for r in added]
    osets = old.sets if old is not None else {}
    nsets = new.sets if new is not None else {}
    for name in [*osets, *(n for n in nsets if n not in osets)]:
        a_set, b_set = osets.get(name), nsets.get(name)
        kind = (b_set or a_set).kind  # type: ignore[union-attr]
        group = home(name, f"{kind} ")
        if a_set is None or b_set is None:
            verb = "added" if a_set is None else "removed"
            group.facts.append(Fact("+" if a_set is None else "-", f"{kind} {where} {name} {verb}"))
        elif not _set_same(a_set, b_set):
            group.facts.append(Fact("~", f"{kind} {where} {name}: {_set_head(a_set)} -> {_set_head(b_set)}"))
        if a_set is not None and b_set is not None and (
                a_set.elements == b_set.elements or _runtime(a_set, kube) or _runtime(b_set, kube)):
            continue  # the same, or what the kernel added at run time (affinity state)
        ea = {element_key(e): e for e in (a_set.elements if a_set else [])}
        eb = {element_key(e): e for e in (b_set.elements if b_set else [])}
        for key in [*ea, *(k for k in eb if k not in ea)]:
            x, y = ea.get(key), eb.get(key)
            if x is not None and y is not None and element_shown(x) == element_shown(y):
                continue
            owner = None
            if kube:
                owner = owners[1].get((name, key)) if y is not None else None
                owner = owner or owners[0].get((name, key))
            target = groups.service(owner) if owner is not None else (
                groups.shared(where) if kube else group)
            label = f"{kind} {name}"
            if x is not None:
                target.rules.append(RuleLine("-", where, label, f"element {element_shown(x)}"))
            if y is not None:
                target.rules.append(RuleLine("+", where, label, f"element {element_shown(y)}"))


# -- findings ------------------------------------------------------------------------------

def _findings(view: RulesetView | None) -> list[tuple[str, str, str, str, tuple[str, str] | None]]:
    """(kind, where, object, detail, Service port) of the view's stale and dangling objects."""
    if view is None or view.nft_table is None:
        return []
    where = view.nft_table.label
    out: list[tuple[str, str, str, str, tuple[str, str] | None]] = []
    for name in view.stale_chains:
        owner = _chain_owner(name)
        what = f" ({owner[0]} {owner[1]})" if owner is not None else ""
        chain = view.nft_table.chains[name]
        state = (f"still holds {len(chain.rules)} rule{'s' if len(chain.rules) != 1 else ''}"
                 if chain.rules else "flushed: kube-proxy deletes it a second later")
        out.append(("stale", where, f"chain {name}", f"nothing refers to it{what}, {state}", owner))
    for name in view.stale_sets:
        owner = _chain_owner(name)
        out.append(("stale", where, f"set {name}", "no rule uses it", owner))
    owners: dict[tuple[str, str], tuple[str, str]] | None = None
    for ref, missing in view.dangling:
        if not isinstance(ref, NftRef):
            continue
        if ref.set is not None and ref.element is not None:
            obj = f"map {ref.set}"
            detail = f"element {element_shown(ref.element)} points to {missing}, which does not exist"
            owners = _element_owners(view) if owners is None else owners
            owner = owners.get((ref.set, element_key(ref.element))) or _chain_owner(missing)
        else:
            obj = f"chain {ref.chain}"
            what = "uses" if missing.startswith("@") else "jumps to"
            detail = f"rule {ref.index + 1} {what} {missing}, which does not exist"
            owner = _chain_owner(ref.chain or "")
        out.append(("dangling", where, obj, detail, owner))
    return out


# -- the diff ------------------------------------------------------------------------------

Views = dict[str, tuple[RulesetView | None, RulesetView | None]]
"""Family (``ipv4``, ``ipv6``) to the kubeview models of kube-proxy's table in the old and
the new listing (None where that listing lacks the family's table)."""


def listing_views(old: NftRuleset, new: NftRuleset) -> Views:
    """kube-proxy's tables of both listings read into the Service model, once for the text
    diff and the behaviour probes."""
    views: Views = {}
    in_old, in_new = kube_proxy_families(old), kube_proxy_families(new)
    for family in ("ipv4", "ipv6"):
        if family in in_old or family in in_new:
            views[family] = (build_nft_view(old, family) if family in in_old else None,
                             build_nft_view(new, family) if family in in_new else None)
    return views


def diff_listings(old: NftRuleset, new: NftRuleset, *, scope: str = "all",
                  views: Views | None = None) -> DiffReport:
    """Compare two nftables listings by meaning (see module docstring); ``views``: their
    :func:`listing_views`, when the caller has them."""
    with paused_gc():
        return _diff(old, new, scope, listing_views(old, new) if views is None else views)


def _diff(old: NftRuleset, new: NftRuleset, scope: str, views: Views) -> DiffReport:
    report = DiffReport(old.source, new.source)
    report.warnings = _warnings(old) + _warnings(new)
    groups = _Groups()
    kube_tables: set[tuple[str, str]] = set()
    for family, (ov, nv) in views.items():
        nft_family = "ip6" if family == "ipv6" else "ip"
        kube_tables.add((nft_family, TABLE))
        _compare_table(old.tables.get((nft_family, TABLE)), new.tables.get((nft_family, TABLE)),
                       groups, True, (_element_owners(ov), _element_owners(nv)))
    if scope == "all":
        keys = [*old.tables, *(k for k in new.tables if k not in old.tables)]
        for key in keys:
            if key not in kube_tables:
                _compare_table(old.tables.get(key), new.tables.get(key), groups, False, ({}, {}))
    summary = dict.fromkeys(_SUMMARY_KEYS, 0)
    finding_owner: dict[tuple[str, str, str, str], tuple[str, str] | None] = {}
    sides: dict[str, set[tuple[str, str, str, str]]] = {"old": set(), "new": set()}
    for ov, nv in views.values():
        for side, view in (("old", ov), ("new", nv)):
            for kind, where, obj, detail, owner in _findings(view):
                sides[side].add((kind, where, obj, detail))
                finding_owner[(kind, where, obj, detail)] = owner
        ports_old = ov.services if ov is not None else {}
        ports_new = nv.services if nv is not None else {}
        clusters_old = cluster_ips(ov) if ov is not None else set()
        clusters_new = cluster_ips(nv) if nv is not None else set()
        # A port's facts change only with its own chains, sets and elements (grouped under
        # it above), or with the ClusterIPs that tell its addresses' kinds apart.
        everything = clusters_old != clusters_new
        touched = set(ports_old) | set(ports_new)
        for key in sorted(touched if everything else touched & set(groups.services)):
            a, b = ports_old.get(key), ports_new.get(key)
            fa = nft_facts(ov, a, clusters_old) if a is not None and ov is not None else None
            fb = nft_facts(nv, b, clusters_new) if b is not None and nv is not None else None
            changes, counts = fact_changes(fa, fb)
            if not changes and key not in groups.services:
                continue
            g = groups.service(key)
            g.facts = changes + g.facts
            for k, v in counts.items():
                summary[k] += v
            if a is None or b is None:
                g.status = "added" if a is None else "removed"
                g.facts = [f for f in g.facts if not (f.text.startswith(("chain ", "set ", "map "))
                                                      and f.sign in "+-")]
    for kind, where, obj, detail in sorted(sides["old"] ^ sides["new"]):
        side = "old" if (kind, where, obj, detail) in sides["old"] else "new"
        owner = finding_owner.get((kind, where, obj, detail))
        if owner is not None and owner in groups.services:
            groups.services[owner].facts.append(Fact("!", f"{kind} in {side}: {where} {obj} {detail}"))
        else:
            report.findings.append(FindingLine(side, kind, where, obj, detail))
    for found in sorted(sides["old"] & sides["new"]):
        report.findings.append(FindingLine("both", *found))
    for key in sorted(groups.services):
        g = groups.services[key]
        if not g.facts and not g.rules:
            continue
        summary[f"services_{g.status}"] += 1
        report.groups.append(g)
        report.changed_services.append(key)
    report.groups += [g for g in groups.kube.values() if g.facts or g.rules]
    report.groups += [groups.other[t] for t in sorted(groups.other) if groups.other[t].facts or groups.other[t].rules]
    for g in report.groups:
        plus = sum(1 for r in g.rules if r.sign == "+")
        prefix = "other" if g.kind == "other" else "kube"
        summary[f"{prefix}_rules_added"] += plus
        summary[f"{prefix}_rules_removed"] += len(g.rules) - plus
    for side in ("old", "new"):
        summary[f"stale_{side}"] = sum(1 for f in sides[side] if f[0] == "stale")
        summary[f"dangling_{side}"] = sum(1 for f in sides[side] if f[0] == "dangling")
    report.summary = summary
    return report


def _warnings(listing: NftRuleset) -> list[str]:
    """What the lenient parse could not read (kept in place, compared by its text);
    references to chains and sets the listing lacks are findings instead."""
    problems = [p for p in listing.problems if REFERS not in p.message]
    out = [f"{listing.source}:{p.line}: {p.message} (kept as written)" for p in problems[:5]]
    if len(problems) > 5:
        out.append(f"{listing.source}: {len(problems) - 5} more such lines")
    return out
