"""A kube-proxy restore payload parses and renders back byte for byte (spec 9.2)."""

from __future__ import annotations

from pathlib import Path

from netproxy.parser import parse_rules
from netproxy.render import render_restore, render_save

DATA = Path(__file__).parent / "data" / "parser"


def test_worked_example_payload_round_trips() -> None:
    text = (DATA / "worked-example.restore").read_text()
    ruleset = parse_rules(text, strict=True)
    nat = ruleset.tables["nat"]
    assert nat.writes is not None, "kube-proxy interleaves chains; the order must be kept"
    assert render_restore(ruleset) == text


def test_deletions_are_kept_in_place() -> None:
    text = ("*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SEP-OLD - [0:0]\n"
            "-A KUBE-SERVICES -j RETURN\n-X KUBE-SEP-OLD\n-A KUBE-SERVICES -j ACCEPT\nCOMMIT\n")
    ruleset = parse_rules(text, strict=True)
    assert ruleset.tables["nat"].deleted == ["KUBE-SEP-OLD"]
    assert render_restore(ruleset) == text


def test_save_view_sorts_user_chains_and_adds_builtins() -> None:
    ruleset = parse_rules("*nat\n:KUBE-SVC-B - [0:0]\n:KUBE-SEP-A - [0:0]\n-A OUTPUT -j KUBE-SVC-B\n"
                          "-A KUBE-SVC-B -j KUBE-SEP-A\nCOMMIT\n")
    assert render_save(ruleset) == (
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        ":POSTROUTING ACCEPT [0:0]\n:KUBE-SEP-A - [0:0]\n:KUBE-SVC-B - [0:0]\n"
        "-A OUTPUT -j KUBE-SVC-B\n-A KUBE-SVC-B -j KUBE-SEP-A\nCOMMIT\n")
