"""The per-Service-port part of the checklist, the same in both proxy modes: each port's
checks, its walks with the tracer, and its comparison with the cluster's objects."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from netproxy.doctor.report import Finding, ServiceReport
from netproxy.doctor.walks import WALK_CHECKS
from netproxy.kubeview.model import RulesetView, ServicePortView
from netproxy.progress import progress
from netproxy.trace import Tracer

Check = Callable[[RulesetView, ServicePortView], Finding]


def check_ports(view: RulesetView, ports: list[ServicePortView], checks: Sequence[Check],
                tracer: Tracer | None,
                compare: Callable[[ServicePortView], list[Finding]] | None) -> list[ServiceReport]:
    """A report for each of ``ports`` (in key order): ``checks``, then the walks when a
    ``tracer`` is given, then ``compare`` (with the expected Service port) when given."""
    reports = []
    todo = sorted(ports, key=lambda v: v.key)
    with progress("checking Service ports", len(todo), unit="Service ports") as bar:
        for svc in todo:
            findings = [check(view, svc) for check in checks]
            if tracer is not None:
                findings += [walk_check(view, svc, tracer) for walk_check in WALK_CHECKS]
            if compare is not None:
                findings += compare(svc)
            reports.append(ServiceReport(svc.name, svc.protocol, findings))
            bar.advance()
    return reports
