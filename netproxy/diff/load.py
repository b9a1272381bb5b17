"""Read a ruleset for diffing: lenient about odd rules, strict about broken files."""

from __future__ import annotations

from pathlib import Path

from netproxy.errors import ParseError
from netproxy.inputs import sniff as k
from netproxy.inputs.read import display, read_ruleset, sniff_path
from netproxy.netfilter.model import Ruleset
from netproxy.netfilter.nft import NftRuleset


def load_ruleset(path: str, *, strict: bool = False) -> Ruleset:
    """Parse ``path`` (``-`` for stdin); raise a one-line error naming the broken line.

    Rules the parser keeps as undecidable (unknown options, redacted addresses) are fine:
    they compare by their text. ``strict`` rejects those too. A file that is not a ruleset,
    or only part of one (truncated, garbled), is refused (see :mod:`netproxy.inputs.read`).
    """
    return read_ruleset(path, command="diff", strict=strict)


def is_listing(path: str) -> bool:
    """Whether ``path`` is an nftables listing (``nft list ruleset``, text or ``-j`` JSON) or
    a node snapshot whose nftables listing holds kube-proxy's table (nftables mode)."""
    if path != "-" and not Path(path).is_file():
        return False
    kind = sniff_path(path).kind
    if kind in (k.NFT_TEXT, k.NFT_JSON):
        return True
    if kind != k.SNAPSHOT or path == "-":
        return False
    from netproxy.node.snapshot import read_snapshot

    text = read_snapshot(path).nft_ruleset or ""
    return "table ip kube-proxy" in text or "table ip6 kube-proxy" in text


def load_listing(path: str, *, strict: bool = False) -> NftRuleset:
    """The nftables listing in ``path`` (a listing, or a snapshot's ``nft list ruleset``),
    read as ``netproxy trace`` reads it: leniently unless ``strict``."""
    from netproxy.inputs.stdin import read_stdin
    from netproxy.parser.nftables.read import parse_nft, read_text

    source = display(path)
    if path != "-" and sniff_path(path).kind == k.SNAPSHOT:
        from netproxy.node.snapshot import read_snapshot

        text = read_snapshot(path).nft_ruleset or ""
        source += " (nft list ruleset)"
    else:
        text = read_stdin() if path == "-" else read_text(path)[0]
    listing = parse_nft(text, source=source, strict=strict)
    if not listing.tables:
        raise ParseError("no nftables tables found", source=source, line=1)
    return listing
