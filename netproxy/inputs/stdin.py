"""Standard input, read once: a command may look at it to recognise it before the reader
that takes it reads it again."""

from __future__ import annotations

import sys
from typing import Any

from netproxy.textsafe import decode_input, stdin_bytes

_cache: list[Any] = [None, ""]


def read_stdin() -> str:
    """All of standard input (see :func:`netproxy.textsafe.decode_input`); later calls (for the same ``sys.stdin``) return the same text."""
    if _cache[0] is not sys.stdin:
        # bytes, whatever the locale: undecodable ones (an old dump's Latin-1 comment) are
        # kept as surrogates, which print escaped; the Kubernetes reader refuses them
        _cache[1] = decode_input(stdin_bytes())
        _cache[0] = sys.stdin
    text: str = _cache[1]
    return text
