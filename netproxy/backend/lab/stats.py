"""The statistics of lab check: exact two-sided binomial tests with a Bonferroni bound.

For a probe group of ``n`` attempts and an expected outcome of probability ``p`` that was
seen ``k`` times, the two-sided exact p-value is the total probability of every count at
most as likely as ``k`` under Binomial(n, p). A check that tests ``m`` expected outcomes
in all passes when every one has p-value >= ``alpha / m`` (family-wise error ``alpha``,
default 0.001: a correct tracer fails the whole check by chance at most once in a thousand;
with the divisor per group instead, 44 groups would fail a correct tracer up to 4% of runs).
"""

from __future__ import annotations

import math

ALPHA = 0.001


def binomial_pmf(k: int, n: int, p: float) -> float:
    if p <= 0.0:
        return 1.0 if k == 0 else 0.0
    if p >= 1.0:
        return 1.0 if k == n else 0.0
    log = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
    return math.exp(log + k * math.log(p) + (n - k) * math.log1p(-p))


def two_sided_p(k: int, n: int, p: float) -> float:
    """Exact two-sided binomial p-value of seeing ``k`` of ``n`` at probability ``p``."""
    observed = binomial_pmf(k, n, p)
    total = sum(q for i in range(n + 1) if (q := binomial_pmf(i, n, p)) <= observed * (1 + 1e-9))
    return min(1.0, total)


def interval(n: int, p: float, alpha: float) -> tuple[int, int]:
    """The counts ``k`` whose two-sided p-value is at least ``alpha`` (the accepted band)."""
    ok = [k for k in range(n + 1) if two_sided_p(k, n, p) >= alpha]
    return (ok[0], ok[-1]) if ok else (0, n)


def attempts_to_see(p: float, alpha: float, at_least: int = 1, at_most: int = 1000) -> int:
    """The fewest attempts (from ``at_least``, at most ``at_most``) after which never seeing an
    outcome of probability ``p`` fails the exact test at ``alpha``: enough attempts that a
    predicted endpoint the kernel never picks is a disagreement, not bad luck."""
    n = max(1, at_least)
    while n < at_most and two_sided_p(0, n, p) >= alpha:
        n += 1
    return n
