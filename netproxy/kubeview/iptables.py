"""Read kube-proxy's iptables rules into the Service model of :mod:`netproxy.kubeview.model`.

Works on what kube-proxy wrote in any release we know of: the current layout (KUBE-SVC /
KUBE-SVL / KUBE-EXT / KUBE-FW / KUBE-SEP, REJECT and DROP rules in filter), the ~1.11-1.23
layout (KUBE-XLB for ``externalTrafficPolicy: Local``, masquerade rules in KUBE-SERVICES and
KUBE-NODEPORTS, ``/32`` addresses), the ~1.1 layout (SEP chains setting the masquerade mark
inline with ``-j MARK --set-xmark``) and IPVS mode (nat KUBE-SERVICES matching kube-proxy's
ipsets; chains left from iptables mode are set aside). Nothing here judges the rules; the
doctor's checks do.
"""

from __future__ import annotations

from functools import lru_cache

from netproxy.chainnames import port_proto_hash
from netproxy.gcpause import paused_gc
from netproxy.kubeview.comments import Comment, parse_comment, service_port_name
from netproxy.kubeview.model import (
    BALANCING_KINDS,
    ENDPOINT_PREFIX,
    Address,
    EndpointChain,
    EndpointJump,
    RuleRef,
    RulesetView,
    ServicePortView,
    host,
    is_redacted,
)
from netproxy.kubeview.names import SERVICE_ROLES, chain_hash, chain_role
from netproxy.netfilter.model import Chain, Rule, Ruleset, Table
from netproxy.parser.tokens import split_words


def _protocol(rule: Rule) -> str | None:
    opt = rule.builtin("protocol")
    if opt is None or opt.negated or not opt.args:
        return None
    return opt.args[0].lower()


def _dport(rule: Rule) -> int | None:
    for opt in rule.matches:
        if opt.name == "dport" and opt.args and not opt.negated:
            try:
                return int(opt.args[0])
            except ValueError:
                return None
    return None


def _destination(rule: Rule) -> str | None:
    opt = rule.builtin("destination")
    if opt is None or opt.negated or not opt.args:
        return None
    return host(opt.args[0])


def _chain_kind(name: str | None) -> str | None:
    """SVC, SVL, EXT, FW or XLB for a per-Service-port chain (they share one hash), else None."""
    if name is None:
        return None
    return _kind_of(name)


@lru_cache(maxsize=1 << 18)
def _kind_of(name: str) -> str | None:
    role = chain_role(name)
    return role if role in SERVICE_ROLES else None


_hash = chain_hash


def _is_masq_mark(rule: Rule) -> bool:
    """Whether the rule marks for masquerading: ``-j KUBE-MARK-MASQ`` or an inline MARK set."""
    target = rule.target
    if target is None:
        return False
    if target.name == "KUBE-MARK-MASQ":
        return True
    return target.name == "MARK" and any(
        o.name in ("set-xmark", "set-mark", "or-mark") for o in target.options
    )


def _refs(table: Table, chain: Chain) -> list[RuleRef]:
    return [RuleRef(table.name, chain.name, i, r) for i, r in enumerate(chain.rules)]


def _opaque_words(rule: Rule) -> dict[str, str]:
    """``-p``, ``--comment`` and ``-j`` of a line the lenient parser kept as text."""
    try:
        words = split_words(rule.opaque or "")
    except ValueError:
        return {}
    found: dict[str, str] = {}
    for flag, value in zip(words, words[1:], strict=False):
        if flag in ("-p", "--comment", "-j") and flag not in found:
            found[flag] = value
    return found


