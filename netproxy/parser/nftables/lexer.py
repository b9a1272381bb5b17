"""Tokens of an ``nft list ruleset`` listing, with line and column.

Words are split at blanks and at ``{ } ; ,``; a double-quoted string is one token; ``#``
starts a comment to the end of the line (``# handle 7`` becomes a HANDLE token, other
comments -- ``# CHECKSUM fill``, where nft prints an xt target it cannot translate -- a
COMMENT token). Every line ends with an NL token: rules are one per line.
"""

from __future__ import annotations

import re
from typing import NamedTuple

WORD, STRING, PUNCT, NL, HANDLE, COMMENT = "word", "string", "punct", "nl", "handle", "comment"
_HANDLE = re.compile(r"handle (\d+)\s*$")
_SPLIT = re.compile(r'\s+|([{};,])|("(?:[^"\\]|\\.)*"?)|(#.*)')


class Token(NamedTuple):
    kind: str
    value: str
    line: int
    column: int


def tokenize(text: str) -> list[Token]:
    """All tokens of ``text`` (columns are 1-based)."""
    out: list[Token] = []
    append = out.append
    for number, line in enumerate(text.splitlines(), 1):
        if not line or line.isspace():
            append(Token(NL, "", number, len(line) + 1))
            continue
        pos = 0
        for m in _SPLIT.finditer(line):
            start = m.start()
            if start > pos:
                append(Token(WORD, line[pos:start], number, pos + 1))
            pos = m.end()
            punct, string, comment = m.group(1), m.group(2), m.group(3)
            if punct:
                append(Token(PUNCT, punct, number, start + 1))
            elif string:
                body = string[1:-1] if len(string) > 1 and string.endswith('"') else string[1:]
                append(Token(STRING, body.replace('\\"', '"'), number, start + 1))
            elif comment:
                body = comment[1:].strip()
                found = _HANDLE.search(body)
                if found is not None and body.startswith("handle"):
                    append(Token(HANDLE, found.group(1), number, start + 1))
                else:
                    # "# CHECKSUM fill # handle 4": the xt target's text, then the handle
                    head, sep, tail = body.partition("# ")
                    append(Token(COMMENT, head.strip(), number, start + 1))
                    found = _HANDLE.search(tail) if sep else None
                    if found is not None:
                        append(Token(HANDLE, found.group(1), number, start + 1))
                break
        if pos < len(line) and not line[pos:].isspace():
            rest = line[pos:]
            if not rest.startswith("#"):
                append(Token(WORD, rest.strip(), number, pos + 1))
        append(Token(NL, "", number, len(line) + 1))
    return out
