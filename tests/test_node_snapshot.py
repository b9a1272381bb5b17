"""The node snapshot format: the reader, its one-line errors, and every command reading it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_doctor_cli import run

from netproxy.errors import InputError
from netproxy.node.snapshot import ORDER, parse_snapshot, read_snapshot
from netproxy.parser import read_rules

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

RULES = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-X - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A OUTPUT -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m udp --dport 53 -j KUBE-SVC-X
-A KUBE-SERVICES -m set --match-set KUBE-EXTERNAL dst -j DROP
-A KUBE-SVC-X -p udp -j DNAT --to-destination 10.244.1.5:53
COMMIT
"""
ADDR = [{"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8,
                                        "scope": "host"}]},
        {"ifname": "eth0", "addr_info": [{"family": "inet", "local": "192.168.0.11",
                                          "prefixlen": 24, "scope": "global"}]},
        {"ifname": "cni0", "addr_info": [{"family": "inet", "local": "10.244.1.1",
                                          "prefixlen": 24, "scope": "global"}]}]
ROUTES4 = [{"dst": "default", "gateway": "192.168.0.1", "dev": "eth0", "flags": []},
           {"dst": "192.168.0.0/24", "dev": "eth0", "prefsrc": "192.168.0.11", "flags": []},
           {"dst": "10.244.1.0/24", "dev": "cni0", "prefsrc": "10.244.1.1", "flags": []},
           {"dst": "10.244.2.0/24", "gateway": "192.168.0.12", "dev": "eth0", "flags": []},
           {"type": "local", "dst": "192.168.0.11", "dev": "eth0", "table": "local",
            "flags": []},
           {"type": "local", "dst": "10.244.1.1", "dev": "cni0", "table": "local",
            "flags": []}]
RULES4 = [{"priority": 0, "src": "all", "table": "local"},
          {"priority": 32766, "src": "all", "table": "main"}]


def snapshot_text(**replace: str | None) -> str:
    """A small node's snapshot; ``replace`` swaps (or with None drops) section bodies."""
    bodies: dict[str, str] = {
        "hostname": "node-1\n",
        "versions": "ip: ip utility, iproute2-6.1.0\n",
        "iptables-save (legacy)": RULES,
        "ipset save": "create KUBE-EXTERNAL hash:ip family inet\nadd KUBE-EXTERNAL 203.0.113.9\n"
                      "create ODD hash:net,iface family inet\nadd ODD 10.0.0.0/8,eth0\n",
        "ip -j addr": json.dumps(ADDR) + "\n",
        "ip -4 -j route show table all": json.dumps(ROUTES4) + "\n",
        "ip -6 -j route show table all": "[]\n",
        "ip -4 -j rule": json.dumps(RULES4) + "\n",
        "ip -6 -j rule": "[]\n",
        "ip -j link": "[]\n",
        "sysctl": "net.ipv4.ip_forward = 1\n",
        "notes": "nft list ruleset: nft: not found\n",
    }
    for key, value in replace.items():
        name = key.replace("_", " ")
        name = {"addr": "ip -j addr", "routes4": "ip -4 -j route show table all",
                "rules4": "ip -4 -j rule"}.get(key, name)
        if value is None:
            bodies.pop(name)
        else:
            bodies[name] = value
    out = ["# netproxy node snapshot v1\n", "# producer: test\n"]
    for name in ORDER:
        if name in bodies:
            out.append(f"### {name}\n{bodies[name]}")
    out.append("### end\n")
    return "".join(out)


@pytest.fixture
def snap(tmp_path: Path) -> Path:
    path = tmp_path / "node.snap"
    path.write_text(snapshot_text())
    return path


def test_reader_gives_the_node_context(snap: Path) -> None:
    node = read_snapshot(snap)
    assert node.hostname == "node-1"
    assert node.versions["ip"].startswith("ip utility")
    assert node.sysctls == {"net.ipv4.ip_forward": "1"}
    assert node.notes == ["nft list ruleset: nft: not found"]
    assert node.addresses("ipv4") == ["127.0.0.1", "192.168.0.11", "10.244.1.1"]
    assert set(node.ipsets() or {}) == {"KUBE-EXTERNAL"}  # the iface set is noted, not read
    assert "ODD" in node.ipset_notes[0]
    ruleset = node.ruleset()
    assert ruleset.family == "ipv4" and "KUBE-SVC-X" in ruleset.tables["nat"].chains
    # Line numbers of the rules are the snapshot file's own.
    lines = snap.read_text().split("\n")
    rule = ruleset.tables["nat"].chains["KUBE-SVC-X"].rules[0]
    assert lines[rule.line - 1] == "-A KUBE-SVC-X -p udp -j DNAT --to-destination 10.244.1.5:53"
    assert node.router("ipv4").lookup(0x0AF40205).dev == "eth0"  # 10.244.2.5


