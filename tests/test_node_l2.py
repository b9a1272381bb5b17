"""Snapshot format v2: the neighbour table, the bridge forwarding database and the VRF
devices -- read, checked (one-line errors naming the section), and used by the trace for
bridge ports and ``l3mdev`` rules; version 1 files still read. Also the source check's
``accept_local``/``src_valid_mark`` values from the sysctl section."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_doctor_cli import run
from test_node_snapshot import snapshot_text

from netproxy.errors import InputError
from netproxy.node.snapshot import parse_snapshot

RULES = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m physdev --physdev-in veth1 --physdev-out veth2 -j ACCEPT
-A FORWARD -m physdev --physdev-in veth2 -j REJECT
-A FORWARD -m physdev --physdev-is-bridged -j DROP
COMMIT
"""
LINKS = [{"ifname": "eth0"}, {"ifname": "cni0"}, {"ifname": "veth1", "master": "cni0"},
         {"ifname": "veth2", "master": "cni0"}, {"ifname": "veth3", "master": "cni0"},
         {"ifname": "eth1", "master": "vrf-blue"}, {"ifname": "vrf-blue"}]
NEIGH = [{"dst": "10.244.1.7", "dev": "cni0", "lladdr": "02:00:00:00:01:07",
          "state": ["REACHABLE"]},
         {"dst": "10.244.1.9", "dev": "cni0", "lladdr": "02:00:00:00:01:09", "state": ["STALE"]},
         {"dst": "10.244.1.8", "dev": "cni0", "lladdr": "02:00:00:00:01:08",
          "state": ["REACHABLE"]},
         {"dst": "10.244.1.66", "dev": "cni0", "state": ["FAILED"]},
         {"dst": "fe80::1", "dev": "eth0", "lladdr": "02:00:00:00:00:01", "state": ["STALE"]}]
FDB = [{"mac": "33:33:00:00:00:01", "ifname": "cni0", "flags": ["self"], "state": "permanent"},
       {"mac": "02:00:00:00:01:07", "ifname": "veth1", "flags": [], "master": "cni0",
        "state": ""},
       {"mac": "02:00:00:00:01:09", "ifname": "veth2", "flags": [], "master": "cni0",
        "state": "stale"},
       {"mac": "aa:aa:aa:aa:aa:01", "ifname": "veth1", "flags": [], "master": "cni0",
        "state": "permanent"}]
VRFS = [{}, {"ifname": "vrf-blue", "linkinfo": {"info_kind": "vrf",
                                                 "info_data": {"table": 200}}}]


def v2(l2: dict[str, str | None] | None = None, **replace: str | None) -> str:
    """A version 2 snapshot of a node with a three-port bridge cni0 and a VRF; ``l2`` swaps
    (or with None drops) the bodies of the version 2 sections, ``replace`` the others."""
    bodies: dict[str, str | None] = {
        "iptables-save (legacy)": RULES, "ip -j link": json.dumps(LINKS) + "\n",
        "sysctl": "net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\n"}
    bodies.update(replace)
    text = snapshot_text(**bodies).replace("# netproxy node snapshot v1",
                                           "# netproxy node snapshot v2")
    sections: dict[str, str | None] = {
        "ip -j -d link show type vrf": json.dumps(VRFS), "ip -j neigh show": json.dumps(NEIGH),
        "bridge -j fdb show": json.dumps(FDB), **(l2 or {})}
    extra = "".join(f"### {name}\n{body}\n" for name, body in sections.items()
                    if body is not None)
    return text.replace("### sysctl\n", extra + "### sysctl\n")


def to_v1(text: str) -> str:
    """The same snapshot as version 1 wrote it: without the version 2 sections."""
    text = text.replace("snapshot v2", "snapshot v1")
    return re.sub(r"### (ip -j -d link show type vrf|ip -j neigh show|bridge -j fdb show)\n"
                  r".*\n", "", text)


def trace(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
          *flags: str) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    path = tmp_path / "node.snap"
    path.write_text(text)
    code, out, err = run(capsys, "trace", "--rules", str(path), "--dport", "80", "--json",
                         *flags)
    return code, (json.loads(out) if code in (0, 3) else {}), err


