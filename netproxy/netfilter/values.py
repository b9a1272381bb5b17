"""Typed netfilter values: addresses, marks, probabilities, as the kernel stores and prints them."""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4_HOST = re.compile(rf"^{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}$")
is_ipv4_host = _IPV4_HOST.match
"""A match (truthy) for a plain IPv4 host address that :func:`saved_address` prints with
``/32`` appended (valid octets, no leading zeros): lets callers skip the call."""


@lru_cache(maxsize=1 << 18)
def saved_address(text: str, family: str) -> str:
    """``-s``/``-d`` value as ``iptables-save`` prints it: network/len, ``/32`` for hosts.

    Raises ValueError for text that is not an address or network of ``family``.
    """
    if family == "ipv4" and _IPV4_HOST.match(text):
        # Fast path for the common plain host address (kube-proxy writes these by the 100k);
        # the pattern admits only valid octets without leading zeros.
        return text + "/32"
    net = ipaddress.ip_network(text, strict=False)
    if (net.version == 6) != (family == "ipv6"):
        raise ValueError(f"{text!r} is not an {family} address")
    return f"{net.network_address}/{net.prefixlen}"


def parse_int(text: str) -> int:
    """An integer in the notations iptables accepts (decimal, ``0x`` hex, ``0`` octal)."""
    t = text.strip()
    if t[:2].lower() == "0x":
        return int(t, 16)
    if len(t) > 1 and t.startswith("0"):
        return int(t, 8)
    return int(t)


def parse_mark(text: str) -> tuple[int, int]:
    """``value[/mask]`` as (value, mask); the mask defaults to all ones."""
    value, _, mask = text.partition("/")
    return parse_int(value), (parse_int(mask) if mask else 0xFFFFFFFF)


def saved_mark(text: str) -> str:
    """A mark match value as ``iptables-save`` prints it: ``0x4000/0x4000``, mask dropped if all ones."""
    value, mask = parse_mark(text)
    return f"{value:#x}" if mask == 0xFFFFFFFF else f"{value:#x}/{mask:#x}"


def kube_probability(k: int) -> str:
    """kube-proxy's payload probability for 1/k: Go ``%0.10f``."""
    return f"{1.0 / k:0.10f}"


def kernel_probability(text: str) -> float:
    """The probability the kernel really uses for ``--probability text``.

    libxt_statistic stores ``lround(2^31 * p)`` as a 32-bit value; the kernel compares a random
    31-bit number against it, so the effective probability is that value divided by 2^31.
    """
    p = float(text)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"probability {text!r} is not between 0 and 1")
    scaled = p * 2147483648.0
    stored = int(scaled + 0.5)  # lround: half away from zero (p is never negative)
    return stored / 2147483648.0


def saved_probability(text: str) -> str:
    """What ``iptables-save`` prints for ``--probability text``: ``%.11f`` of the stored value."""
    return f"{kernel_probability(text):.11f}"


CTSTATE_ORDER = ("INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED", "SNAT", "DNAT")


def saved_ctstate(text: str) -> str:
    """Conntrack states in the order libxt_conntrack prints them."""
    states = {s.strip().upper() for s in text.split(",") if s.strip()}
    known = [s for s in CTSTATE_ORDER if s in states]
    return ",".join(known + sorted(states.difference(CTSTATE_ORDER)))
