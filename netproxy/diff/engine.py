"""Put the pieces together: chain diffs grouped by service, service facts compared, findings."""

from __future__ import annotations

from netproxy.diff.chains import ChainDiff, compare
from netproxy.diff.identity import KubeView, analyse
from netproxy.diff.portfacts import POLICY_ROLES, ServiceFacts, port_facts
from netproxy.diff.report import DiffReport, Fact, FindingLine, Group, RuleLine
from netproxy.diff.structure import Finding, findings
from netproxy.gcpause import paused_gc
from netproxy.kubeview.names import FRONTEND_CHAINS, ServiceKey, is_kube_chain
from netproxy.netfilter.model import Rule, Ruleset
from netproxy.render import rule_text

_MAX_WARNINGS = 5
_SAME_SHARE = 1e-6
"""Shares closer than this are the same (saved probabilities are 31-bit fractions)."""
_ROLE_LABEL = {"SVC": "cluster", "SVL": "local", "XLB": "local"}


def _pct(share: float) -> str:
    return f"{share * 100:.2f}%"


def _draw(old: str, new: str) -> str:
    """How the share is drawn, before and after: iptables' ``--probability`` (``rest`` for
    the last rule), or nftables' ``numgen`` entries (``numgen 1/3``)."""
    if old.startswith("numgen") or new.startswith("numgen"):
        return f"{old or 'none'} -> {new or 'none'}"
    return f"probability {old or 'rest'} -> {new or 'rest'}"


def _set_changes(a: set[str], b: set[str], what: str) -> list[Fact]:
    out = [Fact("-", f"{what} {x}") for x in sorted(a - b)]
    out += [Fact("+", f"{what} {x}") for x in sorted(b - a)]
    return out


def fact_changes(a: ServiceFacts | None, b: ServiceFacts | None) -> tuple[list[Fact], dict[str, int]]:
    """What changed between two sets of facts of one service, and endpoint counts."""
    counts = {"endpoints_added": 0, "endpoints_removed": 0, "endpoints_changed": 0}
    fa = a or ServiceFacts()
    fb = b or ServiceFacts()
    out = _set_changes(fa.frontends, fb.frontends, "frontend")
    reported: set[str] = set()
    for role in POLICY_ROLES:
        ea = {e.endpoint: e for e in fa.endpoints.get(role, [])}
        eb = {e.endpoint: e for e in fb.endpoints.get(role, [])}
        label = _ROLE_LABEL[role]
        for ep, e in ea.items():
            if ep not in eb:
                out.append(Fact("-", f"endpoint {ep} ({label}, was {_pct(e.share)})"))
                counts["endpoints_removed"] += 1
                reported.add(ep)
        for ep, e in eb.items():
            if ep not in ea:
                out.append(Fact("+", f"endpoint {ep} ({label}, {_pct(e.share)})"))
                counts["endpoints_added"] += 1
                reported.add(ep)
        for ep, e in ea.items():
            n = eb.get(ep)
            if n is None:
                continue
            if abs(n.share - e.share) > _SAME_SHARE:
                out.append(Fact("~", f"endpoint {ep} ({label}) share {_pct(e.share)} -> {_pct(n.share)} "
                                     f"({_draw(e.probability, n.probability)})"))
                counts["endpoints_changed"] += 1
                reported.add(ep)
            elif n.position != e.position:
                out.append(Fact("=", f"endpoint {ep} ({label}) moved {e.position} -> {n.position}, "
                                     f"share unchanged {_pct(n.share)}"))
    out += _lost_shares(fa, fb)
    for ep in sorted(set(fa.endpoint_notes) | set(fb.endpoint_notes)):
        na, nb = fa.endpoint_notes.get(ep), fb.endpoint_notes.get(ep)
        if na == nb:
            continue
        if na is not None and nb is not None:
            out.append(Fact("~", f"endpoint {ep}: {na} -> {nb}"))
            if ep not in reported:
                counts["endpoints_changed"] += 1
        elif ep not in reported:
            sign = "-" if nb is None else "+"
            out.append(Fact(sign, f"endpoint chain for {ep}: {na or nb}"))
    out += _set_changes(fa.masquerade, fb.masquerade, "masquerade")
    out += _set_changes(fa.source_ranges, fb.source_ranges, "source range")
    for what, va, vb in (("session affinity", fa.affinity, fb.affinity),
                         ("externalTrafficPolicy", fa.external_policy, fb.external_policy),
                         ("internalTrafficPolicy", fa.internal_policy, fb.internal_policy)):
        if va == vb or (a is not None and b is not None and "-" in (va, vb)):
            continue
        if a is None:
            if vb not in ("None", "-"):
                out.append(Fact("+", f"{what} {vb}"))
        elif b is None:
            if va not in ("None", "-"):
                out.append(Fact("-", f"{what} {va}"))
        else:
            out.append(Fact("~", f"{what} {va} -> {vb}"))
    return out, counts


