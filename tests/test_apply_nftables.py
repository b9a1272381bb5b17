"""netproxy apply --proxy-mode nftables and save --proxy-mode nftables in real network
namespaces: nft -f loads kube-proxy's table, a re-apply sends only what changed, and the
table always ends up as a fresh full sync would leave it; other tables stay."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netproxy.backend import netns
from netproxy.cli import main
from netproxy.parser.nftables import parse_nft

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[1]
BASE = [str(REPO / "fixtures" / "example-cluster")]
MORE = [*BASE, str(REPO / "tests" / "data" / "migrate" / "extra.yaml")]
OTHER = """table inet other {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 22 accept
  }
}
"""


@pytest.fixture
def ns() -> Iterator[str]:
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed (scripts/setup.sh installs nftables)")
    with netns.Namespaces("migrate") as made:
        yield made.make()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netproxy", *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO)


def apply(ns: str, inputs: list[str], *flags: str) -> dict[str, Any]:
    proc = cli("apply", "--netns", ns, "--proxy-mode", "nftables", *inputs, "--json", *flags)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def nft(ns: str, *args: str, text: str | None = None) -> str:
    proc = netns.run(ns, ["nft", *args], input_text=text)
    return proc.stdout


def content(listing: str) -> dict[str, Any]:
    """The table's meaning: chains with their rules, sets and maps with their elements
    (object order, which differs between a fresh load and a resync, left out)."""
    table = parse_nft(listing, strict=True).table("ip", "kube-proxy")
    return {
        "chains": {name: (c.hook, c.priority, [r.exprs for r in c.rules])
                   for name, c in table.chains.items()},
        "sets": {name: sorted(json.dumps([e.key, e.value], sort_keys=True) for e in s.elements)
                 for name, s in table.sets.items()},
    }


def compiled(inputs: list[str]) -> dict[str, Any]:
    proc = cli("compile", "--proxy-mode", "nftables", *inputs)
    assert proc.returncode == 0, proc.stderr
    return content(proc.stdout)


def kernel(ns: str) -> dict[str, Any]:
    return content(nft(ns, "list", "table", "ip", "kube-proxy"))


def test_apply_then_only_changes_and_stale_chains_go(ns: str) -> None:
    nft(ns, "-f", "-", text=OTHER)
    other = nft(ns, "list", "table", "inet", "other")
    first = apply(ns, BASE)
    assert first["fresh"] and first["operations"] == first["full_sync_operations"] > 100
    assert kernel(ns) == compiled(BASE)
    again = apply(ns, BASE)
    assert not again["changed"] and again["operations"] == 0
    grown = apply(ns, MORE)
    assert 0 < grown["operations"] < grown["full_sync_operations"] / 3
    assert kernel(ns) == compiled(MORE)
    shrunk = apply(ns, BASE)
    # media/voice rtp and sig (service and external chains each), shop/admin's firewall chain
    assert shrunk["stale_chains"] == 5
    assert kernel(ns) == compiled(BASE)
    assert "media/voice" not in nft(ns, "list", "table", "ip", "kube-proxy")
    assert nft(ns, "list", "table", "inet", "other") == other


def test_full_and_dry_run(ns: str) -> None:
    apply(ns, BASE)
    before = nft(ns, "list", "table", "ip", "kube-proxy")
    dry = apply(ns, MORE, "--dry-run")
    assert dry["dry_run"] and dry["operations"] > 0
    assert any(line.startswith("add element ip kube-proxy service-ips { 10.96.200.10 . udp . 5004")
               for line in dry["transaction"])
    assert nft(ns, "list", "table", "ip", "kube-proxy") == before
    text = cli("apply", "--netns", ns, "--proxy-mode", "nftables", *MORE, "--dry-run")
    assert text.returncode == 0 and "dry run: would send" in text.stderr
    assert text.stdout.splitlines() == dry["transaction"]
    full = apply(ns, MORE, "--full")
    assert full["operations"] == full["full_sync_operations"]
    assert kernel(ns) == compiled(MORE)


def test_cleanup_deletes_only_kube_proxy_tables(ns: str) -> None:
    nft(ns, "-f", "-", text=OTHER)
    apply(ns, BASE)
    proc = cli("apply", "--netns", ns, "--proxy-mode", "nftables", "--cleanup")
    assert proc.returncode == 0 and "deleted table ip kube-proxy" in proc.stdout
    assert nft(ns, "list", "tables").split() == ["table", "inet", "other"]
    again = cli("apply", "--netns", ns, "--proxy-mode", "nftables", "--cleanup")
    assert "nothing" in again.stdout


def test_save_reads_the_table_back(ns: str, tmp_path: Path) -> None:
    missing = cli("save", "--netns", ns, "--proxy-mode", "nftables")
    assert missing.returncode == 2 and "no table ip kube-proxy" in missing.stderr
    apply(ns, BASE)
    out = tmp_path / "node.nft"
    proc = cli("save", "--netns", ns, "--proxy-mode", "nftables", "-o", str(out))
    assert proc.returncode == 0
    assert content(out.read_text()) == compiled(BASE)
    # what save wrote is what compile --existing-rules and the tracer read
    traced = cli("trace", "--rules", str(out), "--dst", "10.96.0.10", "--dport", "53",
                 "--proto", "udp", "--src", "10.244.1.5", "--local-ip", "192.168.0.11")
    assert traced.returncode == 0 and "DNAT to 10.244.1.2:53" in traced.stdout


def test_errors(ns: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    gone = cli("apply", "--netns", f"{ns}-gone", "--proxy-mode", "nftables", *BASE)
    assert gone.returncode == 2 and "does not exist" in gone.stderr
    rules = cli("apply", "--netns", ns, "--proxy-mode", "nftables", "--rules", "x.rules")
    assert rules.returncode == 2 and "--rules" in rules.stderr
    # a name that resolves to the host's own namespace is refused before nft runs
    monkeypatch.setattr(netns, "path", lambda name: netns.Path("/proc/self/ns/net"))
    with pytest.raises(SystemExit) as exc:
        main(["apply", "--netns", "np-looks-like-host", "--proxy-mode", "nftables", *BASE])
    assert exc.value.code == 2
    assert "host's own namespace" in capsys.readouterr().err
