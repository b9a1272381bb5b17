"""A kernel tool that crashes or is killed is reported by name and signal; cleanup works from
apply's record without reading the rules back; apply's summary says what was done."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_backend_apply import V1, _backend, _other_lines, _saved

from netproxy.backend import netns, record, xtables
from netproxy.backend.engine import ApplyResult, RestoreBackend, apply_state, cleanup
from netproxy.backend.savetext import split_saved


@pytest.fixture
def spaces() -> Iterator[netns.Namespaces]:
    with netns.Namespaces("inputs") as made:
        yield made


@pytest.fixture
def crashing_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> xtables.Xtables:
    """An iptables "variant" whose save dies of SIGSEGV and whose restore is SIGKILLed."""
    for name, sig in (("iptables-crashy-save", "SEGV"), ("iptables-crashy-restore", "KILL")):
        tool = tmp_path / name
        tool.write_text(f"#!/bin/sh\ncat >/dev/null\nkill -{sig} $$\n")
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return xtables.Xtables("crashy")


@pytest.mark.netns
def test_crashed_save_is_named_with_its_signal(spaces: netns.Namespaces,
                                               crashing_tools: xtables.Xtables) -> None:
    backend = RestoreBackend(spaces.make(), crashing_tools)
    with pytest.raises(netns.ToolCrashed) as err:
        backend.read()
    assert str(err.value) == f"netns {backend.netns}: iptables-crashy-save crashed (SIGSEGV) reading the rules"


@pytest.mark.netns
def test_crash_names_the_chains_the_record_knows(spaces: netns.Namespaces,
                                                 crashing_tools: xtables.Xtables) -> None:
    backend = RestoreBackend(spaces.make(), crashing_tools)
    path = record.record_path(backend.netns, backend.variant, backend.family)
    record.store(path, split_saved(V1), {}, "x")  # what an apply of V1 would have recorded
    with pytest.raises(netns.ToolCrashed, match=r"crashed \(SIGSEGV\) reading 8 chains$"):
        backend.read()
    with pytest.raises(netns.ToolCrashed, match=r"crashed \(SIGSEGV\) reading 8 chains of table nat$"):
        backend.read(table="nat")


@pytest.mark.netns
def test_killed_restore_is_named(spaces: netns.Namespaces, crashing_tools: xtables.Xtables) -> None:
    name = spaces.make()
    with pytest.raises(netns.ToolCrashed) as err:
        xtables.restore(name, crashing_tools, "*nat\nCOMMIT\n")
    assert str(err.value) == (f"netns {name}: iptables-crashy-restore was killed (SIGKILL, out of "
                              "memory?) loading 2 payload lines")


@pytest.mark.netns
@pytest.mark.parametrize("variant", ["legacy", "nft"])
def test_cleanup_uses_the_record_without_reading_back(spaces: netns.Namespaces, variant: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    backend = _backend(spaces, variant)
    others = _other_lines(_saved(backend))
    apply_state(backend, split_saved(V1))

    def no_reading(*args: object, **kwargs: object) -> str:
        raise AssertionError("cleanup read the rules back")

    monkeypatch.setattr(xtables, "save", no_reading)
    result = cleanup(backend)
    monkeypatch.undo()
    assert result.state_from == "record" and result.counts["chains_deleted"] == 8
    assert "state from the last apply's record" in result.summary()
    text = _saved(backend)
    assert "KUBE-" not in text and _other_lines(text) == others


def test_summary_says_what_was_done() -> None:
    def summary(mode: str, noflush: bool, state_from: str = "read") -> str:
        result = ApplyResult("demo", "iptables-nft-restore", mode, changed=True, noflush=noflush,
                             state_from=state_from, seconds={"total": 0.17},
                             counts={"chains_written": 43, "chains_deleted": 0,
                                     "builtin_chains_fixed": 6, "payload_lines": 166})
        return result.summary()

    assert summary("partial", False) == (
        "netns demo: applied the chains that differ with iptables-nft-restore (rewriting each table "
        "it changed whole, as they hold only kube-proxy's rules): 43 chains written, 0 deleted, 6 "
        "built-in chains' jumps fixed (166 payload lines, 0.17s)")
    assert summary("partial", True).startswith(
        "netns demo: applied the chains that differ with iptables-nft-restore (--noflush, other "
        "rules untouched): ")
    assert summary("full", True).startswith("netns demo: rewrote every kube-proxy chain with ")
    assert summary("cleanup", False, "record").startswith("netns demo: cleaned up with ")
    assert summary("cleanup", False, "record").endswith("(166 payload lines, 0.17s; state from the "
                                                        "last apply's record)")
    for text in (summary(m, n) for m in ("partial", "full", "cleanup") for n in (True, False)):
        assert "partial apply" not in text and "whole-table rewrite" not in text


V6 = """\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-V6V6V6V6V6V6V6V6 - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-SERVICES -d fd00::10/128 -p tcp -m tcp --dport 80 -j KUBE-SVC-V6V6V6V6V6V6V6V6
-A KUBE-SVC-V6V6V6V6V6V6V6V6 -p tcp -m tcp -j DNAT --to-destination [fd00::5]:8080
COMMIT
"""


@pytest.mark.netns
def test_cleanup_takes_family(spaces: netns.Namespaces, tmp_path: Path) -> None:
    import subprocess
    import sys

    name = spaces.make()
    rules = tmp_path / "v6.rules"
    rules.write_text(V6)

    def netproxy(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "netproxy", *args], capture_output=True,
                              text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])

    applied = netproxy("apply", "--netns", name, "--iptables", "legacy", "--rules", str(rules))
    assert applied.returncode == 0, applied.stderr
    saved = netproxy("save", "--netns", name, "--iptables", "legacy", "--family", "ipv6")
    assert "KUBE-SVC-V6V6V6V6V6V6V6V6" in saved.stdout
    alias = netproxy("save", "--netns", name, "--iptables", "legacy", "--ipv6")

    def rules_of(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("#")]

    assert rules_of(alias.stdout) == rules_of(saved.stdout)
    cleaned = netproxy("apply", "--netns", name, "--iptables", "legacy", "--cleanup", "--family", "ipv6")
    assert cleaned.returncode == 0 and "cleaned up" in cleaned.stdout, cleaned.stderr
    assert "KUBE-" not in netproxy("save", "--netns", name, "--iptables", "legacy", "--ipv6").stdout
