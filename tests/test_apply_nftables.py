"""netproxy apply --proxy-mode nftables and save --proxy-mode nftables in real network
namespaces: nft -f loads kube-proxy's table, a re-apply sends only what changed (working from
the record of the last apply while the namespace is unchanged, else reading the table back),
and the table always ends up as a fresh full sync would leave it; other tables stay.
``--rules FILE`` loads an nft -f file for kube-proxy's tables only; save reads them back as a
node snapshot."""

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
from netproxy.node.snapshot import read_snapshot
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
    with netns.Namespaces("nftapply") as made:
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
    assert first["state"] == "fresh" and first["recorded"]
    assert kernel(ns) == compiled(BASE)
    again = apply(ns, BASE)
    assert not again["changed"] and again["operations"] == 0
    assert again["state"] == "record"  # nothing read back
    grown = apply(ns, MORE)
    assert 0 < grown["operations"] < grown["full_sync_operations"] / 3
    assert grown["state"] == "record"
    assert kernel(ns) == compiled(MORE)
    shrunk = apply(ns, BASE)
    assert shrunk["state"] == "record"
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


def test_record_stands_for_the_table_until_the_namespace_changes(ns: str) -> None:
    apply(ns, BASE)
    # from the record and from the table read back: the same transaction
    recorded = apply(ns, MORE, "--dry-run")
    read = apply(ns, MORE, "--dry-run", "--reread")
    assert recorded["state"] == "record" and read["state"] == "read"
    assert read["reread_reason"] == "--reread"
    assert recorded["transaction"] == read["transaction"] and recorded["operations"] > 0
    # any other change in the namespace makes the record stale: read back, and say why
    nft(ns, "-f", "-", text=OTHER)
    after_other = apply(ns, BASE)
    assert after_other["state"] == "read" and not after_other["changed"]
    assert "changed since the last apply" in after_other["reread_reason"]
    # a change to kube-proxy's table behind apply's back is seen and undone
    nft(ns, "delete", "element", "ip", "kube-proxy", "cluster-ips", "{ 10.96.0.10 }")
    repaired = apply(ns, BASE)
    assert repaired["state"] == "read" and 0 < repaired["operations"] < 5
    assert kernel(ns) == compiled(BASE)
    assert apply(ns, BASE)["state"] == "record"
    text = cli("apply", "--netns", ns, "--proxy-mode", "nftables", *BASE)
    assert "nothing sent; state from the last apply's record" in text.stdout


def test_other_family_keeps_its_record(ns: str) -> None:
    apply(ns, BASE)
    six = apply(ns, BASE, "--family", "ipv6")
    assert six["fresh"] and six["recorded"]
    # the ipv6 apply was this namespace's only change since: the ipv4 record still holds
    assert apply(ns, BASE)["state"] == "record"
    both = apply(ns, MORE, "--family", "dual")
    assert both["state"] == "record" and both["families"] == ["ipv4", "ipv6"]
    assert kernel(ns) == compiled(MORE)


def test_rules_file_transaction_and_listing(ns: str, tmp_path: Path) -> None:
    nft(ns, "-f", "-", text=OTHER)
    other = nft(ns, "list", "table", "inet", "other")
    transaction = tmp_path / "more.nft"
    proc = cli("compile", "--proxy-mode", "nftables", "--format", "transaction", *MORE)
    transaction.write_text(proc.stdout)
    loaded = cli("apply", "--netns", ns, "--proxy-mode", "nftables", "--rules",
                 str(transaction), "--json")
    assert loaded.returncode == 0, loaded.stderr
    body = json.loads(loaded.stdout)
    assert body["rules_file"] == str(transaction) and not body["listing"]
    assert kernel(ns) == compiled(MORE)
    # a listing replaces the table whole (a transaction would have added to it)
    listing = tmp_path / "base.nft"
    listing.write_text(cli("compile", "--proxy-mode", "nftables", *BASE).stdout)
    dry = cli("apply", "--netns", ns, "--proxy-mode", "nftables", "--rules", str(listing),
              "--dry-run")
    assert dry.returncode == 0 and "nft -c accepts" in dry.stdout
    assert kernel(ns) == compiled(MORE)
    # an nft file is nftables mode without --proxy-mode
    proc = cli("apply", "--netns", ns, "--rules", str(listing))
    assert proc.returncode == 0 and "replaced by the listing" in proc.stdout, proc.stderr
    assert kernel(ns) == compiled(BASE)
    assert nft(ns, "list", "table", "inet", "other") == other
    # the next compiled apply reads the table back: no record describes what the file did
    assert apply(ns, MORE)["state"] == "read"
    assert kernel(ns) == compiled(MORE)


