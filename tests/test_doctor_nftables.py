"""``netproxy doctor`` on kube-proxy's nftables mode: compiled tables are healthy, each
injected fault fails the check that asks about it (and only where it should), real listings
are read, and the CLI (text, --json, --failed-only, snapshots, bad input) behaves as for
iptables dumps."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_doctor_checks import failures
from test_node_snapshot import snapshot_text

from netproxy.cli import cli, main
from netproxy.doctor.nftables import diagnose_nft
from netproxy.doctor.report import FAILED, INFO, NOT_APPLICABLE, PASSED, WARNING, Report
from netproxy.errors import InputError
from netproxy.parser.nftables import parse_nft, parse_nft_text

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = str(REPO / "fixtures" / "example-cluster")
NODE_IP = "192.168.0.11"


def compile_list(*args: str) -> str:
    result = CliRunner().invoke(cli, ["compile", *args, "--proxy-mode", "nftables"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def example() -> str:
    return compile_list(EXAMPLE)


def doctor(text: str, **kwargs) -> Report:
    return diagnose_nft(parse_nft_text(text, source="node.nft"), local_ips=[NODE_IP], **kwargs)


def status(report: Report, service: str, check: str) -> str:
    svc = next(s for s in report.services if s.name == service)
    return next(f.status for f in svc.findings if f.check == check)


def node_status(report: Report, check: str) -> str:
    return next(f.status for f in report.node if f.check == check)


def test_example_cluster_fails_only_the_service_without_endpoints(example: str) -> None:
    report = doctor(example)
    assert failures(report) == {"shop/legacy-db:postgres": {"endpoints"}}
    assert status(report, "shop/legacy-db:postgres", "reject") == INFO
    assert status(report, "shop/cart:grpc", "affinity") == PASSED
    assert status(report, "shop/checkout:https", "firewall") == PASSED
    assert status(report, "shop/ingress:http", "local-endpoints") == PASSED
    assert status(report, "shop/ingress:http", "walk-nodeport") == PASSED
    assert status(report, "shop/frontend:http", "walk-hairpin") == PASSED
    assert node_status(report, "nodeport-addresses") == PASSED
    assert {f.check for f in report.node} == {"proxy-mode", "service-hooks", "masquerade",
                                              "cluster-ips-check", "nodeport-addresses", "stale-objects"}
    walk = next(f for s in report.services if s.name == "shop/frontend:http"
                for f in s.findings if f.check == "walk-split")
    assert walk.summary == ("10.96.100.10:80 reaches 3 endpoints, 33.33% each from a pod, the node "
                            "and outside the pod network")


def test_synthetic_cluster_has_no_failures(tmp_path: Path) -> None:
    from test_doctor_compiled import _synth

    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps({"apiVersion": "v1", "kind": "List",
                                   "items": _synth().generate(60, 4, 1)}))
    text = compile_list(str(cluster), "--node-ip", "192.168.0.10")
    report = diagnose_nft(parse_nft_text(text, source="synth"), local_ips=["192.168.0.10"])
    assert failures(report) == {}
    statuses = {(f.check, f.status) for s in report.services for f in s.findings}
    assert ("local-endpoints", INFO) in statuses  # Local policy without a pod on node-0: by design
    assert not any(s == WARNING for _, s in statuses)


FAULTS = [
    # (what is done to the example cluster's table, Service port ("" = node), failing check)
    ("numgen mod 3 but two entries", lambda t: t.replace(
        "numgen random mod 3 map { 0 : 10.244.1.10 . 8080, 1 : 10.244.2.10 . 8080, 2 : 10.244.3.10 . 8080 }",
        "numgen random mod 3 map { 0 : 10.244.1.10 . 8080, 1 : 10.244.2.10 . 8080 }"),
     "shop/frontend:http", {"shares", "walk-split"}),
    ("an endpoint twice", lambda t: t.replace(
        "1 : 10.244.2.10 . 8080, 2 : 10.244.3.10 . 8080 }", "1 : 10.244.2.10 . 8080, 2 : 10.244.2.10 . 8080 }"),
     "shop/frontend:http", {"shares", "walk-split"}),
    ("masquerading chain emptied", lambda t: re.sub(r"(chain masquerading \{\n)[^}]*\}", r"\1\t}", t),
     "", {"masquerade"}),
    ("marked with another bit", lambda t: t.replace(
        'meta mark set meta mark | 0x00004000 comment "masquerade"',
        'meta mark set meta mark | 0x00008000 comment "masquerade"'), "", {"masquerade"}),
    ("firewall chain lost its drop", lambda t: t.replace(
        "ip saddr != { 192.168.0.0/16, 198.51.100.0/24, 203.0.113.10 } drop", "counter"),
     "shop/checkout:https", {"firewall"}),
    ("cluster-ips-check emptied", lambda t: t.replace(
        'ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"', "counter"),
     "", {"cluster-ips-check"}),
    ("nodeport-ips emptied", lambda t: t.replace("elements = { 192.168.0.11 }\n", ""),
     "", {"nodeport-addresses"}),
    ("affinity set not updated", lambda t: t.replace(
        "update @affinity-4EHNQDFV-shop/cart/tcp/grpc__10.244.2.40/9000 { ip saddr }", "counter"),
     "shop/cart:grpc", {"affinity"}),
    ("hairpin element of a local endpoint missing", lambda t: t.replace(
        "10.244.1.30 . 10.244.1.30 . tcp . 8080", "10.244.1.2 . 10.244.1.2 . sctp . 53"),
     "shop/ingress:http", {"hairpin"}),
    ("service-ips element to a chain that is gone", lambda t: t.replace(
        "80 : goto service-SFDBSQB2-shop/frontend/tcp/http,", "80 : goto service-SFDBSQB2-shop/frontend/tcp/http2,"),
     "", {"stale-objects"}),
    ("endpoint chain DNATs elsewhere", lambda t: t.replace(
        "meta l4proto tcp dnat to 10.244.3.40:9000", "meta l4proto tcp dnat to 10.244.3.41:9000"),
     "shop/cart:grpc", {"endpoint-dnat", "chain-names"}),
    ("Local policy with local endpoints also dropped", lambda t: t.replace(
        "comment \"vmap to drop or reject packets to service nodeports with no endpoints\"\n",
        "comment \"vmap to drop or reject packets to service nodeports with no endpoints\"\n"
        "\t\telements = { tcp . 30081 comment \"shop/ingress:http\" : drop }\n"),
     # (the walk still passes: a NodePort DNATed to a pod is forwarded, and the drop
     # element sits in filter-input's nodeport-endpoints-check)
     "shop/ingress:http", {"local-endpoints"}),
    ("nat-output no longer jumps to services", lambda t: t.replace(
        "type nat hook output priority -100; policy accept;\n\t\tjump services",
        "type nat hook output priority -100; policy accept;"), "", {"service-hooks"}),
]


@pytest.mark.parametrize("what,change,where,checks", FAULTS, ids=[f[0] for f in FAULTS])
def test_injected_fault_fails_its_check(example: str, what: str, change, where: str,
                                        checks: set[str]) -> None:
    text = change(example)
    assert text != example, what
    report = doctor(text)
    found = failures(report)
    assert checks <= found.get(where, set()), found
    others = {k: v for k, v in found.items() if k not in (where, "shop/legacy-db:postgres")}
    assert not others or where == "", others


def test_dangling_element_also_fails_the_entry(example: str) -> None:
    text = example.replace("80 : goto service-SFDBSQB2-shop/frontend/tcp/http,",
                           "80 : goto service-SFDBSQB2-shop/frontend/tcp/http2,")
    found = failures(doctor(text))
    assert "entry" in found["shop/frontend:http2"]


def test_iptables_mode_chains_beside_the_table_are_a_warning(example: str) -> None:
    old = ("table ip nat {\n\tchain PREROUTING {\n\t\ttype nat hook prerouting priority dstnat; "
           "policy accept;\n\t\tjump KUBE-SERVICES\n\t}\n\tchain KUBE-SERVICES {\n\t}\n}\n")
    report = doctor(old + example)
    assert node_status(report, "proxy-mode") == WARNING
    assert failures(report) == {"shop/legacy-db:postgres": {"endpoints"}}


def test_compared_with_the_cluster_objects(example: str) -> None:
    expected = parse_nft_text(example, source="<compiled>")
    same = doctor(example, expected=expected)
    assert failures(same) == {"shop/legacy-db:postgres": {"endpoints"}}
    changed = example.replace("2 : 10.244.3.10 . 8080 }", "2 : 10.244.3.11 . 8080 }")
    report = doctor(changed, expected=expected)
    assert "cluster-endpoints" in failures(report)["shop/frontend:http"]


def findings_of(report: Report, service: str) -> dict[str, tuple[str, str, list[str]]]:
    svc = next(s for s in report.services if s.name == service)
    return {f.check: (f.status, f.summary, f.details) for f in svc.findings}


def test_compared_with_the_cluster_objects_as_in_iptables_mode(example: str) -> None:
    """The same three comparisons per Service port as for an iptables dump: endpoints (and
    affinity), addresses (no-endpoint answers too) and the split of new connections."""
    expected = parse_nft_text(example, source="<compiled>")
    same = doctor(example, expected=expected)
    for name in ("shop/frontend:http", "shop/legacy-db:postgres", "shop/cart:grpc"):
        found = findings_of(same, name)
        assert {c: found[c][0] for c in ("cluster-endpoints", "cluster-addresses")} == {
            "cluster-endpoints": PASSED, "cluster-addresses": PASSED}, name
    assert findings_of(same, "shop/frontend:http")["cluster-probabilities"][0] == PASSED
    assert node_status(same, "cluster-services") == PASSED

    uneven = example.replace("1 : 10.244.2.10 . 8080, 2 : 10.244.3.10 . 8080 }",
                             "1 : 10.244.1.10 . 8080, 2 : 10.244.3.10 . 8080 }")
    found = findings_of(doctor(uneven, expected=expected), "shop/frontend:http")
    assert found["cluster-endpoints"][:2] == (FAILED, "cluster endpoints missing from the rules: "
                                                      "10.244.2.10:8080")
    assert found["cluster-probabilities"][:2] == (
        FAILED, "service-SFDBSQB2-shop/frontend/tcp/http splits new connections 33.33%, 66.67%, "
                "the cluster objects give 33.33%, 33.33%, 33.33%")
    assert found["cluster-addresses"][0] == PASSED

    no_affinity = example.replace(
        "\t\tip saddr @affinity-4EHNQDFV-shop/cart/tcp/grpc__10.244.2.40/9000 goto "
        "endpoint-4EHNQDFV-shop/cart/tcp/grpc__10.244.2.40/9000\n"
        "\t\tip saddr @affinity-TXDFDY2N-shop/cart/tcp/grpc__10.244.3.40/9000 goto "
        "endpoint-TXDFDY2N-shop/cart/tcp/grpc__10.244.3.40/9000\n", "")
    assert no_affinity != example
    found = findings_of(doctor(no_affinity, expected=expected), "shop/cart:grpc")
    assert found["cluster-endpoints"][:2] == (
        FAILED, "the cluster objects ask for ClientIP affinity, the rules do not keep it")

    moved = example.replace("10.96.100.50 . tcp . 5432 comment", "10.96.100.51 . tcp . 5432 comment")
    found = findings_of(doctor(moved, expected=expected), "shop/legacy-db:postgres")
    assert found["cluster-addresses"][:2] == (FAILED, "addresses the rules do not know: "
                                                      "cluster IP 10.96.100.50:5432")


def test_real_listing_old_layout(dumps_dir: Path) -> None:
    listing = parse_nft((dumps_dir / "nft" / "01-k3s-pi-kubeproxy-nft-complete.nft").read_text(),
                        source="01")
    report = diagnose_nft(listing, local_ips=["10.34.4.246"])
    # Two Services without endpoints (kube-proxy answers them with REJECT); the rest is healthy.
    assert failures(report) == {"riset/otelcol-opentelemetry-collector:otlp": {"endpoints"},
                                "riset/otelcol-opentelemetry-collector:otlp-http": {"endpoints"}}
    assert status(report, "riset/hellopod-np-svc", "hairpin") == PASSED  # endpoint-chain marks
    assert status(report, "riset/hellopod-np-svc", "walk-nodeport") == PASSED
    assert node_status(report, "masquerade") == PASSED


def test_trimmed_listing_names_what_is_missing(dumps_dir: Path) -> None:
    listing = parse_nft((dumps_dir / "nft" / "05-kubeadm136-pi-kubeproxy-nft-trimmed-after-pod-replace.nft")
                        .read_text(), source="05")
    report = diagnose_nft(listing)
    stale = next(f for f in report.node if f.check == "stale-objects")
    assert stale.status == FAILED and "service-2QRHZV4L-default/kubernetes/tcp/https" in stale.summary
    assert status(report, "default/kubernetes:https", "entry") == FAILED


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = 0
    try:
        main(list(args))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_text_json_failed_only(capsys: pytest.CaptureFixture[str], tmp_path: Path, example: str) -> None:
    path = tmp_path / "node.nft"
    path.write_text(example)
    code, out, _ = run(capsys, "doctor", str(path), "--node-ip", NODE_IP)
    assert code == 1
    assert out.splitlines()[0].startswith(f"netproxy doctor: {path} (ipv4), 8 Service port(s): ")
    assert "  [info] proxy-mode            nftables mode (table ip kube-proxy)" in out
    assert "ip kube-proxy:" in out
    code, out, _ = run(capsys, "doctor", "--rules", str(path), "--node-ip", NODE_IP, "--failed-only")
    assert code == 1 and out == "shop/legacy-db:postgres (tcp): failed: endpoints: no endpoint on this node's rules\n"
    code, out, _ = run(capsys, "doctor", str(path), "--json", "--no-walk", "--service", "shop/cart")
    data = json.loads(out)
    assert code == 0 and [s["service"] for s in data["services"]] == ["shop/cart:grpc"]
    checks = {c["check"]: c for c in data["services"][0]["checks"]}
    assert checks["affinity"]["status"] == PASSED
    rule = checks["affinity"]["rules"][0]
    assert rule["family"] == "ip" and rule["table"] == "kube-proxy"
    assert rule["chain"] == "service-CKUZTEQ7-shop/cart/tcp/grpc" and rule["line"] > 0
    element = checks["entry"]["rules"][0]
    assert element["set"] == "service-ips" and element["chain"] is None
    assert element["text"].startswith("element service-ips { 10.96.100.40 . tcp . 9000")


def test_cli_with_cluster_inputs(capsys: pytest.CaptureFixture[str], tmp_path: Path, example: str) -> None:
    path = tmp_path / "node.nft"
    path.write_text(example.replace("2 : 10.244.3.10 . 8080 }", "2 : 10.244.3.11 . 8080 }"))
    code, out, _ = run(capsys, "doctor", str(path), EXAMPLE, "--failed-only", "--no-walk")
    assert code == 1
    assert "shop/frontend:http (tcp): failed: endpoint-dnat" not in out
    assert re.search(r"shop/frontend:http \(tcp\): failed: cluster-endpoints: cluster endpoints "
                     r"missing from the rules: 10\.244\.3\.10:8080", out)


def test_cli_handles_in_json(capsys: pytest.CaptureFixture[str], dumps_dir: Path) -> None:
    path = dumps_dir / "nft" / "02-kubeadm132-flannel-kubeproxy-nft-handles-truncated.nft"
    code, out, _ = run(capsys, "doctor", str(path), "--json", "--no-walk", "--service", "home/http-server")
    data = json.loads(out)
    refs = [r for c in data["services"][0]["checks"] for r in c["rules"] if r["chain"]]
    assert refs and all("handle" in r for r in refs)


def test_cli_snapshot_with_the_table(capsys: pytest.CaptureFixture[str], tmp_path: Path, example: str) -> None:
    snap = tmp_path / "node.snap"
    snap.write_text(snapshot_text(nft_list_ruleset=example, notes=""))
    code, out, _ = run(capsys, "doctor", str(snap), "--failed-only")
    # The snapshot's iptables rules hold kube-proxy's IPVS-mode KUBE-SERVICES: named, not mixed in.
    assert code == 1
    assert out.splitlines()[0].startswith("node: warning: proxy-mode: nftables mode, but kube-proxy's "
                                          "iptables-mode chains are on this node too: iptables nat: "
                                          "KUBE-SERVICES")
    assert "shop/legacy-db:postgres (tcp): failed: endpoints" in out
    code, out, _ = run(capsys, "doctor", str(snap), "--json", "--service", "shop/ingress:http")
    data = json.loads(out)
    nodeport = next(c for c in data["services"][0]["checks"] if c["check"] == "walk-nodeport")
    assert nodeport["status"] == PASSED  # the snapshot knows the node's address 192.168.0.11
    # References count the snapshot file's lines, not the nft section's.
    lines = snap.read_text().split("\n")
    refs = [r for c in data["services"][0]["checks"] for r in c["rules"] if r["chain"]]
    assert refs
    for ref in refs:
        assert ref["text"] in lines[ref["line"] - 1], ref


@pytest.mark.parametrize("listing,message", [
    ("table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0;\n\t}\n}\n",
     "no table ip kube-proxy or ip6 kube-proxy in the listing"),
])
def test_cli_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path, listing: str, message: str) -> None:
    path = tmp_path / "other.nft"
    path.write_text(listing)
    code, out, err = run(capsys, "doctor", str(path))
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unknown_service(example: str) -> None:
    with pytest.raises(InputError, match="no Service port shop/nothing in the rules"):
        doctor(example, service="shop/nothing")
    report = doctor(example, service="shop/frontend:80", walk=False)
    assert [s.name for s in report.services] == ["shop/frontend:http"]
    assert all(f.check not in ("walk-split",) for f in report.services[0].findings)
    assert status(report, "shop/frontend:http", "firewall") == NOT_APPLICABLE


GOLDEN = REPO / "tests" / "golden" / "compile-nftables"


@pytest.mark.parametrize("case", sorted(p.parent.name for p in GOLDEN.glob("*/expected.list")))
def test_every_compiled_case_is_healthy(case: str) -> None:
    """What kube-proxy writes fails only where the cluster itself has a problem: a Service
    port without endpoints, or (shared-keys) two Services claiming one external IP:port."""
    flags = (GOLDEN / case / "flags").read_text().split()
    ips = [flags[i + 1] for i, f in enumerate(flags) if f == "--node-ip"]
    listing = parse_nft_text((GOLDEN / case / "expected.list").read_text(), source=case)
    families: list[str | None] = [f for f in ("ipv4", "ipv6")
                                  if (("ip", "ip6")[f == "ipv6"], "kube-proxy") in listing.tables]
    assert families
    for family in families:
        report = diagnose_nft(listing, family=family, local_ips=ips)
        found = {k: v for k, v in failures(report).items() if v != {"endpoints"}}
        if case == "shared-keys":
            assert found == {"default/a": {"entry"}}
        else:
            assert found == {}, found
        no_endpoints = [s for s in report.services if any(f.check == "endpoints" and f.status == FAILED
                                                          for f in s.findings)]
        assert all(any(f.check == "reject" and f.status == INFO for f in s.findings) or
                   any(f.check == "local-endpoints" for f in s.findings) for s in no_endpoints)


def test_flushed_stale_chains_are_no_service_ports() -> None:
    """A resync flushes the chains of Service ports that are gone; they are stale objects."""
    listing = parse_nft_text((GOLDEN / "resync" / "expected.list").read_text(), source="resync")
    report = diagnose_nft(listing)
    stale = next(f for f in report.node if f.check == "stale-objects")
    assert stale.status == INFO and "empty per-Service chain(s)" in stale.summary
    assert "default/web:http" not in [s.name for s in report.services]


def test_internal_local_policy_walks_to_the_local_endpoint() -> None:
    listing = parse_nft_text((GOLDEN / "itp-local" / "expected.list").read_text(), source="itp")
    report = diagnose_nft(listing, local_ips=["192.168.0.10"])
    walk = next(f for s in report.services if s.name == "data/gateway:http"
                for f in s.findings if f.check == "walk-split")
    assert walk.status == PASSED and "reaches its one endpoint" in walk.summary


def test_masquerade_bit_31_listed_as_a_prefix() -> None:
    listing = parse_nft_text((GOLDEN / "masquerade-bit" / "expected.list").read_text(), source="bit")
    report = diagnose_nft(listing, walk=False)
    masq = next(f for f in report.node if f.check == "masquerade")
    assert masq.status == PASSED and "0x80000000" in masq.summary
