"""What kube-proxy's rules say about each Service port, as a model the checks read.

A :class:`RulesetView` holds every Service port (:class:`ServicePortView`): its addresses
(cluster IP, external and load-balancer IPs, node ports) and the chains they lead to, its
endpoint rules with their probabilities, its endpoint chains with their DNAT and hairpin rules,
its REJECT and DROP rules, plus what the node says around them (proxy mode, pod CIDRs, the
pods' interface, redacted lines). :mod:`netproxy.kubeview.iptables` builds it from an
iptables ruleset; a reader of kube-proxy's nftables table is meant to build the same model.
Every fact keeps the rule it came from (:class:`RuleRef`), so findings can quote it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from netproxy.netfilter.model import Chain, Rule, Ruleset, Table

ENDPOINT_PREFIX = "KUBE-SEP-"
BALANCING_KINDS = ("SVC", "SVL", "XLB")
"""Chains that spread traffic over endpoint chains."""


@dataclass(frozen=True, slots=True)
class RuleRef:
    """One rule and where it sits, so findings can quote it."""

    table: str
    chain: str
    index: int
    rule: Rule


@dataclass(slots=True)
class Address:
    """One way into a Service port: a VIP (cluster, external, LB) or a node port."""

    kind: str  # "cluster-ip", "external-ip", "lb-ip", "node-port"
    ip: str | None
    port: int | None
    target: str | None
    ref: RuleRef


@dataclass(slots=True)
class EndpointJump:
    """A balancing rule: an SVC/SVL/XLB rule sending traffic to an endpoint chain."""

    chain: str
    sep: str
    probability: str | None
    comment_endpoint: str | None
    ref: RuleRef


@dataclass(slots=True)
class EndpointChain:
    """A KUBE-SEP chain: its hairpin masquerade rule(s) and its DNAT rule(s)."""

    name: str
    rules: list[RuleRef]
    dnat: list[tuple[str, RuleRef]]
    """``--to-destination`` values (possibly malformed) with their rules."""
    masq: list[RuleRef]
    """Rules that mark the packet for masquerading (``-j KUBE-MARK-MASQ`` or inline ``MARK``)."""
    spn: str | None
    protocol: str | None

    @property
    def destination(self) -> str | None:
        return self.dnat[0][0] if self.dnat else None


@dataclass(slots=True)
class ServicePortView:
    """Everything the rules say about one Service port (``ns/name[:port]`` + protocol)."""

    name: str
    protocol: str
    hash: str | None = None
    written_name: str | None = None
    """The Service port name as kube-proxy wrote it in comments (old releases: ``ns/name:``)."""
    chains: dict[str, str] = field(default_factory=dict)
    """Kind (SVC, SVL, EXT, FW, XLB) to chain name, for chains present in the nat table."""
    missing_chains: dict[str, str] = field(default_factory=dict)
    """Chains that rules jump to but that are not declared."""
    addresses: list[Address] = field(default_factory=list)
    jumps: list[EndpointJump] = field(default_factory=list)
    affinity: list[RuleRef] = field(default_factory=list)
    other_balancing_rules: list[RuleRef] = field(default_factory=list)
    """Rules in SVC/SVL/XLB chains that neither balance nor masquerade (e.g. XLB redirects)."""
    masq_rules: list[RuleRef] = field(default_factory=list)
    rejects: list[RuleRef] = field(default_factory=list)
    local_drops: list[RuleRef] = field(default_factory=list)
    health_checks: list[RuleRef] = field(default_factory=list)
    firewall_rules: list[RuleRef] = field(default_factory=list)
    ext_rules: list[RuleRef] = field(default_factory=list)
    endpoints: dict[str, EndpointChain] = field(default_factory=dict)
    """Endpoint chains reached from this port's balancing chains, by name."""
    orphan_endpoints: dict[str, EndpointChain] = field(default_factory=dict)
    """Endpoint chains carrying this port's comment that no balancing chain jumps to."""
    only_expected: bool = False
    """Known only from the cluster objects: the rules have nothing for it."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.protocol)

    def balancing(self, kind: str) -> list[EndpointJump]:
        """The balancing rules of chain kind SVC, SVL or XLB, in chain order."""
        name = self.chains.get(kind) or self.missing_chains.get(kind)
        return [j for j in self.jumps if j.chain == name]

    def port_numbers(self) -> set[int]:
        return {a.port for a in self.addresses if a.port is not None and a.kind != "node-port"}


@dataclass(slots=True)
class RulesetView:
    """All Service ports of a ruleset, plus the node-wide chains the checks need."""

    ruleset: Ruleset
    services: dict[tuple[str, str], ServicePortView]
    endpoint_chains: dict[str, EndpointChain]
    mode: str = "iptables"
    """``iptables``, or ``ipvs`` when nat KUBE-SERVICES matches kube-proxy's IPVS ipsets."""
    mode_evidence: RuleRef | None = None
    leftovers: list[ServicePortView] = field(default_factory=list)
    """IPVS mode: Service ports whose iptables-mode chains nothing jumps to (a mode switch)."""
    leftover_endpoint_chains: list[str] = field(default_factory=list)
    """IPVS mode: KUBE-SEP chains no Service chain jumps to and no comment names."""
    pod_cidrs: list[str] = field(default_factory=list)
    """Pod CIDRs kube-proxy's masquerade rules name (``! -s CIDR -j KUBE-MARK-MASQ``)."""
    pod_interface: str | None = None
    """An interface pod traffic arrives on, from ``! -i NAME`` masquerade rules (``+`` -> ``0``)."""
    interface_nets: dict[str, set[str]] = field(default_factory=dict)
    """Interfaces named in the rules (``+`` -> ``0``), each with the subnets rules pair it with
    (``-s 172.17.0.0/16 ! -o docker0``: docker0 is Docker's 172.17.0.0/16, not the pods')."""
    redacted_lines: set[int] = field(default_factory=set)
    """Lines whose addresses were redacted by whoever published the dump (``x.x.x.x``)."""

    def table(self, name: str) -> Table | None:
        return self.ruleset.tables.get(name)

    def chain(self, table: str, name: str) -> Chain | None:
        found = self.ruleset.tables.get(table)
        return found.chains.get(name) if found is not None else None


def host(text: str | None) -> str | None:
    """An address without a host prefix length (``10.0.0.1/32`` -> ``10.0.0.1``)."""
    if text is None:
        return None
    for suffix in ("/32", "/128"):
        if text.endswith(suffix):
            return text[: -len(suffix)]
    return text


def hostport(ip: str | None, port: object) -> str:
    """``ip:port``, with brackets around IPv6 addresses (``[fd00::1]:80``)."""
    text = ip or ""
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


_REDACTED_WORD = re.compile(r"(?:[0-9]{1,3}|[xX*#]+)(?:\.(?:[0-9]{1,3}|[xX*#]+)){3}(?:/\d+)?")


def is_redacted(text: str | None) -> bool:
    """Whether an address was blanked out by hand (``x.x.x.x``, ``10.x.x.x/32``, ``*.*.*.*``)."""
    if not text:
        return False
    return (_REDACTED_WORD.fullmatch(text) is not None and any(c in text for c in "xX*#")) \
        or "redacted" in text.lower()