def test_bridged_packet_takes_its_ports_from_the_fdb(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, data, err = trace(tmp_path, capsys, v2(), "--src", "10.244.1.7", "--dst", "10.244.1.9")
    assert code == 0, err
    assert (data["packet"]["physdev_in"], data["packet"]["physdev_out"]) == ("veth1", "veth2")
    (o,) = data["outcomes"]
    assert o["verdict"] == "ACCEPT" and o["path"][-1]["rule"] == 1
    assert "assumptions" not in data
    note = next(n for n in data["notes"] if n.startswith("inferred: bridged"))
    assert note == ("inferred: bridged by cni0 from port veth1 to port veth2 (10.244.1.7 is "
                    "02:00:00:00:01:07 (ip neigh), behind veth1 (bridge fdb); 10.244.1.9 is "
                    "02:00:00:00:01:09 (ip neigh), behind veth2 (bridge fdb))")
    code, data, err = trace(tmp_path, capsys, v2(), "--src", "10.244.1.9", "--dst", "10.244.1.7")
    assert data["outcomes"][0]["verdict"] == "REJECT"


def test_a_bridged_packet_is_not_routed(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # br_netfilter makes no routing decision for a packet bridged port to port: forwarding
    # off does not stop it (a routed packet it does stop).
    text = v2(sysctl="net.ipv4.ip_forward = 0\nnet.bridge.bridge-nf-call-iptables = 1\n")
    code, data, err = trace(tmp_path, capsys, text, "--src", "10.244.1.7", "--dst", "10.244.1.9")
    assert code == 0, err
    (o,) = data["outcomes"]
    assert (o["verdict"], o["delivered"], o["route"]["kind"]) == ("ACCEPT", "forwarded",
                                                                  "bridged")
    assert o["route"]["route"] == "bridged by cni0 out of veth2: no routing decision"
    code, data, err = trace(tmp_path, capsys, text, "--src", "10.244.1.7", "--dst", "8.8.8.8")
    (o,) = data["outcomes"]
    assert o["verdict"] == "DROP" and o["route"]["kind"] == "not-forwarding"


@pytest.mark.parametrize(("src", "dst", "why"), [
    # 10.244.1.8's MAC was never learned by the bridge: its port is not known.
    ("10.244.1.8", "10.244.1.9", "02:00:00:00:01:08, which is not in cni0's forwarding"),
    # no neighbour entry with a MAC for 10.244.1.66
    ("10.244.1.7", "10.244.1.66", None),
])
def test_ports_not_in_the_tables_keep_the_stated_default(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], src: str, dst: str,
        why: str | None) -> None:
    code, data, err = trace(tmp_path, capsys, v2(), "--src", src, "--dst", dst)
    assert code == 0, err
    assert data["assumptions"] == ["not bridged (give --physdev-in/--physdev-out)"]


def test_a_version_1_snapshot_still_reads(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    text = to_v1(v2())
    node = parse_snapshot(text)
    assert node.version == 1 and node.router("ipv4").fdb is None
    code, data, err = trace(tmp_path, capsys, text, "--src", "10.244.1.7", "--dst", "10.244.1.9")
    assert code == 0, err
    assert data["assumptions"] == ["not bridged (give --physdev-in/--physdev-out)"]


@pytest.mark.parametrize(("text", "message"), [
    (v2({"bridge -j fdb show": None}), r"node.snap: section 'bridge -j fdb show' is missing \(and "
                                 r"no note says why\)"),
    (v2({"bridge -j fdb show": '[{"ifname": "veth1"}]'}),
     r"node.snap:\d+: section 'bridge -j fdb show': entry 1: not a forwarding entry \(no mac\)"),
    (v2({"ip -j neigh show": '[{"dst": "10.0.0.1"}, 7]'}),
     r"node.snap:\d+: section 'ip -j neigh show': entry 1: not a neighbour \(no dev\)"),
    (v2({"ip -j neigh show": '[{"dst": '}),
     r"node.snap:\d+: section 'ip -j neigh show': bad JSON"),
    (v2({"ip -j -d link show type vrf":
         '[{"ifname": "vrf-blue", "linkinfo": {"info_kind": "vrf"}}]'}),
     r"section 'ip -j -d link show type vrf': entry 1 \(vrf-blue\): a vrf without a table"),
    (snapshot_text().replace("### sysctl\n", "### ip -j neigh show\n[]\n### sysctl\n"),
     r"node.snap:\d+: unknown section 'ip -j neigh show' \(a v1 snapshot\)"),
])
def test_bad_l2_sections_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             text: str, message: str) -> None:
    code, data, err = trace(tmp_path, capsys, text, "--src", "10.244.1.7", "--dst", "10.244.1.9")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert re.search(message, err), err


def test_a_missing_bridge_tool_is_noted_not_fatal(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    text = v2({"bridge -j fdb show": None}, notes="bridge -j fdb show: bridge: not found\n")
    code, data, err = trace(tmp_path, capsys, text, "--src", "10.244.1.7", "--dst", "10.244.1.9")
    assert code == 0, err
    assert data["assumptions"] == ["not bridged (give --physdev-in/--physdev-out)"]


VRF_RULES = json.dumps([{"priority": 0, "src": "all", "table": "local"},
                        {"priority": 1000, "src": "all", "l3mdev": None},
                        {"priority": 32766, "src": "all", "table": "main"}])
VRF_ROUTES = json.dumps([
    {"dst": "default", "gateway": "192.168.0.1", "dev": "eth0", "flags": []},
    {"dst": "192.168.0.0/24", "dev": "eth0", "prefsrc": "192.168.0.11", "flags": []},
    {"dst": "10.30.0.0/24", "dev": "eth1", "table": "200", "flags": []},
    {"dst": "default", "gateway": "10.30.0.1", "dev": "eth1", "table": "200", "flags": []},
    {"type": "local", "dst": "192.168.0.11", "dev": "eth0", "table": "local", "flags": []}])


def test_l3mdev_rule_uses_the_vrf_table(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    text = v2(rules4=VRF_RULES + "\n", routes4=VRF_ROUTES + "\n")
    code, data, err = trace(tmp_path, capsys, text, "--src", "10.30.0.5", "-i", "eth1",
                            "--dst", "8.8.8.8")
    assert code == 0, err
    (o,) = data["outcomes"]
    assert (o["route"]["table"], o["route"]["rule"], o["route"]["gateway"]) == (
        "200", 1000, "10.30.0.1")
    code, data, err = trace(tmp_path, capsys, text, "--src", "192.168.0.50", "-i", "eth0",
                            "--dst", "8.8.8.8")
    (o,) = data["outcomes"]
    assert (o["route"]["table"], o["route"]["gateway"]) == ("main", "192.168.0.1")
    assert not any("l3mdev" in n for n in data.get("notes", []))
    # A version 1 snapshot does not know the VRFs: the rule is taken as not matching, said.
    old = to_v1(text)
    code, data, err = trace(tmp_path, capsys, old, "--src", "10.30.0.5", "-i", "eth1",
                            "--dst", "8.8.8.8")
    assert any("selects by l3mdev (the VRF of the interface), and the snapshot does not "
               "record the node's VRF devices: taken as not matching" in n
               for n in data["notes"]), data["notes"]


def test_source_check_sysctls_are_read(tmp_path: Path) -> None:
    text = v2(sysctl="net.ipv4.conf.all.rp_filter = 0\nnet.ipv4.conf.eth0.rp_filter = 1\n"
                     "net.ipv4.conf.all.accept_local = 0\nnet.ipv4.conf.eth0.accept_local = 1\n"
                     "net.ipv4.conf.all.src_valid_mark = 0\n"
                     "net.ipv4.conf.eth0/100.src_valid_mark = 1\n")
    router = parse_snapshot(text).router("ipv4")
    assert router.accept_local == {"all": 0, "eth0": 1}
    assert router.src_valid_mark == {"all": 0, "eth0.100": 1}
    with pytest.raises(InputError, match="expected 'key = value'"):
        parse_snapshot(v2(sysctl="net.ipv4.conf.eth0.accept_local\n"))
