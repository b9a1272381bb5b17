"""Checks that walk packets through the whole ruleset with the tracer.

The rule checks in :mod:`.checks` look at kube-proxy's own chains; a walk also goes through
everything else on the node (Docker, CNI and firewall rules, the filter table), so it shows
what really happens to a connection. A dump does not say which interfaces a pod's traffic
uses, so packets arrive on the made-up ``doctor0`` and leave on ``doctor1``, routed (not
bridged), as pod-to-Service traffic is.
"""

from __future__ import annotations

from netproxy.doctor.report import FAILED, NOT_APPLICABLE, PASSED, Finding
from netproxy.doctor.view import RuleRef, RulesetView, ServicePortView, hostport
from netproxy.errors import TraceError
from netproxy.trace import Hop, Outcome, Packet, Tracer

POD_INTERFACE = "doctor0"
OUT_INTERFACE = "doctor1"
OUTSIDE = {"ipv4": "198.51.100.7", "ipv6": "2001:db8::7"}
"""A client address from the documentation ranges, so no rule of a real node names it."""
HAIRPIN_SAMPLE = 3
"""Endpoints per Service port traced reaching themselves (each walk forks over every endpoint;
the rule check ``hairpin`` covers all of them)."""
SHARE_TOLERANCE = 5e-5
"""How far a traced share may be from 1/n (old kube-proxy wrote 5-digit probabilities)."""

QUESTIONS: dict[str, tuple[str, str]] = {
    "walk-split": (
        "Does a traced new connection to the cluster IP reach every endpoint with an equal share?",
        "The tracer follows the connection through every rule on the node, so rules of other "
        "software (an earlier DROP, ACCEPT or DNAT, a firewall REJECT) that take traffic away "
        "from the endpoints show up here even when kube-proxy's chains look right.",
    ),
    "walk-nodeport": (
        "Does a traced connection from outside to the node port reach the endpoints its traffic "
        "policy allows, evenly?",
        "Clients of the NodePort (and of load balancers that forward to it) reach no endpoint or "
        "an uneven share of them on this node; usually a Local policy without a pod here, or a "
        "firewall rule on the node that drops or rejects the port.",
    ),
    "walk-hairpin": (
        "Is a pod that connects to its own Service masqueraded, as traced?",
        "Without SNAT the pod answers itself directly and drops the reply, so a pod cannot "
        "reach itself through its Service; usually the SEP chain's masquerade rule or the "
        "KUBE-POSTROUTING rule is missing, or another POSTROUTING rule accepts first.",
    ),
}


def _finding(check: str, status: str, summary: str, rules: list[RuleRef] | None = None,
             details: list[str] | None = None) -> Finding:
    question, meaning = QUESTIONS[check]
    return Finding(check, question, status, summary, meaning, list(rules or []), list(details or []))


def _refs(view: RulesetView, hops: list[Hop]) -> list[RuleRef]:
    refs = []
    for hop in hops:
        chain = view.chain(hop.table, hop.chain)
        if hop.rule is None or chain is None or hop.rule > len(chain.rules):
            continue
        refs.append(RuleRef(hop.table, hop.chain, hop.rule - 1, chain.rules[hop.rule - 1]))
    return refs


def _cluster_ip(view: RulesetView, svc: ServicePortView) -> tuple[str, int] | None:
    for addr in svc.addresses:
        if addr.kind == "cluster-ip" and addr.ip and addr.port is not None:
            return addr.ip, addr.port
    return None


def _endpoints(svc: ServicePortView) -> list[str]:
    out: list[str] = []
    for jump in svc.balancing("SVC") or svc.balancing("SVL"):
        sep = svc.endpoints.get(jump.sep)
        if sep is not None and sep.destination and sep.destination not in out:
            out.append(sep.destination)
    return out


def _trace(tracer: Tracer, packet: Packet) -> list[Outcome] | str:
    try:
        return list(tracer.trace(packet).outcomes)
    except TraceError as err:
        return str(err)


