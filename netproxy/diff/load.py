"""Read a ruleset for diffing: lenient about odd rules, strict about broken files.

Each input of ``netproxy diff`` is recognised once (:func:`open_side`; a node snapshot is
parsed once), then read as what it is: an iptables ruleset (:func:`load_ruleset`) or an
nftables listing (:func:`load_listing`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from netproxy.errors import ParseError
from netproxy.inputs import sniff as k
from netproxy.inputs.read import (
    read_listing,
    read_ruleset,
    read_snapshot_input,
    snapshot_ruleset,
    sniff_path,
)
from netproxy.netfilter.model import Ruleset
from netproxy.netfilter.nft import NftRuleset

if TYPE_CHECKING:
    from netproxy.node.snapshot import NodeContext

_KUBE_TABLES = ("table ip kube-proxy", "table ip6 kube-proxy")


@dataclass(slots=True)
class Side:
    """One input of a diff, recognised: its sniffed kind, and the snapshot it holds, read."""

    name: str
    kind: str
    snapshot: NodeContext | None = None

    @property
    def is_listing(self) -> bool:
        """An nftables listing (``nft list ruleset``, text or ``-j`` JSON), or a node
        snapshot whose nftables listing holds kube-proxy's table (nftables mode)."""
        if self.kind in (k.NFT_TEXT, k.NFT_JSON):
            return True
        if self.snapshot is None:
            return False
        text = self.snapshot.nft_ruleset or ""
        return any(table in text for table in _KUBE_TABLES)


def open_side(name: str) -> Side:
    """Recognise ``name`` (``-``: standard input); a snapshot file is read here, once. A
    file that does not exist is left for the reader to name."""
    if name != "-" and not Path(name).is_file():
        return Side(name, "")
    kind = sniff_path(name).kind
    if kind == k.SNAPSHOT and name != "-":
        return Side(name, kind, read_snapshot_input(name))
    return Side(name, kind)


def is_listing(path: str) -> bool:
    """Whether ``path`` is an nftables listing or a snapshot of a node in nftables mode."""
    return open_side(path).is_listing


def load_ruleset(side: Side | str, *, strict: bool = False, family: str | None = None) -> Ruleset:
    """Parse an iptables ruleset (``-`` for stdin); raise a one-line error naming the
    broken line.

    Rules the parser keeps as undecidable (unknown options, redacted addresses) are fine:
    they compare by their text. ``strict`` rejects those too. A file that is not a ruleset,
    or only part of one (truncated, garbled), is refused (see :mod:`netproxy.inputs.read`).
    """
    if isinstance(side, Side) and side.snapshot is not None:
        return snapshot_ruleset(side.snapshot, family, strict=strict)
    name = side.name if isinstance(side, Side) else side
    return read_ruleset(name, command="diff", strict=strict, family=family)


def load_listing(side: Side | str, *, strict: bool = False) -> NftRuleset:
    """The nftables listing of ``side`` (a listing, or a snapshot's ``nft list ruleset``),
    read as ``netproxy trace`` reads it: leniently unless ``strict``."""
    from netproxy.parser.nftables.read import parse_nft

    side = open_side(side) if isinstance(side, str) else side
    if side.snapshot is None:
        return read_listing(side.name, strict=strict)
    source = f"{side.snapshot.source} (nft list ruleset)"
    listing = parse_nft(side.snapshot.nft_ruleset or "", source=source, strict=strict)
    if not listing.tables:
        raise ParseError("no nftables tables found", source=source, line=1)
    return listing
