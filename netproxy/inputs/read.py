"""Reading a file for the part it plays in a command, after recognising what it is.

Every command that takes rules reads them through :func:`read_ruleset`: a file of another
kind is refused saying what it is and which command or flag takes it, paste damage is
blanked with a one-line note, and a file the parser could only partly read (a line it cannot
read, a table without COMMIT) is refused naming the line instead of being answered about.
:func:`check_inputs` does the same for cluster INPUTS, ``--config``, ``--pcap``, ...
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from netproxy.errors import InputError, ParseError
from netproxy.inputs import sniff as k
from netproxy.inputs.guide import ACCEPTED, refuse
from netproxy.inputs.paste import clear_edges, damage_kind, describe
from netproxy.inputs.sniff import HEAD_BYTES, Sniffed, sniff_bytes, sniff_text
from netproxy.inputs.stdin import read_stdin
from netproxy.netfilter.model import Ruleset
from netproxy.netfilter.nft import NftRuleset
from netproxy.progress import Progress

if TYPE_CHECKING:
    from netproxy.node.snapshot import NodeContext

Note = Callable[[str], None]

FATAL = ("cannot read line", "unterminated quote", "has no COMMIT", "was not declared")
"""Problems that mean the file is not a whole ruleset (truncated, garbled, not a dump at
all): answering about it would present its damage as the node's behaviour."""


def stderr_note(text: str) -> None:
    print(f"netproxy: note: {text}", file=sys.stderr)


def display(name: str) -> str:
    return "<stdin>" if name == "-" else name


def sniff_path(name: str) -> Sniffed:
    """What file ``name`` (``-``: standard input) is; unreadable files sniff as empty
    (their reader reports why)."""
    if name == "-":
        return sniff_text(read_stdin())
    path = Path(name)
    if path.is_dir():
        return Sniffed(k.DIRECTORY)
    try:
        with path.open("rb") as handle:
            return sniff_bytes(handle.read(HEAD_BYTES))
    except OSError:
        return Sniffed(k.EMPTY, "unreadable")


def check_input(name: str, role: str, command: str) -> Sniffed:
    """Refuse file ``name`` when it is not of a kind ``role`` reads."""
    found = sniff_path(name)
    if found.kind not in ACCEPTED[role] and not (found.kind == k.EMPTY and found.detail == "unreadable"):
        raise refuse(found, where=display(name), role=role, command=command)
    return found


def check_inputs(names: Iterable[str], command: str) -> None:
    """Refuse cluster INPUTS (files, directories, ``-``) that are something else."""
    for name in names:
        if name == "-" or Path(name).is_file():
            check_input(name, "cluster", command)


def cluster_text(text: str, name: str, note: Note = stderr_note) -> str:
    """The text of one cluster input, paste damage at its edges blanked (with a note)."""
    repaired, removed = clear_edges(text)
    if removed:
        note(f"{name}: ignored what a paste added: {describe(removed)}")
    return repaired


def read_ruleset(name: str, *, command: str, strict: bool = False, family: str | None = None,
                 note: Note = stderr_note) -> Ruleset:
    """The ruleset in file ``name`` (``-``: standard input), recognised, repaired, whole."""
    from netproxy.parser import parse_rules

    source = display(name)
    if name == "-":
        text = read_stdin()
        found = sniff_text(text)
    else:
        try:
            data = Path(name).read_bytes()
        except OSError as err:
            raise ParseError(f"cannot read: {err.strerror or err}", source=source) from None
        found = sniff_bytes(data[:HEAD_BYTES])
        if not found.is_rules and found.kind != k.SNAPSHOT:
            raise refuse(found, where=source, role="rules", command=command)
        text = data.decode("utf-8", errors="surrogateescape")
        del data
    if found.kind == k.SNAPSHOT:
        return snapshot_ruleset(_snapshot_of(text, source, note), family, strict=strict, note=note)
    if not found.is_rules:
        raise refuse(found, where=source, role="rules", command=command)
    text, removed = clear_edges(text)
    with Progress(f"parsing {source}", len(text), unit="bytes") as bar:
        ruleset = parse_rules(text, source=source, family=family, strict=strict,
                              progress=bar.update if bar.active else None)
    if ruleset.problems:
        removed += _pasted_lines(ruleset, text)
    if removed:
        note(f"{source}: ignored what a paste added: {describe(sorted(removed))}")
    for problem in ruleset.problems:
        if any(marker in problem.message for marker in FATAL):
            raise ParseError(problem.message, source=source, line=problem.line, column=problem.column)
    if not ruleset.tables:
        raise ParseError("no iptables tables found (not an iptables-save dump?)", source=source, line=1)
    return ruleset


