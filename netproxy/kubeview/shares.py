"""Endpoint shares, the same number for both modes.

iptables mode spreads new connections with a cascade of ``-m statistic --probability`` rules
(rule i of n: 1/(n-i), the last unconditional); nftables mode with ``numgen random mod N``,
where an endpoint's share is the number of map entries that name it over N. Multiplying out
the cascade gives what each endpoint gets, so the two modes can be compared; how exactly a
cascade's decimals meet 1/n after the kernel's rounding is the doctor's question
(:mod:`netproxy.doctor.probability`).
"""

from __future__ import annotations

from fractions import Fraction


def cascade_shares(probabilities: list[str | None]) -> list[Fraction]:
    """The share each rule of a ``--probability`` cascade receives, in rule order (an
    unreadable probability counts as 0)."""
    out: list[Fraction] = []
    remaining = Fraction(1)
    for text in probabilities:
        if text is None:
            p = Fraction(1)
        else:
            try:
                p = min(max(Fraction(text), Fraction(0)), Fraction(1))
            except (ValueError, ZeroDivisionError):
                p = Fraction(0)
        out.append(remaining * p)
        remaining -= remaining * p
    return out


def numgen_shares(indexes: list[list[int]], modulus: int) -> list[Fraction]:
    """The share of each target of a ``numgen random mod modulus`` map, given the map keys
    that name it (keys outside 0..modulus-1 are never drawn)."""
    if modulus <= 0:
        return [Fraction(0) for _ in indexes]
    return [Fraction(sum(1 for k in keys if 0 <= k < modulus), modulus) for keys in indexes]
