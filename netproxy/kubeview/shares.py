"""Endpoint shares, the same number for both modes.

iptables mode spreads new connections with a cascade of ``-m statistic --probability`` rules
(rule i of n: 1/(n-i), the last unconditional); nftables mode with ``numgen random mod N``,
where an endpoint's share is the number of map entries that name it over N. Multiplying out
the cascade gives what each endpoint gets, so the two modes can be compared; whether a
cascade's written decimals meant 1/n is the doctor's question
(:mod:`netproxy.doctor.probability`). This is the one computation of a cascade's shares: the
model (:meth:`~netproxy.kubeview.model.ServicePortView.shares`), the doctor's judgement of a
split and the differ's endpoint statements all use it.
"""

from __future__ import annotations

from fractions import Fraction

from netproxy.netfilter.values import kernel_probability


def cascade_shares(probabilities: list[str | None]) -> list[Fraction]:
    """The exact share of new connections each rule of a ``--probability`` cascade receives,
    in rule order.

    The probability used is the one the kernel stores, not the one written in the rule text:
    libxt_statistic keeps ``lround(2^31 * p)`` and the kernel draws a 31-bit random number
    against it (:func:`~netproxy.netfilter.values.kernel_probability`), so the stored value is
    what connections really get (``0.3333333333`` as written is ``0.33333333349`` as stored,
    which is also what ``iptables-save`` prints back); the written decimals only say what
    kube-proxy meant. ``None`` (the last, unconditional rule) takes all that is left; a
    probability that is no number between 0 and 1 counts as 0 (iptables refuses such a rule,
    so it takes nothing).
    """
    out: list[Fraction] = []
    remaining = Fraction(1)
    for text in probabilities:
        if text is None:
            p = Fraction(1)
        else:
            try:
                p = Fraction(kernel_probability(text))  # exact: a 31-bit value over 2^31
            except ValueError:
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