def _endpoint_chain(table: Table, chain: Chain) -> EndpointChain:
    refs = _refs(table, chain)
    dnat: list[tuple[str, RuleRef]] = []
    masq: list[RuleRef] = []
    spn = protocol = None
    for ref in refs:
        rule = ref.rule
        if rule.opaque is not None:
            words = _opaque_words(rule)
            opaque_comment = parse_comment(words.get("--comment"))
            if opaque_comment is not None and spn is None:
                spn = opaque_comment.spn
            if words.get("-j") == "DNAT":
                dnat.append(("", ref))
                protocol = protocol or words.get("-p")
            continue
        comment = parse_comment(rule.comment())
        if comment is not None and spn is None:
            spn = comment.spn
        if rule.target is not None and rule.target.name == "DNAT":
            opt = rule.target.get("to-destination")
            dnat.append((opt.value if opt is not None else "", ref))
            protocol = protocol or _protocol(rule)
        elif _is_masq_mark(rule):
            masq.append(ref)
    return EndpointChain(chain.name, list(refs), list(dnat), list(masq), spn, protocol)


class _Builder:
    """Collects rules into Service port views; one instance per ruleset."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self.by_key: dict[tuple[str, str], ServicePortView] = {}
        self.by_hash: dict[str, ServicePortView] = {}
        self.by_name: dict[str, list[ServicePortView]] = {}
        """Views by Service port name, every protocol (health checks attach to all of them)."""
        self.hash_names: dict[str, tuple[str, str | None]] = {}
        """Hash to (Service port name, protocol) learnt from comments."""
        self.written: dict[str, str] = {}
        """Normalised Service port name to the spelling found in comments."""

    # -- naming: which Service port a hash belongs to -------------------------------------
    def learn(self, chain_name: str | None, comment: Comment | None, protocol: str | None) -> None:
        if chain_name is None or comment is None or _chain_kind(chain_name) is None:
            return
        h = _hash(chain_name)
        self.written.setdefault(service_port_name(comment.spn), comment.spn)
        name, proto = self.hash_names.get(h, (service_port_name(comment.spn), None))
        self.hash_names[h] = (name, proto or protocol)

    def view_for_hash(self, h: str) -> ServicePortView:
        found = self.by_hash.get(h)
        if found is not None:
            return found
        name, proto = self.hash_names.get(h) or well_known_hashes().get(h) or (f"<unknown {h}>", None)
        view = self.view(name, proto or "?")
        view.hash = h
        self.by_hash[h] = view
        return view

    def view(self, name: str, protocol: str) -> ServicePortView:
        key = (name, protocol)
        found = self.by_key.get(key)
        if found is None:
            found = self.by_key[key] = ServicePortView(name, protocol)
            self.by_name.setdefault(name, []).append(found)
        return found

    def finish(self) -> None:
        for view in self.by_key.values():
            view.written_name = self.written.get(view.name)


WELL_KNOWN_PORTS: tuple[tuple[str, str], ...] = (
    ("default/kubernetes:https", "tcp"),
    ("kube-system/kube-dns:dns", "udp"),
    ("kube-system/kube-dns:dns-tcp", "tcp"),
    ("kube-system/kube-dns:metrics", "tcp"),
    ("kube-system/metrics-server", "tcp"),
    ("kube-system/metrics-server:https", "tcp"),
    ("kube-system/calico-typha:calico-typha", "tcp"),
    ("calico-system/calico-typha:calico-typha", "tcp"),
    ("calico-apiserver/calico-api:apiserver", "tcp"),
)
"""Service ports most clusters have; a chain hash equal to one of theirs names it exactly."""


@lru_cache(maxsize=1)
def well_known_hashes() -> dict[str, tuple[str, str]]:
    return {port_proto_hash(spn, proto): (spn, proto) for spn, proto in WELL_KNOWN_PORTS}


def _redacted_lines(ruleset: Ruleset) -> set[int]:
    lines: set[int] = set()
    for problem in ruleset.problems:
        if any(is_redacted(word.strip("'\"")) for word in problem.message.split()):
            lines.add(problem.line)
    return lines


_IPVS_SETS = ("KUBE-CLUSTER-IP", "KUBE-LOAD-BALANCER", "KUBE-NODE-PORT-TCP", "KUBE-EXTERNAL-IP")


def _ipvs_evidence(nat: Table) -> RuleRef | None:
    """A nat KUBE-SERVICES rule matching one of kube-proxy's IPVS ipsets, if any."""
    chain = nat.chains.get("KUBE-SERVICES")
    if chain is None:
        return None
    for i, rule in enumerate(chain.rules):
        if any(o.module == "set" and o.args and o.args[0] in _IPVS_SETS for o in rule.matches):
            return RuleRef(nat.name, chain.name, i, rule)
    return None


