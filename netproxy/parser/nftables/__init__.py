"""nftables listings to the nftables model: ``nft list ruleset`` text and ``nft -j`` JSON."""

from netproxy.parser.nftables.jsonform import parse_nft_json
from netproxy.parser.nftables.read import is_nft, parse_nft, read_nft
from netproxy.parser.nftables.text import parse_nft_text

__all__ = ["is_nft", "parse_nft", "parse_nft_json", "parse_nft_text", "read_nft"]
