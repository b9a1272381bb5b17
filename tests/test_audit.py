"""netproxy audit: a generated fleet with known faults, the shared compile, the outputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from netproxy.audit.blocks import same_in_scope, split_save
from netproxy.audit.expected import fleet_model
from netproxy.cli import main
from netproxy.commands.cluster_options import settings_for
from netproxy.compiler import compile_cluster
from netproxy.k8s.loader import load_inputs
from netproxy.render import render_save

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import fleet_gen  # noqa: E402


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fleet")
    fleet_gen.generate(out, nodes=9, services=60, endpoints=4, seed=3, faults=True, snapshots=1)
    return out


def _audit(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``netproxy audit`` as the console script does: (exit code, stdout, stderr)."""
    code = 0
    try:
        main(["audit", *args])
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_shared_compile_gives_each_nodes_full_compile(tmp_path: Path) -> None:
    names = fleet_gen.node_names(6)
    objects = fleet_gen.cluster_objects(names, 60, 3, seed=5)
    path = tmp_path / "cluster.json"
    fleet_gen._write_cluster(objects, path)
    cluster = load_inputs([str(path)])
    params: dict[str, Any] = {"inputs": (str(path),), "family": "ipv4"}
    model = fleet_model(cluster, params)
    assert model.shared_ports and model.node_ports  # both kinds are exercised
    for name in names:
        settings = settings_for({**params, "hostname_override": name}, cluster)
        model.add_shared(settings)
        merged = model.expected(settings)
        full = split_save(render_save(compile_cluster(cluster, settings).save))
        for tname, table in full.tables.items():
            assert merged.tables[tname].policies == table.policies, (name, tname)
            assert merged.tables[tname].rules == table.rules, (name, tname)
        assert same_in_scope(merged, full)


