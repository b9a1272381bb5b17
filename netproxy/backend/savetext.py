"""Saved rules as text, chain by chain: the form plans compare and restore payloads use.

Comparing canonical ``-A`` lines is enough to decide whether a chain must be rewritten: a
chain whose saved lines equal the desired lines is left alone, any other is resent whole.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from netproxy.errors import BackendError


@dataclass(slots=True)
class ChainText:
    name: str
    policy: str | None = None
    """``ACCEPT``/``DROP`` for built-in chains, ``None`` for user chains."""
    rules: list[str] = field(default_factory=list)
    """Full ``-A NAME ...`` lines, in kernel order."""
    origins: list[str] = field(default_factory=list)
    """Per rule, where it came from (``file:line``) or ``""``; used in error messages."""
    digest: str | None = None
    """Digest of ``rules``; set alone (``rules`` empty) for chains known from a record."""

    def key(self) -> str:
        """What plans compare: a digest of the rule lines."""
        if self.digest is None:
            self.digest = hashlib.blake2b("\n".join(self.rules).encode(), digest_size=12).hexdigest()
        return self.digest


TextState = dict[str, dict[str, ChainText]]
"""table name → chain name → chain, in the order printed."""


class KeyedChains(dict[str, ChainText]):
    """A table known from a record: built-in chains in full, owned chains by digest only."""

    owned_keys: dict[str, str]

    def __init__(self, builtins: dict[str, ChainText], owned_keys: dict[str, str]) -> None:
        super().__init__(builtins)
        self.owned_keys = owned_keys


def split_saved(text: str, *, source: str = "iptables-save") -> TextState:
    """Split ``iptables-save`` output (without counters) into tables and chains."""
    state: TextState = {}
    table: dict[str, ChainText] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        head = line[0]
        if head == "*":
            table = state.setdefault(line[1:].strip(), {})
        elif table is None:
            raise BackendError(f"{source}:{number}: rule outside a table: {line[:60]}")
        elif head == ":":
            name, _, rest = line[1:].partition(" ")
            policy = rest.split(" ", 1)[0]
            table[name] = ChainText(name, None if policy == "-" else policy)
        elif line.startswith("-A "):
            name = line[3:].split(" ", 1)[0]
            chain = table.get(name)
            if chain is None:
                chain = table[name] = ChainText(name)
            chain.rules.append(line)
            chain.origins.append("")
        elif line == "COMMIT":
            table = None
        else:
            raise BackendError(f"{source}:{number}: unexpected line in saved rules: {line[:60]}")
    return state


def strip_counters(text: str) -> str:
    """Saved text with ``[p:b]`` counters zeroed and header comments dropped, for comparing."""
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if line.startswith(":"):
            head, _, _ = line.rpartition(" ")
            line = f"{head} [0:0]"
        elif line.startswith("["):
            line = line.split("] ", 1)[1]
        out.append(line)
    return "\n".join(out) + "\n"


def render_state(state: TextState) -> str:
    """A TextState back as save text (tables in their order)."""
    out: list[str] = []
    for tname, chains in state.items():
        out.append(f"*{tname}")
        for chain in chains.values():
            out.append(f":{chain.name} {chain.policy or '-'} [0:0]")
        for chain in chains.values():
            out.extend(chain.rules)
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def comparable(text: str) -> str:
    """Saved text normalised for "same state" checks: counters zeroed, tables sorted by
    name, and tables holding nothing but empty ACCEPT built-in chains left out (the legacy
    kernel lists such tables once anything loaded their module)."""
    state = split_saved(strip_counters(text))
    kept = {
        name: chains
        for name, chains in sorted(state.items())
        if any(c.rules or c.policy not in ("ACCEPT",) for c in chains.values())
    }
    return render_state(kept)
