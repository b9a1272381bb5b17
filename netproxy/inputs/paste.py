"""Lines that copying a file through a terminal or a chat window adds to it.

A dump pasted from a terminal often starts with the command that printed it
(``$ sudo iptables-save``, ``root@node-1:~# iptables-save``), one pasted from a chat or an
issue sits between markdown fences (````` ```text `````), and either may have CRLF line ends
or blank lines in front. :func:`damage_kind` recognises such a line; :func:`clear_edges` blanks
the ones before the first and after the last real line of a text, keeping every other line
where it was, so that line numbers in later messages still point into the user's file.
"""

from __future__ import annotations

import re

PROMPT = "shell prompt"
FENCE = "markdown fence"

_PROMPT = re.compile(
    r"(?:\$|%|>)(?:\s.*)?$"  # "$ cmd", a bare "$"
    r"|[\w.-]+@[\w.-]+(?::\S*)?\s?[$#%](\s|$)"  # user@host:~$ cmd, root@node:/# cmd
    r"|\[[\w.-]+@[\w.-]+[^\]]*\][$#](\s|$)"  # [root@node ~]# cmd
    r"|PS [A-Z]:\\[^>]*>\s")  # PS C:\> cmd
_FENCE = re.compile(r"(```|~~~)[\w+-]*\s*$")


def damage_kind(line: str) -> str | None:
    """What a paste made of ``line`` (stripped), or None when it is not paste damage."""
    first = line[:1]
    if first == "`" or first == "~":
        return FENCE if _FENCE.match(line) else None
    if first in "$%>[P" or "@" in line[:64]:
        return PROMPT if _PROMPT.match(line) else None
    return None


def clear_edges(text: str) -> tuple[str, list[tuple[int, str]]]:
    """``text`` with the paste damage before its first real line and after its last one
    replaced by empty lines, and what was blanked: (line number, kind) pairs.

    Only the edges are walked, so this costs nothing on big files that have no damage.
    """
    removed: list[tuple[int, str]] = []
    pos, number, size = 0, 1, len(text)
    while pos < size:
        end = text.find("\n", pos)
        end = size if end < 0 else end + 1
        line = text[pos:end].strip()
        if line:
            what = damage_kind(line)
            if what is None:
                break
            removed.append((number, what))
        pos = end
        number += 1
    head_end = pos if removed else 0
    tail: list[tuple[int, str]] = []
    end, back, cut = size, 0, size
    while end > pos:
        start = max(text.rfind("\n", pos, end - 1) + 1, pos)
        line = text[start:end].strip()
        if line:
            what = damage_kind(line)
            if what is None:
                break
            tail.append((back, what))
            cut = start
        back += 1
        end = start
    if not removed and not tail:
        return text, []
    if tail:
        last = text.count("\n") + (1 if not text.endswith("\n") else 0)
        removed += sorted((last - b, what) for b, what in tail)
    repaired = "\n" * text.count("\n", 0, head_end) + text[head_end:cut] \
        + "\n" * text.count("\n", cut)
    return repaired, removed


def describe(removed: list[tuple[int, str]]) -> str:
    """``a shell prompt (line 1), a markdown fence (lines 2, 40)`` for a note."""
    by_kind: dict[str, list[int]] = {}
    for number, what in removed:
        by_kind.setdefault(what, []).append(number)
    parts = []
    for what, numbers in by_kind.items():
        label = "line" if len(numbers) == 1 else "lines"
        shown = ", ".join(map(str, numbers[:5])) + (", ..." if len(numbers) > 5 else "")
        parts.append(f"{what} ({label} {shown})")
    return ", ".join(parts)