def _local_detector(nat: Table, view: RulesetView) -> None:
    """Pod CIDRs and pod interface from kube-proxy's "not local, so masquerade" rules.

    Old layouts and IPVS mode write them in KUBE-SERVICES, current ones in every KUBE-SVC
    chain (the same detector each time, so the first chain that has one is enough).
    """
    cidrs: list[str] = []
    interfaces: list[str] = []
    services = nat.chains.get("KUBE-SERVICES")
    chains = [services] if services is not None else []
    chains += [c for c in nat.chains.values() if _chain_kind(c.name) in ("SVC", "SVL", "EXT")]
    for chain in chains:
        for rule in chain.rules:
            if rule.jump != "KUBE-MARK-MASQ":
                continue
            for name, found in (("source", cidrs), ("in-interface", interfaces)):
                opt = rule.builtin(name)
                if opt is not None and opt.negated and opt.args and opt.args[0] not in found:
                    found.append(opt.args[0])
        if chain is not services and (cidrs or interfaces):
            break
    view.pod_cidrs = cidrs
    view.pod_interface = interfaces[0].replace("+", "0") if interfaces else None


def _interface_nets(ruleset: Ruleset) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for table in ruleset.tables.values():
        for chain in table.chains.values():
            if _chain_kind(chain.name) is not None or chain.name.startswith(ENDPOINT_PREFIX):
                continue  # kube-proxy's per-Service chains name no interfaces but its detector's
            for rule in chain.rules:
                _pair_interfaces(rule, found)
    found.pop("lo", None)
    return found


def _pair_interfaces(rule: Rule, found: dict[str, set[str]]) -> None:
    """Record the interfaces ``rule`` names with the subnets it names beside them."""
    names = [o.args[0] for o in (rule.builtin("in-interface"), rule.builtin("out-interface"))
             if o is not None and o.args]
    if not names:
        return
    nets = {o.args[0] for o in (rule.builtin("source"), rule.builtin("destination"))
            if o is not None and o.args and not o.negated}
    for name in names:
        found.setdefault(name.replace("+", "0"), set()).update(nets)


def _has_entry(svc: ServicePortView) -> bool:
    return bool(svc.addresses or svc.rejects or svc.local_drops or svc.health_checks or svc.masq_rules)


def _split_leftovers(view: RulesetView) -> None:
    """IPVS mode: move Service ports that only have unused iptables-mode chains aside."""
    used = {sep for svc in view.services.values() for sep in svc.endpoints}
    for key, svc in list(view.services.items()):
        if not _has_entry(svc):
            view.leftovers.append(svc)
            del view.services[key]
    used_live = {sep for svc in view.services.values() for sep in svc.endpoints}
    named = {sep for svc in view.leftovers for sep in (*svc.endpoints, *svc.orphan_endpoints)}
    view.leftover_endpoint_chains = sorted(
        name for name in view.endpoint_chains if name not in used_live and name not in named
        and name not in used)


def build_view(ruleset: Ruleset) -> RulesetView:
    """Recover every Service port kube-proxy wrote into ``ruleset``."""
    # Hundreds of thousands of acyclic references to rules: keep the cyclic collector out,
    # also later, while the checks and walks allocate (gcpause).
    with paused_gc(freeze=True):
        return _build_view(ruleset)


