"""``trace`` exit status for scripts: --expect, --expect-masquerade, 3 for UNKNOWN; and the
note on a restore payload whose chains nothing reaches."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_inputs_cli import CLUSTER, PACKET, dump, node_rules, run  # noqa: F401 (fixture)

from netproxy.trace.expect import parse_expectation

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("flags", "code"), [
    ((), 0),
    (("--expect", "accept"), 0),
    (("--expect", "10.244.1.10:8080,10.244.2.10:8080,10.244.3.10:8080"), 0),
    (("--expect", "10.244.1.10,10.244.2.10,10.244.3.10", "--expect-masquerade", "no"), 0),
    (("--expect", "drop"), 1),
    (("--expect", "reject,drop"), 1),
    (("--expect", "10.244.1.10:8080,10.244.2.10"), 1),
    (("--expect", "10.244.1.10:9999,10.244.2.10,10.244.3.10"), 1),
    (("--expect-masquerade", "yes"), 1),
])
def test_expect_exit_status(node_rules: Path, capsys: pytest.CaptureFixture[str],  # noqa: F811
                            flags: tuple[str, ...], code: int) -> None:
    got, out, err = run(capsys, "trace", "--rules", str(node_rules), *PACKET, *flags)
    assert got == code, err
    assert "3 endpoints, 33.3% each" in out  # the answer is printed either way
    assert (err == "") == (code == 0)


def test_expect_names_each_disagreeing_outcome(node_rules: Path,  # noqa: F811
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "trace", "--rules", str(node_rules), *PACKET,
                       "--expect", "10.244.1.10:8080,10.244.2.10:8080")
    assert code == 1
    assert err.splitlines() == [
        "netproxy: not as expected: outcome 3 (33.3%): ACCEPT, DNAT to 10.244.3.10:8080, "
        "not masqueraded; expected 10.244.1.10:8080,10.244.2.10:8080"]


def test_firewall_drop_expected(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("trace", CLUSTER, "--src", "172.16.0.9", "--dst", "203.0.113.10", "--dport", "443",
            "--brief")
    assert run(capsys, *args, "--expect", "drop")[0] == 0
    code, _, err = run(capsys, *args, "--expect", "accept")
    assert code == 1 and "outcome 1 (100%): DROP; expected accept" in err


def test_packet_sequence_names_the_packet(node_rules: Path, tmp_path: Path,  # noqa: F811
                                          capsys: pytest.CaptureFixture[str]) -> None:
    packets = tmp_path / "p.txt"
    packets.write_text("src=10.244.2.50 dst=10.96.100.10 dport=80\n"
                       "src=172.16.0.9 dst=203.0.113.10 dport=443\n")
    code, _, err = run(capsys, "trace", "--rules", str(node_rules), "--packets", str(packets),
                       "--brief", "--expect", "accept")
    assert code == 1
    assert err.splitlines() == ["netproxy: not as expected: packet 2, outcome 1 (100%): DROP; expected accept"]


def test_unknown_exits_three(capsys: pytest.CaptureFixture[str]) -> None:
    rules = dump("01-minik8s-flannel-docker.rules")
    args = ("trace", "--rules", rules, "--src", "10.244.0.5", "--dst", "10.96.0.1", "--dport", "443",
            "--brief", "--strict")
    code, out, _ = run(capsys, *args)
    assert code == 3 and "UNKNOWN" in out
    # an UNKNOWN outcome is not a disagreement; a definite one that disagrees is
    assert run(capsys, *args, "--expect", "accept")[0] == 3
    known = ("-i", "cni0", "-o", "eth0")
    assert run(capsys, *args, *known, "--expect", "accept")[0] == 0
    assert run(capsys, *args, *known, "--expect", "drop")[0] == 1


@pytest.mark.parametrize(("expect", "message"), [
    ("", "expected accept, drop, reject or ENDPOINT"),
    ("maybe", "'maybe' is neither accept, drop, reject nor an endpoint"),
    ("10.0.0.1:http", "bad port in '10.0.0.1:http'"),
])
def test_bad_expect_is_bad_input(node_rules: Path, capsys: pytest.CaptureFixture[str],  # noqa: F811
                                 expect: str, message: str) -> None:
    code, out, err = run(capsys, "trace", "--rules", str(node_rules), *PACKET, "--expect", expect)
    assert (code, out) == (2, "")
    assert err.startswith("netproxy: --expect: ") and message in err


def test_ipv6_endpoint_expectation() -> None:
    e = parse_expectation("[2001:db8::1]:80,2001:db8::2,accept", None)
    assert e.endpoints == (("2001:db8::1", 80), ("2001:db8::2", None))
    assert e.verdicts == frozenset({"ACCEPT"})


def test_help_documents_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "trace", "--help")
    assert code == 0
    assert "3 some outcome is UNKNOWN" in " ".join(out.split())
    assert "--expect-masquerade [yes|no]" in out


def test_restore_payload_on_its_own_gets_a_note(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    payload = tmp_path / "payload.restore"
    code, _, err = run(capsys, "compile", CLUSTER, "--format", "restore", "-o", str(payload))
    assert code == 0, err
    code, out, err = run(capsys, "trace", "--rules", str(payload), *PACKET)
    assert code == 0 and "accepted without DNAT" in out
    assert err.startswith(f"netproxy: note: {payload}: no built-in chain jumps to filter: "
                          "KUBE-SERVICES, KUBE-FORWARD, KUBE-NODEPORTS, KUBE-PROXY-FIREWALL and 1 more; ")
    assert "nat: KUBE-SERVICES, KUBE-POSTROUTING" in err and "trace the node's iptables-save" in err


def test_a_whole_dump_gets_no_such_note(node_rules: Path,  # noqa: F811
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "trace", "--rules", str(node_rules), *PACKET)
    assert code == 0 and err == ""


@pytest.mark.parametrize("path", sorted((REPO.parent / "shared" / "dumps").glob("*.rules")),
                         ids=lambda p: p.name)
def test_no_real_dump_is_called_unreached(path: Path) -> None:
    from netproxy.netfilter.reach import unreached_roots
    from netproxy.parser import read_rules

    assert unreached_roots(read_rules(path)) == {}
