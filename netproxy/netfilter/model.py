"""The netfilter rule model shared by the compiler, parser, tracer, differ and backend.

A :class:`Ruleset` holds tables, a table holds chains in declaration order, a chain holds
rules. A :class:`Rule` keeps its match part as a tuple of :class:`Option` items *in the order
they were written*, so the exact text kube-proxy hands to ``iptables-restore`` can be
reproduced; :func:`netproxy.netfilter.saveform.to_saved` turns a rule into the canonical order
and spelling ``iptables-save`` prints, which is also what comparisons use.

Items of ``Rule.matches``:

* ``Option("", "source", ("10.0.0.1",), negated)`` -- a built-in match (module ``""``);
  the built-in names are ``source``, ``destination``, ``protocol``, ``in-interface``,
  ``out-interface`` and ``fragment``.
* ``Option("tcp", "", ())`` -- the ``-m tcp`` token that loads a match module.
* ``Option("tcp", "dport", ("80",), negated)`` -- an option owned by module ``tcp``.

Options are always named by their canonical long name without dashes (``dport``, not
``destination-port``); :mod:`netproxy.netfilter.extensions` knows the aliases.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "security": ("INPUT", "FORWARD", "OUTPUT"),
}
"""Built-in chains of every table, in hook order (the order ``iptables-save`` prints them)."""

TABLE_NAMES = tuple(BUILTIN_CHAINS)

VERDICTS = frozenset({"ACCEPT", "DROP", "RETURN", "QUEUE"})


class Option(NamedTuple):
    """One match or target option; ``name == ""`` marks the ``-m module`` token itself."""

    module: str
    name: str
    args: tuple[str, ...] = ()
    negated: bool = False

    @property
    def value(self) -> str:
        """The first argument, or ``""`` for flags."""
        return self.args[0] if self.args else ""


@dataclass(slots=True)
class Target:
    """What a rule does when it matches: a chain name or a target extension with options."""

    name: str
    options: tuple[Option, ...] = ()
    goto: bool = False

    def get(self, name: str) -> Option | None:
        for opt in self.options:
            if opt.name == name:
                return opt
        return None


@dataclass(slots=True)
class Rule:
    """One rule: match items in written order, an optional target, optional counters."""

    matches: tuple[Option, ...] = ()
    target: Target | None = None
    counters: tuple[int, int] | None = None
    line: int = 0
    """1-based line in the text the rule was parsed from; 0 for rules built in code."""
    opaque: str | None = None
    """For a line the lenient parser could not understand: its text. Such a rule is kept in
    place so the tracer can report UNKNOWN when a packet reaches it."""

    def modules(self) -> list[str]:
        """Loaded match modules in the order of their ``-m`` tokens."""
        return [o.module for o in self.matches if not o.name and o.module]

    def builtin(self, name: str) -> Option | None:
        """The built-in match ``name`` (``source``, ``destination``, ...), if present."""
        for opt in self.matches:
            if not opt.module and opt.name == name:
                return opt
        return None

    def option(self, module: str, name: str) -> Option | None:
        """The first option ``name`` owned by ``module``."""
        for opt in self.matches:
            if opt.module == module and opt.name == name:
                return opt
        return None

    def comment(self) -> str | None:
        """The text of the first ``-m comment --comment``, without quotes."""
        opt = self.option("comment", "comment")
        return opt.args[0] if opt is not None and opt.args else None

    @property
    def jump(self) -> str | None:
        """The target name (a chain or an extension), or ``None`` for a rule without target."""
        return self.target.name if self.target is not None else None


@dataclass(slots=True)
class Chain:
    """A chain: built-in ones have a policy, user chains have ``policy is None``."""

    name: str
    policy: str | None = None
    counters: tuple[int, int] | None = None
    rules: list[Rule] = field(default_factory=list)
    line: int = 0

    @property
    def builtin(self) -> bool:
        return self.policy is not None


@dataclass(slots=True)
class Table:
    """A table: chains in declaration order, plus chains a restore payload deletes (``-X``)."""

    name: str
    chains: dict[str, Chain] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    writes: list[tuple[str, Rule | None]] | None = None
    """For a restore payload: the order its lines were written in, as (chain, rule) pairs and
    (chain, None) for a ``-X chain`` deletion. kube-proxy interleaves chains service by
    service; ``None`` means chain by chain."""

    def chain(self, name: str) -> Chain:
        """The chain ``name``, created as a user chain when missing."""
        found = self.chains.get(name)
        if found is None:
            policy = "ACCEPT" if name in BUILTIN_CHAINS.get(self.name, ()) else None
            found = self.chains[name] = Chain(name, policy)
        return found

    def rules(self) -> Iterator[tuple[Chain, int, Rule]]:
        """Every rule with its chain and 0-based position."""
        for chain in self.chains.values():
            for i, rule in enumerate(chain.rules):
                yield chain, i, rule


@dataclass(slots=True, frozen=True)
class Problem:
    """Something the lenient parser accepted with a caveat (unknown option, malformed line)."""

    line: int
    column: int
    message: str


@dataclass(slots=True)
class Ruleset:
    """Tables of one address family in the order they were declared or printed."""

    family: str = "ipv4"
    tables: dict[str, Table] = field(default_factory=dict)
    source: str = "<rules>"
    problems: list[Problem] = field(default_factory=list)

    def table(self, name: str) -> Table:
        found = self.tables.get(name)
        if found is None:
            found = self.tables[name] = Table(name)
        return found

    def rule_count(self) -> int:
        return sum(len(c.rules) for t in self.tables.values() for c in t.chains.values())
