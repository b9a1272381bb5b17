"""Findings of the doctor and how they are printed (text for people, JSON for scripts)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from netproxy.errors import InputError
from netproxy.kubeview.model import NftRef, Ref, RuleRef
from netproxy.render import rule_text

PASSED = "passed"
FAILED = "failed"
WARNING = "warning"
"""Something looks wrong but may be right, or the dump does not let the check decide."""
INFO = "info"
"""Worth knowing, not a problem: a choice of the cluster's (a Local policy without a local
endpoint here, a Service without endpoints answered by kube-proxy's REJECT), or a node in
another proxy mode."""
NOT_APPLICABLE = "not applicable"
STATUSES = (PASSED, FAILED, WARNING, INFO, NOT_APPLICABLE)
PROBLEMS = (FAILED, WARNING)
"""Statuses ``--failed-only`` reports; only FAILED makes the exit code 1."""

MAX_TEXT_RULES = {PASSED: 3, FAILED: 12, WARNING: 12, INFO: 6, NOT_APPLICABLE: 3}
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
    rules: list[Ref] = field(default_factory=list)
    details: list[str] = field(default_factory=list)


class NoSuchService(InputError):
    """``--service`` names no Service port of the rules checked (nor of the cluster)."""


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
    """The worst status: failed, then warning, then passed (info counts as passed)."""
    statuses = {f.status for f in findings}
    for status in (FAILED, WARNING):
        if status in statuses:
            return status
    if statuses & {PASSED, INFO}:
        return PASSED
    return NOT_APPLICABLE


def _rule_line(ref: Ref, family: str) -> str:
    if isinstance(ref, RuleRef):
        return rule_text(ref.rule, ref.chain, family)
    return f"chain {ref.chain}: {ref.text}" if ref.chain is not None else ref.text


def _rule_json(ref: Ref, family: str) -> dict[str, Any]:
    data: dict[str, Any] = {"table": ref.table, "chain": ref.chain, "line": ref.line or None,
                            "text": _rule_line(ref, family)}
    if isinstance(ref, NftRef):
        # nftables: the table's family, and the rule's handle or the element's set.
        data["family"] = ref.family
        data["text"] = ref.text
        if ref.handle is not None:
            data["handle"] = ref.handle
        if ref.set is not None:
            data["set"] = ref.set
        if ref.column is not None:
            data["column"] = ref.column  # an element, among others on its line
    if ref.counters is not None:
        data["packets"], data["bytes"] = ref.counters
    return data


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
    return json.dumps(to_data(report), indent=2) + "\n"


def to_json_families(reports: list[Report]) -> str:
    """Several families' reports of one ruleset (kube-proxy's ``ip`` and ``ip6`` tables):
    the worst status, and each family's report as :func:`to_json` gives it."""
    data = {
        "source": reports[0].source,
        "status": overall([f for r in reports for f in r.findings()]),
        "families": {r.family: to_data(r) for r in reports},
    }
    return json.dumps(data, indent=2) + "\n"


def to_data(report: Report) -> dict[str, Any]:
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
    return data


_MARK = {PASSED: "pass", FAILED: "FAIL", WARNING: "warn", INFO: "info", NOT_APPLICABLE: "n/a "}


def _finding_text(f: Finding, family: str, out: list[str], brief: bool) -> None:
    if brief and f.status == NOT_APPLICABLE:
        return
    out.append(f"  [{_MARK[f.status]}] {f.check:<21} {f.summary}")
    if brief and f.status not in PROBLEMS:
        return
    for line in f.details:
        out.append(f"         - {line}")
    if f.status in PROBLEMS:
        out.append(f"         why: {f.meaning}")
    limit = MAX_TEXT_RULES[f.status]
    # The last rules of a problem's path are where it was decided: always quote them.
    tail = 2 if f.status in PROBLEMS and len(f.rules) > limit else 0
    for ref in f.rules[:limit - tail]:
        out.append(_quoted(ref, family))
    if len(f.rules) > limit:
        out.append(f"         ... {len(f.rules) - limit} more rule(s) (see --json)")
    out += [_quoted(ref, family) for ref in f.rules[len(f.rules) - tail:]] if tail else []


def _quoted(ref: Ref, family: str) -> str:
    where = f"{ref.where}:{ref.line}" if ref.line else ref.where
    if isinstance(ref, NftRef) and ref.line and ref.column is not None:
        where += f":{ref.column}"
    return f"         {where:<9} {_rule_line(ref, family)}"


def _counts_text(counts: dict[str, int]) -> str:
    parts = [f"{counts[PASSED]} passed", f"{counts[FAILED]} failed"]
    if counts[WARNING]:
        parts.append(f"{counts[WARNING]} warning(s)")
    if counts[INFO]:
        parts.append(f"{counts[INFO]} info")
    parts.append(f"{counts[NOT_APPLICABLE]} not applicable")
    return ", ".join(parts)


def _problem_line(label: str, findings: list[Finding]) -> str | None:
    """``label: failed: check: summary [+N more: ...]``, or None when nothing is wrong."""
    problems = [f for f in findings if f.status == FAILED] + [f for f in findings if f.status == WARNING]
    if not problems:
        return None
    first = problems[0]
    line = f"{label}: {overall(findings)}: {first.check}: {first.summary}"
    if len(problems) > 1:
        line += f" [+{len(problems) - 1} more: {', '.join(f.check for f in problems[1:])}]"
    return line


def to_failed_only(report: Report, *, prefix: str = "") -> str:
    """One line per Service port (and one for the node) with a failed or warning check;
    ``prefix`` starts each line (the family, when several are checked)."""
    lines = [_problem_line("node", report.node)]
    lines += [_problem_line(f"{s.name} ({s.protocol})", s.findings) for s in report.services]
    return "".join(prefix + line + "\n" for line in lines if line is not None)


def to_text(report: Report, *, brief: bool = False) -> str:
    """The report for people; ``brief`` leaves out checks that do not apply and quotes rules
    and reasons only for failed checks and warnings."""
    out: list[str] = []
    out.append(
        f"netproxy doctor: {report.source} ({report.family}), {len(report.services)} Service port(s): "
        + _counts_text(report.counts())
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
