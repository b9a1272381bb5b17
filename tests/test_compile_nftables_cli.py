"""nftables mode from the command line: mode selection, flags that belong to one mode,
dual-stack output, and the same one-line errors (exit code 2) as iptables mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = Path(__file__).resolve().parent / "golden" / "compile-nftables" / "spec-worked-example" / "inputs"


def run(*args: str, command: str = "compile") -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "netproxy", command, *args], capture_output=True,
                          text=True, cwd=REPO)
    return proc.returncode, proc.stdout, proc.stderr


def test_list_is_the_default_format_and_transaction_the_other() -> None:
    code, out, _ = run(str(EXAMPLE), "--proxy-mode", "nftables")
    assert code == 0 and out.startswith("table ip kube-proxy {\n\tcomment \"rules for kube-proxy\"\n")
    code, out, _ = run(str(EXAMPLE), "--proxy-mode", "nftables", "--format", "transaction")
    assert code == 0 and out.startswith('add table ip kube-proxy { comment "rules for kube-proxy" ; }\n')


def test_iptables_stays_the_default_mode() -> None:
    code, out, _ = run(str(EXAMPLE), "--cluster-cidr", "10.244.0.0/16")
    assert code == 0 and out.startswith("*")


def test_one_endpoint_forms_by_version() -> None:
    def local_chain(*extra: str) -> str:
        code, out, err = run(str(EXAMPLE), "--proxy-mode", "nftables", "--format", "transaction", *extra)
        assert code == 0, err
        return next(line for line in out.splitlines()
                    if line.startswith("add rule ip kube-proxy local-LAZWMU44"))

    assert local_chain().endswith("meta l4proto tcp dnat to 10.244.0.5:5678")
    assert local_chain("--single-endpoint-dnat", "addrport").endswith(
        "meta l4proto tcp dnat ip addr . port to 10.244.0.5 . 5678")
    assert local_chain("--kube-proxy-version", "1.36").endswith(
        "meta l4proto tcp dnat ip addr . port to numgen random mod 1 map { 0 : 10.244.0.5 . 5678 }")


def test_output_file_is_written_atomically(tmp_path: Path) -> None:
    target = tmp_path / "node.nft"
    code, out, _ = run(str(EXAMPLE), "--proxy-mode", "nftables", "-o", str(target))
    assert code == 0 and out == "" and target.read_text().startswith("table ip kube-proxy {")


@pytest.mark.parametrize(("args", "message"), [
    (["--proxy-mode", "nftables", "--format", "restore"],
     "netproxy: --format: --format restore is an iptables-mode format; nftables mode writes list (default) or transaction\n"),
    (["--format", "transaction"],
     "netproxy: --format: --format transaction is an nftables-mode format (add --proxy-mode nftables); iptables mode writes save (default) or restore\n"),
    (["--kube-proxy-version", "1.36"],
     "netproxy: --kube-proxy-version: only in nftables mode (add --proxy-mode nftables)\n"),
    (["--family", "dual"],
     "netproxy: --family: both families at once only in nftables mode (netproxy compile --proxy-mode nftables); give --family ipv4 or ipv6\n"),
    (["--proxy-mode", "nftables", "--service-cidr", "10.96.0.0/40"],
     "netproxy: --service-cidr: invalid CIDR '10.96.0.0/40'\n"),
    (["--proxy-mode", "nftables", "--feature-gates", "KubeProxyNFTablesLocalhostNodePorts"],
     "netproxy: --feature-gates: 'KubeProxyNFTablesLocalhostNodePorts' is not NAME=true or NAME=false\n"),
    (["--proxy-mode", "nftables", "--kube-proxy-version", "1.36", "--single-endpoint-dnat", "addrport"],
     "netproxy: --single-endpoint-dnat: 1.36 writes one-endpoint services as a numgen map; the flag is for 1.37\n"),
])
def test_bad_flags_are_one_line_errors(args: list[str], message: str) -> None:
    code, out, err = run(str(EXAMPLE), *args)
    assert (code, out, err) == (2, "", message)


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_bad_input_gives_the_same_error_in_both_modes(mode: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad-svc.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: {namespace: a, name: b}\n"
                   "spec:\n  clusterIP: 10.96.0.300\n  ports: [{port: 80}]\n")
    target = tmp_path / "out"
    code, out, err = run(str(bad), "--proxy-mode", mode, "-o", str(target))
    assert (code, out) == (2, "")
    assert err == f"netproxy: {bad}, document 1: spec.clusterIP: invalid IP address '10.96.0.300'\n"
    assert not target.exists()


def test_existing_rules_must_be_an_nft_listing(tmp_path: Path) -> None:
    dump = tmp_path / "node.rules"
    dump.write_text("*nat\n:KUBE-SERVICES - [0:0]\nCOMMIT\n")
    code, out, err = run(str(EXAMPLE), "--proxy-mode", "nftables", "--existing-rules", str(dump))
    assert (code, out) == (2, "")
    assert err == (f"netproxy: {dump}: not an nft listing; in nftables mode give the node's "
                   "'nft list table ip kube-proxy' (or 'nft list ruleset') output\n")
    broken = tmp_path / "node.nft"
    broken.write_text("table ip kube-proxy {\n\tchain x {\n\t\tbogus rule here\n")
    code, out, err = run(str(EXAMPLE), "--proxy-mode", "nftables", "--existing-rules", str(broken))
    assert (code, out, err) == (2, "", f"netproxy: {broken}:3:3: unknown statement 'bogus'\n")


def test_a_bad_service_cidr_object_names_its_field(tmp_path: Path) -> None:
    bad = tmp_path / "cidr.yaml"
    bad.write_text("apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata: {name: x}\n"
                   "spec: {cidrs: [10.96.0.0/16, banana]}\n")
    code, _, err = run(str(bad), "--proxy-mode", "nftables")
    assert code == 2 and err == f"netproxy: {bad}, document 1: spec.cidrs[1]: invalid CIDR 'banana'\n"


def test_other_commands_refuse_a_configuration_in_nftables_mode(tmp_path: Path) -> None:
    config = tmp_path / "kp.yaml"
    config.write_text("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
                      "mode: nftables\n")
    # doctor works on iptables-mode rules; trace follows the configuration's mode.
    rules = tmp_path / "node.rules"
    code, _, err = run(str(EXAMPLE), "-o", str(rules))
    assert code == 0, err
    code, _, err = run("--rules", str(rules), str(EXAMPLE), "--config", str(config),
                       command="doctor")
    assert code == 2
    assert "nftables mode" in err and err.endswith("\n") and err.count("\n") == 1
    code, out, err = run(str(EXAMPLE), "--config", str(config), "--src", "10.244.1.1", "--dst",
                         "10.96.10.10", "--dport", "80", "--brief", command="trace")
    assert code == 0, err
    assert "2 endpoints, 50% each" in out
