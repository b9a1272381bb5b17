"""The restore payload being written: chain declarations and rule lines in kube-proxy's order."""

from __future__ import annotations

from netproxy.netfilter.model import Rule, Ruleset, Table


class PayloadWriter:
    """Collects ``filter`` then ``nat`` exactly as kube-proxy's line buffers would.

    Chains are declared (``:NAME - [0:0]``) in the order kube-proxy writes chain lines; every
    rule is appended to its chain and to ``Table.writes``, which keeps kube-proxy's interleaved
    line order for the renderer.
    """

    def __init__(self, family: str) -> None:
        self.ruleset = Ruleset(family=family, source="<compiled>")
        self.filter = self.ruleset.table("filter")
        self.nat = self.ruleset.table("nat")
        self.filter.writes = []
        self.nat.writes = []

    @staticmethod
    def declare(table: Table, name: str) -> None:
        table.chain(name)

    @staticmethod
    def add(table: Table, chain: str, rule: Rule) -> None:
        table.chains[chain].rules.append(rule)
        table.writes.append((chain, rule))  # type: ignore[union-attr]

    def add_filter(self, chain: str, rule: Rule) -> None:
        self.add(self.filter, chain, rule)

    def add_nat(self, chain: str, rule: Rule) -> None:
        self.add(self.nat, chain, rule)