def test_fleet_finds_every_injected_fault_and_nothing_else(fleet: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _audit(capsys, str(fleet / "cluster.json"), "--nodes", str(fleet / "nodes"),
                            "--json", "-j", "2")
    assert code == 1, err
    assert err == ""  # no progress when not on a terminal
    report = json.loads(out)
    faults = json.loads((fleet / "faults.json").read_text())
    by_node = {n["node"]: n for n in report["nodes"]}
    assert report["schema"] == "netproxy-audit/1"
    assert report["counts"]["nodes"] == 9
    faulty = {f["node"]: f for f in faults}
    snapshot = [n for n in report["nodes"] if n["source"].endswith(".snap")]
    assert [n["node"] for n in snapshot] == ["node-008"]  # named by its hostname section
    for name, node in by_node.items():
        if name not in faulty:
            assert node["status"] == "equal", node
            assert node["checked"] == "lines" and node["findings"] == []
    wanted = {(f["node"], s) for f in faults for s in f["services"]}
    found = {(n["node"], f["service"]) for n in report["nodes"] for f in n["findings"]
             if f["service"]}
    assert found == wanted
    kinds = {f["kind"]: f for f in faults}
    missing = by_node[kinds["endpoint-missing"]["node"]]
    assert [f["problem"] for f in missing["findings"]] == [
        f"lost endpoint {kinds['endpoint-missing']['endpoint']} (cluster)"]
    stale = by_node[kinds["stale-chain"]["node"]]
    assert "stale-chain" in {f["kind"] for f in stale["findings"]}
    assert kinds["stale-chain"]["chain"] in json.dumps(stale["findings"])
    share = by_node[kinds["share-changed"]["node"]]
    assert {f["kind"] for f in share["findings"]} == {"share", "doctor"}
    frozen = kinds["frozen"]["node"]
    assert [s["node"] for s in report["stuck"]["nodes"]] == [frozen]
    other = by_node[kinds["other-mode"]["node"]]
    assert other["status"] == "different" and other["mode"] == "nftables"
    assert [f["problem"] for f in other["findings"]] == [
        "nftables mode while the configuration says iptables"]
    assert [o["node"] for o in report["other_mode_or_version"]] == [other["node"]]
    truncated = by_node[kinds["truncated"]["node"]]
    assert truncated["status"] == "error"
    assert "has no COMMIT" in truncated["findings"][0]["problem"]
    lost = [s for s in report["services"] if s["problem"].startswith("lost endpoint")
            and s["service"] == kinds["endpoint-missing"]["services"][0]]
    assert lost and lost[0]["count"] == 1 and lost[0]["of"] == 9


def test_text_summary_groups_per_service(fleet: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _audit(capsys, str(fleet / "cluster.json"), "--nodes", str(fleet / "nodes" / "*"),
                          "-j", "1")
    assert code == 1
    faults = {f["kind"]: f for f in json.loads((fleet / "faults.json").read_text())}
    svc = faults["endpoint-missing"]["services"][0]
    line = next(ln for ln in out.splitlines() if ln.strip().startswith(svc))
    assert f"lost endpoint {faults['endpoint-missing']['endpoint']} (cluster) on 1 of 9 nodes" in line
    assert "nftables mode while the configuration says iptables" in out
    assert out.rstrip().endswith("different")


def test_all_equal_fleet_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fleet_gen.generate(tmp_path, nodes=3, services=20, endpoints=2, seed=1, faults=False)
    code, out, _ = _audit(capsys, str(tmp_path / "cluster.json"), "--nodes", str(tmp_path / "nodes"))
    assert code == 0, out
    assert "3 equal, 0 different, 0 error, 0 not audited" in out


def test_reordered_dump_is_equal_by_meaning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Lines in another order (kube-proxy writes KUBE-SERVICES in map order) and counters:
    not equal line for line, equal by meaning."""
    fleet_gen.generate(tmp_path, nodes=2, services=20, endpoints=2, seed=1, faults=False)
    path = tmp_path / "nodes" / "node-000.rules"
    lines = path.read_text().splitlines()
    services = [i for i, ln in enumerate(lines)
                if ln.startswith("-A KUBE-SERVICES") and "cluster IP" in ln]
    a, b = services[0], services[-1]
    lines[a], lines[b] = lines[b], lines[a]
    path.write_text("\n".join("[3:180] " + ln if ln.startswith("-A ") else ln for ln in lines) + "\n")
    code, out, _ = _audit(capsys, str(tmp_path / "cluster.json"), "--nodes", str(tmp_path / "nodes"),
                          "--json")
    report = json.loads(out)
    node = next(n for n in report["nodes"] if n["node"] == "node-000")
    assert (node["status"], node["checked"]) == ("equal", "semantic")
    assert code == 0


def test_unreadable_node_is_a_finding_not_a_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fleet_gen.generate(tmp_path, nodes=2, services=20, endpoints=2, seed=1, faults=False)
    (tmp_path / "nodes" / "node-009.rules").write_bytes(b"\x00\x01 garbage \xff\n")
    code, out, _ = _audit(capsys, str(tmp_path / "cluster.json"), "--nodes", str(tmp_path / "nodes"),
                          "--json")
    assert code == 1
    node = next(n for n in json.loads(out)["nodes"] if n["node"] == "node-009")
    assert node["status"] == "error"
    assert node["findings"][0]["kind"] == "unreadable"


def test_bad_invocations_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fleet_gen.generate(tmp_path, nodes=2, services=20, endpoints=2, seed=1, faults=False)
    cluster = str(tmp_path / "cluster.json")
    code, _, err = _audit(capsys, cluster, "--nodes", str(tmp_path / "nope" / "*.rules"))
    assert code == 2 and "no node files match" in err
    code, _, err = _audit(capsys, cluster, "--nodes", str(tmp_path / "nodes"), "--hostname-override", "x")
    assert code == 2 and "--hostname-override" in err
    code, _, err = _audit(capsys, "--nodes", str(tmp_path / "nodes"))
    assert code == 2 and "no cluster INPUTS" in err


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing on CI: scripts/setup.sh installs it")
        pytest.skip("chromium not installed (scripts/setup.sh installs it)")
    return found


def _browser(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, check=False)


def test_html_report_in_a_real_browser(fleet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chromium = _chromium()
    assert chromium is not None
    report = tmp_path / "report.html"
    code, _, _ = _audit(capsys, str(fleet / "cluster.json"), "--nodes", str(fleet / "nodes"),
                        "--html", str(report), "--brief")
    assert code == 1
    html = report.read_text()
    assert "http://" not in html and "https://" not in html  # self-contained
    faults = {f["kind"]: f for f in json.loads((fleet / "faults.json").read_text())}
    # The page as the browser built it, sorted by its own script (most findings first).
    dom = _browser(chromium, tmp_path / "profile1", "--dump-dom",
                   f"{report.as_uri()}#sort=findings:desc")
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    fleet_table = text[text.index('<table id="fleet"'):]
    fleet_table = fleet_table[:fleet_table.index("</table>")]
    assert 'aria-sort="descending"' in fleet_table
    rows = fleet_table.split("<tr")[2:]
    counts = [int(r.split('data-value="')[2].split('"')[0]) for r in rows]
    assert counts == sorted(counts, reverse=True) and counts[0] > 0
    assert len(rows) == 9
    assert faults["share-changed"]["node"] in rows[0]
    assert f'id="node-{faults["truncated"]["node"]}"' in text
    assert "nftables mode while the configuration says iptables" in text
    assert f"lost endpoint {faults['endpoint-missing']['endpoint']}" in text
    # And a picture of it (looked at by a person when the page changes; here: it rendered).
    shot = tmp_path / "report.png"
    done = _browser(chromium, tmp_path / "profile2", f"--screenshot={shot}",
                    "--window-size=1200,1600", report.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _without_timings(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in n.items() if k != "seconds"} for n in report["nodes"]]


def test_dask_cluster_gives_the_local_pools_results(fleet: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A real scheduler and two workers as separate processes on 127.0.0.1, no mocks."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("dask is missing on CI: scripts/setup.sh installs netproxy[dask]")
        pytest.skip("needs the dask extra: pip install 'netproxy[dask]'")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    logs = tmp_path / "dask.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with logs.open("wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                 "--port", str(port), "--no-dashboard"], env=env, stdout=log, stderr=log))
            for _ in range(2):
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "distributed.cli.dask_worker", address,
                     "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                     "--host", "127.0.0.1", "--local-directory", str(tmp_path)],
                    env=env, stdout=log, stderr=log))
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        args = [str(fleet / "cluster.json"), "--nodes", str(fleet / "nodes"), "--json"]
        code, out, err = _audit(capsys, *args, "--engine", "dask", "--scheduler", address)
        assert code == 1, err + logs.read_text(errors="replace")[-3000:]
        on_dask = json.loads(out)
        code, out, _ = _audit(capsys, *args, "-j", "2")
        assert code == 1
        local = json.loads(out)
        assert on_dask["engine"]["workers"] == 2
        assert _without_timings(on_dask) == _without_timings(local)
        for key in ("services", "node_problems", "stuck", "other_mode_or_version", "counts"):
            assert on_dask[key] == local[key]
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_dask_without_scheduler_starts_a_local_cluster(fleet: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("distributed")
    code, out, err = _audit(capsys, str(fleet / "cluster.json"), "--nodes", str(fleet / "nodes"),
                            "--json", "--engine", "dask", "-j", "2")
    assert code == 1, err
    report = json.loads(out)
    assert report["engine"]["scheduler"] == "local" and report["engine"]["workers"] == 2
    assert report["counts"]["equal"] == 3


def test_nftables_nodes_are_judged_in_their_mode(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """nftables-mode nodes against the nftables table compiled for them: one right, one that
    lost an endpoint; an iptables node in a fleet that should run nftables."""
    fleet_gen.generate(tmp_path, nodes=3, services=20, endpoints=3, seed=2, faults=False)
    cluster = tmp_path / "cluster.json"
    nodes = tmp_path / "nodes"
    (nodes / "node-000.rules").unlink()
    other_table = "table ip flannel-ipv4 {\n\tchain postrtg {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t}\n}\n"
    (nodes / "node-000.nft").write_text(other_table + fleet_gen.nft_text(cluster, "node-000"))
    doc = json.loads(cluster.read_text())
    victim = next(o for o in doc["items"] if o["kind"] == "EndpointSlice"
                  and o["metadata"]["name"] == "svc-00001-x1")
    gone = victim["endpoints"].pop(0)["addresses"][0]
    older = tmp_path / "older.json"
    older.write_text(json.dumps(doc))
    (nodes / "node-001.rules").unlink()
    (nodes / "node-001.nft").write_text(fleet_gen.nft_text(older, "node-001"))
    code, out, err = _audit(capsys, str(cluster), "--nodes", str(nodes), "--json",
                            "--proxy-mode", "nftables")
    assert code == 1, err
    by_node = {n["node"]: n for n in json.loads(out)["nodes"]}
    assert by_node["node-000"]["status"] == "equal" and by_node["node-000"]["mode"] == "nftables"
    assert by_node["node-000"]["checked"] == "lines"  # kube-proxy's table as listed, not parsed
    assert by_node["node-001"]["checked"] == "semantic"
    lost = by_node["node-001"]["findings"]
    assert {(f["kind"], f["service"], f["problem"]) for f in lost} == {
        ("endpoint-missing", "ns-01/svc-00001:http", f"lost endpoint {gone}:8080")}
    assert [f["problem"] for f in by_node["node-002"]["findings"]] == [
        "iptables mode while the configuration says nftables"]


def test_nodes_from_an_fsspec_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Node files behind a URL (fsspec's in-memory file system, read in this process)."""
    fsspec = pytest.importorskip("fsspec")
    fleet_gen.generate(tmp_path, nodes=2, services=20, endpoints=2, seed=1, faults=False)
    fs = fsspec.filesystem("memory")
    for path in sorted((tmp_path / "nodes").iterdir()):
        fs.pipe(f"/audit-test/{path.name}", path.read_bytes())
    fs.pipe("/audit-test/node-005.rules", b"*nat\n:KUBE-SERVICES - [0:0]\n")
    try:
        code, out, _ = _audit(capsys, str(tmp_path / "cluster.json"), "--nodes",
                              "memory://audit-test/*.rules", "--json", "-j", "1")
    finally:
        fs.rm("/audit-test", recursive=True)
    report = json.loads(out)
    assert code == 1
    assert [(n["node"], n["status"]) for n in report["nodes"]] == [
        ("node-000", "equal"), ("node-001", "equal"), ("node-005", "error")]
    source = report["nodes"][0]["source"]
    assert source.startswith("memory://") and source.endswith("/audit-test/node-000.rules")


def test_progress_only_on_a_terminal(fleet: Path) -> None:
    """With stderr on a terminal (a real pseudo-terminal), progress lines; piped, none."""
    import pty

    env = {**os.environ, "PYTHONPATH": str(REPO), "NETPROXY_PROGRESS_DELAY": "0"}
    env.pop("NETPROXY_PROGRESS", None)
    args = [sys.executable, "-m", "netproxy", "audit", str(fleet / "cluster.json"),
            "--nodes", str(fleet / "nodes"), "--brief", "-j", "1"]
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(args, stdout=subprocess.PIPE, stderr=follower, env=env,
                              timeout=300, check=False)
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
    assert done.returncode == 1
    assert b"netproxy: audit, " in seen and b" nodes/s: " in seen and b"/9 nodes (" in seen
    piped = subprocess.run(args, capture_output=True, env=env, timeout=300, check=False)
    assert piped.returncode == 1 and piped.stderr == b""


def test_real_dumps_of_other_versions_and_modes(tmp_path: Path, dumps_dir: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Real nodes' dumps against a generated API state: old layouts, ipvs mode and an IPv6
    dump are reported for what they are, none of them crashes the audit."""
    fleet_gen.generate(tmp_path / "f", nodes=2, services=20, endpoints=2, seed=1, faults=False)
    nodes = tmp_path / "nodes"
    nodes.mkdir()
    for name in ("09-coreos-2016-flannel-kubeproxy11", "12-calico-vxlan-ipvs-nat",
                 "05-k3s-pi-kuberouter-nft-v6"):
        shutil.copy(dumps_dir / f"{name}.rules", nodes)
    code, out, _ = _audit(capsys, str(tmp_path / "f" / "cluster.json"), "--nodes", str(nodes),
                          "--json", "-j", "1")
    assert code == 1
    report = json.loads(out)
    by_node = {n["node"]: n for n in report["nodes"]}
    old = by_node["09-coreos-2016-flannel-kubeproxy11"]
    assert old["status"] == "different"
    assert "rules of kube-proxy 1.24 or older (no filter KUBE-PROXY-FIREWALL chain)" in [
        f["problem"] for f in old["findings"]]
    ipvs = by_node["12-calico-vxlan-ipvs-nat"]
    assert (ipvs["status"], ipvs["mode"]) == ("not-audited", "ipvs")
    v6 = by_node["05-k3s-pi-kuberouter-nft-v6"]
    assert v6["status"] == "error" and "--family" in v6["findings"][0]["problem"]
    assert {o["node"] for o in report["other_mode_or_version"]} == {
        "09-coreos-2016-flannel-kubeproxy11", "12-calico-vxlan-ipvs-nat"}


def test_a_snapshot_naming_a_node_that_has_a_file_too(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    fleet_gen.generate(tmp_path, nodes=2, services=20, endpoints=2, seed=1, faults=False)
    dump = (tmp_path / "nodes" / "node-001.rules").read_text()
    (tmp_path / "nodes" / "host-x.snap").write_text(fleet_gen.snapshot_text("node-001", dump))
    code, out, _ = _audit(capsys, str(tmp_path / "cluster.json"), "--nodes",
                          str(tmp_path / "nodes"), "--json")
    assert code == 1
    twice = [n for n in json.loads(out)["nodes"] if n["node"] == "node-001"]
    assert len(twice) == 2 and all(n["status"] == "error" for n in twice)
    assert twice[0]["findings"][0]["problem"] == "more than one file for this node"
