"""The checklist on a node in kube-proxy's nftables mode.

``diagnose_nft(listing)`` reads kube-proxy's table (:func:`~netproxy.kubeview.build_nft_view`),
runs the node and Service checks of :mod:`.nftchecks`, and walks connections with the tracer
through the whole listing -- other tables of the listing and the node's iptables rules
included, when given -- as the iptables doctor does (:mod:`.walks`). Given the listing
compiled from the cluster's objects it also compares what each Service port means in both
(frontends, endpoint shares, affinity, no-endpoint answers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from netproxy.doctor.checks import QUESTIONS as IPTABLES_QUESTIONS
from netproxy.doctor.nftchecks import SERVICE_CHECKS, node_checks
from netproxy.doctor.ports import check_ports
from netproxy.doctor.report import FAILED, PASSED, Finding, Report
from netproxy.errors import InputError
from netproxy.kubeview.comments import matches_selector
from netproxy.kubeview.model import RulesetView, ServicePortView
from netproxy.kubeview.nftables import FAMILIES, TABLE, build_nft_view, kube_proxy_families
from netproxy.kubeview.reading import reading
from netproxy.netfilter.model import Ruleset
from netproxy.netfilter.nft import NftRuleset
from netproxy.trace import Tracer


def diagnose_nft(listing: NftRuleset, *, family: str | None = None, iptables: Ruleset | None = None,
                 service: str | None = None, expected: NftRuleset | None = None, walk: bool = True,
                 local_ips: Sequence[str] = (), pod_cidrs: Sequence[str] = (),
                 pod_interface: str | None = None, ipsets: dict[str, Any] | None = None) -> Report:
    """Run the checklist over kube-proxy's ``family`` table in ``listing`` (default: the
    first it holds); ``iptables``: the node's iptables rules, walked with the listing;
    ``expected``: the listing the cluster objects compile to (nftables mode); ``ipsets``: the
    node's ipsets (a snapshot's), for iptables rules that match them."""
    families = kube_proxy_families(listing)
    if not families:
        raise InputError(f"no table ip {TABLE} or ip6 {TABLE} in the listing: kube-proxy's nftables "
                         "mode is not on this node (its iptables mode shows in iptables-save; "
                         "netproxy trace reads any nft listing)", where=listing.source)
    if family is not None and family not in families:
        raise InputError(f"the listing has no table {FAMILIES[family]} {TABLE}", where="--family")
    family = family or families[0]
    if iptables is not None and iptables.family != family:
        iptables = None
    view = build_nft_view(listing, family, iptables=iptables)
    if pod_cidrs:
        view.pod_cidrs = list(pod_cidrs)
    if pod_interface:
        view.pod_interface = pod_interface
    node: list[Finding] = [f for f in (check(view) for check in node_checks(local_ips)) if f is not None]
    selected = [v for v in view.services.values()
                if service is None or matches_selector(v.name, service, v.port_numbers())]
    expected_view = build_nft_view(expected, family) if expected is not None else None
    extra: list[ServicePortView] = []
    if expected_view is not None:
        node.append(_compare_node(view, expected_view, service))
        extra = [ServicePortView(v.name, v.protocol, only_expected=True)
                 for key, v in expected_view.services.items() if key not in view.services
                 and (service is None or matches_selector(v.name, service, v.port_numbers()))]
    if service is not None and not selected and not extra:
        raise InputError(f"no Service port {service} in the rules"
                         + (" or the cluster objects" if expected is not None else ""),
                         where=listing.source)
    tracer = Tracer(view.ruleset, local_ips=local_ips, nft=[listing], ipsets=ipsets) if walk else None

    def compare(svc: ServicePortView) -> list[Finding]:
        assert expected_view is not None
        return [_compare_service(svc, expected_view.services.get(svc.key))]

    reports = check_ports(view, selected + extra, SERVICE_CHECKS, tracer,
                          compare if expected_view is not None else None)
    notes = []
    if len(families) > 1:
        other = [f for f in families if f != family]
        notes.append(f"the listing also holds kube-proxy's {', '.join(other)} table: give --family "
                     f"{other[0]} to check it")
    return Report(listing.source, family, node, reports, notes)


def _compare_node(view: RulesetView, expected: RulesetView, service: str | None) -> Finding:
    question, meaning = IPTABLES_QUESTIONS["cluster-services"]
    want = {k for k, v in expected.services.items()
            if service is None or matches_selector(v.name, service, v.port_numbers())}
    have = {k for k, v in view.services.items()
            if service is None or matches_selector(v.name, service, v.port_numbers())}
    missing = sorted(want - have)
    stale = sorted(have - want)
    details = [f"not in the rules: {n} {p}" for n, p in missing] + [f"not in the cluster objects: {n} {p}"
                                                                     for n, p in stale]
    if details:
        return Finding("cluster-services", question, FAILED, f"{len(missing)} Service port(s) missing, "
                       f"{len(stale)} left over", meaning, [], details)
    return Finding("cluster-services", question, PASSED, f"the rules hold the {len(want)} Service "
                   "port(s) of the cluster objects", meaning, [], [])


def _compare_service(svc: ServicePortView, want: ServicePortView | None) -> Finding:
    question, meaning = IPTABLES_QUESTIONS["cluster-endpoints"]
    if want is None:
        return Finding("cluster-endpoints", question, FAILED, "the cluster objects have no such "
                       "Service port: its rules are left over", meaning, [], [])
    if svc.only_expected:
        return Finding("cluster-endpoints", question, FAILED, "the rules have nothing for it",
                       meaning, [], [])
    got, expect = reading(svc), reading(want)
    details = []
    for key in expect:
        if got[key] != expect[key]:
            details.append(f"{key}: the rules say {got[key]}, the cluster objects {expect[key]}")
    if details:
        return Finding("cluster-endpoints", question, FAILED, details[0], meaning,
                       [j.ref for j in svc.jumps][:3], details[1:])
    return Finding("cluster-endpoints", question, PASSED, "frontends, endpoints and shares are "
                   "those the cluster objects give", meaning, [], [])
