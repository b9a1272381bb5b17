"""A ruleset as text blocks: per table, each chain's policy and its ``-A`` lines as written.

The audit compares most nodes without parsing their dumps: a node whose kube-proxy chains,
line for line, are the ones compiled for it is equal, whatever else it holds. Only the lines
matter here, not their meaning; anything that does not match exactly goes to the semantic
diff (:mod:`netproxy.diff`), which is the judge. So this module is deliberately stricter
than the diff: it may send an equal node to the diff, never let a different one through.

The scope is the diff's ``--scope kube``: kube-proxy's chains, and of the built-in chains
their policy and the rules jumping into kube-proxy's chains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from netproxy.kubeview.names import is_kube_chain
from netproxy.netfilter.model import BUILTIN_CHAINS


@dataclass(slots=True)
class TableBlocks:
    """One table: chain policies (``-`` for user chains) and rule lines, in file order."""

    policies: dict[str, str] = field(default_factory=dict)
    rules: dict[str, list[str]] = field(default_factory=dict)


@dataclass(slots=True)
class Blocks:
    tables: dict[str, TableBlocks] = field(default_factory=dict)
    odd_lines: int = 0
    """Lines that are neither a table, chain, rule, COMMIT nor comment (the parser judges)."""
    committed: bool = True
    """Every table ended with COMMIT."""


def _strip_counters(line: str) -> str:
    """``[12:345] -A ...`` (``iptables-save -c``) becomes ``-A ...``."""
    if line.startswith("["):
        cut = line.find("] ")
        if cut > 0:
            return line[cut + 2:]
    return line


def split_save(text: str) -> Blocks:
    """The blocks of an ``iptables-save`` text (counters dropped, comments skipped)."""
    out = Blocks()
    table: TableBlocks | None = None
    rules: dict[str, list[str]] = {}
    open_table = False
    for raw in text.split("\n"):
        line = raw.rstrip("\r")
        if not line:
            continue
        first = line[0]
        if first == "-" or first == "[":
            line = _strip_counters(line)
            if table is None or not line.startswith("-A "):
                out.odd_lines += 1
                continue
            end = line.find(" ", 3)
            name = line[3:end] if end > 0 else line[3:]
            lines = rules.get(name)
            if lines is None:
                lines = rules[name] = []
            lines.append(line)
        elif first == ":":
            if table is None:
                out.odd_lines += 1
                continue
            parts = line[1:].split(" ", 2)
            table.policies[parts[0]] = parts[1] if len(parts) > 1 else "-"
        elif first == "*":
            if open_table:
                out.committed = False
            table = out.tables.setdefault(line[1:].strip(), TableBlocks())
            rules = table.rules
            open_table = True
        elif first == "#":
            continue
        elif line.strip() == "COMMIT":
            open_table = False
        else:
            out.odd_lines += 1
    if open_table:
        out.committed = False
    return out


def _in_scope_lines(table: str, chain: str, lines: list[str]) -> list[str] | None:
    """The lines of ``chain`` the kube scope compares (None: the chain is out of scope)."""
    if is_kube_chain(chain):
        return lines
    if chain in BUILTIN_CHAINS.get(table, ()):
        return [ln for ln in lines if " -j KUBE-" in ln or " -g KUBE-" in ln]
    return None


def same_in_scope(expected: Blocks, actual: Blocks) -> bool:
    """Whether ``actual`` holds exactly ``expected``'s kube-proxy chains, policies and jumps.

    True is certain (the semantic diff would find nothing); False only means "look closer".
    """
    return not differing_chains(expected, actual, first=True)


def differing_chains(expected: Blocks, actual: Blocks, *,
                     first: bool = False) -> set[tuple[str, str]]:
    """The ``(table, chain)`` pairs in the kube scope whose policy or lines differ (a chain
    only one side has included); ``("", "")`` when the text is damaged. ``first``: stop at
    the first one."""
    out: set[tuple[str, str]] = set()
    if actual.odd_lines or not actual.committed:
        out.add(("", ""))
        if first:
            return out
    empty: list[str] = []
    for name in list(expected.tables) + [t for t in actual.tables if t not in expected.tables]:
        exp = expected.tables.get(name) or TableBlocks()
        act = actual.tables.get(name) or TableBlocks()
        builtins = BUILTIN_CHAINS.get(name, ())
        for chain, policy in exp.policies.items():
            got = act.policies.get(chain)
            if got is None:
                if chain in builtins and policy == "ACCEPT" and not exp.rules.get(chain):
                    continue  # an empty built-in chain: the same as no chain
                out.add((name, chain))
            elif got != policy:
                out.add((name, chain))
            elif chain in builtins:
                if _in_scope_lines(name, chain, exp.rules.get(chain, empty)) != \
                        _in_scope_lines(name, chain, act.rules.get(chain, empty)):
                    out.add((name, chain))
            elif exp.rules.get(chain, empty) != act.rules.get(chain, empty):
                out.add((name, chain))
            if out and first:
                return out
        for chain, policy in act.policies.items():
            if chain in exp.policies:
                continue
            kube_jumps = chain in builtins and (
                policy != "ACCEPT" or bool(_in_scope_lines(name, chain, act.rules.get(chain, empty))))
            if kube_jumps or is_kube_chain(chain):
                out.add((name, chain))
            if out and first:
                return out
        for chain in act.rules:  # rules of chains never declared: the parser reports them
            if chain not in act.policies:
                out.add(("", ""))
                if first:
                    return out
    return out


_COMMENT_LINE = re.compile(r"^#.*\n", re.MULTILINE)
_CHAIN_COUNTERS = re.compile(r"^(:\S+ \S+) \[(?!0:0\])\d+:\d+\]$", re.MULTILINE)
_RULE_COUNTERS = re.compile(r"^\[\d+:\d+\] ", re.MULTILINE)


def normalised_text(text: str) -> str:
    """``iptables-save`` text without comment lines and counters (regular expressions only,
    so it costs little next to reading the text line by line)."""
    if text.startswith("#") or "\n#" in text:
        text = _COMMENT_LINE.sub("", text)
    text = _CHAIN_COUNTERS.sub(r"\1 [0:0]", text)  # only non-zero counters match
    if "\n[" in text or text.startswith("["):
        text = _RULE_COUNTERS.sub("", text)
    return text.replace("\r\n", "\n") if "\r" in text else text


def to_save_text(blocks: Blocks) -> str:
    """The blocks as ``iptables-save`` text (chains in stored order)."""
    out: list[str] = []
    for name, table in blocks.tables.items():
        out.append(f"*{name}")
        out.extend(f":{chain} {policy} [0:0]" for chain, policy in table.policies.items())
        for chain in table.policies:
            out.extend(table.rules.get(chain, ()))
        out.append("COMMIT")
    return "\n".join(out) + "\n"
