"""Audit one node: its rules against what the API state compiles to for it.

This is the work a worker does per node (:func:`audit_node`); everything the nodes share is in
the :class:`AuditContext` it gets once. The steps, cheapest first:

1. read the file, tell its kind (``iptables-save`` dump, nftables ruleset, node snapshot);
2. compile what the node should have (the shared ports come precompiled) and compare the
   kube-proxy chains line by line (:mod:`netproxy.audit.blocks`): equal nodes end here;
3. otherwise parse the dump, diff it by meaning with the compiled rules (``netproxy diff
   --expected``) and run the doctor's rule checks on both, keeping the checks only the node
   fails.

A node that cannot be read or parsed is a finding (status ``error``), never an exception.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from netproxy.audit.blocks import (
    Blocks,
    differing_chains,
    normalised_text,
    same_in_scope,
    split_save,
    to_save_text,
)
from netproxy.audit.expected import FleetModel
from netproxy.audit.findings import Finding, diff_findings, doctor_findings
from netproxy.audit.nodes import NodeInput, classify, read_node_text
from netproxy.errors import NetproxyError
from netproxy.netfilter.model import Ruleset
from netproxy.netfilter.nft import NFT_FAMILY

EQUAL = "equal"
DIFFERENT = "different"
ERROR = "error"
NOT_AUDITED = "not-audited"
STATUSES = (EQUAL, DIFFERENT, ERROR, NOT_AUDITED)

_FATAL = ("cannot read line", "unterminated quote", "has no COMMIT", "was not declared")
"""Parser problems that mean the file is not a whole dump (as ``netproxy diff`` treats them)."""


@dataclass(slots=True)
class AuditContext:
    """What every node's audit shares: built once, shipped to each worker once."""

    model: FleetModel
    doctor: bool = True
    walk: bool = False


@dataclass(slots=True)
class NodeResult:
    node: str
    source: str
    status: str
    mode: str = "iptables"
    """``iptables``, ``nftables``, ``ipvs``, ``none`` (no kube-proxy rules) or ``unknown``."""
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: dict[str, int] | None = None
    """The semantic diff's counts (``netproxy diff --json``'s ``summary``) when it ran."""
    checked: str = ""
    """``lines`` (equal line for line, not parsed) or ``semantic`` (parsed and diffed)."""
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def service_ports(self) -> list[tuple[str, str]]:
        """The Service ports with findings, sorted."""
        return sorted({(f.service, f.protocol) for f in self.findings if f.service})

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node, "source": self.source, "status": self.status, "mode": self.mode,
            "checked": self.checked,
            "service_ports": [f"{s} {p}".rstrip() for s, p in self.service_ports],
            "findings": [f.to_json() for f in self.findings],
            "notes": self.notes, "diff_summary": self.summary,
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeResult:
        return cls(node=data["node"], source=data["source"], status=data["status"],
                   mode=data["mode"], findings=[Finding(**f) for f in data["findings"]],
                   notes=list(data["notes"]), summary=data["diff_summary"],
                   checked=data["checked"], seconds=dict(data["seconds"]))


def _node_finding(kind: str, problem: str, detail: str = "") -> Finding:
    return Finding(kind, "", "", problem, detail or problem)


def _mode_of(text: str) -> str:
    if ":KUBE-IPVS" in text or ":KUBE-LOAD-BALANCER" in text or "--match-set KUBE-CLUSTER-IP" in text:
        return "ipvs"
    if ":KUBE-SERVICES" not in text:
        return "none"
    return "iptables"


def _version_findings(text: str, expected: Blocks) -> list[Finding]:
    out: list[Finding] = []
    if ":KUBE-XLB-" in text:
        out.append(_node_finding("version", "rules of kube-proxy 1.23 or older (KUBE-XLB chains)"))
    filter_table = expected.tables.get("filter")
    if filter_table is not None and "KUBE-PROXY-FIREWALL" in filter_table.policies \
            and ":KUBE-PROXY-FIREWALL" not in text:
        out.append(_node_finding("version", "rules of kube-proxy 1.24 or older "
                                            "(no filter KUBE-PROXY-FIREWALL chain)"))
    return out


