"""``netproxy apply`` / ``netproxy save`` end to end: real namespaces, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_backend_apply import V1, V2

from netproxy.backend import netns

pytestmark = pytest.mark.netns


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netproxy", *args], capture_output=True, text=True,
                          input=stdin, timeout=120)


@pytest.fixture
def ns() -> Iterator[str]:
    with netns.Namespaces("cli") as made:
        yield made.make()


@pytest.mark.parametrize("variant", ["legacy", "nft"])
def test_apply_save_round_trip(ns: str, tmp_path: Path, variant: str) -> None:
    rules = tmp_path / "v1.rules"
    rules.write_text(V1)
    first = run("apply", "--netns", ns, "--iptables", variant, "--rules", str(rules))
    assert first.returncode == 0, first.stderr
    assert "8 chains written" in first.stdout
    again = run("apply", "--netns", ns, "--iptables", variant, "--rules", str(rules))
    assert "already up to date" in again.stdout
    out = tmp_path / "saved.rules"
    saved = run("save", "--netns", ns, "--iptables", variant, "-o", str(out))
    assert saved.returncode == 0 and saved.stdout == ""
    text = out.read_text()
    for line in V1.splitlines():
        if line.startswith("-A"):
            assert line in text
    # what save printed applies back unchanged
    assert "already up to date" in run("apply", "--netns", ns, "--iptables", variant, "--rules", str(out)).stdout
    cleaned = run("apply", "--netns", ns, "--iptables", variant, "--cleanup")
    assert cleaned.returncode == 0 and "8 deleted" in cleaned.stdout
    assert "KUBE-" not in run("save", "--netns", ns, "--iptables", variant).stdout


def test_dry_run_changes_nothing(ns: str, tmp_path: Path) -> None:
    (tmp_path / "v1.rules").write_text(V1)
    (tmp_path / "v2.rules").write_text(V2)
    run("apply", "--netns", ns, "--iptables", "nft", "--rules", str(tmp_path / "v1.rules"))
    before = run("save", "--netns", ns, "--iptables", "nft").stdout.splitlines()[1:]
    dry = run("apply", "--netns", ns, "--iptables", "nft", "--rules", str(tmp_path / "v2.rules"), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "10.244.3.3:8080" in dry.stdout and "would send" in dry.stdout
    after = run("save", "--netns", ns, "--iptables", "nft").stdout.splitlines()[1:]
    assert [ln for ln in after if not ln.startswith("#")] == [ln for ln in before if not ln.startswith("#")]


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_errors_are_one_line(ns: str, tmp_path: Path) -> None:
    rules = tmp_path / "v1.rules"
    rules.write_text(V1)
    missing = _one_line_error(run("apply", "--netns", f"{ns}-gone", "--rules", str(rules)))
    assert "does not exist" in missing
    bad = tmp_path / "bad.rules"
    # the parser accepts it; the kernel refuses MASQUERADE outside the nat table
    bad.write_text(V1.replace("-m mark --mark 0x4000/0x4000 -j ACCEPT", "-j MASQUERADE"))
    rejected = _one_line_error(run("apply", "--netns", ns, "--iptables", "nft", "--rules", str(bad)))
    assert "namespace unchanged" in rejected and "KUBE-FORWARD" in rejected and "-j MASQUERADE" in rejected
    assert "KUBE-" not in run("save", "--netns", ns, "--iptables", "nft").stdout
    unparsable = tmp_path / "junk.rules"
    unparsable.write_text("*nat\n-A KUBE-X --frobnicate\nCOMMIT\n")
    assert "junk.rules:2" in _one_line_error(run("apply", "--netns", ns, "--rules", str(unparsable)))
    iptc_nft = _one_line_error(run("apply", "--netns", ns, "--backend", "iptc", "--iptables", "nft",
                                   "--rules", str(rules)))
    assert "python-iptables cannot see" in iptc_nft
    both = _one_line_error(run("apply", "--netns", ns, "--rules", str(rules), str(rules)))
    assert "--rules" in both and "already names one" in both


def test_mixing_variants_is_pointed_out(ns: str, tmp_path: Path) -> None:
    rules = tmp_path / "v1.rules"
    rules.write_text(V1)
    assert "also holds" not in run("apply", "--netns", ns, "--iptables", "legacy", "--rules", str(rules)).stderr
    mixed = run("apply", "--netns", ns, "--iptables", "nft", "--rules", str(rules))
    assert mixed.returncode == 0
    assert "also holds iptables-legacy rules (filter, nat)" in mixed.stderr
