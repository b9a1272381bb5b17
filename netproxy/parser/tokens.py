"""Split one iptables-save / iptables-restore line into words the way iptables-restore does.

Words are separated by blanks. A double quote opens a quoted part (blanks kept) that a
double quote closes; inside it a backslash makes the next character literal. The quoted part
joins the word it touches (``"a b"c`` is one word ``a bc``). Outside quotes every character,
backslash included, is literal. Single quotes are treated the same way as double quotes,
as newer iptables releases do.
"""

from __future__ import annotations

import re

# Words made of unquoted runs and double-quoted parts; exact for lines without backslashes
# and single quotes and with balanced double quotes, which is nearly every real line.
_WORD = re.compile(r'(?:"[^"]*"|[^\s"])+')


class TokenError(ValueError):
    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.column = column


def split_words(line: str) -> list[str]:
    """The words of ``line``; raises :class:`TokenError` for an unterminated quote."""
    if '"' not in line:
        if "'" not in line:
            return line.split()
    elif "'" not in line and "\\" not in line:
        words = _split_quoted(line)
        if words is not None:
            return words
        if line.count('"') % 2 == 0:
            return [w.replace('"', "") if '"' in w else w for w in _WORD.findall(line)]
    return [w for w, _ in split_words_with_columns(line)]


def _split_quoted(line: str) -> list[str] | None:
    """Fast split when every quoted part stands alone between blanks (``--comment "a b"``)."""
    parts = line.split('"')
    n = len(parts)
    if n == 3:  # the common case: one quoted comment
        before, quoted, after = parts
        if before[-1:].isspace() and (not after or after[0].isspace()):
            words = before.split()
            words.append(quoted)
            words.extend(after.split())
            return words
        return None
    if n % 2 == 0:
        return None
    words = parts[0].split()
    for idx in range(1, n, 2):
        before, after = parts[idx - 1], parts[idx + 1]
        if (before and not before[-1].isspace()) or (not before and idx > 1) \
                or (after and not after[0].isspace()) or (not after and idx + 1 < n - 1):
            return None
        words.append(parts[idx])
        words.extend(after.split())
    return words


def split_words_with_columns(line: str) -> list[tuple[str, int]]:
    """Words with the 1-based column where each starts (used for error messages)."""
    words: list[tuple[str, int]] = []
    buf: list[str] = []
    start = 0
    quote = ""
    quote_col = 0
    escaped = False
    in_word = False
    for i, ch in enumerate(line):
        if quote:
            if escaped:
                buf.append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
            else:
                buf.append(ch)
            continue
        if ch in "\"'":
            quote, quote_col = ch, i + 1
            if not in_word:
                in_word, start = True, i + 1
            continue
        if ch in " \t\r\n":
            if in_word:
                words.append(("".join(buf), start))
                buf, in_word = [], False
            continue
        if not in_word:
            in_word, start = True, i + 1
        buf.append(ch)
    if quote:
        raise TokenError("unterminated quote", quote_col)
    if in_word:
        words.append(("".join(buf), start))
    return words
