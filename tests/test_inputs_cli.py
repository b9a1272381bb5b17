"""Every command recognises what it was given: it reads it, or says what it is and what to type."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from netproxy.cli import main

from conftest import DUMPS, FIXTURES

CLUSTER = str(FIXTURES / "example-cluster")
SERVICES = str(FIXTURES / "example-cluster" / "services.yaml")
CONFIG = str(FIXTURES / "example-cluster" / "kube-proxy-config.yaml")
PACKET = ("--src", "10.244.2.50", "--dst", "10.96.100.10", "--dport", "80", "--brief")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = 0
    try:
        main(list(args))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netproxy: "), err
    return lines[0]


@pytest.fixture
def node_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """The example cluster's node, compiled (an iptables-save dump)."""
    path = tmp_path / "node-1.rules"
    code, _, err = run(capsys, "compile", CLUSTER, "-o", str(path))
    assert code == 0, err
    return path


def dump(name: str) -> str:
    path = DUMPS / name
    if not path.exists():
        pytest.skip("real-world dumps not present beside the project")
    return str(path)


# --- trace --rules no longer answers about things that are not rules -----------------------

def test_trace_refuses_random_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello world\nthis is not a dump\n")
    code, out, err = run(capsys, "trace", "--rules", str(text), *PACKET)
    assert (code, out) == (2, "")
    assert one_error(err) == (f"netproxy: {text}:1: not an iptables-save dump, iptables-restore "
                              "payload or nft listing: 'hello world' (expected '*filter', '*nat', ... table lines "
                              "as iptables-save prints them)")


def test_doctor_reads_nft_ruleset(capsys: pytest.CaptureFixture[str]) -> None:
    """kube-proxy's nftables table is checked; a listing without it is refused, saying why."""
    nft = dump("nft/01-k3s-pi-kubeproxy-nft-complete.nft")
    code, out, err = run(capsys, "doctor", "--rules", nft, "--no-walk")
    assert code == 1 and out.startswith(f"netproxy doctor: {nft} (ipv4), ")
    other = dump("nft/07-rhel8-firewalld-libvirt.nft")
    code, out, err = run(capsys, "doctor", "--rules", other)
    assert (code, out) == (2, "")
    assert "no table ip kube-proxy or ip6 kube-proxy in the listing" in one_error(err)
    assert "netproxy trace reads any nft listing" in err


def test_trace_reads_nft_ruleset(capsys: pytest.CaptureFixture[str]) -> None:
    nft = dump("nft/01-k3s-pi-kubeproxy-nft-complete.nft")
    code, out, err = run(capsys, "trace", "--rules", nft, "--src", "10.42.1.5", "--dst",
                         "10.43.195.72", "--dport", "8000", "--brief")
    assert (code, err) == (0, "")
    assert "9 endpoints, 11.1% each" in out


def test_trace_refuses_cluster_json_and_says_what_to_type(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    cluster = tmp_path / "cluster.json"
    cluster.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "namespace": "b"}}]}))
    code, out, err = run(capsys, "trace", "--rules", str(cluster), *PACKET)
    assert (code, out) == (2, "")
    line = one_error(err)
    assert "this looks like Kubernetes objects (Service)" in line
    assert f"netproxy trace {cluster} --dst ..." in line


@pytest.mark.parametrize(("command", "flag"), [("trace", "--rules"), ("doctor", "--rules"),
                                               ("compile", "--existing-rules")])
def test_capture_and_config_given_as_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           command: str, flag: str) -> None:
    capture = tmp_path / "c.pcap"
    capture.write_bytes(b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(16))
    extra = [CLUSTER] if command == "compile" else []
    code, _, err = run(capsys, command, *extra, flag, str(capture))
    assert code == 2 and f"--pcap {capture}" in one_error(err)
    code, _, err = run(capsys, command, *extra, flag, CONFIG)
    assert code == 2 and f"give it with --config {CONFIG}" in one_error(err)


def test_dump_given_as_cluster_input_of_compile(node_rules: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "compile", str(node_rules))
    assert code == 2
    assert f"--existing-rules {node_rules}" in one_error(err)


def test_services_given_as_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "compile", CLUSTER, "--config", SERVICES)
    assert code == 2
    assert "this looks like Kubernetes objects (Service, EndpointSlice), not a KubeProxyConfiguration" \
        in one_error(err)


def test_trace_pcap_that_is_text(node_rules: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "trace", "--rules", str(node_rules), "--pcap", str(node_rules))
    assert code == 2
    assert "this looks like an iptables-save dump, not a packet capture" in one_error(err)


# --- paste damage ------------------------------------------------------------------------

