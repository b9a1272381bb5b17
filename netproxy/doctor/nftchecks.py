"""The checklist on kube-proxy's nftables mode, one function per question.

The model is the same as in iptables mode (:mod:`netproxy.kubeview`, read by
:func:`~netproxy.kubeview.nftables.build_nft_view`); the questions follow nftables' objects:
the base chains that send packets to ``services`` and the filter checks, the ``masquerading``
chain and the mark bit the Service chains set, ``cluster-ips-check``, the addresses in
``nodeport-ips``, stale chains and dangling references (node checks); frontends, endpoints,
``numgen`` shares, DNAT, hairpin elements, Local policies, firewall ranges, affinity sets,
chain names and no-endpoint answers (Service checks). Findings have the same levels as in
iptables mode; checks that ask the same question keep its name (``entry``, ``endpoints``,
``endpoint-dnat``, ``hairpin``, ``local-endpoints``, ``chain-names``, ``reject``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from functools import partial

from netproxy.doctor.checks import QUESTIONS as IPTABLES_QUESTIONS
from netproxy.doctor.checks import (
    EndpointWords,
    _valid_destination,
    counted,
    endpoint_dnat,
    frontend_text,
)
from netproxy.doctor.report import FAILED, INFO, NOT_APPLICABLE, PASSED, WARNING, Finding
from netproxy.kubeview.model import NftRef, Ref, RulesetView, ServicePortView, hostport
from netproxy.kubeview.nftables import chain_kind, nft_element_parts, parse_base
from netproxy.netfilter.nft import NftChain
from netproxy.nftnames import endpoint_base, hash_and_truncate

QUESTIONS: dict[str, tuple[str, str]] = {
    "proxy-mode": (
        "Which proxy mode wrote these rules, and is anything left from another mode?",
        "kube-proxy in nftables mode owns only its kube-proxy table; its iptables-mode chains "
        "(KUBE-SERVICES, KUBE-SVC-*) beside it are left from a mode switch, or a second kube-proxy "
        "runs in iptables mode: both translate Service addresses, and whichever hook runs first "
        "wins (kube-proxy --cleanup in iptables mode, or a reboot, removes them).",
    ),
    "service-hooks": (
        "Do kube-proxy's base chains send packets to services and to its filter checks?",
        "Without nat-prerouting and nat-output jumping to services no Service address is "
        "translated on this node; without the filter base chains no REJECT answers Services "
        "without endpoints and no firewall range applies; usually the table was edited by hand "
        "or partly deleted and kube-proxy has not resynced since.",
    ),
    "masquerade": (
        "Is traffic carrying kube-proxy's masquerade mark masqueraded in nat-postrouting?",
        "Connections kube-proxy marks for SNAT (NodePort, external and off-cluster traffic) leave "
        "unmasqueraded, so replies bypass this node and the client drops them; usually the "
        "masquerading chain lost its rules, or the mark set and the mark tested differ "
        "(two kube-proxies with another masqueradeBit).",
    ),
    "cluster-ips-check": (
        "Does cluster-ips-check reject traffic to unknown ports of active cluster IPs?",
        "kube-proxy's nftables mode rejects connections to a cluster IP on a port it does not "
        "serve, and drops traffic to unallocated addresses of the service CIDRs; without it such "
        "connections are routed out of the node and time out instead of failing fast.",
    ),
    "nodeport-addresses": (
        "Which node addresses accept NodePort traffic?",
        "In nftables mode only the addresses in nodeport-ips (default: the node's primary IP) "
        "take NodePorts, not every local address as in iptables mode; a client using another "
        "address of the node gets no answer (set nodePortAddresses to widen it).",
    ),
    "stale-objects": (
        "Does kube-proxy's table hold only objects something refers to?",
        "A reference to a chain or set that does not exist makes kube-proxy's transaction "
        "fail and the packet path stop there; a per-Service chain nothing refers to is left "
        "over (kube-proxy flushes stale chains and deletes them a second later, so an empty one "
        "is normal right after a change, a full one is not).",
    ),
    "shares": (
        "Does numgen split new connections evenly over the endpoints?",
        "An uneven split sends more connections to some endpoints; a numgen modulus larger than "
        "the map sends some connections to no endpoint at all; kube-proxy always writes 'mod N' "
        "with N entries, so this is a hand edit or a partial rewrite.",
    ),
    "firewall": (
        "Do loadBalancerSourceRanges reach the firewall chain of every load-balancer IP?",
        "A load-balancer IP without its firewall-ips element accepts every source; a firewall "
        "chain without its drop rule accepts every source too; kube-proxy writes both, also when "
        "the Service has no endpoints.",
    ),
    "affinity": (
        "With ClientIP session affinity, does every endpoint have its affinity set, lookup and update?",
        "A client goes back to its endpoint only when the Service chain looks the client up in "
        "the endpoint's affinity set and the endpoint chain updates that set; a missing piece "
        "spreads a client's connections over the endpoints.",
    ),
}
for _name in ("entry", "endpoints", "endpoint-dnat", "hairpin", "local-endpoints", "chain-names", "reject"):
    QUESTIONS.setdefault(_name, IPTABLES_QUESTIONS[_name])


def finding(check: str, status: str, summary: str, rules: Sequence[Ref] | None = None,
            details: list[str] | None = None) -> Finding:
    question, meaning = QUESTIONS[check]
    return Finding(check, question, status, summary, meaning, list(rules or []), list(details or []))


def _rules(view: RulesetView, chain: str) -> list[NftRef]:
    found = view.nft_chain(chain)
    table = view.nft_table
    if found is None or table is None:
        return []
    return [NftRef(table.family, table.name, chain, i, rule=r) for i, r in enumerate(found.rules)]


def _label(view: RulesetView) -> str:
    table = view.nft_table
    return f"table {table.family} {table.name}" if table is not None else "no kube-proxy table"


# -- node checks ------------------------------------------------------------------------------

def check_proxy_mode(view: RulesetView) -> Finding | None:
    if view.other_mode:
        return finding("proxy-mode", WARNING, "nftables mode, but kube-proxy's iptables-mode chains "
                       "are on this node too: " + "; ".join(view.other_mode))
    return finding("proxy-mode", INFO, f"nftables mode ({_label(view)})")


_HOOKS = {
    "nat-prerouting": ("nat", "prerouting", "services"),
    "nat-output": ("nat", "output", "services"),
    "nat-postrouting": ("nat", "postrouting", "masquerading"),
    "filter-input": ("filter", "input", "service-endpoints-check"),
    "filter-forward": ("filter", "forward", "service-endpoints-check"),
    "filter-output": ("filter", "output", "service-endpoints-check"),
}


def check_service_hooks(view: RulesetView) -> Finding:
    if view.nft_table is None:
        return finding("service-hooks", NOT_APPLICABLE, "no kube-proxy table")
    problems: list[str] = []
    refs: list[Ref] = []
    for name, (kind, hook, target) in _HOOKS.items():
        chain = view.nft_chain(name)
        if chain is None or chain.hook is None:
            # Older layouts name the filter chains otherwise: look for any base chain of the
            # hook that jumps to the target.
            alike = [c for c in view.nft_table.chains.values() if c.hook == hook and c.type == kind
                     and _jumps_to(c, target)]
            if alike:
                refs += [r for c in alike for r in _rules(view, c.name) if r.jump == target][:1]
                continue
            problems.append(f"no {kind} base chain on the {hook} hook jumps to {target}"
                            + (f" ({name} is missing)" if chain is None else f" ({name} is no base chain)"))
            continue
        jumps = [r for r in _rules(view, name) if r.jump == target]
        refs += jumps
        if not jumps:
            problems.append(f"{name} does not jump to {target}")
    if problems:
        return finding("service-hooks", FAILED, problems[0], refs, problems[1:])
    return finding("service-hooks", PASSED, "nat-prerouting and nat-output jump to services, the "
                   "filter base chains to the endpoint checks", refs[:3])


def _jumps_to(chain: NftChain, target: str) -> bool:
    return any(NftRef("", "", chain.name, i, rule=r).jump == target for i, r in enumerate(chain.rules))


def _mark_set(ref: Ref) -> int | None:
    if not isinstance(ref, NftRef) or ref.rule is None:
        return None
    from netproxy.kubeview.nftables import _mark_bits

    for stmt in ref.rule.exprs:
        bits = _mark_bits(stmt)
        if bits is not None:
            return bits
    return None


def check_masquerade(view: RulesetView) -> Finding:
    rules = _rules(view, "masquerading")
    marking = [r for svc in view.services.values() for r in svc.masq_rules]
    marking += [r for r in _rules(view, "services") if _mark_set(r) is not None]
    helper = _rules(view, "mark-for-masquerade")
    if not rules and not marking:
        return finding("masquerade", NOT_APPLICABLE, "no masquerading chain and no rule marks for it")
    problems: list[str] = []
    if not rules:
        problems.append("no masquerading chain (or it is empty): marked packets are not masqueraded")
    elif not any("masquerade" in str(r.text).split() for r in rules):
        problems.append("the masquerading chain has no masquerade statement")
    if view.nft_chain("nat-postrouting") is not None and not any(
            r.jump == "masquerading" for r in _rules(view, "nat-postrouting")):
        problems.append("nat-postrouting does not jump to masquerading")
    tested = view.masquerade_mark
    set_bits = {b for b in (_mark_set(r) for r in marking + helper) if b is not None}
    if tested is None and rules:
        problems.append("the masquerading chain tests no mark bit")
    wrong = sorted(b for b in set_bits if tested is not None and b != tested)
    if wrong:
        problems.append(f"rules set mark {', '.join(f'{b:#010x}' for b in wrong)} but masquerading "
                        f"tests {tested:#010x}" if tested is not None else "")
    refs: list[Ref] = [*rules, *helper[:1]]
    if problems:
        return finding("masquerade", FAILED, problems[0], refs + marking[:3], problems[1:])
    mark = f" mark {tested:#010x}" if tested is not None else ""
    return finding("masquerade", PASSED, f"packets with{mark} are masqueraded in nat-postrouting "
                   f"({len(marking)} rule(s) set it)", refs)


def check_cluster_ips(view: RulesetView) -> Finding:
    rules = _rules(view, "cluster-ips-check")
    ips = view.nft_set("cluster-ips")
    frontends = {a.ip for svc in view.services.values() for a in svc.addresses
                 if a.kind == "cluster-ip" and a.ip}
    no_eps = {str(p[0]) for svc in view.services.values() for r in svc.rejects + svc.local_drops
              if isinstance(r, NftRef) and r.set == "no-endpoint-services"
              for p in [nft_element_parts(r)] if p}
    if not rules and ips is None:
        return finding("cluster-ips-check", NOT_APPLICABLE, "no cluster-ips-check chain and no "
                       "cluster-ips set (kube-proxy before v1.30?)")
    problems: list[str] = []
    details: list[str] = []
    rejecting = [r for r in rules if "@cluster-ips" in r.text and "reject" in r.text.split()]
    if not rejecting:
        problems.append("cluster-ips-check does not reject traffic to @cluster-ips")
    table = view.nft_table
    for hook in ("forward", "output"):  # filter-forward/-output (v1.33: filter-output-post-dnat)
        bases = [c for c in table.chains.values() if c.hook == hook] if table is not None else []
        if bases and not any(_jumps_to(c, "cluster-ips-check") for c in bases):
            problems.append(f"no base chain on the {hook} hook jumps to cluster-ips-check")
    listed = {str(e.key) for e in ips.elements} if ips is not None else set()
    missing = sorted(frontends - listed) if ips is not None else []
    if missing:
        problems.append(f"cluster IP(s) {', '.join(missing)} serve a Service but are not in "
                        "@cluster-ips: their other ports are not rejected")
    unused = sorted(listed - frontends - no_eps)
    if unused:
        details.append(f"{len(unused)} address(es) in @cluster-ips have no Service frontend in the "
                       f"maps: {', '.join(unused[:5])}" + (" ..." if len(unused) > 5 else "")
                       + " (every port of them is rejected)")
    drops = [r for r in rules if "drop" in r.text.split()]
    details.append("unallocated service-CIDR addresses are dropped" if drops else
                   "no rule drops unallocated service-CIDR addresses (no ServiceCIDR known to kube-proxy)")
    if problems:
        return finding("cluster-ips-check", FAILED, problems[0], rules, problems[1:] + details)
    status = WARNING if unused else PASSED
    summary = (f"{len(listed)} cluster IP(s) in @cluster-ips; connections to ports they do not "
               "serve are rejected") if not unused else details.pop(0)
    return finding("cluster-ips-check", status, summary, rules, details)


def check_nodeport_addresses(view: RulesetView, local_ips: Sequence[str] = ()) -> Finding:
    nodeports = [a for svc in view.services.values() for a in svc.addresses if a.kind == "node-port"]
    nodeports_noeps = [r for svc in view.services.values() for r in svc.rejects + svc.local_drops
                       if isinstance(r, NftRef) and r.set == "no-endpoint-nodeports"]
    if not nodeports and not nodeports_noeps:
        return finding("nodeport-addresses", NOT_APPLICABLE, "no NodePort in the maps")
    refs = [r for r in _rules(view, "services") if "@service-nodeports" in r.text]
    refs += [r for r in _rules(view, "nodeport-endpoints-check") if "@no-endpoint-nodeports" in r.text]
    if not any("@service-nodeports" in r.text for r in refs):
        return finding("nodeport-addresses", FAILED, f"{len(nodeports)} NodePort(s) in @service-nodeports "
                       "but no rule of services looks them up", refs)
    if view.nodeport_ips is None:
        return finding("nodeport-addresses", PASSED, "every local address except loopback takes "
                       "NodePorts (nodePortAddresses matches all)", refs)
    mine = [ip for ip in local_ips if ip not in ("127.0.0.1", "::1")]
    if not view.nodeport_ips:
        return finding("nodeport-addresses", FAILED, f"@nodeport-ips is empty: none of the "
                       f"{len(nodeports)} NodePort(s) answers on any address", refs)
    details = []
    outside = [ip for ip in mine if ip not in view.nodeport_ips and _same_family(ip, view.nodeport_ips[0])]
    if outside:
        details.append(f"the node's {', '.join(outside)} take(s) no NodePort traffic (iptables mode "
                       "answers on every local address)")
    summary = f"NodePorts answer on {', '.join(view.nodeport_ips)} only"
    return finding("nodeport-addresses", INFO if outside or not mine else PASSED, summary, refs, details)


def _same_family(a: str, b: str) -> bool:
    return (":" in a) == (":" in b)


def check_stale_objects(view: RulesetView) -> Finding:
    if view.nft_table is None:
        return finding("stale-objects", NOT_APPLICABLE, "no kube-proxy table")
    problems = [f"{_place(ref)} refers to {name}, which does not exist" for ref, name in view.dangling]
    refs: list[Ref] = [ref for ref, _ in view.dangling]
    leftovers: list[str] = []
    pending: list[str] = []
    for name in view.stale_chains:
        chain = view.nft_chain(name)
        (leftovers if chain is not None and chain.rules else pending).append(name)
        refs += _rules(view, name)[:1]
    details = []
    if leftovers:
        details.append(f"{len(leftovers)} per-Service chain(s) with rules that nothing refers to: "
                       + ", ".join(leftovers))
    if pending:
        details.append(f"{len(pending)} empty per-Service chain(s) nothing refers to (kube-proxy "
                       "deletes them a second after flushing): " + ", ".join(pending))
    if view.stale_sets:
        details.append(f"{len(view.stale_sets)} affinity set(s) no rule uses: " + ", ".join(view.stale_sets))
    if view.unattached:
        details.append(f"{len(view.unattached)} hairpin-connections element(s) name no endpoint of "
                       "any Service port")
        refs += view.unattached[:3]
    if problems:
        return finding("stale-objects", FAILED, problems[0], refs, problems[1:] + details)
    if leftovers or view.unattached:
        return finding("stale-objects", WARNING, details[0], refs, details[1:])
    if details:
        return finding("stale-objects", INFO, details[0], refs, details[1:])
    return finding("stale-objects", PASSED, "every per-Service chain and set is in use, every "
                   "reference resolves")


def _place(ref: Ref) -> str:
    if isinstance(ref, NftRef):
        return f"chain {ref.chain}" if ref.chain else f"an element of {ref.set}"
    return f"{ref.table} {ref.chain}"


def node_checks(local_ips: Sequence[str] = ()) -> tuple[Callable[[RulesetView], Finding | None], ...]:
    """The node checks in report order; the NodePort one looks at ``local_ips``, the node's
    addresses."""
    return (
        check_proxy_mode,
        check_service_hooks,
        check_masquerade,
        check_cluster_ips,
        partial(check_nodeport_addresses, local_ips=local_ips),
        check_stale_objects,
    )


# -- Service port checks ----------------------------------------------------------------------

_KINDS = {"cluster-ip": "cluster IP", "external-ip": "external IP", "lb-ip": "load-balancer IP",
          "node-port": "node port"}


def check_entry(view: RulesetView, svc: ServicePortView) -> Finding:
    if svc.only_expected:
        return finding("entry", FAILED, "the rules have nothing for this Service port of the "
                       "cluster objects")
    if not svc.addresses and not svc.missing_chains and (
            not svc.chains or svc.rejects or svc.local_drops):
        why = (": its frontends are answered by no-endpoint elements (see endpoints)"
               if svc.rejects or svc.local_drops else " for this Service port")
        return finding("entry", NOT_APPLICABLE, "no service-ips or service-nodeports element" + why)
    refs: list[Ref] = [a.ref for a in svc.addresses]
    problems: list[str] = []
    parts: list[str] = []
    for addr in svc.addresses:
        where = hostport(addr.ip, addr.port) if addr.kind != "node-port" else str(addr.port)
        part = f"{_KINDS[addr.kind]} {where}"
        if part not in parts:
            parts.append(part)
        chain = view.nft_chain(addr.target or "")
        if chain is None:
            problems.append(f"{part} goes to {addr.target}, which does not exist")
        elif not chain.rules:
            problems.append(f"{part} goes to {addr.target}, which is empty (flushed: kube-proxy "
                            "is removing this Service port)")
    referenced = {a.target for a in svc.addresses} | {r.jump for r in svc.ext_rules + svc.firewall_rules}
    for role, name in sorted(svc.chains.items()):
        if name not in referenced and role != "FW":
            problems.append(f"nothing goes to {name}: the chain is not in use")
            refs += _rules(view, name)[:1]
    if not svc.addresses:
        problems.insert(0, "no service-ips or service-nodeports element leads to this Service port")
    elif not any(a.kind == "cluster-ip" for a in svc.addresses) and not svc.rejects and not svc.local_drops:
        problems.append("no cluster-IP element in service-ips: kube-proxy writes one for every "
                        "Service port it handles")
    if problems:
        return finding("entry", FAILED, problems[0], refs, problems[1:])
    return finding("entry", PASSED, ", ".join(parts), refs)


def check_endpoints(view: RulesetView, svc: ServicePortView) -> Finding:
    if svc.jumps:
        dests = sorted({_endpoint(svc, j.sep) for j in svc.jumps})
        return finding("endpoints", PASSED, f"{len(dests)} endpoint(s): {', '.join(dests)}",
                       list(dict.fromkeys(j.ref for j in svc.jumps))[:6])
    if svc.local_drops and not svc.rejects and not svc.chains:
        return finding("endpoints", NOT_APPLICABLE, "kube-proxy knows endpoints, none on this node "
                       "(see local-endpoints)", svc.local_drops)
    if not svc.addresses and not svc.rejects and not svc.local_drops and svc.chains:
        return finding("endpoints", NOT_APPLICABLE, "nothing leads to this Service port's chains (see entry)")
    refs: list[Ref] = list(svc.rejects) + list(svc.local_drops)
    details = []
    if svc.rejects:
        details.append("no-endpoint elements answer it with goto reject-chain (kube-proxy: no endpoints)")
    for role in ("SVC", "SVL"):
        name = svc.chains.get(role)
        if name:
            refs += _rules(view, name)
            details.append(f"{name} sends to no endpoint")
    return finding("endpoints", FAILED, "no endpoint on this node's rules", refs, details)


def _endpoint(svc: ServicePortView, key: str) -> str:
    sep = svc.endpoints.get(key)
    if sep is not None and sep.destination:
        return sep.destination
    parsed = parse_base(key[len("endpoint-"):]) if key.startswith("endpoint-") else None
    said = parsed[2] if parsed is not None else None
    return f"{said} ({key} missing)" if said and sep is None else (said or key)


def check_shares(view: RulesetView, svc: ServicePortView) -> Finding:
    if not svc.jumps:
        return finding("shares", NOT_APPLICABLE, "no endpoint entries")
    problems: list[str] = []
    parts: list[str] = []
    refs: list[Ref] = []
    for role in ("SVC", "SVL"):
        jumps = svc.balancing(role)
        if not jumps:
            continue
        refs += list(dict.fromkeys(j.ref for j in jumps))
        shares = svc.shares(role)
        total = sum(shares.values(), Fraction(0))
        chain = jumps[0].chain
        if total < 1:
            problems.append(f"{chain}: {float(1 - total):.2%} of new connections match no map entry "
                            "(numgen modulus larger than the map) and are not DNATed")
        even = Fraction(1, len(shares))
        uneven = {ep: s for ep, s in shares.items() if s != even}
        if uneven and total == 1:
            problems.append(f"{chain}: shares are " + ", ".join(f"{ep} {float(s):.2%}" for ep, s in shares.items()))
        if not uneven and total == 1:
            parts.append(f"{chain}: one endpoint, it takes all connections" if len(shares) == 1
                         else f"{chain}: {len(shares)} ways, {float(even):.2%} each")
    if problems:
        return finding("shares", FAILED, problems[0], refs, problems[1:])
    return finding("shares", PASSED, "; ".join(parts), refs)


NFT_ENDPOINT_WORDS = EndpointWords(
    none="no endpoints", sends="goes to", said="its name says",
    orphan="belongs to this Service port but no service or local chain goes to it",
    passed="{n} endpoint(s) DNATed to their address", whole_chains=False)


def check_endpoint_dnat(view: RulesetView, svc: ServicePortView) -> Finding:
    return endpoint_dnat(view, svc, NFT_ENDPOINT_WORDS)


def check_hairpin(view: RulesetView, svc: ServicePortView) -> Finding:
    seps = [s for s in svc.endpoints.values() if s.destination and _valid_destination(s.destination)]
    if not seps:
        return finding("hairpin", NOT_APPLICABLE, "no endpoint with a valid DNAT")
    old = [s for s in seps if s.masq]
    if old:  # up to v1.35: the endpoint chain marks packets from the endpoint itself
        missing = [s.name for s in seps if not s.masq and s.name.startswith("endpoint-")]
        refs: list[Ref] = [r for s in old for r in s.masq][:6]
        if missing:
            return finding("hairpin", FAILED, f"{missing[0]} does not mark packets from its own endpoint "
                           "for masquerade", refs, missing[1:])
        return finding("hairpin", PASSED, f"{len(old)} endpoint chain(s) mark their own endpoint for "
                       "masquerade", refs)
    rule = [r for r in _rules(view, "masquerading") if "@hairpin-connections" in r.text]
    held = {_hairpin_dest(r) for r in svc.hairpins}
    local = [s.destination for j in svc.balancing("SVL") for s in [svc.endpoints.get(j.sep)]
             if s is not None and s.destination]
    lacking = [ep for ep in local if ep not in held]
    if svc.hairpins and not rule:
        return finding("hairpin", FAILED, "hairpin-connections has elements for it but no masquerading "
                       "rule looks them up", svc.hairpins)
    if lacking:
        return finding("hairpin", FAILED, f"local endpoint {lacking[0]} has no hairpin-connections element: "
                       "a pod reaching itself through the Service is not masqueraded",
                       rule + svc.hairpins, lacking[1:])
    if not svc.hairpins:
        return finding("hairpin", NOT_APPLICABLE, "no hairpin-connections element: no endpoint of it "
                       "runs on this node (kube-proxy adds them for this node's endpoints only)")
    return finding("hairpin", PASSED, f"{len(held)} endpoint(s) on this node are masqueraded when they "
                   "reach themselves", rule + svc.hairpins)


def _hairpin_dest(ref: Ref) -> str:
    parts = nft_element_parts(ref) if isinstance(ref, NftRef) else []
    return hostport(str(parts[1]), parts[3]) if len(parts) == 4 else ""


_LOCAL_COMMENTS = ("short-circuit pod traffic", "masquerade local traffic", "short-circuit local traffic")


def local_policy(svc: ServicePortView) -> bool:
    """externalTrafficPolicy Local: the external chain short-circuits pods and the node, goes
    to the local chain, or kube-proxy drops external traffic for want of local endpoints."""
    return any(r.comment in _LOCAL_COMMENTS for r in svc.ext_rules) \
        or any(r.jump == svc.chains.get("SVL") for r in svc.ext_rules if svc.chains.get("SVL")) \
        or bool(svc.local_drops)


def check_local_endpoints(view: RulesetView, svc: ServicePortView) -> Finding:
    internal_local = "SVL" in svc.chains and any(
        a.kind == "cluster-ip" and a.target == svc.chains["SVL"] for a in svc.addresses)
    if not local_policy(svc) and not internal_local:
        return finding("local-endpoints", NOT_APPLICABLE, "no Local traffic policy in the rules")
    local = svc.balancing("SVL")
    refs: list[Ref] = [j.ref for j in local][:3] + list(svc.local_drops)
    ext = svc.chains.get("EXT")
    if local:
        problems = []
        if ext is not None and local_policy(svc) and not any(r.jump == svc.chains["SVL"] for r in svc.ext_rules):
            problems.append(f"{ext} does not go to {svc.chains['SVL']}, so external traffic does not "
                            "reach the local endpoints")
        if svc.local_drops:
            problems.append("no-endpoint elements drop it (\"no local endpoints\") although local "
                            "endpoints exist: " + ", ".join(frontend_text(r) for r in svc.local_drops))
        if problems:
            return finding("local-endpoints", FAILED, problems[0], refs + svc.ext_rules, problems[1:])
        return finding("local-endpoints", PASSED, f"{len(local)} local endpoint(s)", refs)
    if svc.local_drops:
        where = ", ".join(frontend_text(r) for r in svc.local_drops)
        return finding("local-endpoints", INFO, f"no local endpoint here: traffic to {where} is dropped, "
                       "by design", refs, [t for t in (counted(r, "drop") for r in svc.local_drops) if t])
    return finding("local-endpoints", FAILED, "Local policy without a local endpoint here and no "
                   "element drops the traffic: it reaches no endpoint", refs + svc.ext_rules)


def check_firewall(view: RulesetView, svc: ServicePortView) -> Finding:
    elements = [r for r in svc.firewall_rules if isinstance(r, NftRef) and r.set == "firewall-ips"]
    fw = svc.chains.get("FW")
    if not elements and fw is None and "FW" not in svc.missing_chains:
        return finding("firewall", NOT_APPLICABLE, "no loadBalancerSourceRanges in the rules")
    problems: list[str] = []
    drops = [r for r in _rules(view, fw) if "drop" in r.text.split()] if fw else []
    if fw is None:
        problems.append(f"firewall-ips sends to {svc.missing_chains.get('FW', 'a firewall chain')}, "
                        "which does not exist: packets go no further than the lookup")
    elif not drops:
        problems.append(f"{fw} drops nothing: every source reaches the Service")
    covered = {(str(p[0]), p[-1]) for r in elements for p in [nft_element_parts(r)] if p}
    # (A load-balancer IP without its element reads as an external IP: nftables cannot tell.)
    if not elements and fw is not None:
        problems.append(f"no firewall-ips element sends traffic to {fw}: no source range applies")
    refs: list[Ref] = [*elements, *drops]
    if problems:
        return finding("firewall", FAILED, problems[0], refs, problems[1:])
    ranges = ", ".join(svc.source_ranges) or "none"
    ips = ", ".join(sorted(hostport(ip, port) for ip, port in covered))
    return finding("firewall", PASSED, f"{ips}: sources outside {ranges} are dropped before DNAT", refs)


def check_affinity(view: RulesetView, svc: ServicePortView) -> Finding:
    seps = [s for s in svc.endpoints.values() if s.name.startswith("endpoint-")]
    if not svc.affinity and not any(s.affinity_sets for s in seps):
        return finding("affinity", NOT_APPLICABLE, "no ClientIP affinity in the rules")
    problems: list[str] = []
    looked_up = {}
    for ref in svc.affinity:
        target = ref.jump
        text = ref.text if isinstance(ref, NftRef) else ""
        sets = [p for p in text.split() if p.startswith("@affinity-")]
        if target is not None and sets:
            looked_up[target] = sets[0][1:]
    refs: list[Ref] = list(svc.affinity)[:4]
    timeouts: set[float | None] = set()
    for jump in svc.jumps:
        sep = svc.endpoints.get(jump.sep)
        if sep is None or not sep.name.startswith("endpoint-"):
            continue
        own = "affinity-" + sep.name[len("endpoint-"):]
        if looked_up.get(sep.name) != own:
            problems.append(f"{jump.chain} does not look clients up in @{own} before balancing"
                            if sep.name not in looked_up else
                            f"{jump.chain} sends @{looked_up[sep.name]} to {sep.name}, whose set is @{own}")
        if own not in sep.affinity_sets:
            problems.append(f"{sep.name} does not update @{own}: clients are never remembered")
        found = view.nft_set(own)
        if found is None:
            problems.append(f"the set {own} does not exist")
        else:
            timeouts.add(found.timeout)
            # (Only timeout: nft's JSON listing leaves "dynamic" out, and the kernel refuses an
            # update of a set without it when the rule is loaded.)
            if "timeout" not in found.flags or found.timeout is None:
                problems.append(f"{own} has no timeout: clients stay on their endpoint for good")
    refs += svc.affinity_sets[:2]
    if len(timeouts) > 1:
        problems.append("the endpoints' affinity sets have different timeouts: "
                        + ", ".join(f"{t:g}s" for t in sorted(t for t in timeouts if t is not None)))
    if problems:
        return finding("affinity", FAILED, problems[0], refs, problems[1:])
    timeout = next(iter(timeouts), None)
    return finding("affinity", PASSED, f"{len(looked_up)} endpoint(s) remember their clients"
                   + (f" for {timeout:g}s" if timeout is not None else ""), refs)


def check_chain_names(view: RulesetView, svc: ServicePortView) -> Finding:
    if svc.protocol == "?" or not svc.chains or svc.name.endswith("...") or "/" not in svc.name:
        return finding("chain-names", NOT_APPLICABLE, "no named chains to compare")
    namespace, _, rest = svc.name.partition("/")
    name, _, port = rest.partition(":")
    base = hash_and_truncate(f"{namespace}/{name}/{svc.protocol}/{port}")
    problems: list[str] = []
    refs: list[Ref] = []
    for chain in sorted(svc.chains.values()):
        kind = chain_kind(chain)
        if kind is not None and kind[1] != base:
            problems.append(f"{chain} should end in {base}")
            refs += _rules(view, chain)[:1]
    for key, sep in sorted(svc.endpoints.items()):
        if not key.startswith("endpoint-") or not sep.destination or not _valid_destination(sep.destination):
            continue
        ip, _, eport = sep.destination.rpartition(":")
        want = "endpoint-" + endpoint_base(namespace, name, svc.protocol, port, ip.strip("[]"), int(eport))
        if key != want:
            problems.append(f"{key} should be {want} for endpoint {sep.destination}")
            refs += sep.rules[:1]
    if problems:
        return finding("chain-names", FAILED, problems[0], refs, problems[1:])
    return finding("chain-names", PASSED, f"chain names match {svc.name} {svc.protocol}")


def check_reject(view: RulesetView, svc: ServicePortView) -> Finding:
    if not svc.rejects:
        return finding("reject", PASSED, "no goto reject-chain element for it")
    where = ", ".join(frontend_text(r) for r in svc.rejects)
    if not svc.jumps:
        return finding("reject", INFO, f"kube-proxy rejects {where} because the Service port has no "
                       "endpoints (see endpoints)", svc.rejects)
    return finding("reject", FAILED, f"{where} rejected although the rules have endpoints for it",
                   svc.rejects)


SERVICE_CHECKS: tuple[Callable[[RulesetView, ServicePortView], Finding], ...] = (
    check_entry,
    check_endpoints,
    check_shares,
    check_endpoint_dnat,
    check_hairpin,
    check_local_endpoints,
    check_firewall,
    check_affinity,
    check_chain_names,
    check_reject,
)

