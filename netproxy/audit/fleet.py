"""The fleet roll-up: per Service port what is wrong on how many nodes, stuck nodes, nodes in
another mode or on another kube-proxy version."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from netproxy.audit.findings import Finding
from netproxy.audit.node import DIFFERENT, EQUAL, ERROR, NOT_AUDITED, STATUSES, NodeResult

SCHEMA = "netproxy-audit/1"


@dataclass(slots=True)
class ServiceProblem:
    service: str
    protocol: str
    kind: str
    problem: str
    nodes: list[str] = field(default_factory=list)

    def to_json(self, total: int) -> dict[str, Any]:
        return {"service": self.service, "protocol": self.protocol, "kind": self.kind,
                "problem": self.problem, "count": len(self.nodes), "of": total,
                "nodes": self.nodes}


@dataclass(slots=True)
class Fleet:
    nodes: list[NodeResult]
    service_ports: int
    stuck_threshold: int
    inputs: list[str] = field(default_factory=list)
    engine: dict[str, Any] = field(default_factory=dict)
    elapsed: float = 0.0
    problems: list[ServiceProblem] = field(default_factory=list)
    node_problems: list[ServiceProblem] = field(default_factory=list)
    """Problems of a node as a whole (shared chains, unreadable files, other modes)."""
    stuck: list[NodeResult] = field(default_factory=list)
    other: list[NodeResult] = field(default_factory=list)
    """Nodes in another proxy mode or with rules of another kube-proxy version."""

    def counts(self) -> dict[str, int]:
        c = Counter(n.status for n in self.nodes)
        return {s: c.get(s, 0) for s in STATUSES}

    @property
    def status(self) -> str:
        counts = self.counts()
        if counts[ERROR]:
            return ERROR if counts[ERROR] == len(self.nodes) else DIFFERENT
        return EQUAL if counts[EQUAL] == len(self.nodes) else DIFFERENT

    @property
    def exit_code(self) -> int:
        return 0 if all(n.status == EQUAL for n in self.nodes) else 1


def roll_up(results: list[NodeResult], service_ports: int, stuck_threshold: int) -> Fleet:
    """Group the nodes' findings the way an operator reads a fleet."""
    fleet = Fleet(sorted(results, key=lambda r: (r.node, r.source)), service_ports, stuck_threshold)
    sources: dict[str, list[str]] = {}
    for r in fleet.nodes:
        sources.setdefault(r.node, []).append(r.source)
    for r in fleet.nodes:
        if len(sources[r.node]) > 1:  # a snapshot naming a node another file is named after
            r.status = ERROR
            r.findings.insert(0, Finding("error", "", "", "more than one file for this node",
                                         "files: " + ", ".join(sources[r.node])))
    by_problem: dict[tuple[str, str, str], ServiceProblem] = {}
    by_node_problem: dict[str, ServiceProblem] = {}
    for r in fleet.nodes:
        for f in r.findings:
            if f.service:
                key = (f.service, f.protocol, f.problem)
                sp = by_problem.get(key)
                if sp is None:
                    sp = by_problem[key] = ServiceProblem(f.service, f.protocol, f.kind, f.problem)
                if not sp.nodes or sp.nodes[-1] != r.node:
                    sp.nodes.append(r.node)
            else:
                np_ = by_node_problem.get(f.problem)
                if np_ is None:
                    np_ = by_node_problem[f.problem] = ServiceProblem("", "", f.kind, f.problem)
                if not np_.nodes or np_.nodes[-1] != r.node:
                    np_.nodes.append(r.node)
        if r.status == DIFFERENT and len(r.service_ports) >= stuck_threshold:
            fleet.stuck.append(r)
        other_mode = r.mode != "iptables" and r.status != ERROR
        if r.status == NOT_AUDITED or other_mode \
                or any(f.kind in ("version", "other-mode") for f in r.findings):
            fleet.other.append(r)
    fleet.problems = sorted(by_problem.values(),
                            key=lambda p: (-len(p.nodes), p.service, p.protocol, p.problem))
    fleet.node_problems = sorted(by_node_problem.values(), key=lambda p: (-len(p.nodes), p.problem))
    return fleet


def to_json(fleet: Fleet) -> dict[str, Any]:
    total = len(fleet.nodes)
    return {
        "schema": SCHEMA,
        "status": fleet.status,
        "inputs": fleet.inputs,
        "service_ports": fleet.service_ports,
        "counts": {"nodes": total, **fleet.counts()},
        "services": [p.to_json(total) for p in fleet.problems],
        "node_problems": [p.to_json(total) for p in fleet.node_problems],
        "stuck": {"threshold": fleet.stuck_threshold,
                  "nodes": [{"node": r.node, "service_ports": len(r.service_ports)}
                            for r in fleet.stuck]},
        "other_mode_or_version": [
            {"node": r.node, "mode": r.mode,
             "findings": [f.problem for f in r.findings if f.kind in ("version", "other-mode")]}
            for r in fleet.other],
        "engine": fleet.engine,
        "elapsed_seconds": round(fleet.elapsed, 3),
        "nodes": [r.to_json() for r in fleet.nodes],
    }
