"""The per-Service-port part of the checklist, the same in both proxy modes: each port's
checks, its walks with the tracer, and its comparison with the cluster's objects."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from netproxy.doctor.report import Finding, NoSuchService, ServiceReport
from netproxy.doctor.walks import WALK_CHECKS
from netproxy.kubeview.comments import matches_selector
from netproxy.kubeview.model import RulesetView, ServicePortView
from netproxy.progress import progress
from netproxy.trace import Tracer

Check = Callable[[RulesetView, ServicePortView], Finding]
Compare = Callable[[ServicePortView], list[Finding]]


def select_ports(view: RulesetView, expected: RulesetView | None, selector: str | None,
                 source: str) -> tuple[list[ServicePortView], list[Finding], Compare | None]:
    """The Service ports of the rules ``selector`` names (all without one) and, given the
    view of what the cluster objects compile to (:mod:`.expected`), those only the cluster
    objects have, the node finding that compares both, and the comparison of one port; a
    selector that names nothing is an error."""
    from netproxy.doctor.expected import compare_node, compare_service, missing_views

    ports = [v for v in view.services.values()
             if selector is None or matches_selector(v.name, selector, v.port_numbers())]
    if expected is None:
        node: list[Finding] = []
        compare: Compare | None = None
    else:
        node = [compare_node(view, expected, selector)]
        ports += missing_views(view, expected, selector)
        compare = partial(compare_service, view, expected)
    if selector is not None and not ports:
        raise NoSuchService(f"no Service port {selector} in the rules"
                            + (" or the cluster objects" if expected is not None else ""),
                            where=source)
    return ports, node, compare


def check_ports(view: RulesetView, ports: list[ServicePortView], checks: Sequence[Check],
                tracer: Tracer | None,
                compare: Compare | None) -> list[ServiceReport]:
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
