"""Golden text reports of netproxy diff on the hand-made pairs (regenerate with
NETPROXY_REGEN=1, then read the changed files before committing them)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from netproxy.diff import diff_rulesets, render_text
from netproxy.diff.behaviour import compare_behaviour
from netproxy.diff.load import load_ruleset

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "diff"
GOLDEN = HERE / "golden" / "diff"

CASES = {
    "shuffled": ("base", "shuffled", False),
    "endpoint-removed": ("base", "endpoint-removed", True),
    "service-added": ("base", "service-added", False),
    "partial-forgot": ("base", "partial-forgot", True),
    "emptied-sep": ("base", "emptied-sep", False),
    "stale-sep": ("base", "stale-sep", False),
    "renamed": ("base", "renamed", False),
    "endpoints-swapped": ("base", "endpoints-swapped", True),
    "docker-changed": ("base", "docker-changed", False),
    "old-xlb": ("old-xlb", "old-xlb-after", True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_report(case: str) -> None:
    old_name, new_name, behaviour = CASES[case]
    old = load_ruleset(str(DATA / f"{old_name}.rules"))
    new = load_ruleset(str(DATA / f"{new_name}.rules"))
    old.source, new.source = f"{old_name}.rules", f"{new_name}.rules"
    report = diff_rulesets(old, new)
    if behaviour:
        compare_behaviour(report, old, new)
    text = render_text(report)
    golden = GOLDEN / f"{case}.txt"
    if os.environ.get("NETPROXY_REGEN") == "1":
        golden.write_text(text)
    assert golden.is_file(), f"no golden for {case}: run with NETPROXY_REGEN=1"
    assert text == golden.read_text()
