"""Read a ruleset for diffing: lenient about odd rules, strict about broken files."""

from __future__ import annotations

from netproxy.inputs.read import read_ruleset
from netproxy.netfilter.model import Ruleset


def load_ruleset(path: str, *, strict: bool = False) -> Ruleset:
    """Parse ``path`` (``-`` for stdin); raise a one-line error naming the broken line.

    Rules the parser keeps as undecidable (unknown options, redacted addresses) are fine:
    they compare by their text. ``strict`` rejects those too. A file that is not a ruleset,
    or only part of one (truncated, garbled), is refused (see :mod:`netproxy.inputs.read`).
    """
    return read_ruleset(path, command="diff", strict=strict)
