"""netproxy diff of two nftables listings: kube-proxy's nftables table by Service (golden
reports on the example cluster compiled in nftables mode, then changed), the real listings of
one node before and after a pod was replaced, snapshots, behaviour, and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_node_snapshot import snapshot_text

from netproxy.cli import main
from netproxy.diff import render_text
from netproxy.diff.behaviour import compare_listings
from netproxy.diff.load import load_listing
from netproxy.diff.nftdiff import diff_listings

from conftest import DUMPS, FIXTURES

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden" / "diff-nft"
EXAMPLE = FIXTURES / "example-cluster"
SERVICES = (EXAMPLE / "services.yaml").read_text()


def _without(text: str, start: str, end: str) -> str:
    i, j = text.index(start), text.index(end)
    return text[:i] + text[j:]


VARIANTS: dict[str, str] = {
    "base": SERVICES,
    # one of shop/frontend's three endpoints replaced by another pod
    "endpoint-replaced": SERVICES.replace("[10.244.3.10]", "[10.244.3.12]"),
    # shop/checkout (LoadBalancer with source ranges) loses one of two endpoints
    "endpoint-removed": SERVICES.replace(
        "  - addresses: [10.244.3.20]\n    nodeName: node-3\n    conditions: {ready: true}\n", ""),
    # shop/cart (ClientIP affinity: endpoint chains and affinity sets) gets another pod
    "affinity-endpoint": SERVICES.replace("[10.244.3.40]", "[10.244.3.41]"),
    # shop/legacy-db had no endpoints (REJECT) and gets one
    "db-endpoint": SERVICES.replace(
        "  endpoints: []",
        "  endpoints:\n  - addresses: [10.244.2.50]\n    nodeName: node-2\n    conditions: {ready: true}"),
    # shop/ingress: externalTrafficPolicy Local -> Cluster
    "policy": SERVICES.replace("externalTrafficPolicy: Local\n    healthCheckNodePort: 32100\n",
                               "externalTrafficPolicy: Cluster\n"),
    # shop/checkout's loadBalancerSourceRanges narrowed
    "ranges": SERVICES.replace("[198.51.100.0/24, 192.168.0.0/16]", "[198.51.100.0/24]"),
    # shop/frontend deleted; kube-proxy's resync of the node flushes its chains (stale)
    "service-removed": _without(SERVICES, "- apiVersion: v1\n  kind: Service\n  metadata: {name: frontend",
                                "- apiVersion: v1\n  kind: Service\n  metadata: {name: checkout"),
}
BEHAVIOUR = {"endpoint-replaced", "policy"}


def _compile(cluster: Path, out: Path, *extra: str) -> None:
    try:
        main(["compile", str(cluster), "--proxy-mode", "nftables", "-o", str(out), *extra])
    except SystemExit as exc:
        assert not exc.code
    assert out.is_file()


@pytest.fixture(scope="module")
def listings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return compile_variants(tmp_path_factory.mktemp("nft-diff"))


def compile_variants(root: Path) -> dict[str, Path]:
    """Each variant's cluster directory under ``root`` and its listing ``root/NAME.nft``."""
    out: dict[str, Path] = {}
    for name, services in VARIANTS.items():
        cluster = root / name
        cluster.mkdir()
        for extra in ("node.yaml", "kube-proxy-config.yaml"):
            shutil.copy(EXAMPLE / extra, cluster / extra)
        (cluster / "services.yaml").write_text(services)
        resync = ("--existing-rules", str(out["base"])) if name == "service-removed" else ()
        _compile(cluster, root / f"{name}.nft", *resync)
        out[name] = root / f"{name}.nft"
    return out


def _report(old: Path, new: Path, behaviour: bool = False):
    a, b = load_listing(str(old)), load_listing(str(new))
    a.source, b.source = old.name, new.name
    report = diff_listings(a, b)
    if behaviour:
        compare_listings(report, a, b)
    return report


