"""The Service checklist: recover Services from a ruleset and judge each one.

``diagnose(ruleset)`` runs the node checks and, for every Service port found by kube-proxy's
comments and chain structure, the Service checks; given the ruleset compiled from the
cluster's objects it also compares the two (see :mod:`.expected`, the same for both modes). A node in kube-proxy's
nftables mode is checked by :func:`netproxy.doctor.nftables.diagnose_nft` (checks in
:mod:`.nftchecks`, the same walks).
"""

from __future__ import annotations

from collections.abc import Sequence

from netproxy.doctor.checks import NODE_CHECKS, SERVICE_CHECKS
from netproxy.doctor.ports import check_ports, select_ports
from netproxy.doctor.report import Finding, Report
from netproxy.kubeview import build_view
from netproxy.kubeview.model import RulesetView
from netproxy.kubeview.names import chain_hash
from netproxy.netfilter.model import Ruleset
from netproxy.trace import Tracer

__all__ = ["Finding", "Report", "build_view", "diagnose"]


def _name_leftovers(view: RulesetView, expected: RulesetView) -> None:
    """Name left-over chains the dump does not name by the hashes of the cluster's Service ports."""
    names: dict[str, tuple[str, str]] = {}
    for svc in expected.services.values():
        for chain in svc.chains.values():
            names.setdefault(chain_hash(chain), (svc.name, svc.protocol))
    for svc in view.leftovers:
        if svc.name.startswith("<unknown") and svc.hash in names:
            svc.name, svc.protocol = names[svc.hash]


def diagnose(ruleset: Ruleset, *, service: str | None = None, expected: Ruleset | None = None,
             walk: bool = True, local_ips: Sequence[str] = (), pod_cidrs: Sequence[str] = (),
             pod_interface: str | None = None) -> Report:
    """Run the checklist over ``ruleset``; ``expected`` is what the cluster objects compile to.

    ``walk=False`` leaves out the traced checks (they cost a few walks per Service port);
    ``local_ips`` are the node's addresses, for walks to its node ports and from the node;
    ``pod_cidrs`` (``--cluster-cidr``) replace the pod CIDRs read from the masquerade rules,
    ``pod_interface`` the interface pod traffic is traced arriving on.
    """
    view = build_view(ruleset)
    if pod_cidrs:
        view.pod_cidrs = list(pod_cidrs)
    if pod_interface:
        view.pod_interface = pod_interface
    expected_view: RulesetView | None = build_view(expected) if expected is not None else None
    if expected_view is not None:
        _name_leftovers(view, expected_view)
        if view.mode == "ipvs":
            # IPVS holds the Services; the compiled iptables rules are nothing to compare with.
            expected_view = None
    node: list[Finding] = [f for f in (check(view) for check in NODE_CHECKS) if f is not None]
    ports, compared, compare = select_ports(view, expected_view, service, ruleset.source)
    tracer = Tracer(ruleset, local_ips=local_ips) if walk else None
    reports = check_ports(view, ports, SERVICE_CHECKS, tracer, compare)
    return Report(ruleset.source, ruleset.family, node + compared, reports)
