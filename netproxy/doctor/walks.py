"""Checks that walk packets through the whole ruleset with the tracer.

The rule checks in :mod:`.checks` look at kube-proxy's own chains; a walk also goes through
everything else on the node (Docker, CNI and firewall rules, the filter table), so it shows
what really happens to a connection. Connections start from every kind of client
(:func:`sources`): a pod of the node's pod CIDR, arriving on the pods' interface when the
rules tell it (else on the made-up ``doctor0``), the node itself, and a client outside the
pod network that the node routes; they leave on the made-up ``doctor1``, routed (not
bridged), as pod-to-Service traffic is. Where the verdict hangs on what the dump does not say
(the pods' interface, whether an endpoint is this node), the finding is a warning.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from netproxy.doctor.checks import counted
from netproxy.doctor.report import FAILED, INFO, NOT_APPLICABLE, PASSED, WARNING, Finding
from netproxy.errors import TraceError
from netproxy.kubeview.model import NftRef, Ref, RuleRef, RulesetView, ServicePortView, hostport
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


def _finding(check: str, status: str, summary: str, rules: Sequence[Ref] | None = None,
             details: list[str] | None = None) -> Finding:
    question, meaning = QUESTIONS[check]
    return Finding(check, question, status, summary, meaning, list(rules or []), list(details or []))


def _refs(view: RulesetView, hops: list[Hop]) -> list[Ref]:
    refs: list[Ref] = []
    for hop in hops:
        if hop.family is not None:  # an nftables rule
            found = _nft_ref(view, hop)
            if found is not None:
                refs.append(found)
            continue
        chain = view.chain(hop.table, hop.chain)
        if hop.rule is None or chain is None or hop.rule > len(chain.rules):
            continue
        refs.append(RuleRef(hop.table, hop.chain, hop.rule - 1, chain.rules[hop.rule - 1]))
    return refs


def _nft_ref(view: RulesetView, hop: Hop) -> NftRef | None:
    """The nftables rule of a hop, from the listing the view was read from."""
    table = view.nft.tables.get((hop.family or "", hop.table)) if view.nft is not None else None
    chain = table.chains.get(hop.chain) if table is not None else None
    if chain is None or hop.rule is None or hop.rule > len(chain.rules):
        return None
    return NftRef(table.family, table.name, chain.name, hop.rule - 1, rule=chain.rules[hop.rule - 1]) \
        if table is not None else None


def _cluster_ip(view: RulesetView, svc: ServicePortView) -> tuple[str, int] | None:
    for addr in svc.addresses:
        if addr.kind == "cluster-ip" and addr.ip and addr.port is not None:
            return addr.ip, addr.port
    return None


def _endpoints(svc: ServicePortView) -> list[str]:
    """The endpoints a connection to the cluster IP is spread over: those of the chain the
    cluster IP leads to (the local chain for internalTrafficPolicy Local)."""
    out: list[str] = []
    local = svc.chains.get("SVL")
    internal_local = local is not None and any(a.kind == "cluster-ip" and a.target == local
                                               for a in svc.addresses)
    first, second = ("SVL", "SVC") if internal_local else ("SVC", "SVL")
    for jump in svc.balancing(first) or svc.balancing(second):
        sep = svc.endpoints.get(jump.sep)
        if sep is not None and sep.destination and sep.destination not in out:
            out.append(sep.destination)
    return out


def _trace(tracer: Tracer, packet: Packet) -> list[Outcome] | str:
    try:
        return list(tracer.trace(packet).outcomes)
    except TraceError as err:
        return str(err)


@dataclass(frozen=True, slots=True)
class Source:
    """Where a traced connection starts: a pod on this node, the node itself, or a client
    outside the pod network whose packets the node routes."""

    label: str
    src: str
    origin: str
    in_interface: str | None
    guessed: bool = False
    """The interface is made up: the dump does not say which one the pods use."""


NODE_STANDIN = {"ipv4": "192.0.2.10", "ipv6": "2001:db8::10"}
"""The node's address when it is not known (documentation range)."""


def pod_address(cidrs: Sequence[str], avoid: set[str]) -> str | None:
    """A pod address inside the first pod CIDR that is none of ``avoid`` (the Service's own
    endpoints, which would make the walk a hairpin)."""
    for text in cidrs:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            continue
        for offset in range(5, 64):
            if offset >= net.num_addresses - 1:
                break
            candidate = str(net.network_address + offset)
            if candidate not in avoid:
                return candidate
    return None


