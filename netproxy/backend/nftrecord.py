"""What ``apply --proxy-mode nftables`` last loaded into a namespace, so that the next apply
need not read kube-proxy's table back (``nft list table`` of a 10,000-Service table and its
parse take most of a re-apply).

kube-proxy keeps its table in memory between syncs; netproxy keeps it in a file per
namespace and family (next to the iptables-mode records, keyed by the namespace's inode):
the table's comment, chains (header and rules in ``nft list`` spelling) and sets, maps and
counters with their elements, in the kernel's order -- everything the partial sync compares.

The record is trusted only while the namespace's nf_tables generation id is the one taken
right after that apply. Every nftables commit in the namespace (any table, iptables-nft too)
bumps it, so an unchanged id proves nobody changed anything since. An apply that sees the id
move by more than its own commits while it loaded (someone else committed in between)
stores no record, and the next apply reads the table back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from netproxy.backend import record
from netproxy.backend.fingerprint import nft_generation
from netproxy.backend.nsthread import run_in_netns
from netproxy.compiler.nftables.existing import KernelTable
from netproxy.compiler.nftables.table import Chain, Container
from netproxy.fileio import write_atomic

FORMAT = 1
VARIANT = "nftables"


def generation(name: str) -> int:
    """The nf_tables generation id of namespace ``name``."""
    return run_in_netns(name, nft_generation)


def path_of(name: str, family: str) -> Path | None:
    return record.record_path(name, VARIANT, family)


def render(table: KernelTable, generation_id: int) -> str:
    """Line 1: JSON head (format, generation, comment); then one JSON line per chain and per
    container -- plain lines, so a 100,000-chain table loads in about a second."""
    lines = [json.dumps({"format": FORMAT, "generation": generation_id,
                         "comment": table.comment}, separators=(",", ":"))]
    for c in table.chains.values():
        lines.append(json.dumps(["chain", c.name, c.hook, c.type, c.priority, c.comment,
                                 c.rules], separators=(",", ":")))
    for s in table.containers.values():
        lines.append(json.dumps([s.kind, s.name, s.type, s.flags, s.timeout, s.comment,
                                 [[k, v, n] for k, (v, n) in s.elements.items()]],
                                separators=(",", ":")))
    return "\n".join(lines) + "\n"


def parse(text: str) -> tuple[int, KernelTable]:
    head_text, _, body = text.partition("\n")
    head = json.loads(head_text)
    if head.get("format") != FORMAT:
        raise ValueError("other record format")
    chains: dict[str, Chain] = {}
    containers: dict[str, Container] = {}
    for line in body.splitlines():
        kind, name, a, b, c, comment, rest = json.loads(line)
        if kind == "chain":
            chains[name] = Chain(name, a, b, int(c), comment, list(rest))
        else:
            containers[name] = Container(kind, name, a, b, int(c), comment,
                                         {k: (v, n) for k, v, n in rest})
    return int(head["generation"]), KernelTable(str(head["comment"]), chains, containers)


def load(name: str, family: str, generation_id: int) -> tuple[KernelTable | None, str]:
    """The recorded table when the record was taken at ``generation_id``; else None and why
    (for the summary line)."""
    path = path_of(name, family)
    if path is None or not path.exists():
        return None, "no record of an earlier apply"
    try:
        recorded, table = parse(path.read_text())
    except (OSError, ValueError, KeyError, TypeError) as err:
        return None, f"unreadable record ({type(err).__name__})"
    if recorded != generation_id:
        return None, (f"nftables in the namespace changed since the last apply (generation "
                      f"{recorded}, now {generation_id})")
    return table, ""


def store(name: str, family: str, table: KernelTable, generation_id: int) -> None:
    path = path_of(name, family)
    if path is None:
        return
    record.write_record(path, render(table, generation_id))


def restamp(name: str, family: str, before: int, after: int) -> None:
    """Carry the record of a table this apply did not touch from generation ``before`` to
    ``after`` (only this apply's own commits lie between them)."""
    path = path_of(name, family)
    if path is None or not path.exists():
        return
    try:
        text = path.read_text()
        head_text, _, body = text.partition("\n")
        head: dict[str, Any] = json.loads(head_text)
    except (OSError, ValueError):
        return
    if head.get("format") != FORMAT or head.get("generation") != before:
        return
    head["generation"] = after
    write_atomic(path, json.dumps(head, separators=(",", ":")) + "\n" + body)


def forget(name: str, family: str) -> None:
    record.forget(path_of(name, family))