def test_pasted_dump_is_repaired_with_a_note(node_rules: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    clean = run(capsys, "trace", "--rules", str(node_rules), *PACKET)
    pasted = tmp_path / "pasted.rules"
    pasted.write_text("$ sudo iptables-save\n```text\n" + node_rules.read_text() + "```\nroot@node-1:~# \n")
    code, out, err = run(capsys, "trace", "--rules", str(pasted), *PACKET)
    assert (code, out) == (clean[0], clean[1])
    assert err.splitlines() == [
        f"netproxy: note: {pasted}: ignored what a paste added: shell prompt (lines 1, "
        f"{len(node_rules.read_text().splitlines()) + 4}), markdown fence (lines 2, "
        f"{len(node_rules.read_text().splitlines()) + 3})"]


def test_prompt_between_two_pasted_tables(node_rules: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    text = node_rules.read_text()
    cut = text.index("*nat")
    pasted = tmp_path / "two.rules"
    pasted.write_text(text[:cut] + "$ sudo iptables-save -t nat\n" + text[cut:])
    code, out, err = run(capsys, "trace", "--rules", str(pasted), *PACKET)
    assert code == 0 and "3 endpoints" in out
    assert "shell prompt (line" in err


def test_other_text_inside_a_dump_is_refused_with_its_line(node_rules: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    text = node_rules.read_text()
    cut = text.index("*nat")
    bad = tmp_path / "bad.rules"
    bad.write_text(text[:cut] + "and then the nat table:\n" + text[cut:])
    line = text[:cut].count("\n") + 1
    code, out, err = run(capsys, "trace", "--rules", str(bad), *PACKET)
    assert (code, out) == (2, "")
    assert one_error(err) == f"netproxy: {bad}:{line}:1: cannot read line: 'and then the nat table:'"


def test_crlf_dump_reads_like_the_original(node_rules: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    clean = run(capsys, "trace", "--rules", str(node_rules), *PACKET)
    crlf = tmp_path / "crlf.rules"
    crlf.write_bytes(node_rules.read_bytes().replace(b"\n", b"\r\n"))
    assert run(capsys, "trace", "--rules", str(crlf), *PACKET) == clean


def test_pasted_yaml_is_repaired(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = run(capsys, "compile", SERVICES, "--hostname-override", "node-1")
    pasted = tmp_path / "svc.yaml"
    pasted.write_text("$ kubectl get svc,endpointslices -A -o yaml\n```yaml\n"
                      + Path(SERVICES).read_text() + "```\n")
    code, out, err = run(capsys, "compile", str(pasted), "--hostname-override", "node-1")
    assert (code, out) == (0, clean[1])
    assert "ignored what a paste added: shell prompt (line 1), markdown fence (lines 2," in err


def test_random_text_as_cluster_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello world\n")
    code, _, err = run(capsys, "compile", str(text))
    assert code == 2
    assert one_error(err) == f"netproxy: {text}:1: not Kubernetes objects (YAML or JSON): 'hello world'"


# --- positional versus --rules, and diff's argument order -----------------------------------

def test_trace_takes_a_dump_given_as_input(node_rules: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "trace", str(node_rules), *PACKET) == \
        run(capsys, "trace", "--rules", str(node_rules), *PACKET)


def test_trace_takes_a_dump_on_stdin_as_input(node_rules: Path) -> None:
    proc = subprocess.run(["python3", "-m", "netproxy", "trace", "-", *PACKET],
                          input=node_rules.read_text(), capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    assert "3 endpoints, 33.3% each" in proc.stdout


def test_doctor_takes_a_dump_given_as_input(node_rules: Path, capsys: pytest.CaptureFixture[str]) -> None:
    positional = run(capsys, "doctor", str(node_rules), "--service", "shop/frontend")
    flagged = run(capsys, "doctor", "--rules", str(node_rules), "--service", "shop/frontend")
    assert positional == flagged and positional[0] == 0


def test_doctor_dump_and_cluster_as_inputs(node_rules: Path, capsys: pytest.CaptureFixture[str]) -> None:
    positional = run(capsys, "doctor", str(node_rules), CLUSTER, "--json")
    flagged = run(capsys, "doctor", "--rules", str(node_rules), CLUSTER, "--json")
    assert positional == flagged
    assert json.loads(positional[1])["node"][-1]["check"] == "cluster-services"


def test_two_dumps_for_trace(node_rules: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "trace", "--rules", str(node_rules), str(node_rules), *PACKET)
    assert code == 2 and "reads one ruleset" in one_error(err)


def test_diff_expected_with_arguments_swapped(node_rules: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "diff", "--expected", str(node_rules), CLUSTER)
    assert (code, out) == (2, "")
    assert one_error(err) == (f"netproxy: {node_rules}: the node's dump comes last, after the "
                              f"cluster INPUTS: netproxy diff --expected {CLUSTER} {node_rules}")


def test_diff_of_cluster_and_dump_says_expected(node_rules: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "diff", CLUSTER, str(node_rules))
    assert code == 2
    assert one_error(err).endswith(f"netproxy diff --expected {CLUSTER} {node_rules}")


# --- flag names agree ---------------------------------------------------------------------

def test_save_takes_family_and_keeps_ipv6_hidden(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "save", "--help")
    assert code == 0
    assert "--family [ipv4|ipv6]" in out and "--ipv6" not in out
    assert "save only reads" in out
    code, _, err = run(capsys, "save", "--netns", "np-inputs-absent-0", "--ipv6", "--family", "ipv4")
    assert code == 2 and "contradict" in err


def test_trace_help_offers_netns(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "trace", "--help")
    assert code == 0 and "--netns NAME" in out and "--iptables" in out


def test_trace_netns_with_rules_is_refused(node_rules: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "trace", "--rules", str(node_rules), "--netns", "np-inputs-x", *PACKET)
    assert code == 2 and "either --rules" in one_error(err)


@pytest.mark.netns
def test_trace_netns_reads_the_live_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from netproxy.backend import netns

    node_rules = tmp_path / "node-1.rules"
    code, _, err = run(capsys, "compile", CLUSTER, "--no-nfacct", "-o", str(node_rules))
    assert code == 0, err
    with netns.Namespaces("inputs") as made:
        name = made.make()
        subprocess.run(["ip", "netns", "exec", name, "iptables-restore"], input=node_rules.read_text(),
                       text=True, check=True, capture_output=True)
        live = run(capsys, "trace", "--netns", name, *PACKET)
    assert live[0] == 0, live[2]
    assert live[1] == run(capsys, "trace", "--rules", str(node_rules), *PACKET)[1]
    assert "3 endpoints, 33.3% each" in live[1]
