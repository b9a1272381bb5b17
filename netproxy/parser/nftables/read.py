"""Reading an nftables listing from a file, and telling it from an iptables dump."""

from __future__ import annotations

from pathlib import Path

from netproxy.errors import ParseError
from netproxy.netfilter.nft import NftRuleset
from netproxy.parser.nftables.jsonform import parse_nft_json
from netproxy.parser.nftables.text import parse_nft_text
from netproxy.textsafe import read_input


def is_nft(text: str) -> bool:
    """True for an nft listing (text or JSON), False for iptables-save/-restore text."""
    for line in text.splitlines():
        word = line.strip()
        if not word or word.startswith("#"):
            continue
        return word.startswith(("table ", "{", "flush ruleset"))
    return False


def parse_nft(text: str, *, source: str = "<nft>", strict: bool = False,
              references: bool = True) -> NftRuleset:
    """Text or JSON, told apart by the first character."""
    if text.lstrip().startswith("{"):
        return parse_nft_json(text, source=source, strict=strict)
    return parse_nft_text(text, source=source, strict=strict, references=references)


def read_text(path: str | Path) -> tuple[str, str]:
    """(text, source name) of a file, ``-`` for standard input."""
    try:
        return read_input(path)
    except OSError as err:
        raise ParseError(f"cannot read: {err.strerror or err}", source=str(path)) from None


def read_nft(path: str | Path, *, strict: bool = False) -> NftRuleset:
    text, source = read_text(path)
    return parse_nft(text, source=source, strict=strict)