def _lost_shares(fa: ServiceFacts, fb: ServiceFacts) -> list[Fact]:
    """What endpoint rules that jump to a chain without DNAT do to new connections now."""
    out: list[Fact] = []
    for role in POLICY_ROLES:
        broken = [e for e in fb.endpoints.get(role, []) if not e.dnat]
        if not broken:
            continue
        was_broken = {e.endpoint for e in fa.endpoints.get(role, []) if not e.dnat}
        fall_a = fa.delivered(role)[1]
        got_b, fall_b = fb.delivered(role)
        if {e.endpoint for e in broken} == was_broken and abs(fall_a - fall_b) <= _SAME_SHARE:
            continue
        chain = fb.chains.get(role, role)
        label = _ROLE_LABEL[role]
        which = ", ".join(f"{e.chain} ({e.endpoint})" for e in broken)
        if fall_b > _SAME_SHARE:
            out.append(Fact("!", f"{_pct(fall_b)} of new connections ({label}) now fall through {chain} "
                                 f"without DNAT, on to the Service address that nothing answers: "
                                 f"{which} missing or without DNAT"))
        nominal = {e.endpoint: e.share for e in fb.endpoints.get(role, [])}
        moved = [f"{ep} {_pct(share)}" for ep, share in got_b.items()
                 if abs(share - nominal.get(ep, 0.0)) > _SAME_SHARE]
        if moved:
            why = "" if fall_b > _SAME_SHARE else (
                f"; {which} missing or without DNAT, so its draw goes on to the next rule")
            out.append(Fact("!", f"new connections ({label}) now go: {', '.join(moved)}{why}"))
    return out


class _Grouper:
    def __init__(self, old: KubeView, new: KubeView) -> None:
        self.old = old
        self.new = new
        self.family = new.ruleset.family
        self.services: dict[ServiceKey, Group] = {}
        self.kube = Group("kube-proxy", "shared chains")
        self.other: dict[tuple[str, str], Group] = {}
        self.renames = 0

    def _service_group(self, key: ServiceKey) -> Group:
        g = self.services.get(key)
        if g is None:
            g = self.services[key] = Group("service", key.label())
        return g

    def _group_for(self, view: KubeView, table: str, chain: str, rule: Rule | None) -> Group:
        info = view.info(table, chain)
        if info is not None and info.service is not None:
            return self._service_group(info.service)
        if is_kube_chain(chain):
            if rule is not None and chain in FRONTEND_CHAINS:
                key = view.service_of_rule(table, chain, rule)
                if key is not None:
                    return self._service_group(key)
            return self.kube
        if rule is not None and rule.target is not None and is_kube_chain(rule.target.name):
            return self.kube  # a built-in chain's jump into kube-proxy
        g = self.other.get((table, chain))
        if g is None:
            g = self.other[(table, chain)] = Group("other", f"{table} {chain}")
        return g

    def add(self, d: ChainDiff) -> None:
        side_view, side_name = (self.new, d.new) if d.new is not None else (self.old, d.old)
        assert side_name is not None
        home = self._group_for(side_view, d.table, side_name, None)
        if d.renamed:
            self.renames += 1
            home.facts.append(Fact("=", f"chain {d.table} {d.old} renamed to {d.new}"))
        if d.old is None:
            home.facts.append(Fact("+", f"chain {d.table} {d.new} added"))
        elif d.new is None:
            home.facts.append(Fact("-", f"chain {d.table} {d.old} removed"))
        if d.old_policy != d.new_policy and d.old is not None and d.new is not None:
            home.facts.append(Fact("~", f"policy of {d.table} {d.name}: {d.old_policy} -> {d.new_policy}"))
        for rule in d.removed:
            assert d.old is not None
            g = self._group_for(self.old, d.table, d.old, rule)
            g.rules.append(RuleLine("-", d.table, d.old, rule_text(rule, d.old, self.family)))
        for rule in d.added:
            assert d.new is not None
            g = self._group_for(self.new, d.table, d.new, rule)
            g.rules.append(RuleLine("+", d.table, d.new, rule_text(rule, d.new, self.family)))


def _finding_lines(old: list[Finding], new: list[Finding]) -> list[FindingLine]:
    def key(f: Finding) -> tuple[str, str, str, str]:
        return (f.kind, f.table, f.chain, f.detail)
    ko = {key(f) for f in old}
    kn = {key(f) for f in new}
    out = [FindingLine("both", *k) for k in sorted(ko & kn)]
    out += [FindingLine("old", *k) for k in sorted(ko - kn)]
    out += [FindingLine("new", *k) for k in sorted(kn - ko)]
    return out


