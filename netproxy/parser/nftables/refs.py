"""Dangling references: ``@set`` lookups and jumps to objects a listing does not hold
(hand-trimmed listings do that; nft refuses to load them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from netproxy.errors import ParseError
from netproxy.netfilter.model import Problem
from netproxy.netfilter.nft import NftRuleset


def references(value: Any) -> Iterator[tuple[str, str]]:
    """("set", name) and ("chain", name) for every reference inside a statement."""
    if isinstance(value, str):
        if value.startswith("@"):
            yield "set", value[1:]
    elif isinstance(value, list):
        for v in value:
            yield from references(v)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key in ("jump", "goto") and isinstance(item, dict):
                yield "chain", item["target"]
            elif key == "flow":
                continue
            else:
                yield from references(item)


REFERS = "which the listing lacks"
"""Ends the message of every dangling-reference problem."""


def check_references(ruleset: NftRuleset, strict: bool,
                     others: tuple[NftRuleset, ...] = ()) -> None:
    """Record (or, strict, raise) every reference to a set, map or chain that is missing;
    ``others``: listings read together with this one, whose tables count as the same."""
    for table in ruleset.tables.values():
        key = (table.family, table.name)
        sets = dict(table.sets)
        chains = dict(table.chains)
        for other in others:
            same = other.tables.get(key)
            if same is not None:
                sets.update(same.sets)
                chains.update(same.chains)
        found: list[tuple[int, int, str]] = []
        for chain in table.chains.values():
            for rule in chain.rules:
                for kind, name in references(rule.exprs):
                    if (sets if kind == "set" else chains).get(name) is None:
                        found.append((rule.line, 0, f"{table.label}: {chain.name} refers to "
                                                    f"{kind} {name!r}, {REFERS}"))
        for nset in table.sets.values():
            for elem in nset.elements:
                for kind, name in references(elem.value):
                    if kind == "chain" and name not in chains:
                        # the element's own line and column where the listing gives them
                        found.append((elem.line or nset.line, elem.column,
                                      f"{table.label}: element of {nset.name} refers to chain "
                                      f"{name!r}, {REFERS}"))
        for line, column, message in found:
            if strict:
                raise ParseError(message, source=ruleset.source, line=line, column=column)
            ruleset.problems.append(Problem(line, column, message))
