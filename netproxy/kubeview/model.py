"""What kube-proxy's rules say about each Service port, as a model the checks read.

A :class:`RulesetView` holds every Service port (:class:`ServicePortView`): its addresses
(cluster IP, external and load-balancer IPs, node ports) and the chains they lead to, its
endpoint rules with their shares, its endpoint chains with their DNAT and hairpin rules,
its REJECT and DROP rules, affinity, firewall source ranges, plus what the node says around
them (proxy mode, pod CIDRs, the pods' interface, redacted lines, stale and dangling objects).

Two readers build it, one per proxy mode:

* :mod:`netproxy.kubeview.iptables` (``build_view``) from an iptables ruleset: every fact
  keeps the rule it came from as a :class:`RuleRef` (table, chain, position, rule).
* :mod:`netproxy.kubeview.nftables` (``build_nft_view``) from kube-proxy's nftables table
  (``table ip kube-proxy`` / ``ip6``): a fact points at a rule or at a set/map element as an
  :class:`NftRef` (table family and name, chain or set, position, handle and line).

:data:`Ref` is either. Both give ``line``, ``counters``, ``comment``, ``jump`` (the chain a
rule jumps or goes to, or an element's verdict chain) and ``where`` (``nat``, ``ip
kube-proxy``); code that needs one mode's rule narrows with ``isinstance``.

How each mode's objects map onto the model (``ServicePortView.chains`` keys are the iptables
roles in both modes):

========================  ===================================  =====================================
model                     iptables                             nftables
========================  ===================================  =====================================
``chains["SVC"]``         ``KUBE-SVC-<hash>``                   ``service-<BASE>``
``chains["SVL"]``         ``KUBE-SVL-<hash>`` (``XLB`` before)  ``local-<BASE>``
``chains["EXT"]``         ``KUBE-EXT-<hash>``                   ``external-<BASE>``
``chains["FW"]``          ``KUBE-FW-<hash>``                    ``firewall-<BASE>``
``addresses``             KUBE-SERVICES / KUBE-NODEPORTS rules  ``service-ips`` / ``service-nodeports``
                                                                elements (cluster IP: in ``cluster-ips``)
``jumps`` (``share``)     ``-m statistic`` cascade              ``numgen random mod N`` map/vmap entries
``endpoints``             ``KUBE-SEP-*`` chains                 ``endpoint-*`` chains (affinity, old
                                                                layouts) or the DNAT map's entries
``affinity``              ``-m recent --rcheck`` rules          ``@affinity-*`` lookups
``rejects``/``local_drops`` filter REJECT / DROP rules          ``no-endpoint-services`` /
                                                                ``no-endpoint-nodeports`` elements
``firewall_rules``        KUBE-FW / KUBE-PROXY-FIREWALL rules   ``firewall-ips`` elements and the
                                                                ``firewall-<BASE>`` drop rule
``masq_rules``            ``-j KUBE-MARK-MASQ`` rules           ``meta mark set ... | MARK`` rules
                                                                (``jump mark-for-masquerade`` before)
``hairpins``              SEP ``-s EP -j KUBE-MARK-MASQ``       ``hairpin-connections`` elements
========================  ===================================  =====================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from netproxy.netfilter.model import Chain, Rule, Ruleset, Table

if TYPE_CHECKING:
    from netproxy.netfilter.nft import NftChain, NftElement, NftRule, NftRuleset, NftSet, NftTable

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

    @property
    def line(self) -> int:
        return self.rule.line

    @property
    def counters(self) -> tuple[int, int] | None:
        return self.rule.counters

    @property
    def comment(self) -> str | None:
        return self.rule.comment()

    @property
    def jump(self) -> str | None:
        """The chain or target the rule jumps to (``-j``/``-g``)."""
        return self.rule.jump

    @property
    def where(self) -> str:
        """The table, as findings name it (``nat``)."""
        return self.table


@dataclass(frozen=True, slots=True)
class NftRef:
    """One nftables rule, or one element of a set or map, and where it sits.

    A rule has ``chain`` and ``rule`` (``index`` is its position in the chain); an element has
    ``set`` and ``element`` (``index`` is its position in the set as listed); a set itself
    (an affinity set) has only ``set``. Two refs are equal when they point at the same place
    (family, table, chain or set, position).
    """

    family: str
    """The table's family: ``ip``, ``ip6`` or ``inet``."""
    table: str
    chain: str | None
    index: int
    rule: NftRule | None = field(default=None, compare=False)
    set: str | None = None
    element: NftElement | None = field(default=None, compare=False)
    set_line: int = field(default=0, compare=False)
    """The line of the set an element belongs to (for listings that give elements no line of
    their own: JSON)."""

    @property
    def line(self) -> int:
        """The rule's line, the element's own line (its set's where the listing gives none),
        or the set's."""
        if self.rule is not None:
            return self.rule.line
        if self.element is not None and self.element.line:
            return self.element.line
        return self.set_line

    @property
    def column(self) -> int | None:
        """Where the element starts on its line (a line may list several), when known."""
        if self.element is None or not self.element.line:
            return None
        return self.element.column or None

    @property
    def handle(self) -> int | None:
        return self.rule.handle if self.rule is not None else None

    @property
    def counters(self) -> tuple[int, int] | None:
        if self.rule is None:
            return None
        for stmt in self.rule.exprs:
            counter = stmt.get("counter") if isinstance(stmt, dict) else None
            if isinstance(counter, dict) and "packets" in counter:
                return int(counter.get("packets") or 0), int(counter.get("bytes") or 0)
        return None

    @property
    def comment(self) -> str | None:
        if self.element is not None:
            return self.element.comment
        return self.rule.comment if self.rule is not None else None

    @property
    def jump(self) -> str | None:
        """The chain the rule or the element's verdict jumps or goes to."""
        if self.element is not None:
            return verdict_chain(self.element.value)
        if self.rule is None:
            return None
        for stmt in reversed(self.rule.exprs):
            target = verdict_chain(stmt)
            if target is not None:
                return target
        return None

    @property
    def where(self) -> str:
        """The table, as findings name it (``ip kube-proxy``)."""
        return f"{self.family} {self.table}"

    @property
    def text(self) -> str:
        """The rule as listed, or the element as ``SET { KEY : VALUE }``."""
        from netproxy.netfilter.nfttext import expr_text

        if self.rule is not None:
            return self.rule.text
        if self.element is None:
            return f"set {self.set}"
        body = expr_text(self.element.key)
        if self.element.comment:
            body += f' comment "{self.element.comment}"'
        if self.element.value is not None:
            body += f" : {expr_text(self.element.value)}"
        return f"element {self.set} {{ {body} }}"