def test_body_lines_starting_with_hashes_are_escaped() -> None:
    node = parse_snapshot(snapshot_text(hostname="node-1\n\\### not a section\n"))
    assert node.sections["hostname"].lines == ["node-1", "### not a section"]


@pytest.mark.parametrize(("text", "message"), [
    (snapshot_text()[: snapshot_text().index("### ip -4 -j rule")],
     r"node.snap:\d+: snapshot is truncated: no '### end' line \(the last section is "
     r"'ip -6 -j route show table all'\)"),
    (snapshot_text(routes4=None), r"node.snap: section 'ip -4 -j route show table all' is "
                                  r"missing \(and no note says why\)"),
    (snapshot_text(addr='[{"ifname": "lo",\n'), r"node.snap:\d+: section 'ip -j addr': bad JSON"),
    (snapshot_text(rules4='{"priority": 0}\n'),
     r"node.snap:\d+: section 'ip -4 -j rule': expected a JSON list"),
    (snapshot_text(sysctl="net.ipv4.ip_forward 1\n"),
     r"node.snap:\d+: section 'sysctl': expected 'key = value'"),
    (snapshot_text().replace("snapshot v1", "snapshot v9"),
     r"node.snap:1: snapshot format v9 is not supported"),
    (snapshot_text().replace("### sysctl", "### sysctls"), r"node.snap:\d+: unknown section 'sysctls'"),
    (snapshot_text().replace("### ip -j link", "### ip -j link\n[]\n### sysctl\n"),
     r"node.snap:\d+: section 'sysctl' appears twice"),
])
def test_bad_snapshots_are_one_line_errors_naming_the_section(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str) -> None:
    path = tmp_path / "node.snap"
    path.write_text(text)
    code, out, err = run(capsys, "trace", "--rules", str(path), "--src", "10.244.1.7",
                         "--dst", "10.96.0.10", "--dport", "53", "--proto", "udp")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.search(message, err), err


def test_bad_route_entry_names_its_section(tmp_path: Path) -> None:
    path = tmp_path / "node.snap"
    path.write_text(snapshot_text(routes4='[{"dst": "10.0.0.0/40"}]\n'))
    with pytest.raises(InputError, match=r"node.snap:\d+: section 'ip -4 -j route show table "
                                         r"all': routes: entry 1: bad prefix length"):
        read_snapshot(path).router("ipv4")


def test_a_note_excuses_a_missing_section(tmp_path: Path) -> None:
    text = snapshot_text(addr=None, notes="ip -j addr: ip failed: Object \"addr\" is unknown\n")
    node = parse_snapshot(text)
    assert node.addresses("ipv4") == []


def test_read_rules_takes_the_snapshot_ruleset_of_a_family(snap: Path) -> None:
    assert "nat" in read_rules(snap).tables
    assert read_rules(snap, family="ipv6").tables == {}


