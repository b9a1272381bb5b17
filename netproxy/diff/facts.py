"""The facts of one service port, read from its rules (Kubernetes meaning).

Facts are short, comparable statements: the frontends (cluster IP, external IPs,
load-balancer IPs, node ports, health-check node port) and where each leads, the endpoints
of every policy chain with the share of new connections each receives, masquerade rules,
traffic policies, session affinity and load-balancer source ranges. The differ compares the
facts of the two sides to say what changed in words of Services.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netproxy.diff.identity import KubeView, ServiceIndex
from netproxy.kubeview.comments import comment_endpoint, frontend_kind, no_endpoint_reason
from netproxy.kubeview.names import DROP_CHAIN, ENDPOINT_ROLE, MASQ_CHAIN, chain_role
from netproxy.netfilter.model import Chain, Option, Rule
from netproxy.netfilter.saveform import to_saved
from netproxy.netfilter.values import kernel_probability, saved_probability

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
    """The KUBE-SEP chain the rule jumps to."""
    dnat: bool = True
    """Whether that chain exists and DNATs; a jump to one that does not returns, and the
    connection goes on to the next rule of the policy chain."""


@dataclass(slots=True)
class ServiceFacts:
    frontends: set[str] = field(default_factory=set)
    endpoints: dict[str, list[EndpointShare]] = field(default_factory=dict)
    """Policy chain role (SVC, SVL, XLB) to its endpoints in rule order."""
    endpoint_notes: dict[str, str] = field(default_factory=dict)
    """Endpoint to what its KUBE-SEP chain does (DNAT, hairpin masquerade, affinity)."""
    masquerade: set[str] = field(default_factory=set)
    affinity: str = "None"
    external_policy: str = "-"
    internal_policy: str = "-"
    source_ranges: set[str] = field(default_factory=set)
    chains: dict[str, str] = field(default_factory=dict)
    """Role to chain name (for display), SEP excluded."""

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


def _action(rule: Rule, view: KubeView, table: str) -> str:
    t = rule.target
    if t is None:
        return "continue"
    info = view.info(table, t.name)
    if info is not None and info.role is not None:
        return info.role
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


def _frontend(rule: Rule, chain: str, view: KubeView, table: str, family: str,
              lb_addresses: frozenset[str] = frozenset()) -> tuple[str, bool]:
    """A frontend statement for a shared-chain rule, and whether it is a masquerade rule.

    ``lb_addresses`` are the service's load-balancer IPs: the "no (local) endpoints" rules
    of KUBE-EXTERNAL-SERVICES do not say whether their address is an external or an LB IP.
    """
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
    action = _action(rule, view, table)
    reason = no_endpoint_reason(comment)
    if reason is not None:
        action += f" ({reason})"
    if table != "nat":
        text = f"{text} ({table})"
    return f"{text} -> {action}", False


def _probability(rule: Rule) -> tuple[float, str] | None:
    """The probability the kernel applies (31-bit fraction) and its saved spelling."""
    opt = rule.option("statistic", "probability")
    if opt is None or not opt.args:
        return None
    try:
        return kernel_probability(opt.args[0]), saved_probability(opt.args[0])
    except ValueError:
        return None


def _affinity(rule: Rule) -> str | None:
    if rule.option("recent", "rcheck") is None:
        return None
    secs = rule.option("recent", "seconds")
    return f"ClientIP {secs.value}s" if secs is not None else "ClientIP"


def _endpoint_label(view: KubeView, table: str, name: str, rule: Rule | None = None) -> str:
    info = view.info(table, name)
    if info is not None and info.endpoint:
        return info.endpoint
    if rule is not None:
        from_comment = comment_endpoint(rule.comment())
        if from_comment:
            return from_comment
    return name


def _dnats(chain: Chain | None) -> bool:
    return chain is not None and any(r.target is not None and r.target.name == "DNAT" for r in chain.rules)


def _policy_endpoints(rules: list[Rule], view: KubeView, table: str,
                      facts: ServiceFacts) -> list[EndpointShare]:
    out: list[EndpointShare] = []
    remaining = 1.0
    for rule in rules:
        t = rule.target
        if t is None:
            continue
        if chain_role(t.name) != ENDPOINT_ROLE:
            continue
        label = _endpoint_label(view, table, t.name, rule)
        if view.info(table, t.name) is None:
            facts.endpoint_notes[label] = f"chain {t.name} does not exist"
        aff = _affinity(rule)
        if aff is not None:
            facts.affinity = aff
            continue
        found = _probability(rule)
        if found is None:
            share, prob_text = remaining, ""
            remaining = 0.0
        else:
            share = remaining * found[0]
            remaining -= share
            prob_text = found[1]
        nat = view.ruleset.tables.get(table)
        dnat = _dnats(nat.chains.get(t.name) if nat is not None else None)
        out.append(EndpointShare(label, prob_text, share, len(out) + 1, t.name, dnat))
    return out


def _endpoint_note(rules: list[Rule], family: str) -> str:
    parts: list[str] = []
    for rule in rules:
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


_MASQ_SKIP = frozenset({"destination", "protocol", "dport"})


def service_facts(index: ServiceIndex, view: KubeView) -> ServiceFacts:
    """The facts of one service port of ``view``."""
    family = view.ruleset.family
    facts = ServiceFacts()
    nat = view.ruleset.tables.get("nat")
    nat_chains: dict[str, Chain] = nat.chains if nat is not None else {}
    lb_addresses = frozenset(
        _port_address(rule, family)[0] for _t, chain, rule in index.shared
        if frontend_kind(rule.comment(), chain) == "loadbalancer IP")
    for table, chain, rule in index.shared:
        text, masq = _frontend(rule, chain, view, table, family, lb_addresses)
        if masq:
            facts.masquerade.add(f"in {chain} for {text}")
        else:
            facts.frontends.add(text)
    for role, names in index.chains.items():
        for name in names:
            if role != ENDPOINT_ROLE:
                facts.chains.setdefault(role, name)
    for role in ("SVC", "SVL", "EXT", "FW", "XLB"):
        for name in index.chains.get(role, ()):
            policy_chain = nat_chains.get(name)
            if policy_chain is None:
                continue
            if role in POLICY_ROLES:
                eps = _policy_endpoints(policy_chain.rules, view, "nat", facts)
                if eps or role not in facts.endpoints:
                    facts.endpoints[role] = eps
            for rule in policy_chain.rules:
                if _is_masq(rule):
                    cond = conditions(rule, family, _MASQ_SKIP) or "all traffic"
                    facts.masquerade.add(f"in {role} [{cond}]")
                elif role == "FW" and rule.target is not None:
                    src = rule.builtin("source")
                    if src is not None and src.args:
                        facts.source_ranges.add(("! " if src.negated else "") + src.args[0])
    for name in index.chains.get(ENDPOINT_ROLE, ()):
        sep_chain = nat_chains.get(name)
        if sep_chain is not None:
            facts.endpoint_notes[_endpoint_label(view, "nat", name)] = _endpoint_note(sep_chain.rules, family)
    facts.external_policy = _external_policy(index, nat_chains)
    if facts.external_policy == "-" and any(
            f.split(" ", 1)[0] in ("node", "external", "loadbalancer") and f.endswith("-> SVC")
            for f in facts.frontends):
        facts.external_policy = "Cluster"  # before KUBE-EXT/KUBE-XLB: external traffic went to SVC
    facts.internal_policy = _internal_policy(facts)
    return facts


def _external_policy(index: ServiceIndex, nat_chains: dict[str, Chain]) -> str:
    if index.chains.get("XLB"):
        return "Local"
    for name in index.chains.get("EXT", ()):
        chain = nat_chains.get(name)
        if chain is None:
            continue
        for rule in chain.rules:
            t = rule.target
            if t is not None and t.name.startswith("KUBE-SVL-"):
                return "Local"
            if rule.option("addrtype", "src-type") is not None:
                return "Local"
        return "Cluster"
    return "-"


def _internal_policy(facts: ServiceFacts) -> str:
    for f in facts.frontends:
        if f.startswith("cluster IP"):
            if f.endswith("-> SVL") or "no local endpoints" in f:
                return "Local"
            return "Cluster"
    return "-"

