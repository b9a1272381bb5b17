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

from collections.abc import Callable, Sequence

from netproxy.compiler.kinds import RuleKind
from netproxy.netfilter.model import Chain, Rule, Ruleset, Table
from netproxy.render import render_restore_blocks, restore_formatter, text_block

Columns = tuple[str | Sequence[str], ...]
"""The values of many rules of one kind: per parameter one value for all of them, or a
sequence with one value per rule (rows are read across)."""

CHUNK_LINES = 65_536
"""The text sink joins its nat lines into a block this often (per service port), so the
payload is never held as half a million separate line strings."""


def _varying(columns: Columns) -> tuple[bool, ...]:
    """Which columns hold one value per rule."""
    return tuple([c.__class__ is not str for c in columns])


def _count(columns: Columns) -> int:
    """How many rules ``columns`` describe: as many as its sequences hold (one if none)."""
    return next((len(c) for c in columns if c.__class__ is not str), 1)


class PayloadWriter:
    """Collects ``filter`` then ``nat`` as rule model objects, in kube-proxy's order."""

    def __init__(self, family: str) -> None:
        self.family = family
        self.ruleset = Ruleset(family=family, source="<compiled>")
        self.filter_table = self.ruleset.table("filter")
        self.nat_table = self.ruleset.table("nat")
        self._nat_writes: list[tuple[str, Rule | None]] = []
        self._nat_chains = self.nat_table.chains
        self.filter_table.writes = []
        self.nat_table.writes = self._nat_writes

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

    def nat_rules(self, chain: str, kind: RuleKind, columns: Columns) -> None:
        """One rule of ``kind`` per row of ``columns`` (see :data:`Columns`): the rules of an
        endpoint choice (a hot path)."""
        rules = kind.builds(_varying(columns))(_count(columns), *columns)
        self._nat_chains[chain].rules.extend(rules)
        self._nat_writes.extend([(chain, rule) for rule in rules])

    def endpoint_chains(self, names: Sequence[str], first: RuleKind, first_columns: Columns,
                        second: RuleKind, second_columns: Columns) -> None:
        """Declare nat chain ``names[i]`` with two rules, of ``first`` and ``second`` with the
        values of row ``i`` (the KUBE-SEP chains of a service port: the hottest path)."""
        count = len(names)
        firsts = first.builds(_varying(first_columns))(count, *first_columns)
        seconds = second.builds(_varying(second_columns))(count, *second_columns)
        chains = self._nat_chains
        writes: list[tuple[str, Rule | None]] = [("", None)] * (2 * count)
        writes[::2] = zip(names, firsts, strict=True)
        writes[1::2] = zip(names, seconds, strict=True)
        for name, a, b in zip(names, firsts, seconds, strict=True):
            chains[name] = Chain(name, None, None, [a, b])
        self._nat_writes += writes

    def has_nat_chain(self, name: str) -> bool:
        return name in self.nat_table.chains

    def delete_nat(self, name: str) -> None:
        """``-X name`` (its ``:name`` line comes after the declared chains)."""
        self.nat_table.deleted.append(name)
        self._nat_writes.append((name, None))


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
        self._nat_blocks: list[str] = []
        self._deleted: list[str] = []
        self._lines: dict[RuleKind, Callable[..., str]] = {}

    def _flush_nat(self) -> None:
        if self._nat_rules:
            self._nat_blocks.append(text_block(self._nat_rules))

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

    def _batch(self, kind: RuleKind, columns: Columns) -> Callable[..., list[str]]:
        return kind.lines(self.family, _varying(columns))

    def nat_rules(self, chain: str, kind: RuleKind, columns: Columns) -> None:
        self._nat_rules.extend(self._batch(kind, columns)([chain] * _count(columns), *columns))
        if len(self._nat_rules) >= CHUNK_LINES:
            self._flush_nat()

    def endpoint_chains(self, names: Sequence[str], first: RuleKind, first_columns: Columns,
                        second: RuleKind, second_columns: Columns) -> None:
        self._nat_chains.update(dict.fromkeys(names))
        both: list[str] = [""] * (2 * len(names))
        both[::2] = self._batch(first, first_columns)(names, *first_columns)
        both[1::2] = self._batch(second, second_columns)(names, *second_columns)
        lines = self._nat_rules
        lines += both
        if len(lines) >= CHUNK_LINES:
            self._flush_nat()

    def has_nat_chain(self, name: str) -> bool:
        return name in self._nat_chains

    def delete_nat(self, name: str) -> None:
        self._deleted.append(name)
        self._nat_rules.append("-X " + name)

    def pieces(self) -> list[str]:
        """The whole payload in pieces (joined, the text; the writer is used up)."""
        self._flush_nat()
        nat_chains = [f":{name} - [0:0]" for name in self._nat_chains]
        nat_chains += [f":{name} - [0:0]" for name in self._deleted if name not in self._nat_chains]
        filter_blocks = [text_block(self._filter_rules)] if self._filter_rules else []
        return render_restore_blocks([
            ("filter", [f":{name} - [0:0]" for name in self._filter_chains], filter_blocks),
            ("nat", nat_chains, self._nat_blocks)])


Sink = PayloadWriter | TextWriter
"""Either sink: the writers only use the methods both have."""