def build_part_view(part: Ruleset) -> RulesetView:
    """The model of part of a ruleset: whole chains and single frontend rules of a few
    Service ports (the differ picks out those of one Service port). Jumps to chains left out
    of the part read as jumps to missing chains; rule indexes count within the part."""
    return _build_view(part)


def _build_view(ruleset: Ruleset) -> RulesetView:
    b = _Builder(ruleset)
    nat = ruleset.tables.get("nat")
    filt = ruleset.tables.get("filter")
    endpoint_chains: dict[str, EndpointChain] = {}
    if nat is not None:
        for chain in nat.chains.values():
            if chain.name.startswith(ENDPOINT_PREFIX):
                endpoint_chains[chain.name] = _endpoint_chain(nat, chain)
        _learn_names(b, nat, endpoint_chains)
        _collect_nat(b, nat, endpoint_chains)
    if filt is not None:
        _collect_filter(b, filt)
    b.finish()
    services = dict(sorted(b.by_key.items()))
    view = RulesetView(ruleset, services, endpoint_chains)
    view.redacted_lines = _redacted_lines(ruleset)
    view.interface_nets = _interface_nets(ruleset)
    if nat is not None:
        _local_detector(nat, view)
        view.mode_evidence = _ipvs_evidence(nat)
        if view.mode_evidence is not None:
            view.mode = "ipvs"
            _split_leftovers(view)
    return view


def hash_ports(table: Table) -> dict[str, tuple[str, str | None]]:
    """The Service port (name, protocol or None) of each per-Service-port chain hash in
    ``table`` (a whole nat table, or the part of one holding some ports' chains, the rules
    that jump to them and their endpoint chains), named as :func:`build_view` names them:
    from kube-proxy's comments on those rules, the protocol from the endpoint chains' DNAT
    rules, a hash no comment names from the Service ports most clusters have. Hashes nothing
    names are left out."""
    b = _Builder(Ruleset())
    endpoint_chains = {name: _endpoint_chain(table, chain) for name, chain in table.chains.items()
                       if name.startswith(ENDPOINT_PREFIX)}
    _learn_names(b, table, endpoint_chains)
    names = dict(b.hash_names)
    known = well_known_hashes()
    for name in table.chains:
        h = _hash(name) if _chain_kind(name) is not None else None
        if h is not None and h not in names and h in known:
            names[h] = known[h]
    return names


def _learn_names(b: _Builder, nat: Table, endpoint_chains: dict[str, EndpointChain]) -> None:
    """First pass: map chain hashes to Service port names from every comment that names one."""
    for chain, _, rule in nat.rules():
        comment = parse_comment(rule.comment())
        if comment is None:
            continue
        proto = _protocol(rule)
        b.learn(rule.jump, comment, proto)
        if _chain_kind(chain.name) is not None:
            b.learn(chain.name, comment, proto)
    for chain, _, rule in nat.rules():
        # Endpoint chains know the protocol (their DNAT rule has -p); hand it to the jumper.
        target = rule.jump
        kind = _chain_kind(chain.name)
        if kind is None or target is None or not target.startswith(ENDPOINT_PREFIX):
            continue
        sep = endpoint_chains.get(target)
        if sep is None:
            continue
        proto = sep.protocol
        h = _hash(chain.name)
        if h in b.hash_names:
            name, known = b.hash_names[h]
            b.hash_names[h] = (name, known or proto)


