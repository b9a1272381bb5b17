"""Read a ruleset for diffing: lenient about odd rules, strict about broken files."""

from __future__ import annotations

from netproxy.errors import ParseError
from netproxy.netfilter.model import Ruleset
from netproxy.parser import read_rules

_FATAL = ("cannot read line", "unterminated quote", "has no COMMIT", "was not declared")
"""Problems that mean the file is not a whole dump (truncated, garbled, not a dump at all);
comparing it would report its damage as differences."""


def load_ruleset(path: str, *, strict: bool = False) -> Ruleset:
    """Parse ``path`` (``-`` for stdin); raise :class:`ParseError` naming the broken line.

    Rules the parser keeps as undecidable (unknown options, redacted addresses) are fine:
    they compare by their text. ``strict`` rejects those too.
    """
    ruleset = read_rules(path, strict=strict)
    for problem in ruleset.problems:
        if any(marker in problem.message for marker in _FATAL):
            raise ParseError(problem.message, source=ruleset.source, line=problem.line,
                             column=problem.column)
    if not ruleset.tables:
        raise ParseError("no iptables tables found (not an iptables-save dump?)",
                         source=ruleset.source, line=1)
    return ruleset
