"""``netproxy doctor`` end to end: exit codes, JSON, and the comparison with cluster objects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from netproxy.cli import main

DATA = Path(__file__).resolve().parent / "data" / "doctor"
NODE = ["--hostname-override", "node-1", "--cluster-cidr", "10.244.0.0/16"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the CLI as the console script does: (exit code, stdout, stderr)."""
    code = 0
    try:
        main(list(args))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def healthy_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / "node-1.rules"
    code, _, err = run(capsys, "compile", str(DATA / "healthy.yaml"), *NODE, "-o", str(out))
    assert code == 0, err
    return out


def edited_cluster(tmp_path: Path, change) -> Path:
    """A copy of healthy.yaml with ``change(docs)`` applied."""
    docs = list(yaml.safe_load_all((DATA / "healthy.yaml").read_text()))
    change(docs)
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


def by_check(data: dict, service: str) -> dict[str, dict]:
    svc = next(s for s in data["services"] if s["service"] == service)
    return {c["check"]: c for c in svc["checks"]}


def test_healthy_exit_zero_and_text(capsys: pytest.CaptureFixture[str], healthy_rules: Path) -> None:
    code, out, _ = run(capsys, "doctor", "--rules", str(healthy_rules))
    assert code == 0
    assert out.splitlines()[0] == (
        f"netproxy doctor: {healthy_rules} (ipv4), 2 Service port(s): 22 passed, 0 failed, "
        "3 not applicable")
    assert "default/web:http (tcp): passed" in out
    assert "  [pass] probabilities         KUBE-SVC-CDGGSHYLG3RE2FKL: 3 ways, 33.33% each" in out


def test_failure_exit_one_with_reason(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "doctor", "--rules", str(DATA / "missing-masquerade.rules"))
    assert code == 1
    assert "  [FAIL] masquerade            packets marked 0x4000 are not masqueraded" in out
    assert "         why: Connections kube-proxy marks for SNAT" in out


def test_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "doctor", "--rules", str(DATA / "uneven-probabilities.rules"),
                       "--service", "default/web", "--json")
    assert code == 1
    data = json.loads(out)
    assert data["status"] == "failed"
    assert [s["service"] for s in data["services"]] == ["default/web:http"]
    probs = by_check(data, "default/web:http")["probabilities"]
    assert probs["status"] == "failed"
    assert probs["rules"][0] == {
        "table": "nat", "chain": "KUBE-SVC-CDGGSHYLG3RE2FKL", "line": 89,
        "text": '-A KUBE-SVC-CDGGSHYLG3RE2FKL -m comment --comment "default/web:http -> '
                '10.244.1.5:8080" -m statistic --mode random --probability 0.50000000000 '
                "-j KUBE-SEP-AFGSLHOD2HFNCBX4"}
    assert sum(data["counts"].values()) == len(data["node"]) + len(data["services"][0]["checks"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give the node's rules: --rules DUMP"),
        (["--rules", "/nonexistent/dump"], "/nonexistent/dump: cannot read"),
        (["--rules", "RULES", "--service", "web"], "--service: expected NS/NAME[:PORT], got 'web'"),
        (["--rules", "RULES", "--service", "default/nope"], "no Service port default/nope in the rules"),
        (["--rules", "RULES", "/nonexistent/cluster.yaml"], "/nonexistent/cluster.yaml"),
        (["--rules", "EMPTY"], "empty.rules: empty file"),
        (["--rules", "RULES", "--node-ip", "10.0.0.999"], "--node-ip: invalid IP address '10.0.0.999'"),
        (["--rules", "YAML"], "healthy.yaml: this looks like Kubernetes objects"),
    ],
)
def test_bad_input_exit_two(capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str],
                            message: str) -> None:
    empty = tmp_path / "empty.rules"
    empty.write_text("")
    files = {"RULES": str(DATA / "old-xlb.rules"), "EMPTY": str(empty), "YAML": str(DATA / "healthy.yaml")}
    args = [files.get(a, a) for a in args]
    code, out, err = run(capsys, "doctor", *args)
    assert code == 2
    assert out == ""
    assert err.startswith("netproxy: ") and message in err and len(err.splitlines()) == 1


