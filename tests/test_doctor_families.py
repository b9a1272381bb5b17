"""netproxy doctor on a node whose rules hold both families (kube-proxy's `table ip
kube-proxy` and `table ip6 kube-proxy`, or iptables and ip6tables rules in a snapshot): one
run checks both and reports per family (text, --failed-only, --json), unless --family names
one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_node_snapshot import snapshot_text

from netproxy.cli import main

from conftest import FIXTURES

DATA = Path(__file__).resolve().parent / "data"
V6 = DATA / "diff" / "v6-cluster.yaml"


def _compile(out: Path, *args: str) -> Path:
    try:
        main(["compile", *args, "-o", str(out)])
    except SystemExit as exc:
        assert not exc.code
    return out


@pytest.fixture(scope="module")
def dual(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dual-stack node in nftables mode: the example cluster (IPv4) and an IPv6 Service."""
    root = tmp_path_factory.mktemp("dual")
    v4 = _compile(root / "v4.nft", str(FIXTURES / "example-cluster"), "--proxy-mode", "nftables")
    v6 = _compile(root / "v6.nft", str(V6), "--proxy-mode", "nftables", "--family", "ipv6",
                  "--hostname-override", "node-1")
    out = root / "dual.nft"
    out.write_text(v4.read_text() + v6.read_text())
    return out


@pytest.fixture(scope="module")
def dual_broken(dual: Path) -> Path:
    """The same, with the IPv6 Service's two-way numgen map drawing from 3 (a third of its
    connections DNATed nowhere)."""
    text = dual.read_text()
    head, v6 = text.split("table ip6 kube-proxy", 1)
    assert "numgen random mod 2" in v6
    out = dual.parent / "dual-broken.nft"
    out.write_text(head + "table ip6 kube-proxy" + v6.replace("numgen random mod 2", "numgen random mod 3"))
    return out


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(["doctor", *args])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_both_tables_are_checked(capsys: pytest.CaptureFixture[str], dual: Path) -> None:
    code, out, err = run(capsys, str(dual), "--brief", "--no-walk")
    assert err == ""
    headers = [line for line in out.splitlines() if line.startswith("netproxy doctor: ")]
    assert [h.split(", ")[0] for h in headers] == [f"netproxy doctor: {dual} (ipv4)",
                                                   f"netproxy doctor: {dual} (ipv6)"]
    assert "nftables mode (table ip kube-proxy)" in out and "nftables mode (table ip6 kube-proxy)" in out
    assert "\ndefault/web6:http (tcp): passed\n" in out and "\nshop/frontend:http (tcp): passed\n" in out
    assert "give --family" not in out and "leave out --family" not in out
    assert code == 1  # shop/legacy-db has no endpoints (ipv4)


def test_a_failure_in_one_family_is_reported_under_it(capsys: pytest.CaptureFixture[str],
                                                      dual_broken: Path) -> None:
    code, out, _ = run(capsys, str(dual_broken), "--failed-only", "--no-walk")
    assert code == 1
    lines = out.splitlines()
    assert "ipv4: shop/legacy-db:postgres (tcp): failed: endpoints: no endpoint on this node's rules" in lines
    assert any(line.startswith("ipv6: default/web6:http (tcp): failed: shares:") for line in lines), out
    assert all(line.startswith(("ipv4: ", "ipv6: ")) for line in lines)


def test_json_has_one_report_per_family(capsys: pytest.CaptureFixture[str], dual_broken: Path) -> None:
    code, out, _ = run(capsys, str(dual_broken), "--json", "--no-walk")
    data = json.loads(out)
    assert code == 1 and data["status"] == "failed" and data["source"] == str(dual_broken)
    assert sorted(data["families"]) == ["ipv4", "ipv6"]
    v6 = data["families"]["ipv6"]
    assert v6["family"] == "ipv6" and [s["service"] for s in v6["services"]] == ["default/web6:http"]
    assert v6["services"][0]["status"] == "failed"
    assert "default/web6:http" not in [s["service"] for s in data["families"]["ipv4"]["services"]]


def test_family_restricts_to_one_table(capsys: pytest.CaptureFixture[str], dual_broken: Path) -> None:
    code, out, _ = run(capsys, str(dual_broken), "--family", "ipv6", "--json", "--no-walk")
    data = json.loads(out)  # one family: the report as before, no "families"
    assert code == 1 and data["family"] == "ipv6" and "families" not in data
    code, out, _ = run(capsys, str(dual_broken), "--family", "ipv4", "--brief", "--no-walk")
    assert out.count("netproxy doctor: ") == 1
    assert "note: the listing also holds kube-proxy's ipv6 table: leave out --family to check both, " \
           "or give --family ipv6" in out


def test_service_in_one_family_only(capsys: pytest.CaptureFixture[str], dual: Path) -> None:
    code, out, _ = run(capsys, str(dual), "--service", "default/web6", "--brief", "--no-walk")
    assert code == 0
    assert out.count("netproxy doctor: ") == 1 and "(ipv6), 1 Service port(s)" in out
    code, _, err = run(capsys, str(dual), "--service", "default/nothing", "--no-walk")
    assert code == 2 and "no Service port default/nothing in the rules" in err


def test_snapshot_holding_both_tables(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                      dual_broken: Path) -> None:
    snap = tmp_path / "node.snap"
    snap.write_text(snapshot_text(nft_list_ruleset=dual_broken.read_text(), notes=""))
    code, out, _ = run(capsys, str(snap), "--failed-only", "--no-walk")
    assert code == 1
    assert any(line.startswith("ipv6: default/web6:http (tcp): failed: shares:") for line in out.splitlines())


def test_with_cluster_objects_each_family_is_compared(capsys: pytest.CaptureFixture[str],
                                                      dual: Path) -> None:
    code, out, _ = run(capsys, str(dual), str(V6), "--hostname-override", "node-1",
                       "--service", "default/web6", "--no-walk", "--json")
    data = json.loads(out)
    assert code == 0
    checks = {c["check"]: c["status"] for c in data["services"][0]["checks"]}
    assert data["family"] == "ipv6" and checks["cluster-endpoints"] == "passed"


def test_iptables_snapshot_with_both_families(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    v4 = _compile(tmp_path / "v4.rules", str(FIXTURES / "example-cluster"))
    v6 = _compile(tmp_path / "v6.rules", str(V6), "--family", "ipv6", "--hostname-override", "node-1")
    snap = tmp_path / "node.snap"
    snap.write_text(snapshot_text(**{"iptables-save (legacy)": v4.read_text(),
                                     "ip6tables-save (legacy)": v6.read_text()}))
    code, out, _ = run(capsys, str(snap), "--brief", "--no-walk")
    headers = [line.split(", ")[0] for line in out.splitlines() if line.startswith("netproxy doctor: ")]
    assert headers == [f"netproxy doctor: {snap} (ipv4)", f"netproxy doctor: {snap} (ipv6)"]
    assert "\ndefault/web6:http (tcp): passed\n" in out and code == 1  # shop/legacy-db (ipv4)
    code, out, _ = run(capsys, str(snap), "--family", "ipv6", "--json", "--no-walk")
    assert code == 0 and json.loads(out)["family"] == "ipv6"