def _networks(texts: Sequence[str] | set[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for text in texts:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            continue
        if net.prefixlen > 0:
            nets.append(net)
    return nets


def _overlaps(a: ipaddress.IPv4Network | ipaddress.IPv6Network,
              b: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    return a.version == b.version and a.overlaps(b)


def pod_interface(view: RulesetView) -> tuple[str, bool]:
    """The interface pod traffic arrives on, and whether the rules (or a flag) say so: kube-proxy's
    ``! -i`` detector, else an interface the rules pair with a subnet of the pod CIDR (old flannel
    setups put the pods on docker0, ``-s 10.1.15.0/24 ! -o docker0 -j MASQUERADE``)."""
    if view.pod_interface:
        return view.pod_interface, True
    pods = _networks(view.pod_cidrs)
    for name, nets in sorted(view.interface_nets.items()):
        if any(_overlaps(n, p) for n in _networks(nets) for p in pods):
            return name, True
    return POD_INTERFACE, False


def other_pod_interfaces(view: RulesetView) -> list[str]:
    """Interfaces the rules name that could be the pods' (no rule ties them to another subnet)."""
    pods = _networks(view.pod_cidrs)
    out = []
    for name, nets in sorted(view.interface_nets.items()):
        own = _networks(nets)
        if not own or any(_overlaps(n, p) for n in own for p in pods):
            out.append(name)
    return out


def sources(view: RulesetView, svc: ServicePortView, tracer: Tracer) -> list[Source]:
    """Every kind of client of a cluster IP, pod of this node's pod CIDR first."""
    family = view.ruleset.family
    out: list[Source] = []
    avoid = {ep.rpartition(":")[0].strip("[]") for ep in _endpoints(svc)}
    pod = pod_address(view.pod_cidrs, avoid)
    if pod is not None:
        interface, known = pod_interface(view)
        out.append(Source(f"a pod ({pod})", pod, "pod", interface, guessed=not known))
    node_ip = next((ip for ip in tracer.local_ips if not _loopback(ip) and (":" in ip) == (family == "ipv6")),
                   None)
    out.append(Source(f"the node ({node_ip or NODE_STANDIN[family]})", node_ip or NODE_STANDIN[family],
                      "node", None))
    out.append(Source(f"outside the pod network ({OUTSIDE[family]})", OUTSIDE[family], "pod",
                      POD_INTERFACE))
    return out


def _split_problems(outcomes: list[Outcome], endpoints: list[str]) -> list[str]:
    shares: dict[str, float] = {}
    for o in outcomes:
        if o.verdict == "ACCEPT" and o.dnat:
            key = o.dnat
        else:
            key = o.verdict + (f" after DNAT to {o.dnat}" if o.dnat else " without DNAT")
        shares[key] = shares.get(key, 0.0) + o.probability
    even = 1.0 / len(endpoints)
    problems = []
    for key, got in sorted(shares.items()):
        if key not in endpoints and got > SHARE_TOLERANCE:
            problems.append(f"{got:.2%} ends {key}")
    for ep in endpoints:
        got = shares.get(ep, 0.0)
        explained = any(k.endswith(f" to {ep}") for k in shares) or (problems and len(endpoints) == 1)
        if abs(got - even) > SHARE_TOLERANCE and not (explained and got < SHARE_TOLERANCE):
            problems.append(f"{ep} gets {got:.2%}, expected {even:.2%}")
    return problems


def _ending(view: RulesetView, outcome: Outcome) -> list[str]:
    """The counters of the rule that decided a lost connection, when the dump has them."""
    refs = _refs(view, outcome.path)
    if not refs or outcome.verdict == "ACCEPT":
        return []
    text = counted(refs[-1], refs[-1].jump or outcome.verdict)
    return [text] if text else []


def check_walk_split(view: RulesetView, svc: ServicePortView, tracer: Tracer) -> Finding:
    target = _cluster_ip(view, svc)
    endpoints = _endpoints(svc)
    if target is None or not endpoints or svc.protocol not in ("tcp", "udp", "sctp"):
        return _finding("walk-split", NOT_APPLICABLE, "no cluster IP with endpoint rules to trace")
    ip, port = target
    problems: list[str] = []
    failing: dict[tuple[tuple[str, ...], tuple[str, ...]], list[str]] = {}
    warnings: list[str] = []
    undecided: list[str] = []
    refs: list[Ref] = []
    first_ok: list[Ref] = []
    walked: list[str] = []
    for source in sources(view, svc, tracer):
        outcomes = _trace(tracer, _packet(svc, ip, port, source, source.in_interface))
        if isinstance(outcomes, str):
            undecided.append(f"from {source.label}: the tracer cannot walk it: {outcomes}")
            continue
        unknown = [o for o in outcomes if o.verdict == "UNKNOWN"]
        if unknown:
            undecided.append(f"from {source.label}: the tracer cannot decide "
                             f"{sum(o.probability for o in unknown):.2%} of it: {unknown[0].reason}")
            refs = refs or _refs(view, unknown[0].path)[-1:]
            continue
        walked.append(source.label.partition(" (")[0])
        found = _split_problems(outcomes, endpoints)
        if not found:
            first_ok = first_ok or _refs(view, outcomes[0].path)[:3]
            continue
        worst = next((o for o in outcomes if o.verdict != "ACCEPT" or (o.dnat or "") not in endpoints),
                     outcomes[0])
        passes_on = _passing_interface(view, svc, tracer, ip, port, source, endpoints) \
            if source.guessed else None
        if passes_on is not None:
            warnings.append(f"from {source.label}: {found[0]} if it arrives on {source.in_interface}, "
                            f"but arriving on {passes_on} it passes; the dump does not say which "
                            "interface the pods use (give --pod-bridge-interface)")
            refs = refs or _refs(view, worst.path)
            continue
        own = _maybe_this_node(view, tracer, worst)
        if own is not None:
            local_ok = _passes_as_local(view, svc, tracer, ip, port, source, endpoints, own)
            if local_ok:
                warnings.append(f"from {source.label}: {found[0]} if {own} is another machine; "
                                f"if it is this node's own address (a control-plane node) it passes "
                                "(give --node-ip to decide)")
                refs = refs or _refs(view, worst.path)
                continue
        if not failing:
            refs = _refs(view, worst.path)
        extra = _ending(view, worst)
        if own is not None:
            extra.append(f"the same whether {own} is another machine or this node")
        failing.setdefault((tuple(found), tuple(extra)), []).append(source.label)
    for (found_lines, extra_lines), labels in failing.items():
        if len(failing) == 1:  # one story for every source that fails: name them once
            problems += [f"from {_join(labels)}: {found_lines[0]}", *found_lines[1:]]
        else:
            problems += [f"from {_join(labels)}: {line}" for line in found_lines]
        problems += list(extra_lines)
    if problems:
        return _finding("walk-split", FAILED, problems[0], refs, problems[1:] + warnings + undecided)
    if warnings:
        return _finding("walk-split", WARNING, warnings[0], refs, warnings[1:] + undecided)
    if not walked:
        return _finding("walk-split", NOT_APPLICABLE, undecided[0], refs, undecided[1:])
    even = 1.0 / len(endpoints)
    if len(endpoints) == 1:
        summary = f"{hostport(ip, port)} reaches its one endpoint"
    else:
        summary = f"{hostport(ip, port)} reaches {len(endpoints)} endpoints, {even:.2%} each"
    summary += " from " + _join(walked)
    return _finding("walk-split", PASSED, summary, first_ok, undecided)


def _maybe_this_node(view: RulesetView, tracer: Tracer, outcome: Outcome) -> str | None:
    """The endpoint address a lost connection was sent to, when it could be this node's own
    (the apiserver of a control-plane node): outside the pod network and no ``--node-ip`` given."""
    if not outcome.dnat or tracer.local_ips or _in_pod_network(view, outcome.dnat):
        return None
    return outcome.dnat.rpartition(":")[0].strip("[]")


def _passes_as_local(view: RulesetView, svc: ServicePortView, tracer: Tracer, ip: str, port: int,
                     source: Source, endpoints: list[str], own: str) -> bool:
    """Whether the connection reaches its endpoints when ``own`` is one of the node's addresses."""
    local = Tracer(view.ruleset, local_ips=[own])
    outcomes = _trace(local, _packet(svc, ip, port, source, source.in_interface))
    if isinstance(outcomes, str) or any(o.verdict == "UNKNOWN" for o in outcomes):
        return False
    return not _split_problems(outcomes, endpoints)


def _in_pod_network(view: RulesetView, endpoint: str) -> bool:
    try:
        ip = ipaddress.ip_address(endpoint.rpartition(":")[0].strip("[]"))
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in _networks(view.pod_cidrs))


def _packet(svc: ServicePortView, ip: str, port: int, source: Source, interface: str | None) -> Packet:
    return Packet(dst=ip, dport=port, proto=svc.protocol, src=source.src, origin=source.origin,
                  in_interface=interface, out_interface=OUT_INTERFACE, bridged=False)


def _passing_interface(view: RulesetView, svc: ServicePortView, tracer: Tracer, ip: str, port: int,
                       source: Source, endpoints: list[str]) -> str | None:
    """An interface the rules name on which the same connection reaches its endpoints evenly."""
    for name in other_pod_interfaces(view):
        outcomes = _trace(tracer, _packet(svc, ip, port, source, name))
        if isinstance(outcomes, str) or any(o.verdict == "UNKNOWN" for o in outcomes):
            continue
        if not _split_problems(outcomes, endpoints):
            return name
    return None


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def check_walk_hairpin(view: RulesetView, svc: ServicePortView, tracer: Tracer) -> Finding:
    target = _cluster_ip(view, svc)
    endpoints = _endpoints(svc)
    if target is None or not endpoints or svc.protocol not in ("tcp", "udp", "sctp"):
        return _finding("walk-hairpin", NOT_APPLICABLE, "no cluster IP with endpoint rules to trace")
    if view.mode == "nftables" and not any(sep.masq for sep in svc.endpoints.values()):
        # kube-proxy masquerades hairpin traffic of this node's endpoints only (the
        # hairpin-connections elements): a pod elsewhere never sends through these rules.
        on_node = {_hairpin_endpoint(r) for r in svc.hairpins}
        endpoints = [ep for ep in endpoints if ep in on_node]
        if not endpoints:
            return _finding("walk-hairpin", NOT_APPLICABLE, "no endpoint on this node "
                            "(no hairpin-connections element) to trace reaching itself")
    ip, port = target
    problems: list[str] = []
    refs: list[Ref] = []
    undecided = []
    checked = 0
    for ep in endpoints[:HAIRPIN_SAMPLE]:
        pod = ep.rpartition(":")[0].strip("[]")
        packet = Packet(dst=ip, dport=port, proto=svc.protocol, src=pod, origin="pod",
                        in_interface=pod_interface(view)[0], out_interface=OUT_INTERFACE, bridged=False)
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


def _hairpin_endpoint(ref: Ref) -> str:
    """``ip:port`` of a ``hairpin-connections`` element (``EP . EP . proto . port``)."""
    from netproxy.kubeview.nftables import nft_element_parts

    parts = nft_element_parts(ref) if isinstance(ref, NftRef) else []
    return hostport(str(parts[1]), parts[3]) if len(parts) == 4 else ""


def _local_policy(svc: ServicePortView) -> bool:
    """externalTrafficPolicy Local, from the external chain's rules (both modes)."""
    local_svl = svc.chains.get("SVL")
    return "XLB" in svc.chains or any(
        (r.comment or "").startswith(("masquerade LOCAL traffic", "route LOCAL traffic",
                                      "short-circuit local traffic", "masquerade local traffic"))
        or (isinstance(r, NftRef) and local_svl is not None and r.jump == local_svl)
        for r in svc.ext_rules)


def check_walk_nodeport(view: RulesetView, svc: ServicePortView, tracer: Tracer) -> Finding:
    ports = sorted({a.port for a in svc.addresses if a.kind == "node-port" and a.port is not None})
    node_ip = next((ip for ip in tracer.local_ips if not _loopback(ip)), None)
    if view.nodeport_ips:  # nftables: only these addresses take NodePorts (nodeport-addresses)
        node_ip = next((ip for ip in tracer.local_ips if ip in view.nodeport_ips), node_ip)
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
    if local and not allowed and not reached and all(o.verdict == "DROP" for o in outcomes):
        return _finding("walk-nodeport", INFO, f"{where} (Local policy): no local endpoint here, "
                        "so external traffic to this node is dropped, by design",
                        _refs(view, outcomes[0].path), _ending(view, outcomes[0]))
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
