"""Inputs that used to end in a traceback (or a wrong answer) end in one clean line.

Each case was found by mutating real inputs (the example cluster, the dumps beside the
project); the class of each is also covered by the property-based suite
(tests/test_robust_properties.py). A clean end is exit 0, 1 or 2; with 2, one line on stderr
that starts with ``netproxy:`` and no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netproxy.fileio import write_atomic
from netproxy.textsafe import ESCAPE, cut, digits, shown

from conftest import DUMPS, FIXTURES, REPO

CLUSTER = str(FIXTURES / "example-cluster")
SERVICES = FIXTURES / "example-cluster" / "services.yaml"


def cli(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "netproxy", *args], input=stdin,
                          capture_output=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, **(env or {})})


def clean_error(result: subprocess.CompletedProcess[bytes], *parts: str) -> str:
    """The one-line message of an exit-2 result, checked to hold every one of ``parts``."""
    err = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, (result.returncode, err[-2000:])
    lines = [line for line in err.splitlines()
             if not line.startswith(("netproxy: note:", "netproxy: warning:"))]
    assert len(lines) == 1 and lines[0].startswith("netproxy: "), err[-2000:]
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def dump(name: str) -> Path:
    path = DUMPS / name
    if not path.exists():
        pytest.skip("real-world dumps not present beside the project")
    return path


DUMP = "01-minik8s-flannel-docker.rules"


# --- tables, counters, captures, packets -----------------------------------------------------

@pytest.mark.parametrize("table", ["NAT", "é"])
def test_unknown_table_header_is_one_line(tmp_path: Path, table: str) -> None:
    text = dump(DUMP).read_text().replace("*nat", f"*{table}", 1)
    bad = tmp_path / "bad.rules"
    bad.write_text(text)
    good = str(dump(DUMP))
    for args in (["trace", "--rules", str(bad), "--src", "10.0.0.1", "--dst", "10.96.0.1",
                  "--dport", "443"], ["diff", str(bad), good], ["diff", "--expected", CLUSTER, str(bad)],
                 ["doctor", "--rules", str(bad)]):
        clean_error(cli(*args), "bad.rules:", f"unknown table {table!r}")


def test_counters_that_are_not_numbers_do_not_reach_the_generated_builder(tmp_path: Path) -> None:
    rules = tmp_path / "c.rules"
    # the first line makes a plan for the shape; the next ones have the same shape, bad counters
    rules.write_text("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                     "-A INPUT -s 10.0.0.1/32 -c 1 2 -j ACCEPT\n-A INPUT -s 10.0.0.2/32 -c 1x 2 -j ACCEPT\n"
                     "-A INPUT -s 10.0.0.3/32 -c \u00b2 2 -j ACCEPT\nCOMMIT\n")
    for args in (["doctor", "--rules", str(rules)], ["diff", str(rules), str(rules)]):
        result = cli(*args)
        assert result.returncode in (0, 1), result.stderr
        assert b"Traceback" not in result.stderr
    clean_error(cli("diff", "--strict", str(rules), str(rules)), "c.rules:6", "invalid counters '1 1x'"[:17])
    clean_error(cli("trace", "--strict", "--rules", str(rules), "--src", "10.0.0.9", "--dst",
                    "10.0.0.8", "--dport", "1"), "c.rules:6")


def test_not_a_capture_and_truncated_captures(tmp_path: Path) -> None:
    scapy = pytest.importorskip("scapy.all")
    good = tmp_path / "good.pcap"
    scapy.wrpcap(str(good), [scapy.Ether() / scapy.IP(src="10.0.0.1", dst="10.96.0.1")
                             / scapy.TCP(sport=1000 + i, dport=443, flags="S") for i in range(3)])
    data = good.read_bytes()
    rules = str(dump(DUMP))
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"\x00\x01\x02 not a capture \xff" * 8)
    clean_error(cli("trace", "--rules", rules, "--pcap", str(garbage)), "garbage.pcap")
    for size in (0, 10, 24 + 16 + 30, len(data) - 30, len(data) - 5):
        cut_file = tmp_path / "cut.pcap"
        cut_file.write_bytes(data[:size])
        result = cli("trace", "--rules", rules, "--pcap", str(cut_file))
        if result.returncode == 2:  # the packets before the cut may be traced first
            assert result.stderr.decode().count("\n") == 1, result.stderr
            assert result.stderr.startswith(b"netproxy: ") and b"cut.pcap" in result.stderr
        else:
            assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("line,message", [
    ('{"src": 5, "dst": "10.96.0.1", "dport": 80}', "src: must be text, not 5"),
    ('{"src": "10.0.0.1", "dst": ["10.96.0.1"], "dport": 80}', "dst: must be text"),
    ('{"src": "10.0.0.1", "dst": "10.96.0.1", "dport": "\u00b2"}', "dport: not a number"),
    ('src=10.0.0.1 dst=10.96.0.1 dport=\u0663', "dport: not a number"),
    ('src=10.0.0.1 dst=10.96.0.1 dport=80 time=nan', "time: not a number"),
])
def test_packets_file_values_of_the_wrong_kind(tmp_path: Path, line: str, message: str) -> None:
    packets = tmp_path / "p.txt"
    packets.write_text(line + "\n")
    clean_error(cli("trace", "--rules", str(dump(DUMP)), "--packets", str(packets)), "p.txt:1", message)


# --- Kubernetes objects: numbers, names, addresses ---------------------------------------------

def _service(**changes: object) -> dict[str, object]:
    svc: dict[str, object] = {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "ns"},
        "spec": {"clusterIP": "10.96.0.5", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}
    for path, value in changes.items():
        node: dict[str, object] = svc
        *parents, last = path.split("__")
        for key in parents:
            node = node[key] if not key.isdigit() else node[int(key)]  # type: ignore[index, assignment]
        node[last] = value
    return svc


@pytest.mark.parametrize("changes,where,message", [
    ({"spec__ports": [{"port": "8x"}]}, "spec.ports[0].port", "invalid port '8x'"),
    ({"spec__ports": [{"port": "\u00b2"}]}, "spec.ports[0].port", "invalid port"),
    ({"spec__ports": [{"port": "\u0663"}]}, "spec.ports[0].port", "invalid port"),
    ({"spec__ports": [{"port": 80, "name": "HTTP"}]}, "spec.ports[0].name", "DNS-1123 label"),
    ({"spec__ports": [{"port": 80, "targetPort": [1, 2]}]}, "spec.ports[0].targetPort", "invalid port"),
    ({"spec__ports": [{"port": 80, "targetPort": "web\nx"}]}, "spec.ports[0].targetPort", "invalid port name"),
    ({"metadata": {"name": "web\nx", "namespace": "ns"}}, "metadata.name", "DNS-1035 label"),
    ({"metadata": {"name": "web\rx", "namespace": "ns"}}, "metadata.name", "invalid name 'web\\rx'"),
    ({"metadata": {"name": "web\ud800", "namespace": "ns"}}, "metadata.name", "invalid name"),
    ({"metadata": {"name": "web", "namespace": "a b"}}, "metadata.namespace", "DNS-1123 label"),
    ({"metadata": {"name": "web", "namespace": "ns", "labels": {"a": [1]}}}, "metadata.labels.a",
     "must be a string"),
    ({"spec__selector": {"app": {"x": 1}}}, "spec.selector.app", "must be a string"),
    ({"spec__sessionAffinityConfig": {"clientIP": {"timeoutSeconds": "\u0663"}}},
     "spec.sessionAffinityConfig.clientIP.timeoutSeconds", "invalid timeout"),
    ({"spec__clusterIP": "fe80::1%eth0"}, "spec.clusterIP", "invalid IP address 'fe80::1%eth0'"),
])
def test_values_the_api_server_refuses(tmp_path: Path, changes: dict[str, object], where: str,
                                       message: str) -> None:
    path = tmp_path / "svc.json"
    path.write_text(json.dumps(_service(**changes)))
    clean_error(cli("compile", str(path)), f"svc.json, document 1: {where}: ", message)


def test_valid_names_still_compile(tmp_path: Path) -> None:
    path = tmp_path / "svc.json"
    path.write_text(json.dumps(_service(metadata={"name": "a" * 63, "namespace": "k-1"})))
    result = cli("compile", str(path))
    assert result.returncode == 0, result.stderr
    assert f"k-1/{'a' * 63}:http".encode() in result.stdout


def test_flags_need_ascii_digits_and_no_zone() -> None:
    clean_error(cli("compile", CLUSTER, "--cluster-cidr", "10.0.0.0/\u00b2"), "--cluster-cidr",
                "invalid CIDR")
    clean_error(cli("compile", CLUSTER, "--cluster-cidr", "10.0.0.0/\u0661\u0666"), "invalid CIDR")
    clean_error(cli("compile", CLUSTER, "--family", "ipv6", "--node-ip", "fe80::1%eth0"), "--node-ip")


def test_long_bad_values_are_cut_in_messages() -> None:
    line = clean_error(cli("compile", CLUSTER, "--node-ip", "1" * 5000), "--node-ip", "more characters")
    assert len(line) < 300
    rules = str(dump(DUMP))
    for flags in (["--src", "1" * 5000, "--dst", "10.96.0.1"], ["--src", "10.0.0.1", "--dst", "x" * 5000],
                  ["--src", "10.0.0.1", "--dst", "10.96.0.1", "--proto", "p" * 5000]):
        line = clean_error(cli("trace", "--rules", rules, "--dport", "80", *flags), "more characters")
        assert len(line) < 300
    line = clean_error(cli("doctor", "--rules", rules, "--service", "s" * 5000), "--service")
    assert len(line) < 300


# --- encodings and locales ------------------------------------------------------------------

def _latin1_dump(tmp_path: Path) -> Path:
    data = dump(DUMP).read_bytes().replace(b'--comment "default/kubernetes:https"',
                                            b'--comment "d\xe9fault/kubernetes:https"')
    assert b"\xe9" in data
    path = tmp_path / "latin1.rules"
    path.write_bytes(data)
    return path


STRICT = {"PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8"}


def test_latin1_dump_prints_escaped_with_strict_utf8_output(tmp_path: Path) -> None:
    latin = _latin1_dump(tmp_path)
    trace = ["trace", "--src", "10.0.0.9", "--dst", "10.96.0.1", "--dport", "443"]
    for args, stdin in ((["--rules", str(latin)], None), (["--rules", "-"], latin.read_bytes())):
        result = cli(*trace, *args, stdin=stdin, env=STRICT)
        assert result.returncode == 0, result.stderr
        assert b'"d\\xe9fault/kubernetes:https"' in result.stdout
    for args in (["diff", str(latin), str(dump(DUMP))], ["doctor", "--rules", str(latin)]):
        result = cli(*args, env=STRICT)
        assert result.returncode in (0, 1), result.stderr
        assert b"Traceback" not in result.stderr
        assert b"\\xe9" in result.stdout
    clean = cli("diff", "-", str(dump(DUMP)), stdin=latin.read_bytes(), env={"LC_ALL": "C"})
    assert clean.returncode == 1 and b"Traceback" not in clean.stderr


@pytest.mark.parametrize("locale", ["C", "C.UTF-8"])
def test_invalid_utf8_yaml_on_stdin(locale: str) -> None:
    data = SERVICES.read_bytes().replace(b"name: frontend", b"name: fr\xe9ntend")
    clean_error(cli("compile", "-", stdin=data, env={"LC_ALL": locale, "LANG": locale}),
                "<stdin>", "not UTF-8 text (line")


def test_save_keeps_bytes_and_messages_escape(tmp_path: Path) -> None:
    out = tmp_path / "o.rules"
    write_atomic(out, "a \udce9 b \ud800\n")
    assert out.read_bytes() == b"a \xe9 b \\ud800\n"
    assert "caf\udce9 \ud800".encode("ascii", ESCAPE) == b"caf\\xe9 \\ud800"


def test_text_helpers() -> None:
    assert digits("80") and not digits("\u00b2") and not digits("\u0663") and not digits("")
    assert len(shown("x" * 5000)) < 120 and "more characters" in shown("x" * 5000)
    deep: list[object] = []
    node = deep
    for _ in range(5000):
        node.append([])
        node = node[0]  # type: ignore[assignment]
    assert len(shown(deep)) < 40
    assert cut("short") == "short"


# --- inputs built to hurt --------------------------------------------------------------------

def _alias_bomb(field: str) -> str:
    anchors = ['  l0: &l0 ["lol"]'] + [
        f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    name = "*l8" if field == "name" else "web"
    target = "*l8" if field == "targetPort" else "8080"
    return "\n".join(["apiVersion: v1", "kind: Service", "x-anchors:", *anchors, "metadata:",
                      f"  name: {name}", "spec:", "  clusterIP: 10.96.0.5", "  ports:",
                      f"  - {{port: 80, targetPort: {target}}}", ""])


@pytest.mark.parametrize("field", ["name", "targetPort"])
def test_yaml_alias_bomb_is_refused_quickly(tmp_path: Path, field: str) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb(field))
    start = time.monotonic()
    result = cli("compile", str(path), timeout=30)
    clean_error(result, "YAML aliases expand to more than")
    assert time.monotonic() - start < 10 and len(result.stderr) < 500


def test_yaml_alias_cycle_and_modest_aliases(tmp_path: Path) -> None:
    path = tmp_path / "cycle.yaml"
    path.write_text("kind: Service\nmetadata: &m\n  name: web\n  self: *m\n")
    clean_error(cli("compile", str(path)), "refers to the value that contains it")
    ok = tmp_path / "ok.yaml"
    ok.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: web, labels: &l {app: web}}\n"
                  "spec: {clusterIP: 10.96.0.5, selector: *l, ports: [{port: 80}]}\n")
    assert cli("compile", str(ok)).returncode == 0


@pytest.mark.parametrize("config", [False, True])
def test_json_nested_a_thousand_levels(tmp_path: Path, config: bool) -> None:
    path = tmp_path / "deep.json"
    kind = "KubeProxyConfiguration" if config else "Service"
    path.write_text(f'{{"kind": "{kind}", "metadata": ' + "[" * 3000 + "]" * 3000 + "}")
    args = ["--config", str(path), CLUSTER] if config else [str(path)]
    clean_error(cli("compile", *args), "deep.json", "nested too deeply")
    just_under = tmp_path / "deep2.json"
    just_under.write_text('{"kind": "Service", "metadata": ' + "[" * 900 + "]" * 900 + "}")
    clean_error(cli("compile", str(just_under)), "metadata: must be a mapping, not list")


def test_rule_with_a_thousand_options(tmp_path: Path) -> None:
    options = " ".join(f"-m comment --comment c{i}" for i in range(1000))
    rules = tmp_path / "many.rules"
    rules.write_text("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                     f"-A FORWARD -s 10.0.0.1/32 {options} -j ACCEPT\nCOMMIT\n")
    result = cli("trace", "--rules", str(rules), "--src", "10.0.0.1", "--dst", "10.0.0.2", "--dport", "80")
    assert result.returncode == 0, result.stderr
    assert b"--comment c999 -j ACCEPT" in result.stdout
    for args in (["diff", str(rules), str(rules)], ["doctor", "--rules", str(rules)]):
        result = cli(*args)
        assert result.returncode in (0, 1) and b"Traceback" not in result.stderr, result.stderr
