"""The compile command as a user runs it: output file, determinism, bad input -> exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "fixtures" / "example-cluster"
GOLDEN = REPO / "tests" / "golden" / "compile"


def run(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netproxy", "compile", *args], input=stdin,
                          capture_output=True, text=True, cwd=cwd or REPO)


def test_output_file_and_determinism(tmp_path: Path) -> None:
    out = tmp_path / "rules.txt"
    first = run(str(EXAMPLE), "-o", str(out))
    assert first.returncode == 0 and first.stdout == ""
    again = run(str(EXAMPLE))
    assert out.read_text() == again.stdout == (GOLDEN / "example-cluster" / "expected.save").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["rules.txt"]  # no temp file left behind


def test_stdin_input() -> None:
    text = (GOLDEN / "spec-worked-example" / "inputs" / "cluster.yaml").read_text()
    proc = run("-", "--hostname-override", "node-1", "--cluster-cidr", "10.244.0.0/16",
               "--node-ip", "192.168.0.10", "--no-nfacct", "--format", "restore", stdin=text)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (GOLDEN / "spec-worked-example" / "expected.restore").read_text()


@pytest.mark.parametrize("args, message", [
    ((), "no inputs: give YAML/JSON files, directories, or - for stdin"),
    (("missing.yaml",), "missing.yaml: no such file or directory"),
    ((str(EXAMPLE), "--detect-local-mode", "Magic"), "--detect-local-mode: unknown mode 'Magic'"),
    ((str(EXAMPLE), "--cluster-cidr", "10.244.0.0/99"), "--cluster-cidr: invalid CIDR '10.244.0.0/99'"),
    ((str(EXAMPLE), "--node-ip", "1.2.3"), "--node-ip: invalid IP address '1.2.3'"),
    ((str(EXAMPLE), "--nodeport-addresses", "primary,10.0.0.0/8"),
     "--nodeport-addresses: 'primary' must be the only entry"),
    ((str(EXAMPLE), "--detect-local-mode", "BridgeInterface"),
     "--pod-bridge-interface: required when detectLocalMode is BridgeInterface"),
    ((str(EXAMPLE), "--config", "nope.yaml"), "nope.yaml: cannot read"),
])
def test_bad_input_one_line_exit_2(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    proc = run(*args, "-o", str(out))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert message in lines[0]
    assert not out.exists() and proc.stdout == ""


def test_bad_object_names_file_document_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((GOLDEN / "spec-worked-example" / "inputs" / "cluster.yaml").read_text()
                   .replace("port: 8080, protocol: TCP, nodePort: 30080", "port: 8080, protocol: TCP, nodePort: 99999"))
    out = tmp_path / "out.txt"
    out.write_text("previous content\n")
    proc = run(str(bad), "-o", str(out))
    assert proc.returncode == 2
    assert proc.stderr == (f"netproxy: {bad}, document 3: spec.ports[0].nodePort: "
                           "invalid port 99999 (want 1-65535)\n")
    assert out.read_text() == "previous content\n"  # an existing output is left untouched


def test_bad_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "kp.yaml"
    cfg.write_text("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
                   "iptables:\n  masqueradeBit: 40\n")
    proc = run(str(EXAMPLE), "--config", str(cfg))
    assert proc.returncode == 2
    assert proc.stderr == f"netproxy: {cfg}, document 1: iptables.masqueradeBit: must be 0-31, not 40\n"
    cfg.write_text("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\n")
    proc = run(str(EXAMPLE), "--config", str(cfg))
    assert proc.returncode == 2 and "mode: proxy mode 'ipvs' is not modelled" in proc.stderr


def test_unwritable_output(tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir" / "out.txt"
    proc = run(str(EXAMPLE), "-o", str(target))
    assert proc.returncode == 2 and "cannot write" in proc.stderr and "Traceback" not in proc.stderr


def test_help_lists_kube_proxy_flags() -> None:
    proc = run("--help")
    assert proc.returncode == 0
    for flag in ("--hostname-override", "--cluster-cidr", "--detect-local-mode", "--pod-bridge-interface",
                 "--pod-interface-name-prefix", "--masquerade-all", "--iptables-masquerade-bit",
                 "--iptables-localhost-nodeports", "--nodeport-addresses", "--conntrack-tcp-be-liberal",
                 "--node-ip", "--random-fully", "--nfacct", "--family", "--format", "--config"):
        assert flag in proc.stdout


def test_build_ruleset_and_node_ips_for_other_commands() -> None:
    from netproxy.commands.cluster_options import build_ruleset, node_local_ips

    params = {"inputs": (str(EXAMPLE),), "family": "ipv4", "random_fully": True, "nfacct": True}
    ruleset = build_ruleset(params)
    assert list(ruleset.tables) == ["mangle", "filter", "nat"]
    assert "KUBE-SVC-PY4JZH2ITZYEO4CN" in ruleset.tables["nat"].chains
    assert node_local_ips(params) == ["127.0.0.1", "192.168.0.11"]  # from the Node object
    assert node_local_ips({**params, "node_ips": ("10.0.0.1", "fd00::1"), "family": "ipv6"}) == ["::1", "fd00::1"]


def test_iptables_version_changes_only_the_recent_mask() -> None:
    case = GOLDEN / "session-affinity"
    args = ("inputs/", "--hostname-override", "node-1", "--node-ip", "192.168.0.10",
            "--cluster-cidr", "10.244.0.0/16")
    old = run(*args, cwd=case).stdout
    new = run(*args, "--iptables-version", "1.8.10", cwd=case).stdout
    assert old == (case / "expected.save").read_text()
    assert new == old.replace(" --mask 255.255.255.255", "") and new != old
