"""What a lenient parse tolerated, said once per kind of problem.

A dump with eight malformed DNAT lines gets one line, not eight and not none:
``tolerated 8 lines: option --to-destination has no value (first at line 122)``. The
kind is the message with its quoted specifics (names, addresses) left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from netproxy.netfilter.model import Problem

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def kind_of(message: str) -> str:
    return _QUOTED.sub("…", message)


def tolerated(problems: Iterable[Problem]) -> list[str]:
    """One line per kind of problem: how many lines had it, an example, the first line."""
    kinds: dict[str, list[Problem]] = {}
    for p in problems:
        kinds.setdefault(kind_of(p.message), []).append(p)
    out = []
    for found in kinds.values():
        lines = sorted({p.line for p in found})
        first = min(found, key=lambda p: p.line)
        count = f"{len(lines)} line{'s' if len(lines) != 1 else ''}"
        out.append(f"tolerated {count}: {first.message} (first at line {first.line}; those "
                   "rules are UNKNOWN where a packet reaches them)")
    return out
