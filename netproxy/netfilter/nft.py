"""The nftables side of the netfilter model: tables of any family, base and regular chains,
sets and maps, stateful objects, flowtables, and rules as lists of statements.

Statements and expressions are plain values in the shape of nft's own JSON schema
(libnftables-json(5)), normalised so that the text listing (``nft list ruleset``) and the JSON
listing (``nft -j list ruleset``) of one ruleset give equal models:

* a match is ``{"match": {"op": "==", "left": EXPR, "right": EXPR}}``; ``op`` is ``==``,
  ``!=``, ``<``, ``>``, ``<=``, ``>=`` or ``in`` (a flag test: ``ct state new``);
* expressions are ``{"payload": {"protocol": "ip", "field": "saddr"}}``, ``{"meta": {"key":
  "mark"}}``, ``{"ct": {"key": "state"}}`` (with ``dir``/``family`` for ``ct original ip
  saddr``), ``{"fib": {"result": "type", "flags": ["daddr"]}}``, ``{"numgen": {"mode":
  "random", "mod": 2, "offset": 0}}``, ``{"&": [a, b]}``/``|``/``^``, ``{"concat": [...]}``,
  ``{"map": {"key": EXPR, "data": SET}}``;
* values are ints (ports, marks, numbers), strings (addresses, names, ``@set`` references),
  ``{"prefix": {"addr": A, "len": N}}``, ``{"range": [lo, hi]}``, ``{"set": [...]}`` (anonymous
  set; map entries as ``[key, value]`` pairs) and lists (flag lists such as
  ``["established", "related"]``, kept sorted);
* verdicts are ``{"accept": None}``, ``{"drop": None}``, ``{"jump": {"target": C}}`` and so on;
  other statements keep nft's JSON names (``counter``, ``mangle``, ``dnat``, ``snat``,
  ``masquerade``, ``redirect``, ``reject``, ``set``, ``log``, ``limit``, ``quota``, ``notrack``,
  ``queue``, ``xt``, ``flow``).
* what the parser could not read is ``{"unknown": TEXT}`` (lenient mode), kept in place so
  the tracer can say UNKNOWN, naming the line, when a packet reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netproxy.netfilter.model import Problem

TRACED_FAMILIES = frozenset({"ip", "ip6", "inet"})
"""Families whose tables a packet of an IP family walks; arp/bridge/netdev are read only."""
FAMILY_OF = {"ipv4": ("ip", "inet"), "ipv6": ("ip6", "inet")}
"""The nft families that see a packet of each address family."""
NFT_FAMILY = {"ipv4": "ip", "ipv6": "ip6"}
"""Address family to the nft family of a table of that family alone (kube-proxy's table)."""
ADDRESS_FAMILY = {nft: family for family, nft in NFT_FAMILY.items()}
"""nft family ``ip``/``ip6`` to its address family."""

PRIORITY_NAMES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50,
                  "srcnat": 100}
"""Standard priority names of the ip/ip6/inet families (nft(8), CHAINS)."""
BRIDGE_PRIORITY_NAMES = {"dstnat": -300, "filter": -200, "out": 100, "srcnat": 300}

HOOKS = ("prerouting", "input", "forward", "output", "postrouting", "ingress", "egress")

Expr = Any
"""An expression or statement in the normalised nft JSON shape (see module docstring)."""


@dataclass(slots=True)
class NftRule:
    """One rule: statements in order, where it was read, and nft's handle if listed."""

    exprs: list[Expr]
    line: int = 0
    handle: int | None = None
    comment: str | None = None
    text: str = ""
    """The rule as written (text listings) or re-spelled (JSON), for trace output."""

    def unknown(self) -> list[str]:
        """Texts of the statements the parser could not read."""
        return [s["unknown"] for s in self.exprs if "unknown" in s]


@dataclass(slots=True)
class NftChain:
    """A chain; base chains have a ``hook`` (and type, priority, policy)."""

    name: str
    rules: list[NftRule] = field(default_factory=list)
    type: str | None = None
    hook: str | None = None
    priority: int | None = None
    priority_text: str | None = None
    """The priority as listed (``dstnat - 10``), when given by name."""
    policy: str | None = None
    device: str | None = None
    comment: str | None = None
    handle: int | None = None
    line: int = 0

    @property
    def base(self) -> bool:
        return self.hook is not None