def test_rules_file_refused(ns: str, tmp_path: Path) -> None:
    apply(ns, BASE)
    before = nft(ns, "list", "ruleset")
    foreign = tmp_path / "foreign.nft"
    foreign.write_text("add element ip kube-proxy cluster-ips { 10.96.9.9 }\n"
                       "# another program's table\n"
                       "add rule inet other input tcp dport 22 drop\n")
    proc = cli("apply", "--netns", ns, "--proxy-mode", "nftables", "--rules", str(foreign))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"netproxy: {foreign}:3: touches table inet other; apply "
                                   "--proxy-mode nftables changes only table ip kube-proxy "
                                   "and table ip6 kube-proxy")
    everything = tmp_path / "flush.nft"
    everything.write_text("flush ruleset\n")
    proc = cli("apply", "--netns", ns, "--proxy-mode", "nftables", "--rules", str(everything))
    assert proc.returncode == 2 and f"{everything}:1: cannot tell which table" in proc.stderr
    bad = tmp_path / "bad.nft"
    bad.write_text("add element ip kube-proxy cluster-ips { 10.96.9.9 }\n"
                   "add rule ip kube-proxy no-such-chain drop\n")
    proc = cli("apply", "--netns", ns, "--proxy-mode", "nftables", "--rules", str(bad))
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert f"nft -f refused the transaction (nothing was changed): {bad}:2:" in proc.stderr
    assert nft(ns, "list", "ruleset") == before


def test_save_reads_the_table_back(ns: str, tmp_path: Path) -> None:
    missing = cli("save", "--netns", ns, "--proxy-mode", "nftables")
    assert missing.returncode == 2 and "no table ip kube-proxy" in missing.stderr
    apply(ns, BASE)
    out = tmp_path / "node.snap"
    proc = cli("save", "--netns", ns, "--proxy-mode", "nftables", "-o", str(out))
    assert proc.returncode == 0
    snap = read_snapshot(out)
    assert snap.header["netns"] == ns and snap.json("ip -j addr")[0]["ifname"] == "lo"
    assert content(snap.nft_ruleset or "") == compiled(BASE)
    # the tracer walks the snapshot's kube-proxy table
    traced = cli("trace", "--rules", str(out), "--dst", "10.96.0.10", "--dport", "53",
                 "--proto", "udp", "--src", "10.244.1.5", "--local-ip", "192.168.0.11")
    assert traced.returncode == 0 and "DNAT to 10.244.1.2:53" in traced.stdout
    # the listing alone, as before: what compile --existing-rules reads
    listing = tmp_path / "node.nft"
    proc = cli("save", "--netns", ns, "--proxy-mode", "nftables", "--format", "nft",
               "-o", str(listing))
    assert proc.returncode == 0 and content(listing.read_text()) == compiled(BASE)
    assert listing.read_text() == nft(ns, "list", "table", "ip", "kube-proxy")
    proc = cli("save", "--netns", ns, "--format", "nft")
    assert proc.returncode == 2 and "--format" in proc.stderr


def test_errors(ns: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    gone = cli("apply", "--netns", f"{ns}-gone", "--proxy-mode", "nftables", *BASE)
    assert gone.returncode == 2 and "does not exist" in gone.stderr
    rules = cli("apply", "--netns", ns, "--proxy-mode", "nftables", "--rules", "x.rules")
    assert rules.returncode == 2 and "x.rules" in rules.stderr
    # a name that resolves to the host's own namespace is refused before nft runs
    monkeypatch.setattr(netns, "path", lambda name: netns.Path("/proc/self/ns/net"))
    with pytest.raises(SystemExit) as exc:
        main(["apply", "--netns", "np-looks-like-host", "--proxy-mode", "nftables", *BASE])
    assert exc.value.code == 2
    assert "host's own namespace" in capsys.readouterr().err
