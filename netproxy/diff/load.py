"""Read a ruleset for diffing: lenient about odd rules, strict about broken files."""

from __future__ import annotations

from netproxy.errors import ParseError
from netproxy.netfilter.model import Ruleset
from netproxy.parser import read_rules
from netproxy.parser.tokens import TokenError, split_words_with_columns

_FATAL = ("cannot read line", "unterminated quote", "has no COMMIT", "was not declared")
"""Problems that mean the file is not a whole dump (truncated, garbled, not a dump at all);
comparing it would report its damage as differences."""


def load_ruleset(path: str, *, strict: bool = False) -> Ruleset:
    """Parse ``path`` (``-`` for stdin); raise :class:`ParseError` naming the broken line.

    Rules the parser keeps as undecidable (unknown options, redacted addresses) are fine:
    they compare by their text. ``strict`` rejects those too.
    """
    try:
        ruleset = read_rules(path, strict=strict)
    except TokenError as err:  # a tokenizer error that escaped the parser: find its line
        raise ParseError(str(err), source="<stdin>" if path == "-" else path,
                         line=_bad_line(path)) from None
    for problem in ruleset.problems:
        if any(marker in problem.message for marker in _FATAL):
            raise ParseError(problem.message, source=ruleset.source, line=problem.line,
                             column=problem.column)
    if not ruleset.tables:
        raise ParseError("no iptables tables found (not an iptables-save dump?)",
                         source=ruleset.source, line=1)
    return ruleset


def _bad_line(path: str) -> int:
    if path == "-":
        return 0
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            for number, line in enumerate(handle, 1):
                try:
                    split_words_with_columns(line)
                except TokenError:
                    return number
    except OSError:
        return 0
    return 0