@dataclass(slots=True)
class NftElement:
    """A set or map element: key, value (maps), and per-element properties."""

    key: Expr
    value: Expr = None
    comment: str | None = None
    timeout: float | None = None
    expires: float | None = None
    line: int = field(default=0, compare=False)
    """Where the element starts in a text listing (nft prints big sets one element per line,
    small ones several per line: the column tells them apart); 0 in JSON listings."""
    column: int = field(default=0, compare=False)


@dataclass(slots=True)
class NftSet:
    """A named set (``kind == "set"``) or map (``kind == "map"``)."""

    name: str
    kind: str = "set"
    type: tuple[str, ...] = ()
    """Key type, one name per concatenated part (``ipv4_addr . inet_service``)."""
    typeof: str | None = None
    """For ``typeof`` declarations: the key expression as written."""
    map_type: str | None = None
    """Data type of a map (``verdict``, ``ipv4_addr . inet_service``)."""
    flags: tuple[str, ...] = ()
    timeout: float | None = None
    size: int | None = None
    policy: str | None = None
    comment: str | None = None
    elements: list[NftElement] = field(default_factory=list)
    handle: int | None = None
    line: int = 0

    @property
    def dynamic(self) -> bool:
        return "dynamic" in self.flags


@dataclass(slots=True)
class NftObject:
    """A stateful object (``counter``, ``quota``, ``limit``, ``ct helper``, ...)."""

    kind: str
    name: str
    values: dict[str, Any] = field(default_factory=dict)
    handle: int | None = None
    line: int = 0


@dataclass(slots=True)
class NftFlowtable:
    """A flowtable: read and reported; fast-path offload is not traced."""

    name: str
    hook: str | None = None
    priority: int | None = None
    devices: tuple[str, ...] = ()
    handle: int | None = None
    line: int = 0


@dataclass(slots=True)
class NftTable:
    family: str
    name: str
    chains: dict[str, NftChain] = field(default_factory=dict)
    sets: dict[str, NftSet] = field(default_factory=dict)
    objects: list[NftObject] = field(default_factory=list)
    flowtables: dict[str, NftFlowtable] = field(default_factory=dict)
    comment: str | None = None
    flags: tuple[str, ...] = ()
    handle: int | None = None
    line: int = 0

    @property
    def label(self) -> str:
        """``family name``, as nft names a table (``ip kube-proxy``)."""
        return f"{self.family} {self.name}"


@dataclass(slots=True)
class NftRuleset:
    """Tables in listing order, keyed by (family, name)."""

    tables: dict[tuple[str, str], NftTable] = field(default_factory=dict)
    source: str = "<nft>"
    problems: list[Problem] = field(default_factory=list)

    def table(self, family: str, name: str) -> NftTable:
        found = self.tables.get((family, name))
        if found is None:
            found = self.tables[(family, name)] = NftTable(family, name)
        return found

    def summary(self) -> dict[str, int]:
        """Counts of what was read (tests pin these for every real listing)."""
        tables = list(self.tables.values())
        chains = [c for t in tables for c in t.chains.values()]
        return {
            "tables": len(tables),
            "chains": len(chains),
            "base_chains": sum(1 for c in chains if c.base),
            "rules": sum(len(c.rules) for c in chains),
            "sets": sum(1 for t in tables for s in t.sets.values() if s.kind == "set"),
            "maps": sum(1 for t in tables for s in t.sets.values() if s.kind == "map"),
            "elements": sum(len(s.elements) for t in tables for s in t.sets.values()),
            "objects": sum(len(t.objects) for t in tables),
            "flowtables": sum(len(t.flowtables) for t in tables),
            "unknown": sum(len(r.unknown()) for c in chains for r in c.rules),
            "problems": len(self.problems),
        }


def priority_value(name: str, family: str) -> int | None:
    """The number behind a standard priority name, or None."""
    names = BRIDGE_PRIORITY_NAMES if family == "bridge" else PRIORITY_NAMES
    return names.get(name)