def test_matches_its_cluster(capsys: pytest.CaptureFixture[str], healthy_rules: Path) -> None:
    code, out, _ = run(capsys, "doctor", "--rules", str(healthy_rules), str(DATA / "healthy.yaml"),
                       *NODE, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["node"][-1]["check"] == "cluster-services"
    assert data["node"][-1]["status"] == "passed"
    web = by_check(data, "default/web:http")
    assert {web[c]["status"] for c in ("cluster-endpoints", "cluster-addresses",
                                       "cluster-probabilities")} == {"passed"}


def test_endpoint_gone_from_the_cluster(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                        healthy_rules: Path) -> None:
    def drop_endpoint(docs: list) -> None:
        slice_ = next(d for d in docs if d["metadata"]["name"] == "web-abc12")
        slice_["endpoints"] = [e for e in slice_["endpoints"] if e["addresses"] != ["10.244.1.6"]]

    cluster = edited_cluster(tmp_path, drop_endpoint)
    code, out, _ = run(capsys, "doctor", "--rules", str(healthy_rules), str(cluster), *NODE, "--json")
    assert code == 1
    web = by_check(json.loads(out), "default/web:http")
    assert web["cluster-endpoints"]["summary"] == (
        "cluster endpoints in the rules that no longer exist: 10.244.1.6:8080")
    assert web["cluster-probabilities"]["summary"] == (
        "KUBE-SVC-CDGGSHYLG3RE2FKL splits over 3 endpoint rule(s), the cluster objects give 2")
    assert web["probabilities"]["status"] == "passed"  # the rules alone look fine


def test_endpoint_missing_from_the_rules(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                         healthy_rules: Path) -> None:
    def add_endpoint(docs: list) -> None:
        slice_ = next(d for d in docs if d["metadata"]["name"] == "web-abc12")
        slice_["endpoints"].append({"addresses": ["10.244.3.3"], "nodeName": "node-3",
                                    "conditions": {"ready": True}})

    cluster = edited_cluster(tmp_path, add_endpoint)
    code, out, _ = run(capsys, "doctor", "--rules", str(healthy_rules), str(cluster), *NODE, "--json")
    assert code == 1
    web = by_check(json.loads(out), "default/web:http")
    assert web["cluster-endpoints"]["summary"] == "cluster endpoints missing from the rules: 10.244.3.3:8080"


def test_node_port_the_rules_do_not_know(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                         healthy_rules: Path) -> None:
    def move_node_port(docs: list) -> None:
        echo = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "echo")
        echo["spec"]["ports"][0]["nodePort"] = 30081

    cluster = edited_cluster(tmp_path, move_node_port)
    code, out, _ = run(capsys, "doctor", "--rules", str(healthy_rules), str(cluster), *NODE, "--json")
    assert code == 1
    echo = by_check(json.loads(out), "default/echo")
    assert echo["cluster-addresses"]["summary"] == "addresses the rules do not know: node port 30081"
    assert echo["cluster-addresses"]["details"] == ["addresses the Service no longer has: node port 30080"]


def test_load_balancer_ip_the_rules_do_not_know(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                healthy_rules: Path) -> None:
    def give_lb_ip(docs: list) -> None:
        echo = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "echo")
        echo["spec"]["type"] = "LoadBalancer"
        echo["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.99"}]}}

    cluster = edited_cluster(tmp_path, give_lb_ip)
    code, out, _ = run(capsys, "doctor", "--rules", str(healthy_rules), str(cluster), *NODE,
                       "--service", "default/echo", "--json")
    assert code == 1
    echo = by_check(json.loads(out), "default/echo")
    assert echo["cluster-addresses"]["summary"] == (
        "addresses the rules do not know: load-balancer IP 203.0.113.99:8080")