def audit_node(ctx: AuditContext, node: NodeInput) -> NodeResult:
    """Audit one node; never raises for a bad node file."""
    start = time.perf_counter()
    cpu = time.process_time()
    result = NodeResult(node.name, node.shown or node.path, EQUAL)
    try:
        _audit(ctx, node, result)
    except NetproxyError as err:
        result.status = ERROR
        result.findings.append(_node_finding("error", str(err)))
    except (OSError, UnicodeError) as err:
        result.status = ERROR
        result.findings.append(_node_finding("unreadable", f"cannot read the node's file: {err}"))
    result.seconds["total"] = time.perf_counter() - start
    result.seconds["cpu"] = time.process_time() - cpu
    return result


def _audit(ctx: AuditContext, node: NodeInput, result: NodeResult) -> None:
    t0 = time.perf_counter()
    got = classify(read_node_text(node.path), node.name)
    result.seconds["read"] = time.perf_counter() - t0
    if got.kind == "snapshot":
        from netproxy.audit.snapshot import iptables_from_snapshot

        got = iptables_from_snapshot(got)
        result.node = got.name
    if got.kind == "nftables":
        _nftables(ctx, result, got.text)
        return
    if got.kind != "iptables":
        result.status = ERROR
        result.mode = "unknown"
        result.findings.append(_node_finding(
            "unreadable", "not an iptables-save dump, nftables ruleset or node snapshot",
            f"{result.source}: {got.what}"))
        return
    text = got.text
    t0 = time.perf_counter()
    settings = ctx.model.settings(result.node)
    if ctx.model.cluster.node(result.node) is None:
        result.notes.append(f"no Node object named {result.node!r} among the inputs: its "
                            "addresses and pod CIDR are unknown")
    expected = ctx.model.expected(settings)
    result.seconds["expected"] = time.perf_counter() - t0
    result.mode = _mode_of(text)
    if result.mode == "ipvs":
        result.status = NOT_AUDITED
        result.findings.append(_node_finding("other-mode", "ipvs mode: not audited",
                                             "kube-proxy's IPVS chains and sets are in the dump"))
        return
    t0 = time.perf_counter()
    same = normalised_text(text) == to_save_text(expected)
    actual = None
    if not same:
        actual = split_save(text)
        same = same_in_scope(expected, actual)
    result.seconds["compare"] = time.perf_counter() - t0
    if same:
        result.checked = "lines"
        result.findings += _other_mode(ctx, "iptables")
        result.status = DIFFERENT if result.findings else EQUAL
        return
    result.checked = "semantic"
    assert actual is not None
    _semantic(ctx, result, text, expected, actual)
    if result.mode == "none" and result.status != ERROR:
        result.findings.insert(0, _node_finding(
            "other-mode", "no kube-proxy iptables rules (kube-proxy not running, or in another mode)"))
    if result.status != ERROR:
        result.findings[:0] = _version_findings(text, expected) + _other_mode(ctx, "iptables")
        result.status = DIFFERENT if result.findings else EQUAL


def _other_mode(ctx: AuditContext, mode: str) -> list[Finding]:
    fleet = ctx.model.mode
    if mode == fleet:
        return []
    return [_node_finding("other-mode", f"{mode} mode while the configuration says {fleet}",
                          f"the node's kube-proxy writes {mode}-mode rules; the configuration "
                          f"(or --proxy-mode) sets {fleet} mode for the fleet")]


def table_block(text: str, family: str, name: str = "kube-proxy") -> str | None:
    """The ``table FAMILY NAME { ... }`` block of an ``nft list`` text, as written."""
    head = f"table {family} {name} {{"
    if text.startswith(head):
        start = 0
    else:
        at = text.find("\n" + head)
        if at < 0:
            return None
        start = at + 1
    end = text.find("\n}\n", start)
    return text[start:end + 3] if end >= 0 else None