Ref = RuleRef | NftRef
"""A fact's origin: an iptables rule or an nftables rule or element."""


def verdict_chain(stmt: Any) -> str | None:
    """The chain of a ``jump``/``goto`` verdict statement (``{"goto": {"target": C}}``)."""
    if isinstance(stmt, dict):
        for key in ("jump", "goto"):
            inner = stmt.get(key)
            if isinstance(inner, dict) and isinstance(inner.get("target"), str):
                return str(inner["target"])
    return None


@dataclass(slots=True)
class Address:
    """One way into a Service port: a VIP (cluster, external, LB) or a node port."""

    kind: str  # "cluster-ip", "external-ip", "lb-ip", "node-port"
    """nftables cannot tell external IPs from load-balancer IPs (both are ``service-ips``
    elements going to ``external-<BASE>``): there, addresses in ``firewall-ips`` are ``lb-ip``
    and the others ``external-ip``."""
    ip: str | None
    port: int | None
    target: str | None
    ref: Ref


@dataclass(slots=True)
class EndpointJump:
    """A balancing rule: an SVC/SVL/XLB rule sending traffic to an endpoint chain (iptables),
    or one entry of a ``numgen`` map or vmap (nftables)."""

    chain: str
    sep: str
    """The endpoint chain's name; for nftables entries that DNAT directly (no endpoint
    chain), the endpoint ``ip:port`` it DNATs to (a key of ``ServicePortView.endpoints``)."""
    probability: str | None
    """iptables: ``--probability`` as written (None for the last, unconditional rule)."""
    comment_endpoint: str | None
    ref: Ref
    share: Fraction | None = None
    """nftables: the exact share of new connections (map entries for it / ``mod``)."""


