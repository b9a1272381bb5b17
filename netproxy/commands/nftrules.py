"""nftables listings given to ``trace`` (``--rules``, repeatable, or among the INPUTS)."""

from __future__ import annotations

from pathlib import Path

from netproxy.errors import ParseError
from netproxy.inputs import sniff as k
from netproxy.inputs.read import display, sniff_path, stderr_note
from netproxy.inputs.stdin import read_stdin
from netproxy.netfilter.nft import NftRuleset


def is_nft_file(name: str) -> bool:
    """True for an ``nft list ruleset`` (text or JSON) file; ``-`` is standard input."""
    if name != "-" and not Path(name).is_file():
        return False
    return sniff_path(name).kind in (k.NFT_TEXT, k.NFT_JSON)


def read_nft_listing(name: str, *, strict: bool) -> NftRuleset:
    """Parse a listing; what a lenient parse could not read is noted on stderr (the trace
    says UNKNOWN where a packet reaches it)."""
    from netproxy.parser.nftables import parse_nft

    source = display(name)
    if name == "-":
        text = read_stdin()
    else:
        try:
            text = Path(name).read_text(encoding="utf-8", errors="surrogateescape")
        except OSError as err:
            raise ParseError(f"cannot read: {err.strerror or err}", source=source) from None
    listing = parse_nft(text, source=source, strict=strict)
    if not listing.tables:
        raise ParseError("no nftables tables found", source=source, line=1)
    if listing.problems:
        first = listing.problems[0]
        more = f" (and {len(listing.problems) - 1} more)" if len(listing.problems) > 1 else ""
        stderr_note(f"{source}:{first.line}: {first.message}{more}")
    return listing
