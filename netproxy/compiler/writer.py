"""Where the compiler writes kube-proxy's lines: into the rule model, or straight into text.

The writers in :mod:`netproxy.compiler.services` and :mod:`netproxy.compiler.fixed` describe
what kube-proxy writes, in its order, once. They write through one of two sinks with the same
methods:

* :class:`PayloadWriter` builds the rule model (``Ruleset``; ``Table.writes`` keeps
  kube-proxy's interleaved line order), for the save view, the tracer and the backend;
* :class:`TextWriter` formats each line as it is written, exactly what rendering the model
  would give, for ``compile --format restore`` (no rule objects for the bulk of the rules).

Rules come either whole (``add_nat(chain, rule)``) or as a :class:`~netproxy.compiler.kinds.
RuleKind` with its values (``nat(chain, kind, *values)``), which the text sink formats without
building the rule.
"""

from __future__ import annotations

from collections.abc import Callable

from netproxy.compiler.kinds import RuleKind
from netproxy.netfilter.model import Chain, Rule, Ruleset, Table
from netproxy.render import render_restore_lines, restore_formatter


class PayloadWriter:
    """Collects ``filter`` then ``nat`` as rule model objects, in kube-proxy's order."""

    def __init__(self, family: str) -> None:
        self.family = family
        self.ruleset = Ruleset(family=family, source="<compiled>")
        self.filter_table = self.ruleset.table("filter")
        self.nat_table = self.ruleset.table("nat")
        self.filter_table.writes = []
        self.nat_table.writes = []

    @staticmethod
    def _add(table: Table, chain: str, rule: Rule) -> None:
        table.chains[chain].rules.append(rule)
        table.writes.append((chain, rule))  # type: ignore[union-attr]

    def declare_filter(self, name: str) -> None:
        self.filter_table.chain(name)

    def declare_nat(self, name: str) -> None:
        self.nat_table.chain(name)

    def add_filter(self, chain: str, rule: Rule) -> None:
        self._add(self.filter_table, chain, rule)

    def add_nat(self, chain: str, rule: Rule) -> None:
        self._add(self.nat_table, chain, rule)

    def filter(self, chain: str, kind: RuleKind, *values: str) -> None:
        self._add(self.filter_table, chain, kind.build(*values))

    def nat(self, chain: str, kind: RuleKind, *values: str) -> None:
        self._add(self.nat_table, chain, kind.build(*values))

    def nat_chain(self, name: str, *rules: tuple[RuleKind, tuple[str, ...]]) -> None:
        """Declare nat chain ``name`` and write its rules (a KUBE-SEP chain: the hot path)."""
        built = [kind.build(*values) for kind, values in rules]
        self.nat_table.chains[name] = Chain(name, None, None, built)
        self.nat_table.writes += [(name, rule) for rule in built]  # type: ignore[operator]

    def has_nat_chain(self, name: str) -> bool:
        return name in self.nat_table.chains

    def delete_nat(self, name: str) -> None:
        """``-X name`` (its ``:name`` line comes after the declared chains)."""
        self.nat_table.deleted.append(name)
        self.nat_table.writes.append((name, None))  # type: ignore[union-attr]


class TextWriter:
    """The same sequence of writes, formatted as ``iptables-restore`` lines at once."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._format = restore_formatter(family)
        self._filter_chains: dict[str, None] = {}
        self._nat_chains: dict[str, None] = {}
        """Declared chains in declaration order (a dict: ordered, and a quick membership test)."""
        self._filter_rules: list[str] = []
        self._nat_rules: list[str] = []
        self._deleted: list[str] = []
        self._lines: dict[RuleKind, Callable[..., str]] = {}

    def _line(self, kind: RuleKind) -> Callable[..., str]:
        fn = self._lines[kind] = kind.line(self.family)
        return fn

    def declare_filter(self, name: str) -> None:
        self._filter_chains.setdefault(name)

    def declare_nat(self, name: str) -> None:
        self._nat_chains.setdefault(name)

    def add_filter(self, chain: str, rule: Rule) -> None:
        self._filter_rules.append(self._format(chain, rule))

    def add_nat(self, chain: str, rule: Rule) -> None:
        self._nat_rules.append(self._format(chain, rule))

    def filter(self, chain: str, kind: RuleKind, *values: str) -> None:
        self._filter_rules.append((self._lines.get(kind) or self._line(kind))(chain, *values))

    def nat(self, chain: str, kind: RuleKind, *values: str) -> None:
        self._nat_rules.append((self._lines.get(kind) or self._line(kind))(chain, *values))

    def nat_chain(self, name: str, *rules: tuple[RuleKind, tuple[str, ...]]) -> None:
        self._nat_chains.setdefault(name)
        lines, get = self._nat_rules, self._lines.get
        for kind, values in rules:
            lines.append((get(kind) or self._line(kind))(name, *values))

    def has_nat_chain(self, name: str) -> bool:
        return name in self._nat_chains

    def delete_nat(self, name: str) -> None:
        self._deleted.append(name)
        self._nat_rules.append("-X " + name)

    def text(self) -> str:
        """The whole payload."""
        nat_chains = [f":{name} - [0:0]" for name in self._nat_chains]
        nat_chains += [f":{name} - [0:0]" for name in self._deleted if name not in self._nat_chains]
        return render_restore_lines([
            ("filter", [f":{name} - [0:0]" for name in self._filter_chains], self._filter_rules),
            ("nat", nat_chains, self._nat_rules)])


Sink = PayloadWriter | TextWriter
"""Either sink: the writers only use the methods both have."""
