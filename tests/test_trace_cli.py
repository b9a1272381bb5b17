"""`netproxy trace` end to end: output formats, packet sequences, captures, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DUMPS

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "trace"
GOLDEN = REPO / "tests" / "golden" / "trace"
CLUSTER = str(DATA / "cluster.yaml")


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netproxy", "trace", *args], input=stdin,
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def dump(name: str) -> str:
    path = DUMPS / f"{name}.rules"
    if not path.exists():
        pytest.skip("real-world dumps not present beside the project")
    return str(path)


def check_golden(name: str, text: str) -> None:
    """Compare with tests/golden/trace/NAME; NETPROXY_REGEN=1 rewrites it (then read it!)."""
    path = GOLDEN / name
    if os.environ.get("NETPROXY_REGEN") == "1":
        path.write_text(text)
    assert text == path.read_text()


def test_text_golden_nodeport_local() -> None:
    r = run(CLUSTER, "--src", "172.16.5.5", "--dst", "192.168.0.10", "--dport", "30081")
    assert r.returncode == 0, r.stderr
    check_golden("nodeport-local.txt", r.stdout)


def test_text_golden_clusterip_three_endpoints() -> None:
    r = run(CLUSTER, "--src", "172.16.5.5", "--dst", "10.96.0.10", "--dport", "80")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1] == "summary: 3 endpoints, 33.3% each, masqueraded"
    check_golden("clusterip-external.txt", r.stdout)


def test_iptables_short_options() -> None:
    """-s/-d/-p are spelled as in iptables, and mean the same as --src/--dst/--proto."""
    long = run(CLUSTER, "--src", "172.16.5.5", "--dst", "10.96.0.10", "--dport", "53",
               "--proto", "udp", "--brief")
    short = run(CLUSTER, "-s", "172.16.5.5", "-d", "10.96.0.10", "--dport", "53", "-p", "udp",
                "--brief")
    assert long.returncode == short.returncode, short.stderr
    assert short.stdout == long.stdout
    assert short.stdout.startswith("udp 172.16.5.5 -> 10.96.0.10:53")


def test_text_golden_real_dump() -> None:
    r = run("--rules", dump("01-minik8s-flannel-docker"), "--local-ip", "192.168.157.133",
            "--src", "10.244.0.7", "--dst", "10.96.0.10", "--dport", "53", "--proto", "udp",
            "-i", "cni0", "-o", "cni0")
    assert r.returncode == 0, r.stderr
    check_golden("flannel-dns.txt", r.stdout.replace(str(DUMPS), "DUMPS"))


def test_json_shape() -> None:
    r = run("--rules", dump("00-seed-hostnames"), "--src", "10.244.1.9", "--dst", "10.0.1.175",
            "--dport", "80", "--local-ip", "192.168.1.10", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    outs = data["outcomes"]
    assert len(outs) == 3
    assert sum(o["probability"] for o in outs) == pytest.approx(1.0, abs=1e-12)
    for o in outs:
        assert o["verdict"] == "ACCEPT" and o["masquerade"] is False
        assert o["dnat"].endswith(":9376")
        for hop in o["path"]:
            assert set(hop) >= {"table", "chain", "rule", "line", "text"}
        assert o["path"][1] == {
            "table": "nat", "chain": "KUBE-SERVICES", "rule": 1, "line": 31,
            "text": '-A KUBE-SERVICES -d 10.0.1.175/32 -p tcp -m comment --comment '
                    '"default/hostnames: cluster IP" -m tcp --dport 80 -j KUBE-SVC-NWV5X2332I4OT4T3'}
    assert outs[0]["probability"] == int(2**31 * 0.33332999982 + 0.5) / 2**31


def test_json_ipv6_dnat_brackets() -> None:
    r = run(str(DATA / "cluster-v6.yaml"), "--family", "ipv6", "--src", "fd00:10:244:1::50",
            "--dst", "fd00:96::10", "--dport", "80", "--format", "json")
    assert r.returncode == 0, r.stderr
    dnats = sorted(o["dnat"] for o in json.loads(r.stdout)["outcomes"])
    assert dnats == ["[fd00:10:244:1::5]:8080", "[fd00:10:244:2::6]:8080"]


def test_dot_shows_only_visited_chains() -> None:
    r = run("--rules", dump("01-minik8s-flannel-docker"), "--local-ip", "192.168.157.133",
            "--src", "10.244.0.7", "--dst", "10.96.0.10", "--dport", "53", "--proto", "udp",
            "-i", "cni0", "-o", "cni0", "--format", "dot")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("digraph trace {")
    assert '"nat/KUBE-SVC-TCOU7JCQXEZGVUNU"' in r.stdout
    assert "KUBE-SVC-NPX46M4PTMTKRN6Y" not in r.stdout  # another service: not visited
    assert "DOCKER-ISOLATION-STAGE-2" not in r.stdout
    if shutil.which("dot") is not None:  # graphviz is optional
        check = subprocess.run(["dot", "-Tsvg"], input=r.stdout, capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


def test_repeat_shows_affinity() -> None:
    r = run(CLUSTER, "--src", "10.244.1.50", "--dst", "10.96.0.70", "--dport", "80",
            "--repeat", "3", "--brief")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].endswith("2 endpoints, 50% each, not masqueraded")
    assert lines[1].endswith("[same endpoint as before: 100.0%]")


def test_packets_file(tmp_path: Path) -> None:
    f = tmp_path / "packets.txt"
    f.write_text("# two clients\nsrc=10.244.1.50 dst=10.96.0.70 dport=80\n"
                 '{"src": "10.244.1.50", "dst": "10.96.0.70", "dport": 80, "time": 601}\n'
                 "src=10.244.1.50 dst=10.96.0.60 dport=80\n")
    r = run(CLUSTER, "--packets", str(f), "--brief")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "same endpoint as before: 50.0%" in lines[1]  # affinity expired after 600 s
    assert "REJECT 100%" in lines[2]


def test_pcap(tmp_path: Path) -> None:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    pkts = [Ether() / IP(src="10.244.1.50", dst="10.96.0.10") / TCP(sport=40000, dport=80,
                                                                     flags="S"),
            Ether() / IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=1, dport=2),  # other family
            Ether() / IP(src="10.244.2.6", dst="10.244.1.50") / TCP(sport=8080, dport=40000,
                                                                     flags="SA"),
            Ether() / IP(src="10.244.1.50", dst="10.96.0.10") / TCP(sport=40000, dport=80,
                                                                     flags="A"),
            Ether() / IP(src="10.244.1.50", dst="10.96.0.100") / UDP(sport=5000, dport=53)]
    path = tmp_path / "c.pcap"
    wrpcap(str(path), pkts)
    r = run(CLUSTER, "--pcap", str(path))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 4
    assert "3 endpoints" in lines[0] and "NEW" in lines[0]
    # the SYN-ACK is the reply of the DNATed connection: its source goes back to the
    # Service address, and it shows which endpoint the connection went to
    assert lines[1] == ("2: tcp 10.244.2.6:8080 -> 10.244.1.50:40000 from pod, ESTABLISHED: "
                        "accepted without DNAT (forwarded), not masqueraded, reply: source "
                        "restored to 10.96.0.10:80")
    # so the next packet of the connection is DNATed to that endpoint only
    assert lines[2].startswith("3: tcp 10.244.1.50:40000 -> 10.96.0.10:80 from pod, "
                               "ESTABLISHED: 1 endpoint 10.244.2.6:8080")
    assert "same endpoint" not in lines[2]
    assert "1 endpoint 10.244.1.21:5353" in lines[3]
    assert r.stderr == ("netproxy: skipped 1 ipv6 packet of the capture: the rules are ipv4 "
                        "(a node snapshot holding ipv6 rules traces them too)\n")


def test_pcap_masqueraded_reply(tmp_path: Path) -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.utils import wrpcap

    pkts = [IP(src="172.16.5.5", dst="10.96.0.10") / TCP(sport=41000, dport=80, flags="S"),
            IP(src="10.244.3.7", dst="192.168.0.10") / TCP(sport=8080, dport=41000, flags="SA")]
    path = tmp_path / "m.pcap"
    wrpcap(str(path), pkts)
    r = run(CLUSTER, "--pcap", str(path))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "3 endpoints, 33.3% each, masqueraded" in lines[0]
    assert lines[1].endswith("reply: destination restored to 172.16.5.5:41000, source restored "
                             "to 10.96.0.10:80")


def test_pcap_not_a_capture(tmp_path: Path) -> None:
    bad = tmp_path / "x.pcap"
    bad.write_text("this is not a capture\n")
    r = run(CLUSTER, "--pcap", str(bad))
    assert r.returncode == 2
    assert r.stderr.startswith(f"netproxy: {bad}") and r.stderr.count("\n") == 1


def test_stdin_rules() -> None:
    text = (DUMPS / "00-seed-hostnames.rules").read_text() if DUMPS.exists() else pytest.skip()
    r = run("--rules", "-", "--src", "10.244.1.9", "--dst", "10.0.1.175", "--dport", "80",
            "--brief", stdin=text)
    assert r.returncode == 0, r.stderr
    assert "3 endpoints" in r.stdout


LOOP = """*filter
:INPUT ACCEPT [0:0]
:A - [0:0]
:B - [0:0]
-A INPUT -j A
-A A -j B
-A B -j A
COMMIT
"""


def _deep(n: int) -> str:
    lines = ["*filter", ":INPUT ACCEPT [0:0]"] + [f":C{i} - [0:0]" for i in range(n)]
    lines.append("-A INPUT -j C0")
    lines += [f"-A C{i} -j C{i + 1}" for i in range(n - 1)]
    return "\n".join(lines + ["COMMIT", ""])


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["--rules", "/nonexistent/x.rules", "--dst", "10.0.0.1", "--src", "10.0.0.2"], None,
     "/nonexistent/x.rules: cannot read"),
    (["--rules", "-", "--src", "10.0.0.2", "--dst", "10.0.0.300"], LOOP, "bad destination"),
    (["--rules", "-", "--src", "10.0.0.2", "--dst", "10.0.0.1", "--local-ip", "10.0.0.1"], LOOP,
     "<stdin>:7: jump loop in table filter: INPUT -> A -> B -> A"),
    (["--rules", "-", "--strict", "--src", "10.0.0.2", "--dst", "10.0.0.1"],
     LOOP.replace("-A B -j A", "-A B -j NOWHERE"), "NOWHERE"),
    (["--rules", "-", "--src", "10.0.0.2", "--dst", "10.0.0.1", "--local-ip", "10.0.0.1"],
     _deep(100_000), "chains nested deeper than 1000"),
    (["--rules", "-", "--src", "10.0.0.2", "--dst", "10.0.0.1", "--local-ip", "nope"], LOOP,
     "bad --local-ip"),
    (["--rules", "-", "--src", "10.0.0.2"], LOOP, "--dst is required"),
    ([CLUSTER, "--rules", "-", "--dst", "10.0.0.1"], LOOP, "not both"),
], ids=["unreadable", "bad-address", "jump-loop", "unknown-chain", "deep-chain", "bad-local-ip",
        "no-dst", "rules-and-inputs"])
def test_bad_input_is_one_line_exit_2(args: list[str], stdin: str | None, message: str) -> None:
    r = run(*args, stdin=stdin)
    assert r.returncode == 2, (r.stdout, r.stderr)
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("netproxy: "), r.stderr
    assert message in err[0]
    assert "Traceback" not in r.stderr


def test_bad_packets_file(tmp_path: Path) -> None:
    f = tmp_path / "p.txt"
    f.write_text("src=10.244.1.50 dst=10.96.0.70 dport=80\nsrc=10.0.0.1 bogus\n")
    r = run(CLUSTER, "--packets", str(f))
    assert r.returncode == 2
    assert f"{f}:2: expected key=value" in r.stderr


@pytest.mark.parametrize(("line", "message"), [
    ("state=bogus", "unknown conntrack state 'bogus'"),
    ("proto=tcpp", "unknown protocol 'tcpp'"),
])
def test_bad_packet_value_names_its_line(tmp_path: Path, line: str, message: str) -> None:
    f = tmp_path / "p.txt"
    f.write_text(f"src=10.244.1.50 dst=10.96.0.70 dport=80\nsrc=10.0.0.1 dst=10.96.0.70 {line}\n")
    r = run(CLUSTER, "--packets", str(f))
    assert r.returncode == 2
    assert f"{f}:2: {message}" in r.stderr and "Traceback" not in r.stderr


def test_bad_packets_line_mid_file_leaves_whole_json(tmp_path: Path) -> None:
    f = tmp_path / "p.txt"
    f.write_text("src=10.244.1.50 dst=10.96.0.70 dport=80\n"
                 "src=10.244.1.50 dst=10.96.0.60 dport=80\nsrc=10.0.0.1 bogus\n"
                 "src=10.244.1.50 dst=10.96.0.70 dport=80\n")
    r = run(CLUSTER, "--packets", str(f), "--json")
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0] == f"netproxy: {f}:3: expected key=value, got 'bogus'"
    doc = json.loads(r.stdout)  # a whole document: the packets traced, then the error
    assert [p["packet"]["dst"] for p in doc["packets"]] == ["10.96.0.70", "10.96.0.60"]
    assert doc["error"] == err[0].removeprefix("netproxy: ")
    # An error before the first packet writes nothing to stdout.
    f.write_text("src=10.0.0.1 bogus\n")
    r = run(CLUSTER, "--packets", str(f), "--json")
    assert r.returncode == 2 and r.stdout == ""
    assert f"{f}:1: expected key=value" in r.stderr


def test_mark_and_ctmark_flags() -> None:
    rules = ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m connmark --mark 0x10/0x10 -j DROP\n"
             "-A INPUT -m mark --mark 0x1 -j REJECT\nCOMMIT\n")
    base = ["--rules", "-", "--src", "10.9.9.9", "--dst", "10.0.0.1", "--local-ip", "10.0.0.1",
            "--brief"]
    assert "DROP 100%" in run(*base, "--ctmark", "0x30", stdin=rules).stdout
    assert "REJECT 100%" in run(*base, "--mark", "1", stdin=rules).stdout
    r = run(*base, "--mark", "zz", stdin=rules)
    assert r.returncode == 2 and "bad --mark" in r.stderr


def test_origin_is_labelled_pod_inside_the_cluster_cidr() -> None:
    # The example cluster's KubeProxyConfiguration sets clusterCIDR 10.244.0.0/16.
    example = str(REPO / "fixtures" / "example-cluster")
    pod = run(example, "--src", "10.244.2.50", "--dst", "10.96.100.10", "--dport", "80", "--brief")
    outside = run(example, "--src", "172.16.0.9", "--dst", "10.96.100.10", "--dport", "80", "--brief")
    assert pod.returncode == 0 and outside.returncode == 0, pod.stderr + outside.stderr
    assert "from pod," in pod.stdout and "not masqueraded" in pod.stdout
    assert "from external," in outside.stdout and "masqueraded" in outside.stdout
    forced = run(example, "--src", "10.244.2.50", "--dst", "10.96.100.10", "--dport", "80",
                 "--brief", "--from", "external")
    assert "from external," in forced.stdout


def test_dump_sources_are_pods_inside_the_cluster_cidr(tmp_path: Path) -> None:
    rules = tmp_path / "node.rules"
    made = subprocess.run([sys.executable, "-m", "netproxy", "compile", CLUSTER, "-o", str(rules)],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    args = ["--rules", str(rules), "--src", "10.244.1.5", "--dst", "10.96.0.100", "--dport", "53",
            "--proto", "udp"]
    inferred = run(*args).stdout  # the dump's masquerade rules give the pod network away
    assert "from pod" in inferred.splitlines()[0]
    assert "note: inferred: 10.244.0.0/16 is the pod network" in inferred
    assert "from pod" in run(*args, "--cluster-cidr", "10.244.0.0/16").stdout.splitlines()[0]
    other = run(*args, "--cluster-cidr", "10.245.0.0/16").stdout  # given: wins over the dump
    assert "from external" in other.splitlines()[0] and "inferred: 10.244" not in other
    bad = run(*args, "--cluster-cidr", "10.244.0.0/99")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "netproxy: --cluster-cidr: invalid CIDR '10.244.0.0/99'"


def test_dot_keeps_each_endpoint_branch_apart_and_says_why_unknown() -> None:
    r = run(CLUSTER, "--src", "10.244.1.50", "--dst", "10.96.0.10", "--dport", "80",
            "--format", "dot")
    assert r.returncode == 0, r.stderr
    for ep in ("10.244.1.5:8080", "10.244.2.6:8080", "10.244.3.7:8080"):
        # after its DNAT each endpoint has its own FORWARD and POSTROUTING nodes
        assert f'"filter/FORWARD @{ep}" [label="filter/FORWARD\\n(to {ep})"];' in r.stdout
        assert f'"nat/KUBE-POSTROUTING @{ep}" -> "nat/POSTROUTING @{ep}" [label="33.3%"];' \
            in r.stdout
    assert '"filter/FORWARD";' not in r.stdout  # never merged again
    strict = run("--rules", dump("01-minik8s-flannel-docker"), "--local-ip", "192.168.157.133",
                 "--src", "10.244.0.7", "--dst", "10.96.0.10", "--dport", "53", "--proto",
                 "udp", "-i", "cni0", "--strict", "--format", "dot")
    assert 'UNKNOWN\\n10.244.0.4:53\\noutput interface not known (give\\n--out-interface)' \
        in strict.stdout


def test_lenient_parse_says_what_it_tolerated_once_per_kind() -> None:
    # dump 11: kube-proxy wrote DNAT rules without a destination (lines 122-129)
    r = run("--rules", dump("11-cilium-ipvs-docker-broken-dnat"), "--local-ip", "192.168.0.2",
            "--src", "10.0.0.9", "--dst", "10.43.0.10", "--dport", "53", "--proto", "udp",
            "--brief")
    assert r.returncode in (0, 3), r.stderr
    lines = r.stderr.splitlines()
    assert lines == [
        f"netproxy: note: {dump('11-cilium-ipvs-docker-broken-dnat')}: tolerated 2 lines: option "
        "--to-destination has no value (first at line 122; those rules are UNKNOWN where a "
        "packet reaches them)",
        f"netproxy: note: {dump('11-cilium-ipvs-docker-broken-dnat')}: tolerated 4 lines: option "
        "--to-destination needs 1 argument(s) (first at line 126; those rules are UNKNOWN "
        "where a packet reaches them)"]


def test_text_golden_conditional_nodeport() -> None:
    # no --local-ip, nothing in dump 00 reveals the node's address: the answer per case
    r = run("--rules", dump("00-seed-hostnames"), "--src", "172.16.0.1", "--dst",
            "192.168.1.10", "--dport", "8080")
    assert r.returncode == 0, r.stderr
    check_golden("nodeport-unplaced.txt", r.stdout)


def test_text_golden_ipvs_sets_without_contents() -> None:
    r = run("--rules", dump("12-calico-vxlan-ipvs-nat"), "--local-ip", "192.168.0.10",
            "--src", "10.0.0.9", "--dst", "10.96.0.10", "--dport", "53", "--proto", "udp",
            "-i", "eth0")
    assert r.returncode == 0, r.stderr
    check_golden("ipvs-sets-conditional.txt", r.stdout)


def test_from_node_without_a_known_node_address_says_what_to_give() -> None:
    r = run("--rules", dump("01-minik8s-flannel-docker"), "--from", "node", "--dst", "10.96.0.1",
            "--dport", "443")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == ("netproxy: --from node needs the node's address: give --src "
                                "NODE_IP, --local-ip NODE_IP or a snapshot (--snapshot node.snap)")


@pytest.mark.parametrize("rules", [
    ["--rules", "01-minik8s-flannel-docker"], ["--rules", "nft/03-kubeadm132-flannel-nft-table"],
    [CLUSTER], [CLUSTER, "--proxy-mode", "nftables"]], ids=["dump", "nft", "iptables", "nftables"])
def test_family_dual_is_refused_for_every_kind_of_rules(rules: list[str]) -> None:
    """One packet has one family: --family dual is one error whatever the rules are (a dump
    or a listing once ended in a traceback)."""
    if rules[0] == "--rules":
        found = sorted(DUMPS.glob(f"{rules[1]}.*"))
        if not found:
            pytest.skip("real-world dumps not present beside the project")
        rules = ["--rules", str(found[0])]
    proc = run(*rules, "--family", "dual", "--dst", "10.96.0.1", "--dport", "443")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("netproxy: --family: trace follows one packet: give --family ipv4 "
                           "or ipv6\n")