def test_trace_uses_the_node_context(snap: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A pod on this node calls the DNS Service: no -i, no --local-ip, no --ipsets needed.
    code, out, err = run(capsys, "trace", "--rules", str(snap), "--src", "10.244.1.7",
                         "--dst", "10.96.0.10", "--dport", "53", "--proto", "udp", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["packet"]["in_interface"] == "cni0"
    assert data["inferred"] == {"in_interface": "cni0", "bridge": "not bridged"}  # no links
    assert any(n.startswith("inferred: input interface cni0 (the node routes 10.244.1.7 to "
                            "cni0: 10.244.1.0/24 dev cni0") for n in data["notes"])
    (outcome,) = data["outcomes"]
    assert outcome["dnat"] == "10.244.1.5:53" and outcome["delivered"] == "forwarded"
    # The route after DNAT: the endpoint is on this node's bridge.
    assert outcome["route"]["dev"] == "cni0" and outcome["route"]["table"] == "main"
    # The ipset's contents come from the snapshot.
    code, out, err = run(capsys, "trace", "--rules", str(snap), "--src", "10.244.1.7",
                         "--dst", "203.0.113.9", "--dport", "80", "--brief")
    assert code == 0, err
    assert "DROP 100% by nat/KUBE-SERVICES #2" in out
    # A node address is local: delivered, no --local-ip needed.
    code, out, err = run(capsys, "trace", "--snapshot", str(snap), "--src", "192.168.0.50",
                         "--dst", "192.168.0.11", "--dport", "22")
    assert code == 0, err
    assert "in eth0" in out and "ACCEPT, local" in out
    assert "inferred: input interface eth0 (the node routes 192.168.0.50 to eth0" in out


def test_trace_route_of_a_node_generated_packet(snap: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "trace", "--rules", str(snap), "--from", "node",
                         "--dst", "10.244.2.9", "--dport", "8080")
    assert code == 0, err
    assert "packet: tcp 192.168.0.11 -> 10.244.2.9:8080 from node" in out
    assert "inferred: source 192.168.0.11 (the preferred source of 192.168.0.0/24" not in out
    assert "inferred: source 192.168.0.11 (the preferred source of 10.244.2.0/24 via " \
           "192.168.0.12 dev eth0" in out
    assert "route: 10.244.2.0/24 via 192.168.0.12 dev eth0 (table main, rule 32766)" in out


def test_diff_and_doctor_read_snapshots(snap: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    dump = tmp_path / "node.rules"
    dump.write_text(RULES)
    code, out, err = run(capsys, "diff", str(dump), str(snap))
    assert code == 0, err + out
    code, out, err = run(capsys, "doctor", "--rules", str(snap), "--json")
    assert code in (0, 1), err
    assert json.loads(out)["source"] == str(snap)
    # A snapshot is taken from the INPUTS like a dump, and named in errors about its role.
    code, out, err = run(capsys, "trace", str(snap), "--src", "10.244.1.7", "--dst",
                         "10.96.0.10", "--dport", "53", "--proto", "udp", "--brief")
    assert code == 0, err
    assert "1 endpoint 10.244.1.5:53" in out
    code, out, err = run(capsys, "trace", "--rules", str(dump), "--ipsets", str(snap),
                         "--dst", "10.96.0.10")
    assert code == 2 and "node snapshot" in err


def test_a_snapshot_without_rules_traces_by_routing_alone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bare.snap"
    path.write_text(snapshot_text(**{"iptables-save (legacy)": None}))
    code, out, err = run(capsys, "trace", "--rules", str(path), "--src", "10.244.1.7",
                         "--dst", "8.8.8.8", "--dport", "53", "--proto", "udp")
    assert code == 0, err
    assert "note: the snapshot holds no ipv4 iptables rules: only the routing decision acts" in out
    assert "route: default via 192.168.0.1 dev eth0 (table main, rule 32766)" in out
    # diff and doctor need rules: a one-line error saying so.
    code, out, err = run(capsys, "doctor", "--rules", str(path))
    assert code == 2 and "the snapshot holds no ipv4 iptables rules" in err


def test_packets_file_with_a_snapshot(snap: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    packets = tmp_path / "packets.txt"
    packets.write_text("src=10.244.1.7 dst=10.96.0.10 dport=53 proto=udp\n"
                       "src=192.168.0.50 dst=10.244.1.5 dport=53 proto=udp\n")
    code, out, err = run(capsys, "trace", "--rules", str(snap), "--packets", str(packets),
                         "--json")
    assert code == 0, err
    first, second = json.loads(out)["packets"]
    assert first["packet"]["in_interface"] == "cni0"
    assert first["outcomes"][0]["route"]["dev"] == "cni0"
    assert second["packet"]["in_interface"] == "eth0"
    assert second["outcomes"][0]["route"]["dev"] == "cni0"


def test_two_variants_holding_rules_are_said(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    docker = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n" \
             ":DOCKER - [0:0]\n-A FORWARD -j DOCKER\nCOMMIT\n"
    path = tmp_path / "two.snap"
    path.write_text(snapshot_text(**{"iptables-save (nft)": docker}))
    node = read_snapshot(path)
    assert "KUBE-SERVICES" in node.ruleset("ipv4").tables["nat"].chains
    assert "DOCKER" in node.ruleset("ipv4", backend="nft").tables["filter"].chains
    assert node.ruleset("ipv6", backend="legacy").tables == {}
    assert node.ruleset_notes["ipv4"] == [
        "the snapshot's 'iptables-save (nft)' also holds 1 rule, not read: "
        "'iptables-save (legacy)' holds kube-proxy's chains"]
    code, out, err = run(capsys, "doctor", "--rules", str(path), "--brief")
    assert code in (0, 1) and "also holds 1 rule, not read" in err


PHYSDEV_RULES = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m physdev --physdev-is-in -j DROP
COMMIT
"""
LINKS = json.dumps([{"ifname": "eth0"}, {"ifname": "cni0"},
                    {"ifname": "veth1", "master": "cni0"}]) + "\n"


@pytest.mark.parametrize(("flags", "sysctl", "inferred", "assumed", "verdict"), [
    # eth0 has no ports: the packet came through no bridge port, so it carries no bridge
    # information and physdev-is-in is false.
    (["--src", "192.168.0.50"], "1", "arrived through no bridge port (eth0 has no ports",
     False, "ACCEPT"),
    # In on cni0 for 10.244.2.9, which is on none of cni0's networks: routed, not bridged,
    # and cni0's only port, veth1, is where it came in.
    (["--src", "10.244.1.7"], "1", "routed by cni0, not bridged: no output bridge port, in "
     "through its only port veth1 (10.244.2.9 is on none of cni0's networks (10.244.1.1/24)",
     False, "DROP"),
    # For a neighbour on cni0's own network the packet may be bridged: it came in through
    # cni0's only port; the output port is not known without a forwarding database.
    (["--src", "10.244.1.7", "--dst", "10.244.1.9"], "1", "arrived on the bridge cni0 from "
     "port veth1 (its only port)", False, "DROP"),
    # The node's own packet enters through no bridge port.
    (["--from", "node"], "1", "not bridged (the node's own packet enters through no bridge "
     "port)", False, "ACCEPT"),
    # br_netfilter keeps bridged traffic out of iptables: physdev never matches.
    (["--src", "10.244.1.7"], "0", "not bridged (net.bridge.bridge-nf-call-iptables = 0: "
     "bridged traffic does not pass iptables)", False, "ACCEPT"),
])
def test_bridge_facts_from_links_and_sysctls(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], sysctl: str,
        inferred: str | None, assumed: bool, verdict: str) -> None:
    path = tmp_path / "bridge.snap"
    path.write_text(snapshot_text(**{"iptables-save (legacy)": PHYSDEV_RULES,
                                     "ip -j link": LINKS,
                                     "sysctl": "net.ipv4.ip_forward = 1\n"
                                               f"net.bridge.bridge-nf-call-iptables = {sysctl}\n"}))
    if "--dst" not in flags:
        flags = [*flags, "--dst", "10.244.2.9"]
    code, out, err = run(capsys, "trace", "--rules", str(path), *flags, "--dport", "80",
                         "--json")
    assert code == 0, err
    data = json.loads(out)
    notes = [n for n in data.get("notes", []) if "bridge" in n]
    if inferred is None:
        assert notes == []
    else:
        assert notes and notes[0].startswith(f"inferred: {inferred}"), notes
    assert bool(data.get("assumptions")) == assumed, data.get("assumptions")
    assert {o["verdict"] for o in data["outcomes"]} == {verdict}


def test_routed_packet_from_a_bridge_fails_physdev_out_even_inverted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # xt_physdev: a packet that came in through a bridge port but is routed has no output
    # port at the IP hooks; --physdev-out fails then, inverted or not, while
    # ! --physdev-is-bridged matches.
    rules = ("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
             "-A FORWARD -m physdev ! --physdev-out veth9 -j DROP\n"
             "-A FORWARD -m physdev ! --physdev-is-bridged -j REJECT\nCOMMIT\n")
    path = tmp_path / "bridge.snap"
    path.write_text(snapshot_text(**{"iptables-save (legacy)": rules, "ip -j link": LINKS,
                                     "sysctl": "net.ipv4.ip_forward = 1\n"
                                               "net.bridge.bridge-nf-call-iptables = 1\n"}))
    code, out, err = run(capsys, "trace", "--rules", str(path), "--src", "10.244.1.7",
                         "--dst", "10.244.2.9", "--dport", "80", "--brief")
    assert code == 0, err
    assert "REJECT 100% by filter/FORWARD #2" in out


RULES6 = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A KUBE-SERVICES -d fd00:96::10/128 -p udp -m udp --dport 53 -j DNAT --to-destination [fd00:244::5]:53
COMMIT
"""


def test_capture_packets_of_both_families_with_a_snapshot(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    path = tmp_path / "node.snap"
    path.write_text(snapshot_text().replace("### ipset save\n",
                                            f"### ip6tables-save (legacy)\n{RULES6}"
                                            "### ipset save\n"))
    cap = tmp_path / "both.pcap"
    wrpcap(str(cap), [Ether() / IP(src="10.244.1.7", dst="10.96.0.10") / UDP(sport=5, dport=53),
                      Ether() / IPv6(src="fd00:244::9", dst="fd00:96::10") / UDP(sport=6,
                                                                                 dport=53)])
    code, out, err = run(capsys, "trace", "--rules", str(path), "--pcap", str(cap))
    assert code == 0, err
    lines = out.splitlines()
    assert "1 endpoint 10.244.1.5:53" in lines[0]
    assert "1 endpoint [fd00:244::5]:53" in lines[1]  # the snapshot's ip6tables rules
    assert "skipped" not in err
