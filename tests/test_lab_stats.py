"""The lab's statistics and the parsing of xtables-monitor traces (no kernel needed)."""

from __future__ import annotations

import math
from types import SimpleNamespace

from netproxy.backend.lab import ktrace, stats
from netproxy.backend.lab.check import Checker, Group
from netproxy.backend.lab.spec import Frontend


def test_binomial_pmf_sums_to_one_and_matches_known_values() -> None:
    assert math.isclose(sum(stats.binomial_pmf(k, 40, 0.3) for k in range(41)), 1.0)
    assert math.isclose(stats.binomial_pmf(2, 4, 0.5), 6 / 16)


def test_two_sided_p_value() -> None:
    # a fair split is unremarkable, a 40:0 split of a 50% outcome is not
    assert math.isclose(stats.two_sided_p(20, 40, 0.5), 1.0)
    assert stats.two_sided_p(0, 40, 0.5) < 1e-11
    # exact value for a small case: P(X<=1 or X>=5) under Bin(6, .5) = (1+6+6+1)/64
    assert math.isclose(stats.two_sided_p(1, 6, 0.5), 14 / 64)


def test_accepted_band_is_the_interval_of_plausible_counts() -> None:
    low, high = stats.interval(40, 0.5, 0.001 / 2)
    assert 5 < low < 20 < high < 35
    assert stats.two_sided_p(low - 1, 40, 0.5) < 0.0005 <= stats.two_sided_p(low, 40, 0.5)


MONITOR = """\
PACKET: 2 9a1b OUT=lo SRC=10.0.0.1 DST=10.96.0.1 LEN=60 SPORT=4000 DPORT=443 SYN
 TRACE: 2 9a1b raw:OUTPUT:rule:0x2:CONTINUE  -4 -t raw -A OUTPUT -d 10.96.0.1/32 -j TRACE
 TRACE: 2 9a1b nat:OUTPUT:rule:0x3:JUMP:KUBE-SERVICES  -4 -t nat -A OUTPUT -j KUBE-SERVICES
 TRACE: 2 9a1b nat:KUBE-SERVICES:return:
 TRACE: 2 9a1b nat:OUTPUT:policy:ACCEPT
PACKET: 2 9a1b OUT=lo SRC=10.0.0.1 DST=10.96.0.1 LEN=52 SPORT=4000 DPORT=443 ACK
 TRACE: 2 9a1b filter:OUTPUT:policy:ACCEPT
"""


def test_monitor_output_keeps_the_first_packet_only() -> None:
    hops = ktrace.parse_monitor(MONITOR, "10.0.0.1")
    assert [(h.table, h.chain, h.text) for h in hops] == [
        ("raw", "OUTPUT", "-A OUTPUT -d 10.96.0.1/32 -j TRACE"),
        ("nat", "OUTPUT", "-A OUTPUT -j KUBE-SERVICES"),
        ("nat", "OUTPUT", "ACCEPT"),
    ]


def _split_group(a: int, b: int) -> Group:
    group = Group(Frontend("ns/web:http", "cluster-ip", "10.96.0.1", 80, "tcp"), "pod", "ns", None, None)
    group.predicted = {"10.244.1.1:80": 0.5, "10.244.1.2:80": 0.5}
    group.observed = ([{"kind": "answered", "local": "10.244.1.1:80", "peer": "10.0.0.1:5"}] * a
                      + [{"kind": "answered", "local": "10.244.1.2:80", "peer": "10.0.0.1:5"}] * b)
    return group


def test_split_alpha_is_family_wise_over_the_whole_check() -> None:
    """8 of 40 at 1/2 (p = 0.00018) fails a group judged alone, but not a check of 80 split
    tests: the Bonferroni divisor counts every group's results, so a correct tracer fails
    the whole check by chance at most once in a thousand runs."""
    alone, among = _split_group(8, 32), _split_group(8, 32)
    checker = SimpleNamespace(groups=[among] * 40)
    assert Checker.split_tests(checker) == 80  # type: ignore[arg-type]
    Checker.judge(checker, alone, 2)  # type: ignore[arg-type]
    Checker.judge(checker, among, 80)  # type: ignore[arg-type]
    assert not alone.checks["split"]["ok"]
    assert among.checks["split"]["ok"]
    assert among.checks["split"]["outcomes"]["10.244.1.1:80"]["accepted"] == list(stats.interval(40, 0.5, 0.001 / 80))


def test_attempts_to_see_make_a_never_seen_endpoint_a_disagreement() -> None:
    """20 attempts at three endpoints miss one by chance 3 * (2/3)**20 = 0.09% of the time:
    too often for a check of dozens of groups. The planned count makes a miss fail the
    exact test at the check's alpha, and no fewer attempts would."""
    alpha = 0.001 / 150
    n = stats.attempts_to_see(1 / 3, alpha, 20)
    assert stats.two_sided_p(0, n, 1 / 3) < alpha <= stats.two_sided_p(0, n - 1, 1 / 3)
    assert 25 < n < 40
    assert stats.attempts_to_see(1 / 3, alpha, 200) == 200  # --count is the least
    assert stats.attempts_to_see(0.01, alpha, 20, 300) == 300  # and MAX_ATTEMPTS the most


def test_coverage_fails_only_when_the_miss_is_no_bad_luck() -> None:
    """Three endpoints, one never seen: in 20 attempts that is chance at alpha 0.001/150;
    in 60 it is a disagreement (coverage and split both fail)."""
    def group(n: int) -> Group:
        g = Group(Frontend("ns/web:http", "cluster-ip", "10.96.0.1", 80, "tcp"), "pod", "ns", None, None)
        g.predicted = {f"10.244.1.{i}:80": 1 / 3 for i in (1, 2, 3)}
        g.observed = [{"kind": "answered", "local": f"10.244.1.{1 + i % 2}:80", "peer": "10.0.0.1:5"}
                      for i in range(n)]
        return g

    checker = SimpleNamespace(groups=[])
    few, many = group(20), group(60)
    Checker.judge(checker, few, 150)  # type: ignore[arg-type]
    Checker.judge(checker, many, 150)  # type: ignore[arg-type]
    assert few.checks["coverage"]["ok"] and few.checks["split"]["ok"]
    assert many.checks["coverage"] == {"ok": False, "missing": ["10.244.1.3:80"]}
    assert not many.checks["split"]["ok"]