def check_walk_split(view: RulesetView, svc: ServicePortView, tracer: Tracer) -> Finding:
    target = _cluster_ip(view, svc)
    endpoints = _endpoints(svc)
    if target is None or not endpoints or svc.protocol not in ("tcp", "udp", "sctp"):
        return _finding("walk-split", NOT_APPLICABLE, "no cluster IP with endpoint rules to trace")
    ip, port = target
    packet = Packet(dst=ip, dport=port, proto=svc.protocol, src=OUTSIDE[view.ruleset.family],
                    origin="pod", in_interface=POD_INTERFACE, out_interface=OUT_INTERFACE, bridged=False)
    outcomes = _trace(tracer, packet)
    if isinstance(outcomes, str):
        return _finding("walk-split", NOT_APPLICABLE, f"the tracer cannot walk it: {outcomes}")
    unknown = [o for o in outcomes if o.verdict == "UNKNOWN"]
    if unknown:
        refs = _refs(view, unknown[0].path)
        return _finding("walk-split", NOT_APPLICABLE,
                        f"the tracer cannot decide {sum(o.probability for o in unknown):.2%} of it: "
                        f"{unknown[0].reason}", refs[-1:])
    shares: dict[str, float] = {}
    for o in outcomes:
        if o.verdict == "ACCEPT" and o.dnat:
            key = o.dnat
        else:
            key = o.verdict + (f" after DNAT to {o.dnat}" if o.dnat else " without DNAT")
        shares[key] = shares.get(key, 0.0) + o.probability
    even = 1.0 / len(endpoints)
    problems = []
    for ep in endpoints:
        got = shares.get(ep, 0.0)
        if abs(got - even) > SHARE_TOLERANCE:
            problems.append(f"{ep} gets {got:.2%}, expected {even:.2%}")
    for key, got in sorted(shares.items()):
        if key not in endpoints and got > SHARE_TOLERANCE:
            problems.append(f"{got:.2%} ends {key}")
    worst = next((o for o in outcomes if o.verdict != "ACCEPT" or (o.dnat or "") not in endpoints),
                 outcomes[0])
    if problems:
        return _finding("walk-split", FAILED, problems[0], _refs(view, worst.path), problems[1:])
    if len(endpoints) == 1:
        summary = f"{hostport(ip, port)} reaches its one endpoint"
    else:
        summary = f"{hostport(ip, port)} reaches {len(endpoints)} endpoints, {even:.2%} each"
    return _finding("walk-split", PASSED, summary, _refs(view, outcomes[0].path)[:3])


def check_walk_hairpin(view: RulesetView, svc: ServicePortView, tracer: Tracer) -> Finding:
    target = _cluster_ip(view, svc)
    endpoints = _endpoints(svc)
    if target is None or not endpoints or svc.protocol not in ("tcp", "udp", "sctp"):
        return _finding("walk-hairpin", NOT_APPLICABLE, "no cluster IP with endpoint rules to trace")
    ip, port = target
    problems: list[str] = []
    refs: list[RuleRef] = []
    undecided = []
    checked = 0
    for ep in endpoints[:HAIRPIN_SAMPLE]:
        pod = ep.rpartition(":")[0].strip("[]")
        packet = Packet(dst=ip, dport=port, proto=svc.protocol, src=pod, origin="pod",
                        in_interface=POD_INTERFACE, out_interface=OUT_INTERFACE, bridged=False)
        outcomes = _trace(tracer, packet)
        if isinstance(outcomes, str):
            undecided.append(f"{pod}: {outcomes}")
            continue
        own = [o for o in outcomes if o.dnat == ep]
        if not own or any(o.verdict == "UNKNOWN" for o in own):
            reason = next((o.reason for o in outcomes if o.verdict == "UNKNOWN"), "never reaches itself")
            undecided.append(f"{pod}: {reason}")
            continue
        checked += 1
        bad = [o for o in own if not o.masquerade and o.verdict == "ACCEPT"]
        if bad:
            problems.append(f"{pod} -> {hostport(ip, port)} -> {ep} leaves without masquerade")
            refs = refs or _refs(view, bad[0].path)  # one path is enough to show where
    if problems:
        return _finding("walk-hairpin", FAILED, problems[0], refs, problems[1:] + undecided)
    if not checked:
        return _finding("walk-hairpin", NOT_APPLICABLE, "the tracer cannot decide: " + undecided[0])
    sampled = f" (traced {checked} of {len(endpoints)})" if len(endpoints) > HAIRPIN_SAMPLE else ""
    return _finding("walk-hairpin", PASSED,
                    f"{checked} endpoint(s) reaching themselves are masqueraded{sampled}",
                    details=undecided)


