"""The checklist on a node in kube-proxy's nftables mode.

``diagnose_nft(listing)`` reads kube-proxy's table (:func:`~netproxy.kubeview.build_nft_view`),
runs the node and Service checks of :mod:`.nftchecks`, and walks connections with the tracer
through the whole listing -- other tables of the listing and the node's iptables rules
included, when given -- as the iptables doctor does (:mod:`.walks`). Given the listing
compiled from the cluster's objects it also compares the two as the iptables doctor does
(:mod:`.expected`: Service ports, endpoints, addresses, shares, affinity).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from netproxy.doctor.nftchecks import SERVICE_CHECKS, node_checks
from netproxy.doctor.ports import check_ports, select_ports
from netproxy.doctor.report import Finding, Report
from netproxy.errors import InputError
from netproxy.kubeview.nftables import FAMILIES, TABLE, build_nft_view, kube_proxy_families
from netproxy.netfilter.model import Ruleset
from netproxy.netfilter.nft import NftRuleset
from netproxy.trace import Tracer


def diagnose_nft(listing: NftRuleset, *, family: str | None = None, iptables: Ruleset | None = None,
                 service: str | None = None, expected: NftRuleset | None = None, walk: bool = True,
                 local_ips: Sequence[str] = (), pod_cidrs: Sequence[str] = (),
                 pod_interface: str | None = None, ipsets: dict[str, Any] | None = None,
                 alone: bool = True) -> Report:
    """Run the checklist over kube-proxy's ``family`` table in ``listing`` (default: the
    first it holds); ``iptables``: the node's iptables rules, walked with the listing;
    ``expected``: the listing the cluster objects compile to (nftables mode); ``ipsets``: the
    node's ipsets (a snapshot's), for iptables rules that match them; ``alone``: no other
    family of the listing is checked in the same run (the report then says it is there)."""
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
    expected_view = build_nft_view(expected, family) if expected is not None else None
    ports, compared, compare = select_ports(view, expected_view, service, listing.source)
    node += compared
    tracer = Tracer(view.ruleset, local_ips=local_ips, nft=[listing], ipsets=ipsets) if walk else None
    reports = check_ports(view, ports, SERVICE_CHECKS, tracer, compare)
    notes = []
    if len(families) > 1 and alone:
        other = [f for f in families if f != family]
        notes.append(f"the listing also holds kube-proxy's {', '.join(other)} table: leave out "
                     f"--family to check both, or give --family {other[0]}")
    return Report(listing.source, family, node, reports, notes)
