"""netproxy diff --expected CLUSTER NODE.nft: the cluster compiled in nftables mode against a
node's listing (or a snapshot holding it), by Service, as two listings are compared (golden
reports on the example cluster and its changed variants, families, flags, the kernel)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from test_diff_nft import VARIANTS, _compile, compile_variants
from test_node_snapshot import snapshot_text

from netproxy.cli import main

from conftest import FIXTURES

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden" / "diff-nft"
EXAMPLE = FIXTURES / "example-cluster"

CASES = {
    # (cluster compiled, node's listing, extra flags)
    "expected-endpoint-removed": ("base", "endpoint-removed", ("--behaviour", "--probes", "changed")),
    "expected-stale-after-resync": ("service-removed", "service-removed", ()),
    "expected-node-missed-removal": ("service-removed", "base", ()),
    "expected-db-endpoint": ("base", "db-endpoint", ("--brief",)),
    "expected-policy": ("policy", "base", ()),
}


@pytest.fixture(scope="module")
def listings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return compile_variants(tmp_path_factory.mktemp("nft-expected"))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(["diff", *args])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_expected_report(case: str, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch, listings: dict[str, Path]) -> None:
    cluster, node, extra = CASES[case]
    monkeypatch.chdir(listings["base"].parent)  # the variants' cluster directories are here
    code, out, err = run(capsys, "--expected", cluster, f"{node}.nft", *extra)
    assert err == ""
    golden = GOLDEN / f"{case}.txt"
    if os.environ.get("NETPROXY_REGEN") == "1":
        golden.write_text(out)
    assert golden.is_file(), f"no golden for {case}: run with NETPROXY_REGEN=1"
    assert out == golden.read_text()
    assert code == (0 if out.endswith("\nequivalent\n") else 1)


def test_every_variant_equals_its_own_cluster(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch,
                                             listings: dict[str, Path]) -> None:
    monkeypatch.chdir(listings["base"].parent)
    for name in sorted(set(VARIANTS) - {"service-removed"}):
        code, out, _ = run(capsys, "--expected", name, f"{name}.nft")
        assert code == 0, out
        assert out.startswith(f"--- expected (compiled from {name})\n+++ {name}.nft\n")
        assert out.endswith("\nequivalent\n")


def test_json_names_the_changed_service(capsys: pytest.CaptureFixture[str],
                                        listings: dict[str, Path]) -> None:
    code, out, _ = run(capsys, "--expected", "--json", str(EXAMPLE), str(listings["endpoint-removed"]))
    data = json.loads(out)
    assert code == 1 and data["equivalent"] is False
    assert data["old"] == f"expected (compiled from {EXAMPLE})"
    assert data["changed_services"] == [["shop/checkout:https", "tcp"]]
    assert data["summary"]["endpoints_removed"] == 1


def test_snapshot_holding_the_listing(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                      listings: dict[str, Path]) -> None:
    snap = tmp_path / "node-1.snap"
    snap.write_text(snapshot_text(nft_list_ruleset=listings["endpoint-replaced"].read_text(), notes=""))
    code, out, _ = run(capsys, "--expected", "--brief", str(EXAMPLE), str(snap))
    assert code == 1
    assert f"+++ {snap} (nft list ruleset)\n" in out
    assert "    - endpoint 10.244.3.10:8080 (cluster, was 33.33%)\n" in out
    assert "    + endpoint 10.244.3.12:8080 (cluster, 33.33%)\n" in out


def test_dual_stack_listing_compiles_both_families(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    cluster = HERE / "data" / "diff" / "v6-cluster.yaml"
    node = tmp_path / "node.nft"
    _compile(cluster, node, "--family", "dual", "--hostname-override", "node-1")
    changed = tmp_path / "changed.nft"
    changed.write_text(node.read_text().replace("fd00:244::5", "fd00:244::6"))
    code, out, _ = run(capsys, "--expected", str(cluster), "--hostname-override", "node-1", str(node))
    assert code == 0, out
    code, out, _ = run(capsys, "--expected", "--brief", str(cluster), "--hostname-override", "node-1",
                       str(changed))
    assert code == 1
    assert "~ service default/web6:http tcp\n" in out
    assert "    + endpoint [fd00:244::6]:8080 (cluster, 50.00%)\n" in out
    # --family restricts the comparison to one of the listing's tables
    code, out, _ = run(capsys, "--expected", "--family", "ipv4", str(cluster), "--hostname-override",
                       "node-1", str(changed))
    assert code == 0, out


def test_a_family_the_listing_lacks_is_refused(capsys: pytest.CaptureFixture[str],
                                              listings: dict[str, Path]) -> None:
    code, out, err = run(capsys, "--expected", "--family", "ipv6", str(EXAMPLE), str(listings["base"]))
    assert (code, out) == (2, "")
    assert err == "netproxy: --family: the listing has no table ip6 kube-proxy\n"


def test_a_listing_without_kube_proxy_is_refused(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    other = tmp_path / "firewalld.nft"
    other.write_text("table inet filter {\n\tchain input {\n\t\ttype filter hook input priority "
                     "filter; policy accept;\n\t}\n}\n")
    code, _, err = run(capsys, "--expected", str(EXAMPLE), str(other))
    assert code == 2
    assert err == (f"netproxy: {other}: no table ip kube-proxy or ip6 kube-proxy in the listing: "
                   "kube-proxy's nftables mode is not on this node\n")


def _compile_dump(out: Path) -> None:
    try:
        main(["compile", str(EXAMPLE), "-o", str(out)])
    except SystemExit as exc:
        assert not exc.code
    assert out.is_file()


def test_nftables_flags_apply_and_are_refused_for_a_dump(capsys: pytest.CaptureFixture[str],
                                                         tmp_path: Path,
                                                         listings: dict[str, Path]) -> None:
    # a node running 1.36 (one-endpoint Services through a numgen map of one entry) against the
    # cluster compiled as 1.37: the same meaning, other rules
    old_layout = tmp_path / "node-136.nft"
    _compile(EXAMPLE, old_layout, "--kube-proxy-version", "1.36")
    code, out, _ = run(capsys, "--expected", str(EXAMPLE), str(old_layout))
    assert code == 1
    assert "      + meta l4proto tcp dnat ip to numgen random mod 1 map { 0 : 192.168.0.10 . 6443 }\n" in out
    assert "endpoints +0 -0 ~0;" in out
    code, out, _ = run(capsys, "--expected", "--kube-proxy-version", "1.36", str(EXAMPLE), str(old_layout))
    assert code == 0, out
    dump = tmp_path / "node.rules"
    _compile_dump(dump)
    code, _, err = run(capsys, "--expected", "--kube-proxy-version", "1.36", str(EXAMPLE), str(dump))
    assert code == 2
    assert err == ("netproxy: --kube-proxy-version: only with --expected against a node's nftables "
                   "listing (the node's rules are an iptables dump)\n")
    code, _, err = run(capsys, "--service-cidr", "10.96.0.0/16", str(old_layout), str(old_layout))
    assert code == 2
    assert err == ("netproxy: --service-cidr: only with --expected against a node's nftables "
                   "listing (nothing is compiled without --expected)\n")


def test_the_dump_first_says_what_to_type(capsys: pytest.CaptureFixture[str],
                                          listings: dict[str, Path]) -> None:
    code, _, err = run(capsys, "--expected", str(listings["base"]), str(EXAMPLE))
    assert code == 2
    assert f"netproxy diff --expected {EXAMPLE} {listings['base']}" in err


@pytest.fixture
def netns():
    name = f"np-nftdiff-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


@pytest.mark.netns
def test_kernel_listing_equals_the_cluster(netns: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           listings: dict[str, Path]) -> None:
    # What the kernel lists after loading the compiled table (text and JSON) is what the cluster
    # compiles to; after an endpoint change loaded the same way, the diff names it.
    for name in ("base", "endpoint-removed"):
        subprocess.run(["ip", "netns", "exec", netns, "nft", "flush", "ruleset"], check=True)
        subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", str(listings[name])], check=True)
        for fmt, args in (("txt.nft", ["list", "ruleset"]), ("json", ["-j", "list", "ruleset"])):
            done = subprocess.run(["ip", "netns", "exec", netns, "nft", *args], check=True,
                                  capture_output=True, text=True)
            (tmp_path / f"{name}.{fmt}").write_text(done.stdout)
    for fmt in ("txt.nft", "json"):
        code, out, _ = run(capsys, "--expected", str(EXAMPLE), str(tmp_path / f"base.{fmt}"))
        assert code == 0, out
        code, out, _ = run(capsys, "--expected", "--brief", str(EXAMPLE),
                           str(tmp_path / f"endpoint-removed.{fmt}"))
        assert code == 1
        assert "    - endpoint 10.244.3.20:8443 (cluster, was 50.00%)\n" in out


def test_without_expected_says_what_to_type(capsys: pytest.CaptureFixture[str],
                                            listings: dict[str, Path]) -> None:
    code, out, err = run(capsys, str(EXAMPLE), str(listings["base"]))
    assert (code, out) == (2, "")
    assert err.endswith(f"netproxy diff --expected {EXAMPLE} {listings['base']}\n")