@dataclass(slots=True)
class EndpointChain:
    """A KUBE-SEP chain: its hairpin masquerade rule(s) and its DNAT rule(s)."""

    name: str
    rules: list[Ref]
    dnat: list[tuple[str, Ref]]
    """``--to-destination`` values (possibly malformed) with their rules."""
    masq: list[Ref]
    """Rules that mark the packet for masquerading (``-j KUBE-MARK-MASQ`` or inline ``MARK``)."""
    spn: str | None
    protocol: str | None
    affinity_sets: list[str] = field(default_factory=list)
    """nftables: the ``@affinity-*`` sets the chain's ``update`` statements fill."""

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
    affinity: list[Ref] = field(default_factory=list)
    """Rules sending a client back to the endpoint it had (``--rcheck``, ``@affinity-*``)."""
    other_balancing_rules: list[Ref] = field(default_factory=list)
    """Rules in SVC/SVL/XLB chains that neither balance nor masquerade (e.g. XLB redirects)."""
    masq_rules: list[Ref] = field(default_factory=list)
    rejects: list[Ref] = field(default_factory=list)
    """What answers "no endpoints" with a REJECT (filter rules; ``goto reject-chain`` elements)."""
    local_drops: list[Ref] = field(default_factory=list)
    """What drops for "no local endpoints" (DROP rules; ``drop`` elements)."""
    health_checks: list[Ref] = field(default_factory=list)
    firewall_rules: list[Ref] = field(default_factory=list)
    ext_rules: list[Ref] = field(default_factory=list)
    source_ranges: list[str] = field(default_factory=list)
    """nftables: the source ranges the firewall chain lets through (``!= { ... } drop``)."""
    affinity_timeout: float | None = None
    """nftables: the timeout of the affinity sets, in seconds (one value when they agree)."""
    affinity_sets: list[Ref] = field(default_factory=list)
    """nftables: the ``affinity-*`` sets of this port's endpoints."""
    hairpins: list[Ref] = field(default_factory=list)
    """nftables: ``hairpin-connections`` elements of this port's endpoints."""
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

    def shares(self, kind: str) -> dict[str, Fraction]:
        """Endpoint ``ip:port`` to its share of new connections in chain kind SVC, SVL or XLB,
        the same for both modes (the iptables cascade's probabilities multiplied out)."""
        from netproxy.kubeview.shares import cascade_shares

        jumps = self.balancing(kind)
        out: dict[str, Fraction] = {}
        if not jumps:
            return out
        if all(j.share is not None for j in jumps):
            weights = [j.share or Fraction(0) for j in jumps]
        else:
            weights = cascade_shares([j.probability for j in jumps])
        for jump, weight in zip(jumps, weights, strict=True):
            sep = self.endpoints.get(jump.sep)
            dest = sep.destination if sep is not None and sep.destination else jump.sep
            out[dest] = out.get(dest, Fraction(0)) + weight
        return out


@dataclass(slots=True)
class RulesetView:
    """All Service ports of a ruleset, plus the node-wide chains the checks need."""

    ruleset: Ruleset
    services: dict[tuple[str, str], ServicePortView]
    endpoint_chains: dict[str, EndpointChain]
    mode: str = "iptables"
    """``iptables``, ``ipvs`` when nat KUBE-SERVICES matches kube-proxy's IPVS ipsets, or
    ``nftables`` for a view of kube-proxy's nftables table."""
    mode_evidence: Ref | None = None
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
    nft: NftRuleset | None = None
    """nftables mode: the listing the view was read from (``ruleset`` is then empty)."""
    nft_table: NftTable | None = None
    """nftables mode: kube-proxy's table of the view's family."""
    nodeport_ips: list[str] | None = None
    """nftables mode: the ``nodeport-ips`` elements; None when NodePorts match every local
    address (no set; ``fib daddr type local``)."""
    masquerade_mark: int | None = None
    """nftables mode: the mark bit the ``masquerading`` chain tests."""
    stale_chains: list[str] = field(default_factory=list)
    """Per-Service chains nothing refers to (kube-proxy flushes them and deletes them a
    second later; one that stays with rules is a leftover)."""
    stale_sets: list[str] = field(default_factory=list)
    """nftables mode: ``affinity-*`` sets no rule uses."""
    dangling: list[tuple[Ref, str]] = field(default_factory=list)
    """References to chains or sets that do not exist, with the missing name."""
    other_mode: list[str] = field(default_factory=list)
    """What another proxy mode of kube-proxy left on the node beside this one (``table ip nat
    chain KUBE-SERVICES`` in an nftables-mode listing)."""
    unattached: list[Ref] = field(default_factory=list)
    """nftables mode: endpoint-related set elements that belong to no Service port (hairpin
    elements of no endpoint)."""

    def nft_chain(self, name: str) -> NftChain | None:
        """A chain of kube-proxy's nftables table."""
        return self.nft_table.chains.get(name) if self.nft_table is not None else None

    def nft_set(self, name: str) -> NftSet | None:
        """A set or map of kube-proxy's nftables table."""
        return self.nft_table.sets.get(name) if self.nft_table is not None else None

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
