"""The facts of one service port as comparable statements, read from the kubeview model.

The rules of a service port are read by :mod:`netproxy.kubeview` (the reader the doctor
uses too): :func:`part_of` picks the port's chains and frontend rules out of the ruleset
(where :mod:`netproxy.diff.identity` located them) and :func:`service_facts` turns the
model of that part into short statements the differ compares: the frontends (cluster IP,
external IPs, load-balancer IPs, node ports, health-check node port) and where each leads,
the endpoints of every policy chain with the share of new connections each receives,
masquerade rules, traffic policies, session affinity and load-balancer source ranges.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from netproxy.diff.identity import ServiceIndex
from netproxy.kubeview.comments import frontend_kind, no_endpoint_reason
from netproxy.kubeview.iptables import build_part_view
from netproxy.kubeview.model import EndpointChain, Ref, RuleRef, RulesetView, ServicePortView
from netproxy.kubeview.names import DROP_CHAIN, FRONTEND_CHAINS, MASQ_CHAIN, chain_role
from netproxy.kubeview.shares import cascade_shares
from netproxy.netfilter.model import Chain, Option, Rule, Ruleset, Table
from netproxy.netfilter.saveform import to_saved
from netproxy.netfilter.values import saved_probability

POLICY_ROLES = ("SVC", "SVL", "XLB")
_SHOWN_BUILTINS = {"source": "-s", "destination": "-d", "in-interface": "-i", "out-interface": "-o"}


@dataclass(slots=True)
class EndpointShare:
    endpoint: str
    probability: str
    """The ``--probability`` value as saved, ``""`` for the last (unconditional) rule."""
    share: float
    """Fraction of new connections that reach this rule (0..1)."""
    position: int = 0
    """1-based position among the chain's endpoint rules."""
    chain: str = ""
    """The endpoint chain the rule jumps to."""
    dnat: bool = True
    """Whether that chain exists and DNATs; a jump to one that does not returns, and the
    connection goes on to the next rule of the policy chain."""


@dataclass(slots=True)
class ServiceFacts:
    frontends: set[str] = field(default_factory=set)
    endpoints: dict[str, list[EndpointShare]] = field(default_factory=dict)
    """Policy chain role (SVC, SVL, XLB) to its endpoints in rule order."""
    endpoint_notes: dict[str, str] = field(default_factory=dict)
    """Endpoint to what its endpoint chain does (DNAT, hairpin masquerade, affinity)."""
    masquerade: set[str] = field(default_factory=set)
    affinity: str = "None"
    external_policy: str = "-"
    internal_policy: str = "-"
    source_ranges: set[str] = field(default_factory=set)
    chains: dict[str, str] = field(default_factory=dict)
    """Role to chain name (for display), endpoint chains excluded."""

    def delivered(self, role: str) -> tuple[dict[str, float], float]:
        """Where new connections of policy chain ``role`` really go: the share each endpoint
        gets, and the share that falls through the chain without DNAT.

        A jump to an endpoint chain that does not DNAT returns, and the connection goes on to
        the next rule, which draws again; only what passes the last rule falls through.
        """
        got: dict[str, float] = {}
        entering = 1.0
        reaching = 1.0  # the nominal share that reaches the rule, to recover its probability
        endpoints = self.endpoints.get(role, [])
        for e in endpoints:
            taken = entering * (e.share / reaching) if reaching > 0 else 0.0
            reaching -= e.share
            if e.dnat:
                got[e.endpoint] = got.get(e.endpoint, 0.0) + taken
                entering -= taken
        return got, (max(entering, 0.0) if endpoints else 0.0)


# -- picking a service port's part out of the ruleset ------------------------------------------

def part_of(ruleset: Ruleset, index: ServiceIndex) -> Ruleset:
    """A ruleset holding only ``index``'s chains (whole) and its rules of shared chains."""
    part = Ruleset(family=ruleset.family, source=ruleset.source)
    nat = ruleset.tables.get("nat")
    if nat is not None:
        for names in index.chains.values():
            for name in names:
                chain = nat.chains.get(name)
                if chain is not None:
                    part.table("nat").chains[name] = chain
    for table, cname, rule in index.shared:
        shared = part.table(table).chains
        found = shared.get(cname)
        if found is None:
            found = shared[cname] = Chain(cname)
        found.rules.append(rule)
    return part


# -- statements -------------------------------------------------------------------------------

def _value(opt: Option) -> str:
    value = " ".join(opt.args)
    if opt.name in ("source", "destination") and (value.endswith("/32") or value.endswith("/128")):
        value = value.rsplit("/", 1)[0]
    return value


def conditions(rule: Rule, family: str, skip: frozenset[str] = frozenset()) -> str:
    """The matches of ``rule`` that are not comments, as compact ``iptables`` words."""
    out: list[str] = []
    for o in to_saved(rule, family).matches:
        if not o.name or o.module == "comment" or o.name in skip:
            continue
        neg = "! " if o.negated else ""
        flag = "--" + o.name if o.module else _SHOWN_BUILTINS.get(o.name, "--" + o.name)
        value = _value(o)
        out.append(f"{neg}{flag} {value}".rstrip())
    return " ".join(out)


