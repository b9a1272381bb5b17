"""Trace the probes through both modes' rules and sort the differences: intended by
kube-proxy (named, with the Services they touch and the setting that avoids them) or
findings. Text and JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netproxy.diff.behaviour import lines, outcomes, same
from netproxy.migrate.expected import EXPECTED, NOTES, classify, endpoint_of
from netproxy.migrate.probes import CLUSTER_IP, POD_HERE, Probe, hairpin_probes
from netproxy.proxy.nodeports import NodePortAddresses
from netproxy.trace import Tracer


@dataclass(slots=True)
class Difference:
    probe: Probe
    old: list[str]
    new: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"service": self.probe.service or None, "frontend": self.probe.frontend,
                "source": self.probe.source, "probe": self.probe.text,
                "iptables": self.old, "nftables": self.new}


@dataclass(slots=True)
class Group:
    key: str
    differences: list[Difference] = field(default_factory=list)
    services: list[str] = field(default_factory=list)

    def add(self, diff: Difference) -> None:
        self.differences.append(diff)
        if diff.probe.service and diff.probe.service not in self.services:
            self.services.append(diff.probe.service)


@dataclass(slots=True)
class MigrationReport:
    old: str
    """What the iptables-mode side is (compiled, or a dump's name)."""
    new: str
    probes: int = 0
    alike: int = 0
    expected: dict[str, Group] = field(default_factory=dict)
    findings: list[Difference] = field(default_factory=list)
    notes: dict[str, list[str]] = field(default_factory=dict)
    """Intended differences probes cannot show (host firewall, INVALID packets): key ->
    affected Services."""
    context: list[str] = field(default_factory=list)
    """What the comparison assumed (node, family, addresses, sources)."""
    family: str = "ipv4"

    @property
    def verdict(self) -> str:
        if self.findings:
            return "findings"
        return "expected" if self.expected else "same"

    @property
    def exit_code(self) -> int:
        return 1 if self.findings else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "iptables": self.old, "nftables": self.new, "family": self.family,
            "verdict": self.verdict,
            "probes": self.probes, "alike": self.alike,
            "expected": [{"key": k, "title": EXPECTED[k].title, "spec": EXPECTED[k].spec,
                          "avoid": EXPECTED[k].avoid, "services": g.services,
                          "differences": [d.to_json() for d in g.differences]}
                         for k, g in self.expected.items()],
            "findings": [d.to_json() for d in self.findings],
            "notes": [{"key": k, "title": NOTES[k].title, "spec": NOTES[k].spec,
                       "avoid": NOTES[k].avoid, "services": services}
                      for k, services in self.notes.items()],
            "context": self.context,
        }


def compare(report: MigrationReport, probes: list[Probe], old: Tracer, new: Tracer, *,
            old_nodeports: NodePortAddresses, new_nodeports: NodePortAddresses,
            local_endpoints: frozenset[str] | None = None) -> None:
    """Trace every probe through ``old`` (iptables mode) and ``new`` (nftables mode). Each
    ClusterIP probe from a pod here is followed by the same from the endpoints it reached, one
    on this node and one elsewhere (``local_endpoints``: this node's; None: not known)."""
    queue = list(probes)
    for probe in queue:
        a = outcomes(old, probe.packet, reasons=False, affinity=probe.affinity)
        b = outcomes(new, probe.packet, reasons=False, affinity=probe.affinity)
        if probe.frontend == CLUSTER_IP and probe.source == POD_HERE:
            reached = {ep for text in (*a, *b) if (ep := endpoint_of(text)) is not None}
            queue += hairpin_probes(probe, reached, local_endpoints)
        report.probes += 1
        if same(a, b):
            report.alike += 1
            continue
        diff = Difference(probe, lines(a), lines(b))
        key = classify(probe, a, b, old_nodeports=old_nodeports, new_nodeports=new_nodeports)
        if key is None:
            report.findings.append(diff)
        else:
            report.expected.setdefault(key, Group(key)).add(diff)


def _services(names: list[str], limit: int = 8) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f" and {len(names) - limit} more"


def render_text(report: MigrationReport, *, examples: int = 2) -> str:
    out = [f"--- iptables mode: {report.old}", f"+++ nftables mode: {report.new}"]
    out += [f"# {line}" for line in report.context]
    expected = sum(len(g.differences) for g in report.expected.values())
    for key, group in report.expected.items():
        e = EXPECTED[key]
        out.append(f"expected: {e.title} ({e.spec}; {len(group.differences)} probes)")
        if group.services:
            out.append(f"    services: {_services(group.services)}")
        out.append(f"    avoid: {e.avoid}")
        for d in group.differences[:examples]:
            out.append(f"    e.g. {d.probe.text}: iptables {'; '.join(d.old)} -> nftables "
                       f"{'; '.join(d.new)}")
    for key, services in report.notes.items():
        n = NOTES[key]
        out.append(f"expected, not probed: {n.title} ({n.spec})")
        if services:
            out.append(f"    services: {_services(services)}")
        out.append(f"    avoid: {n.avoid}")
    for d in report.findings:
        out.append(f"! finding: {d.probe.service or '(no Service)'}: {d.probe.text}")
        out += [f"    iptables: {line}" for line in d.old or ["(no outcome)"]]
        out += [f"    nftables: {line}" for line in d.new or ["(no outcome)"]]
    out.append(f"summary: {report.probes} probes, {report.alike} alike, {expected} expected "
               f"differences in {len(report.expected)} groups, {len(report.findings)} findings")
    out.append({"same": "same behaviour in both modes",
                "expected": "only the differences kube-proxy intends",
                "findings": "findings: behaviour kube-proxy's migration notes do not explain"}
               [report.verdict])
    return "\n".join(out) + "\n"