def _local_policy(svc: ServicePortView) -> bool:
    return "XLB" in svc.chains or any(
        (r.rule.comment() or "").startswith(("masquerade LOCAL traffic", "route LOCAL traffic"))
        for r in svc.ext_rules)


def check_walk_nodeport(view: RulesetView, svc: ServicePortView, tracer: Tracer) -> Finding:
    ports = sorted({a.port for a in svc.addresses if a.kind == "node-port" and a.port is not None})
    node_ip = next((ip for ip in tracer.local_ips if not _loopback(ip)), None)
    if not ports or svc.protocol not in ("tcp", "udp", "sctp"):
        return _finding("walk-nodeport", NOT_APPLICABLE, "no node port")
    if node_ip is None:
        return _finding("walk-nodeport", NOT_APPLICABLE, "node address not known (give --node-ip)")
    local = _local_policy(svc)
    chains = (svc.balancing("SVL") or svc.balancing("XLB")) if local else svc.balancing("SVC")
    allowed: list[str] = []
    for jump in chains:
        sep = svc.endpoints.get(jump.sep)
        if sep is not None and sep.destination and sep.destination not in allowed:
            allowed.append(sep.destination)
    packet = Packet(dst=node_ip, dport=ports[0], proto=svc.protocol, src=OUTSIDE[view.ruleset.family],
                    origin="external", in_interface=POD_INTERFACE, out_interface=OUT_INTERFACE,
                    bridged=False)
    outcomes = _trace(tracer, packet)
    where = f"{hostport(node_ip, ports[0])}"
    if isinstance(outcomes, str):
        return _finding("walk-nodeport", NOT_APPLICABLE, f"the tracer cannot walk it: {outcomes}")
    unknown = [o for o in outcomes if o.verdict == "UNKNOWN"]
    if unknown:
        return _finding("walk-nodeport", NOT_APPLICABLE,
                        f"the tracer cannot decide {sum(o.probability for o in unknown):.2%} of it: "
                        f"{unknown[0].reason}", _refs(view, unknown[0].path)[-1:])
    reached: dict[str, float] = {}
    lost: dict[str, float] = {}
    for o in outcomes:
        if o.verdict == "ACCEPT" and o.dnat:
            reached[o.dnat] = reached.get(o.dnat, 0.0) + o.probability
        else:
            key = o.verdict + (f" after DNAT to {o.dnat}" if o.dnat else " without DNAT")
            lost[key] = lost.get(key, 0.0) + o.probability
    problems = [f"{p:.2%} ends {k}" for k, p in sorted(lost.items()) if p > SHARE_TOLERANCE]
    if allowed:
        even = 1.0 / len(allowed)
        problems += [f"{ep} gets {reached.get(ep, 0.0):.2%}, expected {even:.2%}" for ep in allowed
                     if abs(reached.get(ep, 0.0) - even) > SHARE_TOLERANCE]
    problems += [f"{ep} gets {p:.2%} but the {'Local' if local else 'Cluster'} policy does not "
                 "allow it" for ep, p in sorted(reached.items()) if ep not in allowed]
    policy = "Local" if local else "Cluster"
    if problems:
        worst = next((o for o in outcomes if o.verdict != "ACCEPT"), outcomes[0])
        return _finding("walk-nodeport", FAILED, f"{where} ({policy} policy): {problems[0]}",
                        _refs(view, worst.path), problems[1:])
    if len(allowed) == 1:
        summary = f"{where} ({policy} policy) reaches its one endpoint"
    else:
        summary = f"{where} ({policy} policy) reaches {len(allowed)} endpoints, {1 / len(allowed):.2%} each"
    return _finding("walk-nodeport", PASSED, summary, _refs(view, outcomes[0].path)[:3])


def _loopback(ip: str) -> bool:
    return ip.startswith("127.") or ip == "::1"


WALK_CHECKS = (check_walk_split, check_walk_nodeport, check_walk_hairpin)
