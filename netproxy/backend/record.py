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
import tempfile
from pathlib import Path
from typing import Any

from netproxy.backend import netns
from netproxy.backend.owned import foreign_content, owned_chain, owned_jump
from netproxy.backend.savetext import ChainText, TextState

FORMAT = 1


def record_path(name: str, variant: str, family: str) -> Path | None:
    """The record file of namespace ``name`` (keyed by its inode, so a re-created
    namespace with the same name never inherits an old record)."""
    try:
        st = os.stat(netns.path(name))
    except OSError:
        return None
    return netns.STATE_DIR / f"{name}@{st.st_dev}-{st.st_ino}@{variant}@{family}.json"


def to_record(state: TextState, foreign: dict[str, bool]) -> dict[str, Any]:
    tables: dict[str, Any] = {}
    for tname, chains in state.items():
        owned = {n: c.key() for n, c in chains.items() if c.policy is None and owned_chain(n)}
        builtins = {n: {"policy": c.policy, "jumps": [r for r in c.rules if owned_jump(r)]}
                    for n, c in chains.items() if c.policy is not None}
        tables[tname] = {"chains": owned, "builtins": builtins, "foreign": foreign.get(tname, False)}
    return {"format": FORMAT, "tables": tables}


def from_record(data: dict[str, Any]) -> tuple[TextState, dict[str, bool]]:
    state: TextState = {}
    foreign: dict[str, bool] = {}
    for tname, table in data["tables"].items():
        chains: dict[str, ChainText] = {}
        for cname, info in table["builtins"].items():
            chains[cname] = ChainText(cname, info["policy"], list(info["jumps"]))
        for cname, digest in table["chains"].items():
            chains[cname] = ChainText(cname, None, digest=digest)
        state[tname] = chains
        foreign[tname] = bool(table["foreign"])
    return state, foreign


def load(path: Path | None, fingerprint: str) -> tuple[TextState, dict[str, bool]] | None:
    """The recorded state, if there is a record taken at this very fingerprint."""
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("format") != FORMAT or data.get("fingerprint") != fingerprint:
        return None
    try:
        return from_record(data)
    except (KeyError, TypeError):
        return None


def store(path: Path | None, state: TextState, foreign: dict[str, bool], fingerprint: str) -> None:
    if path is None:
        return
    data = to_record(state, foreign)
    data["fingerprint"] = fingerprint
    path.parent.mkdir(parents=True, exist_ok=True)
    name, inode = path.name.split("@")[:2]
    for old in path.parent.glob(f"{name}@*.json"):  # records of an earlier namespace of that name
        if old.name.split("@")[1] != inode:
            old.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".record.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(data, separators=(",", ":")))  # dumps: the C encoder
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def forget(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)


def foreign_of(state: TextState) -> dict[str, bool]:
    return {t: foreign_content(chains) for t, chains in state.items()}
