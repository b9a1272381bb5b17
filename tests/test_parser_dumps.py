"""Every real-world dump parses leniently and prints back to the same rule lines."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from netproxy.parser import read_rules
from netproxy.render import render_save

from conftest import all_dumps

# Dumps made with iptables older than 1.8.9 still print the all-ones `recent --mask`.
OLD_IPTABLES = {"06-eks-awsvpccni-affinity.rules": (1, 6, 0),
                "13-kubeproxy16-externalip-docker-redacted.rules": (1, 6, 0)}
WITH_COUNTERS = {"08-k3s-docker-save-c-counters.rules"}
EXPECTED_PROBLEMS = {
    "11-cilium-ipvs-docker-broken-dnat.rules": "--to-destination",
    "13-kubeproxy16-externalip-docker-redacted.rules": "x.x.x.x",
}


def rule_lines(path: Path) -> list[str]:
    return [line.rstrip("\n") for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("path", all_dumps(), ids=lambda p: p.name)
def test_dump_round_trips(path: Path) -> None:
    ruleset = read_rules(path)
    version = OLD_IPTABLES.get(path.name, (1, 8, 9))
    printed = render_save(ruleset, counters=path.name in WITH_COUNTERS, iptables_version=version)
    # iptables-save prints user chains sorted only since 1.8.7 (nft) -- compare as multisets.
    assert Counter(printed.splitlines()) == Counter(rule_lines(path))


@pytest.mark.parametrize("path", all_dumps(), ids=lambda p: p.name)
def test_dump_problems_are_the_known_oddities(path: Path) -> None:
    ruleset = read_rules(path)
    marker = EXPECTED_PROBLEMS.get(path.name)
    if marker is None:
        assert ruleset.problems == []
    else:
        assert ruleset.problems, "the malformed lines must be reported"
        text = path.read_text().splitlines()
        for problem in ruleset.problems:
            assert marker in text[problem.line - 1]


def test_families_are_inferred(dumps_dir: Path) -> None:
    assert read_rules(dumps_dir / "05-k3s-pi-kuberouter-nft-v6.rules").family == "ipv6"
    assert read_rules(dumps_dir / "04-k3s-pi-kuberouter-nft.rules").family == "ipv4"


def test_counters_are_kept(dumps_dir: Path) -> None:
    ruleset = read_rules(dumps_dir / "08-k3s-docker-save-c-counters.rules")
    raw = ruleset.tables["raw"].chains["PREROUTING"]
    assert raw.counters == (8488585, 2225268588)
    assert any(r.counters and r.counters[0] > 0 for _, _, r in ruleset.tables["nat"].rules())


def test_strict_mode_rejects_the_malformed_dump(dumps_dir: Path) -> None:
    from netproxy.errors import ParseError

    with pytest.raises(ParseError) as err:
        read_rules(dumps_dir / "11-cilium-ipvs-docker-broken-dnat.rules", strict=True)
    assert ":122:" in str(err.value)