def _is_masq(rule: Rule) -> bool:
    t = rule.target
    if t is None:
        return False
    if t.name == MASQ_CHAIN:
        return True
    return t.name == "MARK"  # kube-proxy <= 1.2 set the masquerade mark inline


def _action(rule: Rule, tables: dict[str, Table], table: str) -> str:
    """What a frontend rule leads to: the role of a per-service chain that exists, else the
    target as written."""
    t = rule.target
    if t is None:
        return "continue"
    found = tables.get(table)
    role = chain_role(t.name)
    if role is not None and found is not None and t.name in found.chains:
        return role
    if t.name == DROP_CHAIN:
        return "DROP (mark)"
    return t.name


def _port_address(rule: Rule, family: str) -> tuple[str, str]:
    saved = to_saved(rule, family)
    addr = port = ""
    for o in saved.matches:
        if not o.module and o.name == "destination" and o.args:
            addr = ("!" if o.negated else "") + _value(o)
        elif o.name in ("dport", "dports") and o.args:
            port = o.args[0]
    return addr, port


_FRONTEND_SKIP = frozenset({"destination", "protocol", "dport"})


def _frontend(ref: RuleRef, tables: dict[str, Table], family: str,
              lb_addresses: frozenset[str] = frozenset()) -> tuple[str, bool]:
    """A frontend statement for a shared-chain rule, and whether it is a masquerade rule.

    ``lb_addresses`` are the service's load-balancer IPs: the "no (local) endpoints" rules
    of KUBE-EXTERNAL-SERVICES do not say whether their address is an external or an LB IP.
    """
    rule, chain, table = ref.rule, ref.chain, ref.table
    comment = rule.comment()
    kind = frontend_kind(comment, chain)
    addr, port = _port_address(rule, family)
    where = f"{addr}:{port}" if addr and port else (addr or (f"port {port}" if port else ""))
    if kind is None:
        if chain == "KUBE-SERVICES":
            kind = "cluster IP"
        elif chain == "KUBE-EXTERNAL-SERVICES":
            kind = ("loadbalancer IP" if addr in lb_addresses else "external IP") if addr else "node port"
        elif chain == "KUBE-PROXY-FIREWALL":
            kind = "loadbalancer IP"
        else:
            kind = "rule"
    if kind in ("node port", "health check node port") and not addr:
        where = port
    extra = conditions(rule, family, _FRONTEND_SKIP)
    text = f"{kind} {where}".rstrip()
    if extra:
        text += f" [{extra}]"
    if _is_masq(rule):
        return text, True
    action = _action(rule, tables, table)
    reason = no_endpoint_reason(comment)
    if reason is not None:
        action += f" ({reason})"
    if table != "nat":
        text = f"{text} ({table})"
    return f"{text} -> {action}", False


def _saved(text: str | None) -> str:
    """A probability as ``iptables-save`` spells it; "" for none (the last rule) or none
    readable."""
    if text is None:
        return ""
    try:
        return saved_probability(text)
    except ValueError:
        return ""


def _affinity(rule: Rule) -> str:
    secs = rule.option("recent", "seconds")
    return f"ClientIP {secs.value}s" if secs is not None else "ClientIP"


def _iptables(refs: Iterable[Ref]) -> list[RuleRef]:
    """The iptables rules among model refs (the model also holds nftables refs)."""
    return [r for r in refs if isinstance(r, RuleRef)]


def _endpoint_note(sep: EndpointChain, family: str) -> str:
    parts: list[str] = []
    for ref in _iptables(sep.rules):
        rule = ref.rule
        t = rule.target
        if t is None:
            continue
        if _is_masq(rule):
            parts.append(f"hairpin masquerade [{conditions(rule, family)}]")
        elif t.name == "DNAT":
            opt = t.get("to-destination")
            text = f"DNAT to {opt.value if opt is not None else '?'}"
            if rule.option("recent", "set") is not None:
                text += " with affinity"
            parts.append(text)
        else:
            parts.append(f"-j {t.name}")
    return ", ".join(parts) if parts else "empty chain (no DNAT)"


def _frontend_refs(port: ServicePortView) -> list[RuleRef]:
    """The port's rules in kube-proxy's shared frontend chains (any table)."""
    refs = _iptables([a.ref for a in port.addresses])
    refs += _iptables(port.rejects + port.health_checks)
    refs += [r for r in _iptables((*port.masq_rules, *port.local_drops, *port.firewall_rules))
             if r.chain in FRONTEND_CHAINS]
    return refs


def _chain_refs(port: ServicePortView) -> list[RuleRef]:
    """The port's rules in its own per-service chains (SVC, SVL, EXT, FW, XLB)."""
    return [r for r in _iptables((*port.masq_rules, *port.other_balancing_rules, *port.local_drops,
                                  *port.ext_rules, *port.firewall_rules))
            if r.chain not in FRONTEND_CHAINS]


