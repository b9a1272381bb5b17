"""Standard input, read once: a command may look at it to recognise it before the reader
that takes it reads it again."""

from __future__ import annotations

import sys
from typing import Any

_cache: list[Any] = [None, ""]


def read_stdin() -> str:
    """All of standard input; later calls (for the same ``sys.stdin``) return the same text."""
    if _cache[0] is not sys.stdin:
        _cache[1] = sys.stdin.read()
        _cache[0] = sys.stdin
    text: str = _cache[1]
    return text
