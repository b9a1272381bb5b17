"""Compare a node's rules with what the cluster objects compile to, in either proxy mode.

Both sides are read by the same :mod:`netproxy.kubeview` reader (``build_view`` for iptables
rules, ``build_nft_view`` for kube-proxy's nftables table), so the comparison is between
Service-level facts (endpoints, addresses, shares, affinity), not rule text: a dump from an
old kube-proxy (``/32`` addresses, 11-digit probabilities) compares equal to freshly
compiled rules when it means the same. The findings are the same for both modes:
``cluster-services`` for the node, ``cluster-endpoints``, ``cluster-addresses`` and
``cluster-probabilities`` for each Service port.
"""

from __future__ import annotations

from fractions import Fraction

from netproxy.doctor.checks import BALANCING_KINDS, finding
from netproxy.doctor.probability import stored
from netproxy.doctor.report import FAILED, NOT_APPLICABLE, PASSED, Finding
from netproxy.kubeview.comments import matches_selector
from netproxy.kubeview.model import (
    NftRef,
    Ref,
    RulesetView,
    ServicePortView,
    host,
    hostport,
)
from netproxy.kubeview.nftables import nft_element_parts
from netproxy.textsafe import digits


def _has_rules(svc: ServicePortView) -> bool:
    return bool(svc.chains or svc.addresses or svc.rejects or svc.local_drops or svc.jumps)


def _selected(view: RulesetView, selector: str | None) -> dict[tuple[str, str], ServicePortView]:
    return {k: v for k, v in view.services.items() if _has_rules(v) and (
        selector is None or matches_selector(v.name, selector, v.port_numbers()))}


def _unique(refs: list[Ref]) -> list[Ref]:
    """Each place once (the entries of an nftables numgen map share their rule)."""
    seen: set[tuple[object, ...]] = set()
    out = []
    for ref in refs:
        key = (ref.where, ref.chain, getattr(ref, "set", None), ref.index)
        if key not in seen:
            seen.add(key)
            out.append(ref)
    return out


def missing_views(actual: RulesetView, expected: RulesetView,
                  selector: str | None = None) -> list[ServicePortView]:
    """Empty views for Service ports the cluster objects have and the rules lack (those
    ``selector`` names)."""
    return [ServicePortView(v.name, v.protocol, written_name=v.written_name, only_expected=True)
            for k, v in _selected(expected, selector).items() if k not in actual.services]


def _chains(view: RulesetView, svc: ServicePortView) -> list[str]:
    """The chains of a Service port (its DNAT map entries, which are none, left out)."""
    named = sorted(svc.chains.values()) + sorted(svc.endpoints)
    return [n for n in named if view.chain("nat", n) is not None or view.nft_chain(n) is not None]


def compare_node(actual: RulesetView, expected: RulesetView, selector: str | None) -> Finding:
    have = _selected(actual, selector)
    want = _selected(expected, selector)
    stale = sorted(f"{n} ({p})" for n, p in set(have) - set(want))
    missing = sorted(f"{n} ({p})" for n, p in set(want) - set(have))
    details = []
    if stale:
        details.append("rules for Service ports not in the cluster objects: " + ", ".join(stale))
    if missing:
        details.append("Service ports with no rules: " + ", ".join(missing))
    refs: list[Ref] = []
    for key in sorted(set(have) - set(want)):
        svc = have[key]
        refs += [a.ref for a in svc.addresses][:2] + svc.rejects[:1]
        chains = _chains(actual, svc)
        if chains:
            details.append(f"stale chains of {key[0]} ({key[1]}): {', '.join(chains)}")
    if details:
        return finding("cluster-services", FAILED, f"{len(stale)} stale, {len(missing)} missing Service port(s)",
                       refs, details)
    return finding("cluster-services", PASSED, f"the rules hold the {len(want)} Service port(s) of the cluster objects")


def _endpoints(svc: ServicePortView, kind: str) -> list[str]:
    out = []
    for jump in svc.balancing(kind):
        sep = svc.endpoints.get(jump.sep)
        out.append((sep.destination if sep is not None else None) or jump.comment_endpoint or jump.sep)
    return out


def _port(value: object) -> int | None:
    text = str(value)
    return int(text) if digits(text) else None


def _addresses(view: RulesetView, svc: ServicePortView) -> dict[tuple[str | None, int | None], str]:
    """(ip, port) of every address the rules answer on (node ports as (None, port)),
    those answered with "no endpoints" too."""
    found: dict[tuple[str | None, int | None], str] = {}
    for a in svc.addresses:
        found.setdefault((a.ip, a.port), a.kind)
    cluster_ips = view.nft_set("cluster-ips")
    listed = {str(e.key) for e in cluster_ips.elements} if cluster_ips is not None else set()
    for ref in svc.rejects + svc.local_drops:
        if isinstance(ref, NftRef):  # no-endpoint-services (ip . proto . port) or -nodeports
            parts = nft_element_parts(ref)
            if len(parts) == 3:
                ip = str(parts[0])
                found.setdefault((ip, _port(parts[2])), "cluster-ip" if ip in listed else "external-ip")
            elif len(parts) == 2:
                found.setdefault((None, _port(parts[1])), "node-port")
            continue
        if ref.table != "filter":
            continue
        dst = ref.rule.builtin("destination")
        port = _port(next((o.value for o in ref.rule.matches if o.name == "dport"), ""))
        if dst is not None:
            kind = "cluster-ip" if ref.chain == "KUBE-SERVICES" else "external-ip"
            found.setdefault((host(dst.value), port), kind)
        else:
            found.setdefault((None, port), "node-port")
    return found


