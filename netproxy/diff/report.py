"""The diff report: groups of changes by service, findings, a summary; as text or JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from netproxy.textsafe import ESCAPE

GROUP_SIGNS = {"added": "+", "removed": "-", "changed": "~", "renamed": "="}


@dataclass(slots=True)
class RuleLine:
    sign: str
    table: str
    chain: str
    text: str


@dataclass(slots=True)
class Fact:
    sign: str
    """``+`` added, ``-`` removed, ``~`` changed, ``!`` a finding, ``=`` no effect (rename)."""
    text: str


@dataclass(slots=True)
class Group:
    kind: str
    """``service``, ``kube-proxy`` (kube-proxy's shared rules) or ``other`` (other programs)."""
    title: str
    status: str = "changed"
    facts: list[Fact] = field(default_factory=list)
    rules: list[RuleLine] = field(default_factory=list)


@dataclass(slots=True)
class FindingLine:
    side: str
    """``old``, ``new`` or ``both``."""
    kind: str
    table: str
    chain: str
    detail: str


@dataclass(slots=True)
class ProbeLine:
    probe: str
    old: list[str]
    new: list[str]


@dataclass(slots=True)
class DiffReport:
    old: str
    new: str
    groups: list[Group] = field(default_factory=list)
    findings: list[FindingLine] = field(default_factory=list)
    summary: dict[str, int] = field(default_factory=dict)
    behaviour: list[ProbeLine] | None = None
    probes: int = 0
    strict_names: bool = False
    warnings: list[str] = field(default_factory=list)
    changed_services: list[tuple[str, str]] = field(default_factory=list)
    """``(service-port name, protocol)`` of every service group."""
    probe_scope: str = "all"
    """Which frontends the behaviour probes covered: ``all`` or ``changed`` services only."""

    @property
    def text_equivalent(self) -> bool:
        if self.strict_names:
            return not self.groups
        return all(g.status == "renamed" for g in self.groups)

    @property
    def equivalent(self) -> bool:
        """With a behaviour check, the behaviour decides; otherwise the rules do."""
        if self.behaviour is not None:
            return not self.behaviour
        return self.text_equivalent

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["equivalent"] = self.equivalent
        data["text_equivalent"] = self.text_equivalent
        return _escaped(data)


def _escaped(value: Any) -> Any:
    """``value`` with the bytes an old dump held that are not UTF-8 (kept as surrogates)
    spelt ``\\xe9``, as the text report prints them: JSON has no way to carry them."""
    if isinstance(value, str):
        return value if value.isascii() else value.encode("utf-8", ESCAPE).decode("utf-8")
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escaped(v) for v in value]
    return value


def _summary_line(s: dict[str, int]) -> str:
    parts = [
        f"services +{s['services_added']} -{s['services_removed']} ~{s['services_changed']}",
        f"endpoints +{s['endpoints_added']} -{s['endpoints_removed']} ~{s['endpoints_changed']}",
        f"kube-proxy rules +{s['kube_rules_added']} -{s['kube_rules_removed']}",
        f"other rules +{s['other_rules_added']} -{s['other_rules_removed']}",
        f"renamed chains {s['chains_renamed']}",
        f"stale chains {s['stale_old']}/{s['stale_new']}",
        f"dangling jumps {s['dangling_old']}/{s['dangling_new']}",
    ]
    return "summary: " + "; ".join(parts) + " (old/new)"


def render_text(report: DiffReport, *, rules: bool = True) -> str:
    """The human view: one block per service or chain, +/- lines, then the summary."""
    out = [f"--- {report.old}", f"+++ {report.new}"]
    for w in report.warnings:
        out.append(f"warning: {w}")
    for g in report.groups:
        sign = GROUP_SIGNS.get(g.status, "~")
        head = {"service": "service", "kube-proxy": "kube-proxy", "other": "chain"}[g.kind]
        out.append(f"{sign} {head} {g.title}".rstrip())
        for f in g.facts:
            out.append(f"    {f.sign} {f.text}")
        if not rules and g.rules:
            plus = sum(1 for r in g.rules if r.sign == "+")
            out.append(f"    rules +{plus} -{len(g.rules) - plus}")
        if rules and g.rules:
            last = None
            for r in g.rules:
                where = (r.table, r.chain)
                if where != last:
                    out.append(f"    {r.table} {r.chain}:")
                    last = where
                out.append(f"      {r.sign} {r.text}")
    if report.findings:
        out.append("findings:")
        for fl in report.findings:
            out.append(f"    ! {fl.kind} ({fl.side}): {fl.table} {fl.chain}: {fl.detail}")
    if report.behaviour is not None:
        scope = "" if report.probe_scope == "all" else " (frontends of the changed services)"
        if report.behaviour:
            out.append(f"behaviour: {len(report.behaviour)} of {report.probes} probes differ{scope}")
            for p in report.behaviour:
                out.append(f"    ~ {p.probe}")
                out.extend(f"        - {o}" for o in p.old)
                out.extend(f"        + {n}" for n in p.new)
        else:
            out.append(f"behaviour: same outcomes for all {report.probes} probes{scope}")
    out.append(_summary_line(report.summary))
    if report.equivalent:
        verdict = "equivalent"
        if report.groups:
            verdict += " (differences above do not change behaviour)" if report.behaviour is not None \
                else " (only chain names differ)"
    else:
        verdict = "different"
    out.append(verdict)
    return "\n".join(out) + "\n"