def diff_rulesets(old: Ruleset, new: Ruleset, *, scope: str = "all",
                  strict_names: bool = False,
                  views: tuple[KubeView, KubeView] | None = None) -> DiffReport:
    """Compare two rulesets by meaning (see :mod:`netproxy.diff`); ``views``: their lazy
    :func:`~netproxy.diff.identity.analyse` views, when the caller keeps them (for the
    behaviour probes, which ask them again)."""
    # The parsed rulesets are millions of objects; the cyclic collector would rescan them
    # again and again while the diff allocates, for no garbage (the diff makes no cycles).
    with paused_gc():
        ov, nv = views if views is not None else (analyse(old), analyse(new))
        return _diff(old, new, ov, nv, scope=scope, strict_names=strict_names)


def _diff(old: Ruleset, new: Ruleset, ov: KubeView, nv: KubeView, *, scope: str,
          strict_names: bool) -> DiffReport:
    grouper = _Grouper(ov, nv)
    diffs = compare(ov, nv, scope)
    for d in diffs:
        grouper.add(d)
    fo, fn = findings(ov), findings(nv)
    if scope == "kube":
        fo = [f for f in fo if is_kube_chain(f.chain)]
        fn = [f for f in fn if is_kube_chain(f.chain)]
    report = DiffReport(old.source, new.source, strict_names=strict_names)
    report.warnings = _warnings(old) + _warnings(new)
    for line in _finding_lines(fo, fn):
        info = (ov if line.side == "old" else nv).info(line.table, line.chain)
        group = grouper.services.get(info.service) if info is not None and info.service else None
        if line.side != "both" and group is not None:
            group.facts.append(Fact("!", f"{line.kind} in {line.side}: {line.table} {line.chain} "
                                         f"{line.detail}"))
        else:
            report.findings.append(line)
    summary = {k: 0 for k in (
        "services_added", "services_removed", "services_changed", "endpoints_added",
        "endpoints_removed", "endpoints_changed", "kube_rules_added", "kube_rules_removed",
        "other_rules_added", "other_rules_removed", "chains_renamed", "stale_old", "stale_new",
        "dangling_old", "dangling_new")}
    for key in sorted(grouper.services):
        g = grouper.services[key]
        a = ov.service(key)
        b = nv.service(key)
        fa = port_facts(old, a) if a is not None else None
        fb = port_facts(new, b) if b is not None else None
        changes, counts = fact_changes(fa, fb)
        g.facts = changes + g.facts
        for k, v in counts.items():
            summary[k] += v
        if a is None or b is None:
            g.status = "added" if a is None else "removed"
            g.facts = [f for f in g.facts if not (f.text.startswith("chain ") and f.sign in "+-")]
        elif not g.rules and all(f.sign == "=" for f in g.facts) and g.facts:
            g.status = "renamed"
        summary[f"services_{g.status}"] = summary.get(f"services_{g.status}", 0) + 1
        report.groups.append(g)
        report.changed_services.append((key.spn, key.protocol))
    if grouper.kube.rules or grouper.kube.facts:
        if not grouper.kube.rules and all(f.sign == "=" for f in grouper.kube.facts):
            grouper.kube.status = "renamed"
        report.groups.append(grouper.kube)
    for where in sorted(grouper.other):
        g = grouper.other[where]
        if not g.rules and not g.facts:
            continue
        if not g.rules and all(f.sign == "=" for f in g.facts):
            g.status = "renamed"
        report.groups.append(g)
    summary.pop("services_renamed", None)
    _count_rules(summary, report.groups)
    summary["chains_renamed"] = grouper.renames
    for side, found in (("old", fo), ("new", fn)):
        summary[f"stale_{side}"] = sum(1 for f in found if f.kind == "stale")
        summary[f"dangling_{side}"] = sum(1 for f in found if f.kind == "dangling")
    report.summary = summary
    return report


def _warnings(ruleset: Ruleset) -> list[str]:
    """The lines the parser kept as written (jumps to missing chains are findings instead)."""
    problems = [p for p in ruleset.problems if "neither a declared chain" not in p.message]
    out = [f"{ruleset.source}:{p.line}: {p.message} (kept as written)" for p in problems[:_MAX_WARNINGS]]
    if len(problems) > _MAX_WARNINGS:
        out.append(f"{ruleset.source}: {len(problems) - _MAX_WARNINGS} more such lines")
    return out


def _count_rules(summary: dict[str, int], groups: list[Group]) -> None:
    for g in groups:
        plus = sum(1 for r in g.rules if r.sign == "+")
        prefix = "other" if g.kind == "other" else "kube"
        summary[f"{prefix}_rules_added"] += plus
        summary[f"{prefix}_rules_removed"] += len(g.rules) - plus
