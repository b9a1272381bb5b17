"""The "my Service does not work" checklist, one function per question.

Node checks look at what every Service relies on (the proxy mode, the hooks into
KUBE-SERVICES, the masquerade rule, the NodePort jump); Service checks look at one Service
port of the model :mod:`netproxy.kubeview` reads. Each returns a :class:`~.report.Finding`:
passed, failed, warning (cannot be decided from the dump), info (by design) or not
applicable, the rule lines it looked at, and one sentence on what a problem means.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from netproxy.chainnames import port_proto_hash
from netproxy.doctor.marks import follow, masquerade_marks, masquerade_rules
from netproxy.doctor.probability import judge
from netproxy.doctor.report import FAILED, INFO, NOT_APPLICABLE, PASSED, WARNING, Finding
from netproxy.kubeview.comments import parse_comment, service_port_name
from netproxy.kubeview.model import (
    BALANCING_KINDS,
    EndpointChain,
    EndpointJump,
    Ref,
    RuleRef,
    RulesetView,
    ServicePortView,
    host,
    hostport,
    is_redacted,
)
from netproxy.kubeview.nftables import nft_element_parts
from netproxy.textsafe import digits

QUESTIONS: dict[str, tuple[str, str]] = {
    "service-hooks": (
        "Do nat PREROUTING and OUTPUT send packets to KUBE-SERVICES?",
        "Without these jumps no Service address is translated on this node; usually another tool "
        "flushed or rebuilt the nat table (firewalld reload, iptables -F, a CNI reinstall) and "
        "kube-proxy has not resynced since.",
    ),
    "masquerade": (
        "Is traffic carrying kube-proxy's masquerade mark masqueraded in nat POSTROUTING?",
        "Connections kube-proxy marks for SNAT (hairpin, NodePort, external traffic) leave "
        "unmasqueraded, so replies bypass this node and the client drops them; usually nat "
        "POSTROUTING was flushed, or kubelet and kube-proxy disagree on --iptables-masquerade-bit.",
    ),
    "nodeports-jump": (
        "Does KUBE-SERVICES hand packets for the node's own addresses to KUBE-NODEPORTS?",
        "NodePorts are reached only through the last rule of KUBE-SERVICES; without it no node "
        "port answers; usually a hand edit or another tool rewrote KUBE-SERVICES.",
    ),
    "entry": (
        "Does every address of the Service port lead to its chains, and every chain get used?",
        "An address without an entry rule is not translated and nothing answers on the bare "
        "VIP; a chain no rule jumps to is left over from a deleted Service or from kube-proxy "
        "switching to IPVS mode.",
    ),
    "endpoints": (
        "Does the Service port have endpoints in its chains?",
        "With no endpoint kube-proxy has nowhere to send connections; usually the selector "
        "matches no pod, the pods are not Ready (failing readiness probe), or the "
        "EndpointSlice names another port.",
    ),
    "probabilities": (
        "Do the endpoint rules split new connections evenly?",
        "An uneven split sends more connections to some endpoints and none to others; usually "
        "rules left from an old endpoint count (a hand edit, a partial restore, two writers), "
        "since kube-proxy rewrites the whole chain whenever endpoints change.",
    ),
    "endpoint-dnat": (
        "Does every endpoint chain exist and DNAT to its endpoint?",
        "Connections sent to a missing or broken endpoint chain keep the VIP as destination "
        "and time out; usually a damaged or hand-edited restore, or a tool that rewrote "
        "kube-proxy's chains.",
    ),
    "hairpin": (
        "Does every endpoint chain masquerade traffic from the endpoint itself (hairpin)?",
        "A pod reaching itself through its Service is answered by itself without SNAT and "
        "drops the reply, so only that pod sees timeouts; usually rules not written by "
        "kube-proxy, or a hand edit.",
    ),
    "local-endpoints": (
        "With a Local traffic policy, does this node have local endpoints?",
        "With externalTrafficPolicy Local, external traffic reaches only endpoints on this node; "
        "without one kube-proxy drops it here by design (the load balancer's health check takes "
        "the node out). A failure means the Local chains disagree with each other: external "
        "traffic falls through or bypasses the local endpoints, usually rules written by hand "
        "or by two writers.",
    ),
    "chain-names": (
        "Are the chains named the way kube-proxy names this Service port's chains?",
        "kube-proxy derives every chain name from the Service port name, protocol and endpoint, "
        "so a chain that does not match was not written for this Service port by kube-proxy "
        "(hand-made, copied, or its comment edited) and kube-proxy will not keep it up to date.",
    ),
    "cluster-services": (
        "Do the rules hold exactly the Service ports of the cluster objects?",
        "Rules for a deleted Service keep answering on its old addresses, and a Service without "
        "rules is unreachable from this node; usually kube-proxy is not running, cannot reach "
        "the API server, or is watching another cluster.",
    ),
    "cluster-endpoints": (
        "Do the rules list exactly the endpoints the cluster objects select for this node?",
        "Missing endpoints get no traffic and stale ones get connections that fail; usually "
        "kube-proxy has stopped syncing (crash loop, API server unreachable, sync errors in its "
        "log) or its view of the EndpointSlices is old.",
    ),
    "cluster-addresses": (
        "Do the rules know every address of the Service port (cluster IP, external IPs, "
        "load-balancer IPs, node port)?",
        "An address the rules do not know is not translated on this node, and one they still "
        "know is a leftover; usually kube-proxy has not synced since the Service changed, or "
        "the LoadBalancer status uses ipMode Proxy or a hostname.",
    ),
    "cluster-probabilities": (
        "Do the endpoint probabilities match the endpoint count the cluster objects give?",
        "Probabilities computed for another endpoint count split traffic unevenly; usually "
        "rules left from before endpoints changed, because kube-proxy did not resync.",
    ),
    "proxy-mode": (
        "Which proxy mode wrote these rules, and is anything left from another mode?",
        "In IPVS mode Services are balanced by IPVS (ipvsadm -Ln shows them), these rules only "
        "mark and filter; chains of iptables mode that nothing jumps to are left from a mode "
        "switch and do nothing (kube-proxy --cleanup or a reboot removes them).",
    ),
    "reject": (
        "Is no REJECT rule answering for the Service port?",
        "kube-proxy REJECTs connections to a Service without endpoints, so clients get "
        "'connection refused' at once; fix the endpoints (selector, readiness, ports), not "
        "the firewall.",
    ),
}


def finding(check: str, status: str, summary: str, rules: Sequence[Ref] | None = None,
            details: list[str] | None = None) -> Finding:
    question, meaning = QUESTIONS[check]
    return Finding(check, question, status, summary, meaning, list(rules or []), list(details or []))


def _chain_refs(view: RulesetView, table: str, chain: str) -> list[RuleRef]:
    found = view.chain(table, chain)
    if found is None:
        return []
    return [RuleRef(table, chain, i, r) for i, r in enumerate(found.rules)]


def counted(ref: Ref, what: str | None = None) -> str | None:
    """``this REJECT matched 1,234 packets (56,789 bytes)`` when the dump has counters."""
    if ref.counters is None:
        return None
    packets, size = ref.counters
    what = what or (ref.jump or "rule")
    return (f"{ref.where}:{ref.line or '?'}: this {what} matched {packets:,} packet(s) "
            f"({size:,} bytes) since its counters were last zeroed")


def _counter_details(refs: Sequence[Ref], what: str | None = None) -> list[str]:
    return [text for text in (counted(r, what) for r in refs) if text is not None]


# -- node checks ------------------------------------------------------------------------------

def check_proxy_mode(view: RulesetView) -> Finding | None:
    """IPVS mode and what iptables mode left behind (None on an iptables-mode node)."""
    if view.mode != "ipvs":
        return None
    refs = [view.mode_evidence] if view.mode_evidence is not None else []
    names: list[str] = []
    for svc in view.leftovers:
        chains = sorted(svc.chains.values()) + sorted(svc.endpoints) + sorted(svc.orphan_endpoints)
        label = svc.name if not svc.name.startswith("<unknown") else "a Service port not named in the dump"
        names.append(f"{label} ({', '.join(chains)})")
        refs += [r for c in sorted(svc.chains.values()) for r in _chain_refs(view, "nat", c)[:1]]
    details = []
    if names:
        details.append("left from iptables mode, nothing jumps to them: " + "; ".join(names))
    if view.leftover_endpoint_chains:
        details.append(f"{len(view.leftover_endpoint_chains)} endpoint chain(s) left from iptables mode: "
                       + ", ".join(view.leftover_endpoint_chains))
    summary = "IPVS mode: Services are balanced by IPVS, these rules only mark and filter"
    left = [f"{n} {what}" for n, what in ((len(view.leftovers), "Service port(s)"),
                                          (len(view.leftover_endpoint_chains), "endpoint chain(s)")) if n]
    if left:
        summary += f"; unused iptables-mode chains of {' and '.join(left)} are left from a mode switch"
    return finding("proxy-mode", INFO, summary, refs, details)


def check_service_hooks(view: RulesetView) -> Finding:
    if view.chain("nat", "KUBE-SERVICES") is None:
        return finding("service-hooks", NOT_APPLICABLE, "no nat KUBE-SERVICES chain: kube-proxy's "
                       "iptables rules are not on this node")
    refs: list[Ref] = []
    missing = []
    for hook in ("PREROUTING", "OUTPUT"):
        jumps = [r for r in _chain_refs(view, "nat", hook) if r.rule.jump == "KUBE-SERVICES"]
        refs += jumps
        if not jumps:
            missing.append(hook)
    if missing:
        return finding("service-hooks", FAILED, f"no jump to KUBE-SERVICES from nat {' and '.join(missing)}",
                       refs)
    return finding("service-hooks", PASSED, "nat PREROUTING and OUTPUT jump to KUBE-SERVICES", refs)


def check_masquerade(view: RulesetView) -> Finding:
    nat = view.table("nat")
    marks = masquerade_marks(view)
    uses_masq = nat is not None and any(
        r.jump == "KUBE-MARK-MASQ" for _, _, r in nat.rules()
    )
    if nat is None or (not marks and not uses_masq and "KUBE-POSTROUTING" not in nat.chains):
        return finding("masquerade", NOT_APPLICABLE, "no kube-proxy masquerade mark or rule in nat")
    looked = [ref for _, ref in marks]
    if not marks:
        looked += masquerade_rules(nat)
        reason = ("rules jump to KUBE-MARK-MASQ but it sets no mark" if uses_masq
                  else "nothing sets a masquerade mark")
        return finding("masquerade", FAILED, reason, looked)
    failed = []
    details = []
    for mark, _ in marks:
        walk = follow(nat, mark)
        looked += [r for r in walk.path if r not in looked]
        if walk.masqueraded:
            details.append(f"mark {mark:#x}: masqueraded by {walk.path[-1].chain} rule {walk.path[-1].index + 1}")
        else:
            failed.append(mark)
            end = walk.path[-1] if walk.path else None
            if end is not None and end.rule.jump in ("RETURN", "ACCEPT", "DROP"):
                where = f"stops at {end.chain} rule {end.index + 1} (-j {end.rule.jump})"
            else:
                where = "reaches no MASQUERADE rule"
            details.append(f"mark {mark:#x}: {where}")
    if failed:
        if "KUBE-POSTROUTING" in nat.chains and not any(
                r.jump == "KUBE-POSTROUTING" for r in nat.chain("POSTROUTING").rules):
            details.append("nat POSTROUTING does not jump to KUBE-POSTROUTING")
        return finding("masquerade", FAILED,
                       "packets marked " + ", ".join(f"{m:#x}" for m in failed) + " are not masqueraded",
                       looked, details)
    return finding("masquerade", PASSED, "marked packets are masqueraded in nat POSTROUTING", looked, details)


def check_nodeports_jump(view: RulesetView) -> Finding:
    services = _chain_refs(view, "nat", "KUBE-SERVICES")
    tails = [r for r in services if r.rule.jump == "KUBE-NODEPORTS"]
    nodeports = _chain_refs(view, "nat", "KUBE-NODEPORTS")
    if not nodeports and not tails:
        return finding("nodeports-jump", NOT_APPLICABLE, "no node ports in nat KUBE-NODEPORTS")
    if not tails:
        return finding("nodeports-jump", FAILED,
                       f"KUBE-NODEPORTS has {len(nodeports)} rule(s) but KUBE-SERVICES never jumps to it",
                       nodeports[:3])
    details = []
    if tails[-1] is not services[-1]:
        after = len(services) - tails[-1].index - 1
        details.append(f"{after} rule(s) follow it; kube-proxy keeps it last")
    return finding("nodeports-jump", PASSED, "KUBE-SERVICES jumps to KUBE-NODEPORTS", tails, details)


NODE_CHECKS: tuple[Callable[[RulesetView], Finding | None], ...] = (
    check_proxy_mode,
    check_service_hooks,
    check_masquerade,
    check_nodeports_jump,
)
"""A node check returns None when its question does not arise on this node at all."""


# -- Service port checks ----------------------------------------------------------------------

def _describe(addr_kind: str) -> str:
    return {"cluster-ip": "cluster IP", "external-ip": "external IP", "lb-ip": "load-balancer IP",
            "node-port": "node port"}[addr_kind]


def check_entry(view: RulesetView, svc: ServicePortView) -> Finding:
    if svc.only_expected:
        return finding("entry", FAILED, "the rules have nothing for this Service port of the "
                       "cluster objects")
    if not svc.chains and not svc.addresses and not svc.missing_chains:
        return finding("entry", NOT_APPLICABLE, "no nat rules for this Service port")
    nat = view.table("nat")
    refs = [a.ref for a in svc.addresses]
    problems: list[str] = []
    summary_parts: list[str] = []
    redacted: list[str] = []
    for addr in svc.addresses:
        where = hostport(addr.ip, addr.port) if addr.kind != "node-port" else f"{addr.port}"
        part = f"{_describe(addr.kind)} {where}"
        if addr.ip is not None and is_redacted(addr.ip):
            if part not in redacted:
                redacted.append(part)
            continue
        if part not in summary_parts:
            summary_parts.append(part)
        if addr.ip is not None and not _valid_ip(addr.ip) and not any(addr.ip + " " in p for p in problems):
            problems.append(f"{_describe(addr.kind)} {addr.ip} is not an address "
                            f"({_problem_at(view, addr.ref)})")
        chain = nat.chains.get(addr.target or "") if nat is not None else None
        if chain is None:
            problems.append(f"{_describe(addr.kind)} {where} jumps to {addr.target}, which does not exist")
        elif not chain.rules:
            problems.append(f"{_describe(addr.kind)} {where} jumps to {addr.target}, which is empty")
    referenced = {a.target for a in svc.addresses}
    for ref in svc.ext_rules + svc.firewall_rules + svc.other_balancing_rules:
        referenced.add(ref.jump)
    for name in sorted(svc.chains.values()):
        if name not in referenced:
            problems.append(f"no rule jumps to {name}: the chain is not in use")
            refs += _chain_refs(view, "nat", name)[:2]
    if not svc.addresses:
        problems.insert(0, "no KUBE-SERVICES or KUBE-NODEPORTS rule leads to this Service port")
    elif not any(a.kind == "cluster-ip" for a in svc.addresses) and not svc.local_drops and not svc.rejects:
        problems.append("no cluster-IP rule in KUBE-SERVICES: kube-proxy writes one for every "
                        "Service port it handles")
    if problems:
        return finding("entry", FAILED, problems[0], refs, problems[1:])
    if redacted:
        return finding("entry", INFO, f"cannot check {', '.join(redacted)}: redacted in the dump; "
                       f"the rest pass: {', '.join(summary_parts) or 'nothing else'}", refs)
    return finding("entry", PASSED, ", ".join(summary_parts), refs)


def check_endpoints(view: RulesetView, svc: ServicePortView) -> Finding:
    if view.mode == "ipvs" and not svc.jumps:
        return finding("endpoints", NOT_APPLICABLE, "IPVS mode: endpoints are in IPVS (ipvsadm -Ln), "
                       "not in these rules")
    if svc.jumps:
        dests = sorted({_endpoint_label(svc, j) for j in svc.jumps})
        return finding("endpoints", PASSED, f"{len(dests)} endpoint(s): {', '.join(dests)}",
                       [j.ref for j in svc.jumps])
    if not svc.addresses and not svc.rejects and not svc.local_drops and svc.chains:
        return finding("endpoints", NOT_APPLICABLE, "nothing leads to this Service port's chains (see entry)")
    if svc.local_drops and not svc.rejects and not svc.chains:
        return finding("endpoints", NOT_APPLICABLE, "kube-proxy knows endpoints, none on this node "
                       "(see local-endpoints)", list(svc.local_drops))
    details = []
    refs = list(svc.rejects) + list(svc.local_drops)
    if svc.rejects:
        details.append("filter REJECT rules answer for it (kube-proxy: no endpoints)")
    if svc.local_drops:
        details.append("DROP rules for it: no local endpoints on this node")
    for kind in BALANCING_KINDS:
        name = svc.chains.get(kind)
        if name:
            refs += _chain_refs(view, "nat", name)
            details.append(f"{name} has no endpoint rule")
    return finding("endpoints", FAILED, "no endpoint on this node's rules", refs, details)


def _endpoint_label(svc: ServicePortView, jump: EndpointJump) -> str:
    sep = svc.endpoints.get(jump.sep)
    if sep is not None and sep.destination:
        return sep.destination
    said = jump.comment_endpoint
    return f"{said} ({jump.sep} missing)" if said and sep is None else (said or jump.sep)


def check_probabilities(view: RulesetView, svc: ServicePortView) -> Finding:
    if not svc.jumps:
        return finding("probabilities", NOT_APPLICABLE, "no endpoint rules")
    problems: list[str] = []
    refs: list[Ref] = []
    parts: list[str] = []
    for kind in BALANCING_KINDS:
        jumps = svc.balancing(kind)
        if not jumps:
            continue
        refs += [j.ref for j in jumps]
        split = judge([j.probability for j in jumps])
        if split.even and len(jumps) == 1:
            parts.append(f"{jumps[0].chain}: one endpoint rule, it takes all connections")
        elif split.even:
            parts.append(f"{jumps[0].chain}: {len(jumps)} ways, {float(split.shares[0]):.2%} each")
        else:
            shares = ", ".join(f"{float(s):.2%}" for s in split.shares)
            problems += [f"{jumps[0].chain}: {p}" for p in split.problems]
            problems.append(f"{jumps[0].chain}: shares are {shares}")
    if problems:
        return finding("probabilities", FAILED, problems[0], refs, problems[1:])
    return finding("probabilities", PASSED, "; ".join(parts), refs)


@lru_cache(maxsize=1 << 16)
def _valid_destination(text: str) -> bool:
    addr, sep, port = text.rpartition(":")
    if not sep or not digits(port) or not 0 < int(port) < 65536:
        return False
    if addr.startswith("[") and addr.endswith("]"):
        addr = addr[1:-1]
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return not ip.is_unspecified


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _problem_at(view: RulesetView, ref: Ref) -> str:
    for p in view.ruleset.problems:
        if p.line == ref.line:
            return f"line {p.line}: {p.message}"
    return "the rule could not be read"


@dataclass(frozen=True, slots=True)
class EndpointWords:
    """How a proxy mode's rules are spoken of by the endpoint-dnat check: iptables jumps to
    KUBE-SEP chains; nftables goes to endpoint chains or DNATs through the entries of a map,
    which have no chain of their own."""

    none: str
    """The summary when the Service port has no endpoints to check."""
    sends: str
    """How a Service chain reaches an endpoint (``jumps to``)."""
    said: str
    """Who claims an endpoint address (``{chain} says it is``)."""
    orphan: str
    """What is wrong with an endpoint chain nothing reaches."""
    passed: str
    """The summary when every endpoint DNATs right (``{n}``: how many)."""
    whole_chains: bool
    """Quote an endpoint's whole chain (iptables: the hairpin mark beside the DNAT) rather
    than only its DNAT rule or map entry."""


IPTABLES_ENDPOINT_WORDS = EndpointWords(
    none="no endpoint chains", sends="jumps to", said="{chain} says it is",
    orphan="carries this Service's comment but no Service chain jumps to it",
    passed="{n} endpoint chain(s) DNAT to their endpoint", whole_chains=True)


def check_endpoint_dnat(view: RulesetView, svc: ServicePortView) -> Finding:
    return endpoint_dnat(view, svc, IPTABLES_ENDPOINT_WORDS)


def endpoint_dnat(view: RulesetView, svc: ServicePortView, words: EndpointWords) -> Finding:
    """Does every endpoint chain (or map entry) exist and DNAT to its endpoint? Both modes."""
    if not svc.jumps and not svc.orphan_endpoints:
        return finding("endpoint-dnat", NOT_APPLICABLE, words.none)

    def quoted(sep: EndpointChain) -> list[Ref]:
        if words.whole_chains:
            return list(sep.rules)
        return [sep.dnat[0][1]] if sep.dnat else sep.rules[:1]

    problems: list[str] = []
    cannot: list[str] = []
    bad: list[Ref] = []
    good: list[Ref] = []
    seen: set[str] = set()
    for jump in svc.jumps:
        if jump.sep in seen:
            continue
        seen.add(jump.sep)
        sep = svc.endpoints.get(jump.sep)
        if sep is None:
            problems.append(f"{jump.chain} {words.sends} {jump.sep}, which does not exist")
            bad.append(jump.ref)
            continue
        said = words.said.format(chain=jump.chain)
        problem = _dnat_problem(view, svc, said, jump.comment_endpoint, sep)
        if problem and not sep.rules and view.redacted_lines:
            cannot.append(f"cannot check {sep.name}: it is empty, which kube-proxy never writes, and "
                          "this dump has redacted addresses, so its rules were probably removed with "
                          "the endpoint's address")
            bad.append(jump.ref)
        elif problem:
            problems.append(problem)
            bad += quoted(sep) or [jump.ref]
        else:
            good += quoted(sep)
    for name, sep in sorted(svc.orphan_endpoints.items()):
        bad += quoted(sep)[:2]
        problems.append(f"{name} ({sep.destination or 'no DNAT'}) {words.orphan}")
    if not words.whole_chains:
        good = list(dict.fromkeys(good))  # the map entries of a DNAT share its rule
    if problems:
        return finding("endpoint-dnat", FAILED, problems[0], bad + good, problems[1:] + cannot)
    if cannot:
        return finding("endpoint-dnat", WARNING, cannot[0], bad + good, cannot[1:])
    return finding("endpoint-dnat", PASSED, words.passed.format(n=len(seen)), good)


def _dnat_problem(view: RulesetView, svc: ServicePortView, said_by: str, said: str | None,
                  sep: EndpointChain) -> str | None:
    """What is wrong with an endpoint chain's DNAT, or None; ``said_by`` names who claims
    the endpoint is ``said``."""
    if not sep.dnat:
        return f"{sep.name} has no DNAT rule" + (" (it is empty)" if not sep.rules else "")
    dest, dnat_ref = sep.dnat[0]
    if isinstance(dnat_ref, RuleRef) and dnat_ref.rule.opaque is not None:
        return f"{sep.name}: DNAT rule unreadable ({_problem_at(view, dnat_ref)})"
    if not _valid_destination(dest):
        return f"{sep.name}: DNAT to {dest or '(nothing)'}, not an endpoint address:port"
    if said and said != dest:
        return f"{sep.name}: DNAT to {dest} but {said_by} {said}"
    if sep.protocol and svc.protocol != "?" and sep.protocol != svc.protocol:
        return f"{sep.name}: DNAT only matches {sep.protocol}, the Service port is {svc.protocol}"
    return None


def check_hairpin(view: RulesetView, svc: ServicePortView) -> Finding:
    seps = [s for s in svc.endpoints.values() if s.destination and _valid_destination(s.destination)]
    if not seps:
        return finding("hairpin", NOT_APPLICABLE, "no endpoint chain with a valid DNAT rule")
    problems: list[str] = []
    refs: list[Ref] = []
    for sep in seps:
        dest = sep.destination or ""
        ip = dest.rpartition(":")[0].strip("[]")
        dnat_index = sep.dnat[0][1].index
        ok = [m for m in sep.masq
              if m.index < dnat_index and host(_source(m)) == ip]
        refs += ok or sep.masq or sep.rules[:1]
        if not ok:
            wrong = [host(_source(m)) for m in sep.masq]
            problems.append(f"{sep.name} has no rule marking packets from {ip} for masquerade"
                            + (f" (it marks {', '.join(str(w) for w in wrong)})" if wrong else ""))
    if problems:
        return finding("hairpin", FAILED, problems[0], refs, problems[1:])
    return finding("hairpin", PASSED, f"{len(seps)} endpoint chain(s) masquerade their own endpoint", refs)


def _dport_text(ref: Ref) -> str:
    """The destination port an iptables rule or an nftables element matches (``?``)."""
    if isinstance(ref, RuleRef):
        return next((str(o.value) for o in ref.rule.matches if o.name == "dport"), "?")
    parts = nft_element_parts(ref)
    return str(parts[-1]) if parts else "?"


def frontend_text(ref: Ref) -> str:
    """``10.96.0.10:53`` or ``node port 30080``: the frontend a REJECT/DROP rule or a
    no-endpoint element answers for."""
    if isinstance(ref, RuleRef):
        dst = ref.rule.builtin("destination")
        port = _dport_text(ref)
        return hostport(host(dst.value), port) if dst is not None else f"node port {port}"
    parts = nft_element_parts(ref)
    if len(parts) == 3:
        return hostport(str(parts[0]), parts[2])
    return f"node port {parts[-1]}" if parts else "?"


def _source(ref: Ref) -> str | None:
    if not isinstance(ref, RuleRef):
        return None
    opt = ref.rule.builtin("source")
    return None if opt is None or opt.negated else opt.value


def _policy_local(svc: ServicePortView) -> bool:
    local_comments = ("ext-local-masq", "ext-local-route", "ext-pod")
    for ref in svc.ext_rules:
        c = parse_comment(ref.comment)
        if c is not None and c.kind in local_comments:
            return True
    return "XLB" in svc.chains or "SVL" in svc.chains or bool(svc.local_drops)


def check_local_endpoints(view: RulesetView, svc: ServicePortView) -> Finding:
    if not _policy_local(svc):
        return finding("local-endpoints", NOT_APPLICABLE, "no Local traffic policy in the rules")
    local = svc.balancing("SVL") + svc.balancing("XLB")
    refs = [j.ref for j in local] + list(svc.local_drops)
    ext = svc.chains.get("EXT")
    svl = svc.chains.get("SVL")
    ext_to_local = True
    if ext is not None:
        ext_refs = _chain_refs(view, "nat", ext)
        refs += ext_refs
        ext_to_local = svl is not None and any(r.jump == svl for r in ext_refs)
    where = sorted({f"{r.table} {r.chain}" for r in svc.local_drops})
    if local:
        problems = []
        if not ext_to_local:
            problems.append(f"{ext} does not end in a jump to its local-endpoint chain (KUBE-SVL-), "
                            "so external traffic does not reach the local endpoints")
        if svc.local_drops:
            problems.append("DROP rules for \"no local endpoints\" in " + ", ".join(where)
                            + " although local endpoint rules exist")
        if problems:
            return finding("local-endpoints", FAILED, problems[0], refs,
                           problems[1:] + _counter_details(list(svc.local_drops), "DROP"))
        return finding("local-endpoints", PASSED, f"{len(local)} local endpoint(s)", refs)
    details = []
    if svc.local_drops:
        details.append("kube-proxy's DROP rules for it: " + ", ".join(where))
        details += _counter_details(list(svc.local_drops), "DROP")
    for ref in svc.health_checks:
        port = _dport_text(ref)
        details.append(f"health check node port {port} is open: kube-proxy answers it with 503 "
                       "while no pod runs here, so a load balancer that checks it stops sending here")
        refs.append(ref)
    if svc.local_drops:
        internal = any(r.table == "filter" and r.chain == "KUBE-SERVICES" for r in svc.local_drops)
        external = any(not (r.table == "filter" and r.chain == "KUBE-SERVICES") for r in svc.local_drops)
        what = " and ".join(w for w, on in (("external traffic to this node", external),
                                            ("traffic from this node", internal)) if on)
        return finding("local-endpoints", INFO, f"no local endpoint here: {what} is dropped, by design",
                       refs, details)
    return finding("local-endpoints", FAILED, "no local endpoint here and no rule drops external "
                   "traffic: it reaches no endpoint", refs, details)


def check_chain_names(view: RulesetView, svc: ServicePortView) -> Finding:
    spn = svc.written_name
    if spn is None or svc.protocol == "?" or (not svc.chains and not svc.endpoints):
        return finding("chain-names", NOT_APPLICABLE, "no named chains to compare")
    problems: list[str] = []
    refs: list[Ref] = []
    expected_hash = port_proto_hash(spn, svc.protocol)
    for kind, name in sorted(svc.chains.items()):
        if name != f"KUBE-{kind}-{expected_hash}":
            problems.append(f"{name} should be KUBE-{kind}-{expected_hash} for {spn} {svc.protocol}")
            refs += _chain_refs(view, "nat", name)[:1]
    for name, sep in sorted(svc.endpoints.items()):
        if sep.spn is not None and service_port_name(sep.spn) != svc.name:
            problems.append(f"{name} belongs to {service_port_name(sep.spn)}, not to {svc.name}")
            refs += sep.rules[:1]
            continue
        dest = sep.destination
        if dest and _valid_destination(dest):
            want = "KUBE-SEP-" + port_proto_hash(spn, svc.protocol, dest)
            if name != want:
                problems.append(f"{name} should be {want} for endpoint {dest}")
                refs += sep.rules[:1]
    if problems:
        return finding("chain-names", FAILED, problems[0], refs, problems[1:])
    return finding("chain-names", PASSED, f"chain names match {spn} {svc.protocol}")


def check_reject(view: RulesetView, svc: ServicePortView) -> Finding:
    if not svc.rejects:
        return finding("reject", PASSED, "no REJECT rule for it")
    where = []
    for ref in svc.rejects:
        where.append(frontend_text(ref))
    refs = list(svc.rejects)
    details = _counter_details(refs, "REJECT")
    if view.mode == "ipvs":
        return finding("reject", FAILED, f"REJECT for {', '.join(where)} left from iptables mode",
                       refs, ["kube-proxy in IPVS mode neither writes nor removes these rules: it "
                              "refuses connections on this node whatever endpoints IPVS has", *details])
    if not svc.jumps and not svc.chains:
        return finding("reject", INFO, f"kube-proxy REJECTs {', '.join(where)} because the Service "
                       "port has no endpoints (see endpoints)", refs, details)
    return finding("reject", FAILED, f"REJECT for {', '.join(where)} although the rules have "
                   "endpoints for it", refs, details)


SERVICE_CHECKS: tuple[Callable[[RulesetView, ServicePortView], Finding], ...] = (
    check_entry,
    check_endpoints,
    check_probabilities,
    check_endpoint_dnat,
    check_hairpin,
    check_local_endpoints,
    check_chain_names,
    check_reject,
)
