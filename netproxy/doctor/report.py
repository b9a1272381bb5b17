"""Findings of the doctor and how they are printed (text for people, JSON for scripts)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from netproxy.doctor.view import RuleRef
from netproxy.render import rule_text

PASSED = "passed"
FAILED = "failed"
NOT_APPLICABLE = "not applicable"
STATUSES = (PASSED, FAILED, NOT_APPLICABLE)

MAX_TEXT_RULES = {"passed": 3, "failed": 12, "not applicable": 3}
"""Rule lines quoted per check in text output, by status (JSON always has all of them)."""


@dataclass(slots=True)
class Finding:
    """The answer to one checklist question."""

    check: str
    question: str
    status: str
    summary: str
    meaning: str
    """What a failure means and what usually causes it (one sentence)."""
    rules: list[RuleRef] = field(default_factory=list)
    details: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ServiceReport:
    name: str
    protocol: str
    findings: list[Finding]

    @property
    def status(self) -> str:
        return overall(self.findings)


@dataclass(slots=True)
class Report:
    source: str
    family: str
    node: list[Finding]
    services: list[ServiceReport]
    notes: list[str] = field(default_factory=list)

    def findings(self) -> list[Finding]:
        return self.node + [f for s in self.services for f in s.findings]

    @property
    def status(self) -> str:
        return overall(self.findings())

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for f in self.findings():
            counts[f.status] += 1
        return counts

    @property
    def exit_code(self) -> int:
        return 1 if self.status == FAILED else 0


def overall(findings: list[Finding]) -> str:
    if any(f.status == FAILED for f in findings):
        return FAILED
    if any(f.status == PASSED for f in findings):
        return PASSED
    return NOT_APPLICABLE


def _rule_line(ref: RuleRef, family: str) -> str:
    return rule_text(ref.rule, ref.chain, family)


def _rule_json(ref: RuleRef, family: str) -> dict[str, Any]:
    return {"table": ref.table, "chain": ref.chain, "line": ref.rule.line or None,
            "text": _rule_line(ref, family)}


def _finding_json(f: Finding, family: str) -> dict[str, Any]:
    return {
        "check": f.check,
        "question": f.question,
        "status": f.status,
        "summary": f.summary,
        "details": f.details,
        "meaning": f.meaning,
        "rules": [_rule_json(r, family) for r in f.rules],
    }


def to_json(report: Report) -> str:
    data = {
        "source": report.source,
        "family": report.family,
        "status": report.status,
        "counts": report.counts(),
        "notes": report.notes,
        "node": [_finding_json(f, report.family) for f in report.node],
        "services": [
            {
                "service": s.name,
                "protocol": s.protocol,
                "status": s.status,
                "checks": [_finding_json(f, report.family) for f in s.findings],
            }
            for s in report.services
        ],
    }
    return json.dumps(data, indent=2) + "\n"


_MARK = {PASSED: "pass", FAILED: "FAIL", NOT_APPLICABLE: "n/a "}


def _finding_text(f: Finding, family: str, out: list[str], brief: bool) -> None:
    out.append(f"  [{_MARK[f.status]}] {f.check:<21} {f.summary}")
    if brief and f.status != FAILED:
        return
    for line in f.details:
        out.append(f"         - {line}")
    if f.status == FAILED:
        out.append(f"         why: {f.meaning}")
    limit = MAX_TEXT_RULES[f.status]
    for ref in f.rules[:limit]:
        where = f"{ref.table}:{ref.rule.line}" if ref.rule.line else ref.table
        out.append(f"         {where:<9} {_rule_line(ref, family)}")
    if len(f.rules) > limit:
        out.append(f"         ... {len(f.rules) - limit} more rule(s) (see --json)")


def to_text(report: Report, *, brief: bool = False) -> str:
    """The report for people; ``brief`` quotes rules and reasons only for failed checks."""
    out: list[str] = []
    counts = report.counts()
    out.append(
        f"netproxy doctor: {report.source} ({report.family}), {len(report.services)} Service port(s): "
        f"{counts[PASSED]} passed, {counts[FAILED]} failed, {counts[NOT_APPLICABLE]} not applicable"
    )
    for note in report.notes:
        out.append(f"note: {note}")
    out.append("")
    out.append("node")
    for f in report.node:
        _finding_text(f, report.family, out, brief)
    for s in report.services:
        out.append("")
        out.append(f"{s.name} ({s.protocol}): {s.status}")
        for f in s.findings:
            _finding_text(f, report.family, out, brief)
    return "\n".join(out) + "\n"