def _nftables(ctx: AuditContext, result: NodeResult, text: str) -> None:
    """An nftables-mode node: its kube-proxy table against the one compiled for it."""
    from netproxy.audit.nftcompare import compare_tables
    from netproxy.parser.nftables import parse_nft

    result.mode = "nftables"
    family = NFT_FAMILY[ctx.model.family]
    t0 = time.perf_counter()
    expected_text = ctx.model.nft_text(result.node)
    result.seconds["expected"] = time.perf_counter() - t0
    block = table_block(text, family)
    if block is not None and block == expected_text:
        result.checked = "lines"  # the table as nft lists it, line for line
        result.findings += _other_mode(ctx, "nftables")
        result.status = DIFFERENT if result.findings else EQUAL
        return
    result.checked = "semantic"
    t0 = time.perf_counter()
    ruleset = parse_nft(text, source=result.source)
    result.seconds["parse"] = time.perf_counter() - t0
    table = ruleset.tables.get((family, "kube-proxy"))
    if table is None:
        result.mode = "none"
        result.status = NOT_AUDITED
        result.findings.append(_node_finding(
            "other-mode", f"an nftables ruleset without kube-proxy's {family} table: not audited",
            "for iptables mode give the node's iptables-save output"))
        return
    t0 = time.perf_counter()
    expected = parse_nft(expected_text, source=f"expected (compiled for {result.node})")
    result.seconds["parse_expected"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result.findings += _other_mode(ctx, "nftables") + compare_tables(
        next(iter(expected.tables.values())), table)
    result.seconds["diff"] = time.perf_counter() - t0
    result.status = DIFFERENT if result.findings else EQUAL


def expected_ruleset(expected: Blocks, node: Ruleset, changed: set[tuple[str, str]],
                     source: str, family: str) -> Ruleset:
    """The expected rules as a ruleset: the node's own (parsed) chains where their lines are
    the expected ones, the expected text parsed for the chains in ``changed``."""
    from netproxy.parser import parse_rules

    whole = ("", "") in changed
    pieces: list[str] = []
    for tname, table in expected.tables.items():
        mine = node.tables.get(tname)
        todo = [c for c in table.policies if whole or mine is None or c not in mine.chains
                or (tname, c) in changed]
        if not todo:
            continue
        pieces.append(f"*{tname}")
        pieces += [f":{c} {p} [0:0]" for c, p in table.policies.items()]
        for chain in todo:
            pieces += table.rules.get(chain, ())
        pieces.append("COMMIT")
    parsed = parse_rules("\n".join(pieces) + "\n", source=source, family=family)
    out = Ruleset(family=family, source=source)
    for tname, table in expected.tables.items():
        new = out.table(tname)
        got = parsed.tables.get(tname)
        mine = node.tables.get(tname)
        for chain in table.policies:
            if got is not None and (whole or mine is None or chain not in mine.chains
                                    or (tname, chain) in changed):
                new.chains[chain] = got.chains[chain]
            else:
                assert mine is not None
                new.chains[chain] = mine.chains[chain]
    return out


def _semantic(ctx: AuditContext, result: NodeResult, text: str, expected: Blocks,
              actual: Blocks) -> None:
    from netproxy.diff import diff_rulesets
    from netproxy.parser import parse_rules

    t0 = time.perf_counter()
    ruleset = parse_rules(text, source=result.source)
    result.seconds["parse"] = time.perf_counter() - t0
    for problem in ruleset.problems:
        if any(marker in problem.message for marker in _FATAL):
            result.status = ERROR
            result.findings.append(_node_finding(
                "unreadable", f"not a whole dump: {problem.message}",
                f"{result.source}:{problem.line}: {problem.message}"))
            return
    if not ruleset.tables:
        result.status = ERROR
        result.findings.append(_node_finding("unreadable", "no iptables tables in the dump"))
        return
    t0 = time.perf_counter()
    compiled = expected_ruleset(expected, ruleset, differing_chains(expected, actual),
                                f"expected (compiled for {result.node})", ctx.model.family)
    result.seconds["parse_expected"] = time.perf_counter() - t0
    if ruleset.family != compiled.family:
        result.status = ERROR
        result.findings.append(_node_finding(
            "error", f"the dump is {ruleset.family} but the audit compiles {compiled.family} "
                     "(use --family)"))
        return
    t0 = time.perf_counter()
    report = diff_rulesets(compiled, ruleset, scope="kube")
    result.seconds["diff"] = time.perf_counter() - t0
    result.summary = dict(report.summary)
    result.findings += diff_findings(report)
    if ctx.doctor and not report.text_equivalent:
        from netproxy.audit.focus import focus
        from netproxy.doctor import diagnose

        t0 = time.perf_counter()
        services = {(f.service, f.protocol) for f in result.findings if f.service}
        mine = diagnose(focus(ruleset, services), walk=ctx.walk)
        theirs = diagnose(focus(compiled, services), walk=ctx.walk)
        result.findings += doctor_findings(mine, theirs)
        result.seconds["doctor"] = time.perf_counter() - t0
    result.status = DIFFERENT if result.findings else EQUAL
