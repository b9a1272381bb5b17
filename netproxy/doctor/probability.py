"""Is a chain of ``-m statistic --probability`` rules an even split?

kube-proxy gives rule i of n the probability 1/(n-i) and the last rule none, so each endpoint
gets 1/n. What the rules hold depends on the writer and the reader: kube-proxy up to ~1.8 wrote
``%0.5f`` (``0.33333``), later ``%0.10f`` (``0.3333333333``); the kernel stores
``lround(2^31 * p)`` and ``iptables-save`` prints that back with 11 digits (``0.33332999982``,
``0.33333333349``). A probability is judged as meant for 1/k when its stored kernel value equals
the stored value of one of those spellings of 1/k.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from netproxy.kubeview.shares import cascade_shares
from netproxy.netfilter.values import kernel_probability

_SCALE = 2147483648  # 2^31
WRITER_DIGITS = (5, 10)
"""Decimal digits kube-proxy releases printed probabilities with."""


def stored(text: str) -> int:
    """The 31-bit value the kernel keeps for ``--probability text``."""
    return round(kernel_probability(text) * _SCALE)


def _stored_for(k: int) -> set[int]:
    values = {stored(f"{1.0 / k:.{digits}f}") for digits in WRITER_DIGITS}
    values.add(stored(repr(1.0 / k)))
    return values


def means_one_in(text: str, k: int) -> bool:
    """Whether ``--probability text`` is a kube-proxy spelling of 1/k (after kernel rounding)."""
    try:
        value = stored(text)
    except ValueError:
        return False
    return any(abs(value - s) <= 1 for s in _stored_for(k))


@dataclass(frozen=True, slots=True)
class Split:
    """The outcome of judging one balancing chain."""

    even: bool
    shares: tuple[Fraction, ...]
    """Exact share of new connections each rule receives, in rule order (of the kernel's
    stored probabilities: :func:`~netproxy.kubeview.shares.cascade_shares`)."""
    problems: tuple[str, ...]


def judge(probabilities: list[str | None]) -> Split:
    """Judge the probabilities of a chain's balancing rules, in rule order."""
    n = len(probabilities)
    problems: list[str] = []
    shares = cascade_shares(probabilities)
    for i, text in enumerate(probabilities):
        if text is not None:
            try:
                stored(text)
            except ValueError:
                problems.append(f"rule {i + 1}: probability {text!r} is not a number between 0 and 1")
        expected_k = n - i
        if i < n - 1:
            if text is None:
                problems.append(
                    f"rule {i + 1} of {n} has no probability: it takes all remaining traffic and "
                    f"the {n - i - 1} rule(s) after it are never reached"
                )
            elif not means_one_in(text, expected_k):
                problems.append(
                    f"rule {i + 1} of {n} has probability {text}, expected 1/{expected_k}"
                    f" ({1.0 / expected_k:0.10f})"
                )
        elif text is not None:
            remaining = 1 - sum(shares, Fraction(0))
            problems.append(
                f"the last rule has probability {text}: {float(remaining):.2%} of new "
                "connections match no endpoint rule and fall through the chain"
            )
    return Split(not problems, tuple(shares), tuple(problems))
