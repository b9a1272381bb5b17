"""nftables listings given to ``trace`` (``--rules``, repeatable, or among the INPUTS)."""

from __future__ import annotations

from pathlib import Path

from netproxy.inputs import sniff as k
from netproxy.inputs.read import read_listing, sniff_path, stderr_note
from netproxy.netfilter.nft import NftRuleset


def is_nft_file(name: str) -> bool:
    """True for an ``nft list ruleset`` (text or JSON) file; ``-`` is standard input."""
    if name != "-" and not Path(name).is_file():
        return False
    return sniff_path(name).kind in (k.NFT_TEXT, k.NFT_JSON)


def read_nft_listings(names: list[str], *, strict: bool) -> list[NftRuleset]:
    """Parse listings read together: a table in several of them is one table, so a chain or
    set one of them refers to may be in another. What a lenient parse could not read is
    noted on stderr (the trace says UNKNOWN where a packet reaches it)."""
    from netproxy.parser.nftables.refs import check_references

    listings = [read_listing(name, strict=strict, references=False) for name in names]
    for listing in listings:
        check_references(listing, strict, tuple(o for o in listings if o is not listing))
    for listing in listings:
        if listing.problems:
            first = listing.problems[0]
            more = f" (and {len(listing.problems) - 1} more)" if len(listing.problems) > 1 else ""
            where = f"{first.line}:{first.column}" if first.column else f"{first.line}"
            stderr_note(f"{listing.source}:{where}: {first.message}{more}")
    return listings
