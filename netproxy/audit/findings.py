"""One node's differences in the words an operator groups a fleet by.

The semantic diff (:mod:`netproxy.diff`) reports facts per Service port (``- endpoint
10.244.3.10:8080 (cluster, was 33.33%)``); the doctor reports failed checks. Here each becomes
a :class:`Finding` with a *problem*: the part that is the same on every node where the same
thing is wrong ("lost endpoint 10.244.3.10:8080 (cluster)"), which the fleet roll-up counts,
and the node's own *detail* (the fact as the diff printed it).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from netproxy.diff.report import DiffReport, Group
from netproxy.doctor.report import FAILED, Report

KINDS = ("endpoint-missing", "endpoint-extra", "share", "endpoint-chain", "frontend",
         "masquerade", "source-range", "policy", "service-missing", "service-extra",
         "stale-chain", "dangling-jump", "rules", "shared-chains", "doctor", "unreadable",
         "other-mode", "version", "error")
"""Every finding kind (docs/audit.md lists what each means)."""


@dataclass(slots=True)
class Finding:
    kind: str
    service: str
    """``namespace/name:port`` (``""`` for the node as a whole)."""
    protocol: str
    problem: str
    """What is wrong, the same text on every node where it is wrong (the roll-up key)."""
    detail: str
    """This node's fact, as ``netproxy diff`` / ``doctor`` print it."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_ENDPOINT = re.compile(r"endpoint (\S+) \((cluster|local)")
_SHARE = re.compile(r"endpoint (\S+) \((cluster|local)\) share ")
_CHAIN = re.compile(r"chain (\w+) (\S+) (added|removed)$")


def _split_title(title: str) -> tuple[str, str]:
    service, _, protocol = title.rpartition(" ")
    if protocol in ("tcp", "udp", "sctp"):
        return service, protocol
    return title, ""


def _fact_finding(sign: str, text: str, service: str, protocol: str) -> Finding | None:
    def f(kind: str, problem: str) -> Finding:
        return Finding(kind, service, protocol, problem, f"{sign} {text}")

    if sign == "=":
        return None  # renamed chains, endpoints moved without a change of share: no effect
    if sign == "!":
        if text.startswith("stale in new:"):
            return f("stale-chain", "stale chain (nothing jumps to it)")
        if text.startswith("dangling in new:"):
            return f("dangling-jump", "jump to a missing chain")
        return None  # a finding of the expected rules themselves
    if text.startswith("endpoint chain for "):
        what = "extra" if sign == "+" else "missing"
        ep = text[len("endpoint chain for "):].split(":", 2)
        return f("endpoint-chain", f"{what} endpoint chain for {ep[0]}:{ep[1]}"
                 if len(ep) > 2 else f"{what} endpoint chain")
    m = _SHARE.match(text)
    if m and sign == "~":
        return f("share", f"wrong endpoint shares ({m.group(2)})")
    m = _ENDPOINT.match(text)
    if m and sign == "-":
        return f("endpoint-missing", f"lost endpoint {m.group(1)} ({m.group(2)})")
    if m and sign == "+":
        return f("endpoint-extra", f"extra endpoint {m.group(1)} ({m.group(2)})")
    if text.startswith("endpoint ") and sign == "~":
        return f("endpoint-chain", f"endpoint chain of {text.split()[1].rstrip(':')} differs")
    for prefix, kind in (("frontend ", "frontend"), ("masquerade ", "masquerade"),
                         ("source range ", "source-range")):
        if text.startswith(prefix):
            what = {"+": "extra", "-": "missing"}.get(sign, "changed")
            return f(kind, f"{what} {text}")
    for prefix in ("session affinity ", "externalTrafficPolicy ", "internalTrafficPolicy ",
                   "policy of "):
        if text.startswith(prefix):
            return f("policy", f"{sign} {text}")
    if _CHAIN.match(text):
        return None  # the facts about what the chain holds say it better
    return f("rules", f"{sign} {text}")


def _group_findings(g: Group) -> list[Finding]:
    if g.kind == "service":
        service, protocol = _split_title(g.title)
    else:
        service, protocol = "", ""
    if g.status == "renamed":
        return []
    if g.kind == "service" and g.status == "removed":
        return [Finding("service-missing", service, protocol,
                        "Service port missing from the node's rules", "- service " + g.title)]
    if g.kind == "service" and g.status == "added":
        return [Finding("service-extra", service, protocol,
                        "Service port the API state does not have (left over)",
                        "+ service " + g.title)]
    out: list[Finding] = []
    for fact in g.facts:
        found = _fact_finding(fact.sign, fact.text, service, protocol)
        if found is not None:
            out.append(found)
    # Shares follow from the endpoint count: with endpoints lost or added, the other
    # endpoints' new shares are part of the same problem.
    if any(f.kind in ("endpoint-missing", "endpoint-extra") for f in out):
        out = [f for f in out if f.kind != "share"]
    if not out and g.rules:
        plus = sum(1 for r in g.rules if r.sign == "+")
        if g.kind == "service":
            out.append(Finding("rules", service, protocol, "rules differ",
                               f"rules +{plus} -{len(g.rules) - plus}"))
        else:
            kind = "shared-chains" if g.kind == "kube-proxy" else "rules"
            out.append(Finding(kind, "", "", f"{g.title}: rules differ",
                               f"{g.title}: rules +{plus} -{len(g.rules) - plus}"))
    return out


def diff_findings(report: DiffReport) -> list[Finding]:
    """The findings of ``netproxy diff --expected`` (expected = old side, node = new side)."""
    out: list[Finding] = []
    for g in report.groups:
        out += _group_findings(g)
    for line in report.findings:
        if line.side == "old":
            continue  # the compiled rules' own, not the node's
        kind = "stale-chain" if line.kind == "stale" else "dangling-jump"
        problem = ("stale chain (nothing jumps to it)" if kind == "stale-chain"
                   else "jump to a missing chain")
        out.append(Finding(kind, "", "", f"{problem}: {line.table} {line.chain}",
                           f"! {line.kind}: {line.table} {line.chain}: {line.detail}"))
    return out


def doctor_findings(node: Report, expected: Report) -> list[Finding]:
    """Checks the node fails and the rules compiled for it pass: what the doctor adds.

    A check that fails on the compiled rules too (a Service without endpoints, a Local policy
    with no endpoint on this node) is the API state's doing, not the node's.
    """
    baseline = {("", f.check) for f in expected.node if f.status == FAILED}
    for s in expected.services:
        baseline.update((s.name, f.check) for f in s.findings if f.status == FAILED)
    out: list[Finding] = []
    for f in node.node:
        if f.status == FAILED and ("", f.check) not in baseline:
            out.append(Finding("doctor", "", "", f"doctor {f.check}: {f.summary}",
                               f"[FAIL] {f.check} {f.summary}"))
    for s in node.services:
        service, protocol = s.name, s.protocol
        for f in s.findings:
            if f.status == FAILED and (s.name, f.check) not in baseline:
                out.append(Finding("doctor", service, protocol, f"doctor {f.check} fails",
                                   f"[FAIL] {f.check} {f.summary}"))
    return out