def _collect_nat(b: _Builder, nat: Table, endpoint_chains: dict[str, EndpointChain]) -> None:
    # Chains that exist, grouped by hash.
    for chain in nat.chains.values():
        kind = _chain_kind(chain.name)
        if kind is not None:
            b.view_for_hash(_hash(chain.name)).chains[kind] = chain.name
    _collect_entries(b, nat, "KUBE-SERVICES")
    _collect_entries(b, nat, "KUBE-NODEPORTS")
    reached: set[str] = set()
    for chain in nat.chains.values():
        kind = _chain_kind(chain.name)
        if kind is None:
            continue
        view = b.view_for_hash(_hash(chain.name))
        for ref in _refs(nat, chain):
            rule = ref.rule
            target = rule.jump
            if kind == "EXT":
                view.ext_rules.append(ref)
            elif kind == "FW":
                view.firewall_rules.append(ref)
            if target is not None and target not in nat.chains and _chain_kind(target):
                view.missing_chains[_chain_kind(target) or ""] = target
            if kind not in BALANCING_KINDS:
                continue
            if target is not None and target.startswith(ENDPOINT_PREFIX):
                if rule.option("recent", "rcheck") is not None:
                    view.affinity.append(ref)
                    continue
                prob = rule.option("statistic", "probability")
                comment = parse_comment(rule.comment())
                view.jumps.append(
                    EndpointJump(
                        chain.name,
                        target,
                        prob.value if prob is not None else None,
                        comment.endpoint if comment is not None else None,
                        ref,
                    )
                )
                reached.add(target)
                if target in endpoint_chains:
                    view.endpoints[target] = endpoint_chains[target]
            elif _is_masq_mark(rule):
                view.masq_rules.append(ref)
            elif kind == "XLB" and target == "KUBE-MARK-DROP":
                view.local_drops.append(ref)
            else:
                view.other_balancing_rules.append(ref)
    for name, sep in endpoint_chains.items():
        if name in reached or sep.spn is None:
            continue
        b.written.setdefault(service_port_name(sep.spn), sep.spn)
        view = b.view(service_port_name(sep.spn), sep.protocol or "?")
        view.orphan_endpoints[name] = sep


def _collect_entries(b: _Builder, nat: Table, chain_name: str) -> None:
    """VIP and node-port rules of KUBE-SERVICES / KUBE-NODEPORTS, and the old masquerade rules."""
    chain = nat.chains.get(chain_name)
    if chain is None:
        return
    for ref in _refs(nat, chain):
        rule = ref.rule
        target = rule.jump
        comment = parse_comment(rule.comment())
        kind = _chain_kind(target)
        if kind is not None and target is not None:
            view = b.view_for_hash(_hash(target))
            if target not in nat.chains:
                view.missing_chains[kind] = target
            if chain_name == "KUBE-NODEPORTS":
                addr_kind = "node-port"
            elif comment is not None and comment.kind in ("cluster-ip", "external-ip", "lb-ip"):
                addr_kind = comment.kind
            else:
                addr_kind = "cluster-ip" if kind in ("SVC", "SVL") else "external-ip"
            ip = None if addr_kind == "node-port" else _destination(rule)
            view.addresses.append(Address(addr_kind, ip, _dport(rule), target, ref))
        elif comment is not None and _is_masq_mark(rule):
            view = b.view(service_port_name(comment.spn), _protocol(rule) or "?")
            view.masq_rules.append(ref)


def _collect_filter(b: _Builder, filt: Table) -> None:
    """REJECT / DROP / ACCEPT rules kube-proxy writes in filter for a Service port."""
    for chain_name in ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL"):
        chain = filt.chains.get(chain_name)
        if chain is None:
            continue
        for ref in _refs(filt, chain):
            comment = parse_comment(ref.rule.comment())
            if comment is None:
                continue
            name = service_port_name(comment.spn)
            b.written.setdefault(name, comment.spn)
            proto = _protocol(ref.rule) or "?"
            if comment.kind == "health-check":
                # Always tcp; attach to whichever protocol views the Service port has.
                views = b.by_name.get(name) or [b.view(name, proto)]
                for view in views:
                    view.health_checks.append(ref)
                continue
            view = b.view(name, proto)
            if comment.kind == "no-endpoints":
                view.rejects.append(ref)
            elif comment.kind == "no-local-endpoints":
                view.local_drops.append(ref)
            elif comment.kind == "fw-drop":
                view.firewall_rules.append(ref)
