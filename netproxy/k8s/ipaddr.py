"""IP and CIDR parsing the way Kubernetes does it ("sloppy": IPv4 octets may have leading zeros).

kube-proxy parses addresses with ``netutils.ParseIPSloppy`` and prints them with Go's
``net.IP.String()``: dotted quad for IPv4 (also for IPv4-mapped IPv6), RFC 5952 for IPv6.
Python's :mod:`ipaddress` prints the same canonical forms once leading zeros are removed.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from netproxy.textsafe import digits

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _strip_v4_zeros(text: str) -> str:
    parts = text.split(".")
    if len(parts) == 4 and all(map(digits, parts)):
        return ".".join(str(int(p)) for p in parts)
    return text


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_V4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
is_canonical_ipv4 = _CANONICAL_V4.fullmatch
"""A match (truthy) when the text is an IPv4 address already printed canonically: the
common case, answered without a call into Python; :func:`canonical_ip` handles the rest."""

_V4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_CANONICAL_V4_LIST = re.compile(rf"{_V4}(?:,{_V4})*").fullmatch


def all_canonical_ipv4(texts: list[str]) -> bool:
    """Whether every text is a canonically printed IPv4 address (as :func:`is_canonical_ipv4`).

    One regular-expression match over the texts joined by commas, about half the cost of one
    match per text. Exact: the joined text matches only if it is canonical addresses separated
    by commas, and it has one comma fewer than there are texts only if no text holds a comma,
    so each text is one of those addresses (an empty text or an empty list never matches).
    """
    try:
        joined = ",".join(texts)
    except TypeError:  # not all strings
        return False
    return _CANONICAL_V4_LIST(joined) is not None and joined.count(",") == len(texts) - 1


@lru_cache(maxsize=1 << 18)
def canonical_ip(text: str) -> str | None:
    """``text`` printed the way Go prints the parsed address, or None if it is not an IP.

    The common case (an already canonical dotted quad) is answered without :mod:`ipaddress`;
    results are cached because the same addresses are checked while loading and compiling.
    """
    if not isinstance(text, str):
        return None
    if _CANONICAL_V4.fullmatch(text):
        return text
    addr = parse_ip(text)
    return None if addr is None else str(addr)


def parse_ip(text: str) -> IPAddress | None:
    """The address ``text`` denotes, or None when it is not an IP address."""
    if not isinstance(text, str) or not text or "/" in text or "%" in text:
        return None  # also no IPv6 zone (fe80::1%eth0): Go's ParseIP refuses it, ip6tables too
    try:
        if ":" in text:
            addr6 = ipaddress.IPv6Address(text)
            return addr6.ipv4_mapped or addr6
        return ipaddress.IPv4Address(_strip_v4_zeros(text))
    except ValueError:
        return None


@lru_cache(maxsize=1 << 12)
def parse_cidr(text: str) -> IPNetwork | None:
    """The network ``text`` denotes (host bits cleared, like Go's ParseCIDR), or None."""
    if not isinstance(text, str) or "/" not in text:
        return None
    addr_text, _, bits = text.partition("/")
    addr = parse_ip(addr_text)
    if addr is None or not digits(bits) or int(bits) > addr.max_prefixlen:
        return None
    if ":" in addr_text and addr.version == 4:
        return None  # an IPv4-mapped CIDR is ambiguous; Kubernetes rejects it as well
    try:
        return ipaddress.ip_network(f"{addr}/{int(bits)}", strict=False)
    except ValueError:
        return None


def family_of(addr: IPAddress | IPNetwork) -> str:
    """``"ipv4"`` or ``"ipv6"``."""
    return "ipv4" if addr.version == 4 else "ipv6"
