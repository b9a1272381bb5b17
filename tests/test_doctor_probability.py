"""Judging probability splits, with kube-proxy's writers and the kernel's rounding."""

from __future__ import annotations

from fractions import Fraction

import pytest

from netproxy.doctor.probability import judge, means_one_in, stored
from netproxy.netfilter.values import kube_probability, saved_probability


@pytest.mark.parametrize(
    ("text", "k"),
    [
        ("0.33332999982", 3),  # %0.5f "0.33333" as iptables-save prints it back
        ("0.33333", 3),
        ("0.3333333333", 3),  # %0.10f payload
        ("0.33333333349", 3),  # %0.10f as saved
        ("0.14286000002", 7),
        ("0.16667000018", 6),
        ("0.20000000019", 5),
        ("0.50000000000", 2),
        ("0.5", 2),
    ],
)
def test_spellings_of_one_in_k(text: str, k: int) -> None:
    assert means_one_in(text, k)


@pytest.mark.parametrize(("text", "k"), [("0.5", 3), ("0.33333333349", 2), ("0.25", 3), ("x", 3)])
def test_other_values_are_not_one_in_k(text: str, k: int) -> None:
    assert not means_one_in(text, k)


def test_saved_and_payload_forms_store_the_same_value() -> None:
    for k in range(2, 40):
        payload = kube_probability(k)
        assert stored(payload) == stored(saved_probability(payload))
        assert means_one_in(saved_probability(payload), k)


def test_k_and_k_plus_one_are_told_apart_for_large_counts() -> None:
    for k in range(2, 200):
        assert not means_one_in(saved_probability(kube_probability(k + 1)), k)


def test_even_seven_way_split_of_an_old_node() -> None:
    split = judge(["0.14286000002", "0.16667000018", "0.20000000019", "0.25000000000",
                   "0.33332999982", "0.50000000000", None])
    assert split.even
    assert all(abs(float(s) - 1 / 7) < 1e-5 for s in split.shares)
    assert sum(split.shares) == 1


def test_probabilities_left_from_an_old_endpoint_count() -> None:
    split = judge(["0.50000000000", "0.50000000000", None])
    assert not split.even
    assert split.shares == (Fraction(1, 2), Fraction(1, 4), Fraction(1, 4))
    assert "rule 1 of 3 has probability 0.50000000000, expected 1/3" in split.problems[0]


def test_an_unconditional_rule_before_the_last_hides_the_rest() -> None:
    split = judge([None, None])
    assert not split.even
    assert split.shares == (Fraction(1), Fraction(0))
    assert "never reached" in split.problems[0]


def test_a_last_rule_with_a_probability_lets_traffic_fall_through() -> None:
    split = judge(["0.50000000000"])
    assert not split.even
    assert "50.00% of new connections match no endpoint rule" in split.problems[0]


def test_single_endpoint_without_probability_is_even() -> None:
    assert judge([None]).even