def test_deleted_service_leaves_stale_rules(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                            healthy_rules: Path) -> None:
    def delete_web(docs: list) -> None:
        docs[:] = [d for d in docs if d["metadata"]["name"] not in ("web", "web-abc12")]

    cluster = edited_cluster(tmp_path, delete_web)
    code, out, _ = run(capsys, "doctor", "--rules", str(healthy_rules), str(cluster), *NODE, "--json")
    assert code == 1
    data = json.loads(out)
    node = data["node"][-1]
    assert node["summary"] == "1 stale, 0 missing Service port(s)"
    assert node["details"] == [
        "rules for Service ports not in the cluster objects: default/web:http (tcp)",
        "stale chains of default/web:http (tcp): KUBE-SVC-CDGGSHYLG3RE2FKL, KUBE-SEP-2RIJ5GIYXEFH6G4D, "
        "KUBE-SEP-AFGSLHOD2HFNCBX4, KUBE-SEP-F7BHZ7WL3PFYMSRY"]
    web = by_check(data, "default/web:http")
    assert web["cluster-endpoints"]["summary"] == (
        "the cluster objects have no such Service port: these rules are stale")


def test_no_walk_leaves_out_the_traced_checks(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "doctor", "--rules", str(DATA / "uneven-probabilities.rules"),
                       "--no-walk", "--json")
    assert code == 1
    checks = {c["check"] for s in json.loads(out)["services"] for c in s["checks"]}
    assert "probabilities" in checks and not {"walk-split", "walk-hairpin"} & checks


def test_failed_only_one_line_per_service(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "doctor", "--rules", str(DATA / "uneven-probabilities.rules"), "--failed-only")
    assert code == 1
    assert out.splitlines() == [
        "default/web:http (tcp): failed: probabilities: KUBE-SVC-CDGGSHYLG3RE2FKL: rule 1 of 3 has "
        "probability 0.50000000000, expected 1/3 (0.3333333333) [+1 more: walk-split]"]
    code, out, err = run(capsys, "doctor", "--rules", str(DATA / "uneven-probabilities.rules"),
                         "--failed-only", "--json")
    assert code == 2 and "--failed-only" in err


def test_brief_leaves_out_checks_that_do_not_apply(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "doctor", "--rules", str(DATA / "old-xlb.rules"), "--node-ip",
                       "192.168.0.10", "--brief")
    # A Local policy without a local endpoint is by design: info, exit code 0.
    assert code == 0
    assert "[n/a ]" not in out
    assert ("  [info] local-endpoints       no local endpoint here: external traffic to this node is "
            "dropped, by design") in out
    assert "         - kube-proxy's DROP rules" not in out  # brief: no details for info


def test_cluster_cidr_flag_picks_the_pod_source(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "doctor", "--rules", str(DATA / "forward-drop.rules"), "--service",
                       "default/web", "--cluster-cidr", "10.244.64.0/18", "--json")
    walk = by_check(json.loads(out), "default/web:http")["walk-split"]
    assert walk["summary"].startswith("from a pod (10.244.64.5)")
    code, _, err = run(capsys, "doctor", "--rules", str(DATA / "forward-drop.rules"), "--cluster-cidr", "10.0.0/8")
    assert code == 2 and "--cluster-cidr" in err


def test_failed_only_names_the_node_and_exit_code_ignores_warnings(
        capsys: pytest.CaptureFixture[str], dumps_dir: Path) -> None:
    code, out, _ = run(capsys, "doctor", "--rules", str(DATA / "missing-masquerade.rules"), "--failed-only")
    assert code == 1
    assert out.splitlines()[0] == "node: failed: masquerade: packets marked 0x4000 are not masqueraded"
    code, out, _ = run(capsys, "doctor", "--rules",
                       str(dumps_dir / "13-kubeproxy16-externalip-docker-redacted.rules"), "--failed-only")
    assert code == 0  # a warning is not a failure
    assert out.startswith("default/kubernetes:https (tcp): warning: endpoint-dnat: cannot check ")