def _label(key: tuple[str | None, int | None], kind: str) -> str:
    ip, port = key
    names = {"cluster-ip": "cluster IP", "external-ip": "external IP", "lb-ip": "load-balancer IP",
             "node-port": "node port"}
    return f"{names[kind]} {hostport(ip, port)}" if ip is not None else f"node port {port}"


def compare_service(actual: RulesetView, expected: RulesetView, svc: ServicePortView) -> list[Finding]:
    """The cluster comparisons for one Service port of ``actual``."""
    want = expected.services.get(svc.key)
    if want is None or not _has_rules(want):
        refs = [a.ref for a in svc.addresses] + svc.rejects
        msg = "the cluster objects have no such Service port: these rules are stale"
        return [finding("cluster-endpoints", FAILED, msg, refs),
                finding("cluster-addresses", FAILED, msg, refs),
                finding("cluster-probabilities", NOT_APPLICABLE, "no such Service port in the cluster objects")]
    return [_compare_endpoints(svc, want), _compare_addresses(actual, expected, svc, want),
            _compare_probabilities(svc, want)]


def _compare_endpoints(svc: ServicePortView, expected: ServicePortView) -> Finding:
    details = []
    refs: list[Ref] = []
    for kind in BALANCING_KINDS:
        have, want = _endpoints(svc, kind), _endpoints(expected, kind)
        if kind == "XLB" and not want:
            # Old layout: XLB plays SVL's role.
            want = _endpoints(expected, "SVL") if have else want
        if not have and not want:
            continue
        refs += [j.ref for j in svc.balancing(kind)]
        missing = sorted(set(want) - set(have))
        stale = sorted(set(have) - set(want))
        label = {"SVC": "cluster", "SVL": "local", "XLB": "local"}[kind]
        if missing:
            details.append(f"{label} endpoints missing from the rules: {', '.join(missing)}")
        if stale:
            details.append(f"{label} endpoints in the rules that no longer exist: {', '.join(stale)}")
    if bool(svc.affinity) != bool(expected.affinity):
        details.append("the rules keep ClientIP affinity, the cluster objects do not" if svc.affinity
                       else "the cluster objects ask for ClientIP affinity, the rules do not keep it")
        refs += svc.affinity[:2]
    refs = _unique(refs)
    if details:
        return finding("cluster-endpoints", FAILED, details[0], refs, details[1:])
    count = len(set(_endpoints(expected, "SVC")) | set(_endpoints(expected, "SVL")))
    return finding("cluster-endpoints", PASSED, f"the rules list the {count} expected endpoint(s)", refs)


def _compare_addresses(actual: RulesetView, expected_view: RulesetView, svc: ServicePortView,
                       expected: ServicePortView) -> Finding:
    have, want = _addresses(actual, svc), _addresses(expected_view, expected)
    missing = [_label(k, want[k]) for k in sorted(set(want) - set(have), key=str)]
    stale = [_label(k, have[k]) for k in sorted(set(have) - set(want), key=str)]
    details = []
    if missing:
        details.append("addresses the rules do not know: " + ", ".join(missing))
    if stale:
        details.append("addresses the Service no longer has: " + ", ".join(stale))
    refs = [a.ref for a in svc.addresses]
    if details:
        return finding("cluster-addresses", FAILED, details[0], refs, details[1:])
    return finding("cluster-addresses", PASSED, f"{len(want)} address(es) as in the cluster objects", refs)


def _shares_text(shares: list[Fraction]) -> str:
    return ", ".join(f"{float(s):.2%}" for s in shares)


def _compare_probabilities(svc: ServicePortView, expected: ServicePortView) -> Finding:
    details = []
    refs: list[Ref] = []
    compared = False
    for kind in BALANCING_KINDS:
        have, want = svc.balancing(kind), expected.balancing(kind)
        if not have or not want:
            continue
        compared = True
        refs += [j.ref for j in have]
        if any(j.share is not None for j in have + want):
            # nftables: numgen map entries, each with its exact share; compared as the split
            # of new connections, whichever endpoints they go to (cluster-endpoints names them)
            got = sorted(svc.shares(kind).values())
            split = sorted(expected.shares(kind).values())
            if got != split:
                details.append(f"{have[0].chain} splits new connections {_shares_text(got)}, "
                               f"the cluster objects give {_shares_text(split)}")
            continue
        if len(have) != len(want):
            details.append(f"{have[0].chain} splits over {len(have)} endpoint rule(s), "
                           f"the cluster objects give {len(want)}")
            continue
        for i, (h, w) in enumerate(zip(have, want, strict=True)):
            hv = stored(h.probability) if h.probability else None
            wv = stored(w.probability) if w.probability else None
            if hv is None or wv is None:
                same = hv == wv
            else:
                same = abs(hv - wv) <= 1 or _same_share(h.probability or "", w.probability or "")
            if not same:
                details.append(f"{h.chain} rule {i + 1}: probability {h.probability or 'none'}, "
                               f"expected {w.probability or 'none'}")
    refs = _unique(refs)
    if not compared:
        return finding("cluster-probabilities", NOT_APPLICABLE, "no endpoint rules on both sides")
    if details:
        return finding("cluster-probabilities", FAILED, details[0], refs, details[1:])
    return finding("cluster-probabilities", PASSED, "probabilities as compiled from the cluster objects", refs)


def _same_share(have: str, want: str) -> bool:
    """An old 5-digit probability means the same 1/k as the compiled 10-digit one."""
    from netproxy.doctor.probability import means_one_in

    try:
        k = round(1.0 / float(want))
    except (ValueError, ZeroDivisionError):
        return False
    return means_one_in(have, k) and means_one_in(want, k)