def _text_of(name: str, source: str) -> str:
    """The text of file ``name`` (``-``: standard input); bytes that are not UTF-8 kept as
    surrogates, so a line with a stray byte is still named by its number."""
    if name == "-":
        return read_stdin()
    try:
        return Path(name).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as err:
        raise ParseError(f"cannot read: {err.strerror or err}", source=source) from None


def read_snapshot_input(name: str, *, note: Note = stderr_note) -> NodeContext:
    """The node snapshot in file ``name`` (``-``: standard input), paste damage at its edges
    blanked (with a note), read once for every use a command makes of it."""
    source = display(name)
    text = _text_of(name, source)
    return _snapshot_of(text, source, note)


def _snapshot_of(text: str, source: str, note: Note) -> NodeContext:
    from netproxy.node.snapshot import parse_snapshot

    text, removed = clear_edges(text)
    if removed:
        note(f"{source}: ignored what a paste added: {describe(removed)}")
    return parse_snapshot(text, source)


def snapshot_ruleset(node: NodeContext, family: str | None = None, *, strict: bool = False,
                     note: Note = stderr_note) -> Ruleset:
    """The iptables rules of ``family`` (default: the family holding rules) in a node
    snapshot (``netproxy snapshot``), whole."""
    source = node.source
    ruleset = node.ruleset(family, strict=strict)
    for text_ in node.ruleset_notes.get(ruleset.family, []):
        note(f"{source}: {text_}")
    for problem in ruleset.problems:
        if any(marker in problem.message for marker in FATAL):
            raise ParseError(problem.message, source=source, line=problem.line, column=problem.column)
    if not ruleset.tables:
        raise ParseError(f"the snapshot holds no {ruleset.family} iptables rules", source=source)
    return ruleset


def read_listing(name: str, *, strict: bool, references: bool = True) -> NftRuleset:
    """The nftables listing (``nft list ruleset``, text or ``-j`` JSON) in file ``name``
    (``-``: standard input); lenient unless ``strict``; a file without tables is refused.
    ``references=False`` leaves the check for missing chains and sets to the caller (several
    listings read as one node)."""
    from netproxy.parser.nftables import parse_nft

    source = display(name)
    text = _text_of(name, source)
    listing = parse_nft(text, source=source, strict=strict, references=references)
    if not listing.tables:
        raise ParseError("no nftables tables found", source=source, line=1)
    return listing


def _pasted_lines(ruleset: Ruleset, text: str) -> list[tuple[int, str]]:
    """Lines inside the text the parser could not read that are paste damage (a prompt
    between two pasted commands' output): dropped from the problems, returned."""
    unread = [p for p in ruleset.problems if p.message.startswith("cannot read line")]
    if not unread:
        return []
    lines = text.splitlines()
    found: list[tuple[int, str]] = []
    kept = []
    for problem in ruleset.problems:
        what = None
        if problem in unread and 0 < problem.line <= len(lines):
            what = damage_kind(lines[problem.line - 1].strip())
        if what is None:
            kept.append(problem)
        else:
            found.append((problem.line, what))
    ruleset.problems[:] = kept
    return found


def split_rules_input(inputs: tuple[str, ...], rules_path: str | None,
                      command: str) -> tuple[str | None, tuple[str, ...]]:
    """A dump given where cluster INPUTS go (``netproxy trace node.rules ...``) is taken as
    ``--rules``: returns (rules path, the other inputs)."""
    dumps = [name for name in inputs
             if (name == "-" or Path(name).is_file())
             and (sniff_path(name).is_rules or sniff_path(name).kind == k.SNAPSHOT)]
    if not dumps:
        return rules_path, inputs
    if rules_path is not None:
        compare = " (to compare two: netproxy diff OLD NEW)" if command != "apply" else ""
        raise InputError(f"this is a ruleset too, and --rules {rules_path} already names one; "
                         f"netproxy {command} reads one ruleset{compare}", where=display(dumps[0]))
    if len(dumps) > 1:
        raise InputError(f"netproxy {command} reads one ruleset, got {len(dumps)}: "
                         f"{', '.join(map(display, dumps))} (to compare two: netproxy diff OLD NEW)",
                         where=display(dumps[1]))
    return dumps[0], tuple(name for name in inputs if name != dumps[0])
