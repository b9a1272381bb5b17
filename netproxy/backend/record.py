"""What netproxy last wrote into a namespace, so the next apply need not read it all back.

kube-proxy keeps the rules it wrote in memory between syncs; a command-line tool keeps them
in a small file instead: per table, a digest of each owned chain, the owned jump rules of
the built-in chains and whether other software has rules there. The record is used only
while the namespace's kernel fingerprint (:mod:`netproxy.backend.fingerprint`) is the one
taken right after that apply; otherwise the rules are read back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from netproxy.backend import netns
from netproxy.backend.owned import foreign_content, owned_jump
from netproxy.backend.plan import owned_keys
from netproxy.backend.savetext import ChainText, KeyedChains, TextState
from netproxy.fileio import write_atomic


def record_path(name: str, variant: str, family: str) -> Path | None:
    """The record file of namespace ``name`` (keyed by its inode, so a re-created
    namespace with the same name never inherits an old record)."""
    try:
        st = os.stat(netns.path(name))
    except OSError:
        return None
    return netns.STATE_DIR / f"{name}@{st.st_dev}-{st.st_ino}@{variant}@{family}.json"


FORMAT = 2
"""Line 1: JSON (format, fingerprint, per table: built-in chains' policies and owned jumps,
foreign flag); then one ``table<TAB>chain<TAB>digest`` line per owned chain -- plain lines
because a large node has 100,000+ chains and this must load in a fraction of a second."""


def render(state: TextState, foreign: dict[str, bool], fingerprint: str) -> str:
    head: dict[str, Any] = {"format": FORMAT, "fingerprint": fingerprint, "tables": {}}
    lines: list[str] = []
    for tname, chains in state.items():
        head["tables"][tname] = {
            "builtins": {n: {"policy": c.policy, "jumps": [r for r in c.rules if owned_jump(r)]}
                         for n, c in chains.items() if c.policy is not None},
            "foreign": foreign.get(tname, False),
        }
        lines.extend(f"{tname}\t{n}\t{k}" for n, k in owned_keys(chains).items())
    return json.dumps(head, separators=(",", ":")) + "\n" + "\n".join(lines) + "\n"


def parse(text: str) -> tuple[str, TextState, dict[str, bool]]:
    head_text, _, body = text.partition("\n")
    head = json.loads(head_text)
    if head.get("format") != FORMAT:
        raise ValueError("old record format")
    keys: dict[str, dict[str, str]] = {t: {} for t in head["tables"]}
    for line in body.splitlines():
        tname, cname, digest = line.split("\t")
        keys[tname][cname] = digest
    state: TextState = {}
    foreign: dict[str, bool] = {}
    for tname, table in head["tables"].items():
        builtins = {n: ChainText(n, info["policy"], list(info["jumps"])) for n, info in table["builtins"].items()}
        state[tname] = KeyedChains(builtins, keys[tname])
        foreign[tname] = bool(table["foreign"])
    return str(head["fingerprint"]), state, foreign


def load(path: Path | None, fingerprint: str) -> tuple[TextState, dict[str, bool]] | None:
    """The recorded state, if there is a record taken at this very fingerprint."""
    if path is None:
        return None
    try:
        text = path.read_text()
        recorded, state, foreign = parse(text)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (state, foreign) if recorded == fingerprint else None


def store(path: Path | None, state: TextState, foreign: dict[str, bool], fingerprint: str) -> None:
    if path is None:
        return
    write_record(path, render(state, foreign, fingerprint))


def write_record(path: Path, text: str) -> None:
    """Write a record (atomically), dropping those of an earlier namespace of that name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    name, inode = path.name.split("@")[:2]
    for old in path.parent.glob(f"{name}@*.json"):
        if old.name.split("@")[1] != inode:
            old.unlink(missing_ok=True)
    write_atomic(path, text)


def chain_count(path: Path | None) -> int | None:
    """How many owned chains the last apply's record lists (whether or not it is still
    valid), for messages; None without a record."""
    if path is None:
        return None
    try:
        with path.open() as handle:
            return max(sum(1 for _ in handle) - 1, 0)
    except OSError:
        return None


def forget(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)


def foreign_of(state: TextState) -> dict[str, bool]:
    return {t: foreign_content(chains) for t, chains in state.items()}