def _labels(ports: list[ServicePortView]) -> dict[str, str]:
    """Endpoint chain name to the endpoint it stands for: its DNAT destination, else what
    the jumps to it say in their comments."""
    out: dict[str, str] = {}
    for port in ports:
        for jump in port.jumps:
            if jump.comment_endpoint:
                out.setdefault(jump.sep, jump.comment_endpoint)
        for sep in (*port.endpoints.values(), *port.orphan_endpoints.values()):
            destination = next((d for d, _ref in sep.dnat if d), None)
            if destination:
                out[sep.name] = destination
    return out


def service_facts(view: RulesetView) -> ServiceFacts:
    """The facts of the service port whose part of a ruleset ``view`` models (every Service
    port view in it is that port: its rules may name it in more than one way)."""
    ruleset = view.ruleset
    family = ruleset.family
    tables = ruleset.tables
    facts = ServiceFacts()
    ports = [*view.services.values(), *view.leftovers]
    labels = _labels(ports)
    frontend_refs = [r for port in ports for r in _frontend_refs(port)]
    lb_addresses = frozenset(
        _port_address(r.rule, family)[0] for r in frontend_refs
        if frontend_kind(r.rule.comment(), r.chain) == "loadbalancer IP")
    seen: set[int] = set()
    for ref in frontend_refs:
        if id(ref.rule) in seen:
            continue
        seen.add(id(ref.rule))
        text, masq = _frontend(ref, tables, family, lb_addresses)
        if masq:
            facts.masquerade.add(f"in {ref.chain} for {text}")
        else:
            facts.frontends.add(text)
    nat = tables.get("nat")
    nat_chains = nat.chains if nat is not None else {}
    for port in ports:
        for role, name in port.chains.items():
            facts.chains.setdefault(role, name)
        for role in POLICY_ROLES:
            if role not in port.chains:
                continue
            eps: list[EndpointShare] = []
            jumps = port.balancing(role)
            shares = cascade_shares([j.probability for j in jumps])
            for jump, exact in zip(jumps, shares, strict=True):
                label = labels.get(jump.sep, jump.sep)
                if jump.sep not in nat_chains:
                    facts.endpoint_notes[label] = f"chain {jump.sep} does not exist"
                share, prob_text = float(exact), _saved(jump.probability)
                sep = port.endpoints.get(jump.sep)
                dnat = sep is not None and any(
                    r.rule.target is not None and r.rule.target.name == "DNAT" for r in _iptables(sep.rules))
                eps.append(EndpointShare(label, prob_text, share, len(eps) + 1, jump.sep, dnat))
            if eps or role not in facts.endpoints:
                facts.endpoints[role] = eps
        for ref in _iptables(port.affinity):
            if ref.rule.target is not None:
                if ref.rule.target.name not in nat_chains:
                    facts.endpoint_notes[labels.get(ref.rule.target.name, ref.rule.target.name)] = \
                        f"chain {ref.rule.target.name} does not exist"
                facts.affinity = _affinity(ref.rule)
        for ref in _chain_refs(port):
            rule = ref.rule
            role = chain_role(ref.chain) or ref.chain
            if _is_masq(rule):
                cond = conditions(rule, family, _FRONTEND_SKIP) or "all traffic"
                facts.masquerade.add(f"in {role} [{cond}]")
            elif role == "FW" and rule.target is not None:
                src = rule.builtin("source")
                if src is not None and src.args:
                    facts.source_ranges.add(("! " if src.negated else "") + src.args[0])
        for sep in (*port.endpoints.values(), *port.orphan_endpoints.values()):
            facts.endpoint_notes[labels.get(sep.name, sep.name)] = _endpoint_note(sep, family)
    facts.external_policy = _external_policy(ports)
    if facts.external_policy == "-" and any(
            f.split(" ", 1)[0] in ("node", "external", "loadbalancer") and f.endswith("-> SVC")
            for f in facts.frontends):
        facts.external_policy = "Cluster"  # before KUBE-EXT/KUBE-XLB: external traffic went to SVC
    facts.internal_policy = internal_policy(facts)
    return facts


def port_facts(ruleset: Ruleset, index: ServiceIndex) -> ServiceFacts:
    """The facts of the service port ``index`` locates in ``ruleset``."""
    return service_facts(build_part_view(part_of(ruleset, index)))


def _external_policy(ports: list[ServicePortView]) -> str:
    if any("XLB" in port.chains for port in ports):
        return "Local"
    for port in ports:
        if "EXT" not in port.chains:
            continue
        for ref in _iptables(port.ext_rules):
            rule = ref.rule
            t = rule.target
            if t is not None and t.name.startswith("KUBE-SVL-"):
                return "Local"
            if rule.option("addrtype", "src-type") is not None:
                return "Local"
        return "Cluster"
    return "-"


def internal_policy(facts: ServiceFacts) -> str:
    for f in facts.frontends:
        if f.startswith("cluster IP"):
            if f.endswith("-> SVL") or "no local endpoints" in f:
                return "Local"
            return "Cluster"
    return "-"
