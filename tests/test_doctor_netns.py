"""``netproxy doctor --netns``: the checklist over the live rules of a namespace we create."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_doctor_cli import DATA, NODE, run

from netproxy.backend import netns

pytestmark = pytest.mark.netns

BROKEN_HAIRPIN = '-A KUBE-SEP-D67JQUDAKRP7USVT -s 10.244.0.5/32 -m comment --comment "default/echo" -j KUBE-MARK-MASQ\n'


@pytest.fixture
def namespace() -> Iterator[str]:
    with netns.Namespaces("doctor") as made:
        yield made.make()


def test_live_rules_of_a_namespace(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                   namespace: str) -> None:
    rules = tmp_path / "node-1.rules"
    code, _, err = run(capsys, "compile", str(DATA / "healthy.yaml"), *NODE, "--no-nfacct",
                       "-o", str(rules))
    assert code == 0, err
    text = rules.read_text()
    assert BROKEN_HAIRPIN in text
    subprocess.run(["ip", "netns", "exec", namespace, "iptables-restore"],
                   input=text.replace(BROKEN_HAIRPIN, ""), text=True, check=True, capture_output=True)

    code, out, err = run(capsys, "doctor", "--netns", namespace, "--json")
    assert code == 1, err
    data = json.loads(out)
    assert data["source"] == f"netns {namespace}"
    failed = {(s["service"], c["check"]) for s in data["services"] for c in s["checks"]
              if c["status"] == "failed"}
    assert failed == {("default/echo", "hairpin"), ("default/echo", "walk-hairpin")}


def test_missing_namespace_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "doctor", "--netns", netns.unique_name("doctor-absent"))
    assert code == 2
    assert out == "" and "does not exist" in err