@pytest.mark.parametrize("case", sorted(set(VARIANTS) - {"base"}))
def test_golden_report(case: str, listings: dict[str, Path]) -> None:
    text = render_text(_report(listings["base"], listings[case], case in BEHAVIOUR))
    golden = GOLDEN / f"{case}.txt"
    if os.environ.get("NETPROXY_REGEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.is_file(), f"no golden for {case}: run with NETPROXY_REGEN=1"
    assert text == golden.read_text()


def _facts(report, title: str) -> list[str]:
    group = next(g for g in report.groups if g.title == title)
    return [f"{f.sign} {f.text}" for f in group.facts]


def test_a_listing_equals_itself(listings: dict[str, Path]) -> None:
    report = _report(listings["base"], listings["base"], behaviour=True)
    assert report.groups == [] and report.findings == [] and report.equivalent
    assert report.probes > 30 and report.behaviour == []


def test_endpoint_share_changes(listings: dict[str, Path]) -> None:
    report = _report(listings["base"], listings["endpoint-removed"])
    assert _facts(report, "shop/checkout:https tcp") == [
        "- endpoint 10.244.3.20:8443 (cluster, was 50.00%)",
        "~ endpoint 10.244.2.20:8443 (cluster) share 50.00% -> 100.00% (numgen 1/2 -> numgen 1/1)"]
    assert report.summary["endpoints_removed"] == 1 and report.summary["endpoints_changed"] == 1
    assert [g.title for g in report.groups] == ["shop/checkout:https tcp"]


def test_stale_chains_after_a_resync(listings: dict[str, Path]) -> None:
    report = _report(listings["base"], listings["service-removed"])
    facts = _facts(report, "shop/frontend:http tcp")
    assert "- frontend cluster IP 10.96.100.10:80 -> SVC" in facts
    assert ("! stale in new: ip kube-proxy chain service-SFDBSQB2-shop/frontend/tcp/http nothing "
            "refers to it (shop/frontend:http tcp), flushed: kube-proxy deletes it a second later") in facts
    assert report.summary["stale_new"] == 2 and report.summary["stale_old"] == 0


needs_nft_dumps = pytest.mark.skipif(not (DUMPS / "nft").is_dir(),
                                     reason="real-world nft listings not present beside the project")


@needs_nft_dumps
def test_real_node_before_and_after_a_pod_was_replaced() -> None:
    # 05 is 04's node after pod 10.244.0.10 was replaced by 10.244.0.11; the author trimmed
    # it further: the kubernetes Service's chain is gone while service-ips still points to it.
    before = DUMPS / "nft" / "04-kubeadm136-pi-kubeproxy-nft-trimmed.nft"
    after = DUMPS / "nft" / "05-kubeadm136-pi-kubeproxy-nft-trimmed-after-pod-replace.nft"
    report = _report(before, after)
    lab = next(g for g in report.groups if g.title == "kproxy-lab/backend-api:http tcp")
    assert [f"{f.sign} {f.text}" for f in lab.facts] == [
        "- endpoint 10.244.0.10:9898 (cluster, was 50.00%)",
        "+ endpoint 10.244.0.11:9898 (cluster, 50.00%)"]
    assert {(r.sign, r.text) for r in lab.rules if r.chain == "set hairpin-connections"} == {
        ("-", "element { 10.244.0.10 . 10.244.0.10 . tcp . 9898 }"),
        ("+", "element { 10.244.0.11 . 10.244.0.11 . tcp . 9898 }")}
    api = _facts(report, "default/kubernetes:https tcp")
    assert ("! dangling in new: ip kube-proxy map service-ips element { 10.96.0.1 . tcp . 443 : "
            "goto service-2QRHZV4L-default/kubernetes/tcp/https } points to "
            "service-2QRHZV4L-default/kubernetes/tcp/https, which does not exist") in api
    assert "- endpoint 192.168.0.231:6443 (cluster, was 100.00%)" in api
    # the old listing's trimmed @service-nodeports is a finding of the old side
    assert [(f.side, f.kind, f.chain) for f in report.findings] == [("old", "dangling", "chain services")]
    assert report.warnings == []  # the parser's notes of missing objects are the findings above


@needs_nft_dumps
@pytest.mark.parametrize("path", sorted((DUMPS / "nft").glob("*.nft")), ids=lambda p: p.name[:2])
def test_every_real_listing_equals_itself(path: Path) -> None:
    report = _report(path, path)
    assert report.groups == [] and all(f.side == "both" for f in report.findings)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(["diff", *args])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_cli_text_json_and_exit_codes(capsys: pytest.CaptureFixture[str], listings: dict[str, Path]) -> None:
    code, out, _ = run(capsys, "--brief", str(listings["base"]), str(listings["db-endpoint"]))
    assert code == 1
    assert "~ service shop/legacy-db:postgres tcp\n" in out
    assert "    - frontend cluster IP 10.96.100.50:5432 -> REJECT (no endpoints)\n" in out
    assert "    rules +2 -1\n" in out and out.endswith("different\n")
    code, out, _ = run(capsys, "--json", str(listings["base"]), str(listings["db-endpoint"]))
    data = json.loads(out)
    assert code == 1 and data["equivalent"] is False
    assert data["changed_services"] == [["shop/legacy-db:postgres", "tcp"]]
    assert data["summary"]["endpoints_added"] == 1
    code, out, _ = run(capsys, str(listings["base"]), str(listings["base"]))
    assert code == 0 and out.endswith("equivalent\n")


def test_cli_behaviour_exit_code_follows_outcomes(capsys: pytest.CaptureFixture[str],
                                                  listings: dict[str, Path]) -> None:
    code, out, _ = run(capsys, "--behaviour", "--probes", "changed", "--brief",
                       str(listings["base"]), str(listings["endpoint-replaced"]))
    assert code == 1
    assert "behaviour: 6 of 6 probes differ (frontends of the changed services)" in out
    assert "        + 33.33% ACCEPT DNAT 10.244.3.12:8080\n" in out


def test_cli_snapshots_holding_the_listing(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                           listings: dict[str, Path]) -> None:
    snaps = []
    for name in ("base", "endpoint-replaced"):
        snap = tmp_path / f"{name}.snap"
        snap.write_text(snapshot_text(nft_list_ruleset=listings[name].read_text(), notes=""))
        snaps.append(str(snap))
    code, out, _ = run(capsys, "--brief", *snaps)
    assert code == 1
    assert f"+++ {snaps[1]} (nft list ruleset)\n" in out
    assert "    + endpoint 10.244.3.12:8080 (cluster, 33.33%)\n" in out


def test_other_tables_are_plain_rule_and_element_diffs(tmp_path: Path) -> None:
    old = tmp_path / "old.nft"
    new = tmp_path / "new.nft"
    old.write_text("table inet filter {\n\tset allowed {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.1 }\n\t}\n"
                   "\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n"
                   "\t\tip saddr @allowed counter packets 5 bytes 300 accept\n\t}\n}\n")
    new.write_text("table inet filter {\n\tset allowed {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.2 }\n\t}\n"
                   "\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n"
                   "\t\tip saddr @allowed counter packets 9 bytes 900 accept\n\t}\n}\n")
    report = _report(old, new)
    assert [(g.kind, g.title) for g in report.groups] == [
        ("other", "inet filter chain input"), ("other", "inet filter set allowed")]
    chain, allowed = report.groups
    assert [f.text for f in chain.facts] == [
        "chain inet filter input: type filter hook input priority filter; policy accept -> "
        "type filter hook input priority filter; policy drop"]
    assert chain.rules == []  # only the counters differ
    assert [(r.sign, r.text) for r in allowed.rules] == [("-", "element { 10.0.0.1 }"),
                                                         ("+", "element { 10.0.0.2 }")]
    assert report.summary["other_rules_added"] == 1 and not report.equivalent


def test_dual_stack_listing_compares_the_ip6_table_too(tmp_path: Path) -> None:
    cluster = HERE / "data" / "diff" / "v6-cluster.yaml"
    changed = tmp_path / "v6-changed.yaml"
    changed.write_text(cluster.read_text().replace("fd00:244::5", "fd00:244::6"))
    old, new = tmp_path / "old.nft", tmp_path / "new.nft"
    for source, out in ((cluster, old), (changed, new)):
        _compile(source, out, "--family", "dual", "--hostname-override", "node-1")
    report = _report(old, new, behaviour=True)
    assert _facts(report, "default/web6:http tcp") == [
        "- endpoint [fd00:244::5]:8080 (cluster, was 50.00%)",
        "+ endpoint [fd00:244::6]:8080 (cluster, 50.00%)"]
    assert {r.table for g in report.groups for r in g.rules} == {"ip6 kube-proxy"}
    assert report.behaviour and all("fd00:244::6" in " ".join(p.new) for p in report.behaviour)
    # the pod source is next to an endpoint: the listing names no pod network
    pods = {p.probe.rsplit(" ", 1)[1] for p in report.behaviour if " from pod " in p.probe}
    assert pods == {"fd00:244:1::8"}


@pytest.fixture
def netns():
    name = f"np-diffview-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def _nft(ns: str, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["ip", "netns", "exec", ns, "nft", *args], input=stdin,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.netns
def test_kernel_listings_text_and_json_equal_the_compiled_one(netns: str, tmp_path: Path,
                                                               listings: dict[str, Path]) -> None:
    # What the kernel lists after loading the compiled table, as text and as JSON, is the same
    # table: the diff finds nothing; the changed listing loaded the same way differs as before.
    for name in ("base", "affinity-endpoint"):
        _nft(netns, "flush", "ruleset")
        _nft(netns, "-f", str(listings[name]))
        (tmp_path / f"{name}.txt.nft").write_text(_nft(netns, "list", "ruleset"))
        (tmp_path / f"{name}.json").write_text(_nft(netns, "-j", "list", "ruleset"))
    for kernel in ("base.txt.nft", "base.json"):
        report = _report(listings["base"], tmp_path / kernel)
        assert report.groups == [] and report.findings == [], render_text(report)
    compiled = _report(listings["base"], listings["affinity-endpoint"])
    kernel = _report(tmp_path / "base.json", tmp_path / "affinity-endpoint.json")
    assert [(g.title, g.facts) for g in kernel.groups] == [(g.title, g.facts) for g in compiled.groups]


def test_cli_old_listing_from_stdin(listings: dict[str, Path]) -> None:
    repo = HERE.parent
    done = subprocess.run([sys.executable, "-m", "netproxy", "diff", "--brief", "-", str(listings["db-endpoint"])],
                          stdin=listings["base"].open("rb"), capture_output=True, cwd=repo,
                          env={**os.environ, "PYTHONPATH": str(repo)})
    assert done.returncode == 1, done.stderr
    assert done.stdout.decode().startswith("--- <stdin>\n+++ ")
    assert b"~ service shop/legacy-db:postgres tcp\n" in done.stdout
