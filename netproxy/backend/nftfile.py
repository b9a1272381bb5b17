"""An ``nft -f`` file given to ``apply --rules`` in nftables mode: which tables it touches.

apply changes only ``table ip kube-proxy`` and ``table ip6 kube-proxy``, so before anything is
sent every top-level statement of the file is read far enough to name its table: commands
(``add chain ip kube-proxy X``, ``delete element ...``, ``flush chain ...``; the family
defaults to ``ip`` as in nft) and ``table FAMILY NAME { ... }`` blocks (an ``nft list``
listing). A statement naming another table, or one whose table cannot be told (``flush
ruleset``, ``include``, an unknown command) refuses the file with its line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netproxy.errors import InputError, ParseError
from netproxy.netfilter.nft import ADDRESS_FAMILY

OWN_TABLES = (("ip", "kube-proxy"), ("ip6", "kube-proxy"))
FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")
VERBS = ("add", "create", "insert", "replace", "delete", "destroy", "flush")
OBJECTS = ("table", "chain", "rule", "set", "map", "element", "counter", "quota", "limit",
           "flowtable", "secmark", "synproxy")
CT_OBJECTS = ("helper", "timeout", "expectation")


@dataclass(slots=True)
class Statement:
    line: int
    """Line of the file the statement starts on."""
    text: str


@dataclass(slots=True)
class NftFile:
    """What the file does: the kube-proxy tables it touches (nft families, in file order),
    and whether it is a listing (only ``table`` blocks) rather than a transaction."""

    tables: list[str] = field(default_factory=list)
    listing: bool = True
    statements: int = 0

    @property
    def families(self) -> list[str]:
        return [ADDRESS_FAMILY[f] for f in self.tables]


def statements(text: str) -> list[Statement]:
    """Top-level statements: split at newlines and ``;`` outside braces and quotes, comments
    (``#`` to the end of the line) and line continuations (``\\``) removed."""
    out: list[Statement] = []
    buf: list[str] = []
    start = line = 1
    depth = 0
    quote = False
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if quote:
            buf.append(ch)
            if ch == "\\" and i + 1 < n:
                buf.append(text[i + 1])
                i += 1
            elif ch == '"':
                quote = False
            elif ch == "\n":
                line += 1
        elif ch == '"':
            quote = True
            buf.append(ch)
        elif ch == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif ch == "\\" and text[i + 1:i + 2] == "\n":
            buf.append(" ")
            line += 1
            i += 1
        elif ch in "{}":
            depth += 1 if ch == "{" else -1
            buf.append(ch)
        elif depth == 0 and ch in "\n;":
            if "".join(buf).strip():
                out.append(Statement(start, "".join(buf).strip()))
            buf = []
            if ch == "\n":
                line += 1
            start = line
        else:
            if ch == "\n":
                line += 1
            buf.append(ch)
        i += 1
    if "".join(buf).strip():
        out.append(Statement(start, "".join(buf).strip()))
    return out


def _table_of(words: list[str]) -> tuple[str, str] | None:
    """(family, table) that the words after the verb and object name; None if absent."""
    if not words or words[0].startswith("{"):
        return None
    if words[0] in FAMILIES:
        return (words[0], words[1]) if len(words) > 1 and not words[1].startswith("{") else None
    return "ip", words[0]


def table_of(stmt: Statement) -> tuple[str, str] | None:
    """The table a statement touches; None for a statement that touches none (``define``)."""
    words = stmt.text.replace("{", " { ").split()
    head = words[0]
    if head in ("define", "redefine", "undefine"):
        return None
    if head == "table":
        found = _table_of(words[1:])
    elif head in VERBS and len(words) > 1:
        obj, rest = words[1], words[2:]
        if obj == "ct" and rest and rest[0] in CT_OBJECTS:
            rest = rest[1:]
        elif obj not in OBJECTS:
            rest = []
        found = _table_of(rest)
    else:
        found = None
    if found is None:
        raise InputError(f"cannot tell which table '{_short(stmt.text)}' touches; apply "
                         "--proxy-mode nftables loads only table ip/ip6 kube-proxy")
    return found


def _short(text: str) -> str:
    one = " ".join(text.split())
    return one if len(one) <= 60 else one[:57] + "..."


def check(text: str, source: str) -> NftFile:
    """Read ``text`` (the file ``source``) and refuse it, naming the line and the table, when
    it touches anything but kube-proxy's tables."""
    found = NftFile()
    for stmt in statements(text):
        try:
            table = table_of(stmt)
        except InputError as err:
            raise ParseError(err.message, source=source, line=stmt.line) from None
        if table is None:
            continue
        found.statements += 1
        if not stmt.text.startswith("table"):
            found.listing = False
        if table not in OWN_TABLES:
            raise ParseError(f"touches table {table[0]} {table[1]}; apply --proxy-mode nftables "
                             "changes only table ip kube-proxy and table ip6 kube-proxy",
                             source=source, line=stmt.line)
        if table[0] not in found.tables:
            found.tables.append(table[0])
    if not found.tables:
        raise ParseError("no statement for table ip/ip6 kube-proxy", source=source)
    return found
