"""Bridge ports from the neighbour table and forwarding database, and the source check's
``src_valid_mark``/``accept_local``, against the real kernel.

A node namespace with a bridge ``br0`` (ports v1 and v2, each leading to a host namespace)
and two uplinks; real UDP datagrams between the hosts and to the node go through it while
the node's iptables rules count them by ``-m physdev`` port. `netproxy snapshot --netns`
then records the node (its neighbours and fdb learned from that traffic), and the trace of
each datagram must take the rule the kernel counted. The source checks are compared with
`ip route get ... iif DEV [mark M]` in the node, which refuses what the kernel drops.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_doctor_cli import run

from netproxy.backend import netns

pytestmark = pytest.mark.netns

NODE = """
link set lo up
link add br0 type bridge
link set br0 up
addr add 10.5.0.1/24 dev br0
link add e0 type veth peer name f0
link set e0 up
link set f0 up
addr add 10.6.0.1/24 dev e0
route add 10.8.0.0/16 dev e0 table 100
rule add fwmark 0x7 lookup 100 pref 100
route add default via 10.6.0.9 dev e0
"""
SYSCTLS = ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
           "net.ipv4.conf.default.rp_filter=0", "net.ipv4.conf.e0.rp_filter=1",
           "net.ipv4.conf.e1.rp_filter=1", "net.ipv4.conf.e0.src_valid_mark=1",
           "net.ipv4.conf.e1.accept_local=1")
RULES = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -p udp -m udp --dport 9999 -m physdev --physdev-in v1 -j ACCEPT
-A INPUT -p udp -m udp --dport 9999 -m physdev --physdev-in v2 -j ACCEPT
-A FORWARD -p udp -m udp --dport 9999 -m physdev --physdev-in v1 --physdev-out v2 -j ACCEPT
-A FORWARD -p udp -m udp --dport 9999 -m physdev --physdev-in v2 --physdev-out v1 -j ACCEPT
-A FORWARD -p udp -m udp --dport 9999 -m physdev --physdev-out v1 -j ACCEPT
-A FORWARD -p udp -m udp --dport 9999 -m physdev --physdev-is-bridged -j ACCEPT
-A FORWARD -p udp -m udp --dport 9999 -j ACCEPT
COMMIT
"""
HOSTS = {"v1": "10.5.0.11", "v2": "10.5.0.12", "e1": "10.7.0.9"}


def ip(name: str, *words: str) -> None:
    subprocess.run(["ip", "-n", name, *words], check=True, capture_output=True)


def send(host: str, dst: str) -> None:
    """One UDP datagram to ``dst`` port 9999 from the host namespace."""
    subprocess.run(["ip", "netns", "exec", host, "socat", "-u", "-",
                    f"UDP:{dst}:9999,sourceport=4000"], input=b"x\n", check=True,
                   capture_output=True, timeout=10)


@pytest.fixture(scope="module")
def lab() -> Iterator[dict[str, str]]:
    with netns.Namespaces("nodectx") as made:
        node = made.make()
        bridge_calls = subprocess.run(["ip", "netns", "exec", node, "cat",
                                       "/proc/sys/net/bridge/bridge-nf-call-iptables"],
                                      capture_output=True, text=True)
        if bridge_calls.stdout.strip() != "1":
            pytest.skip("br_netfilter is not loaded (or bridge-nf-call-iptables is 0): bridged "
                        "traffic does not pass iptables here")
        for line in NODE.strip().splitlines():
            ip(node, *line.split())
        hosts = {}
        for port, addr in HOSTS.items():  # two hosts behind br0's ports, one behind e1
            host = made.make()
            peer = "w" + port[1:]
            ip(node, "link", "add", port, "type", "veth", "peer", "name", peer, "netns", host)
            if port == "e1":
                ip(node, "addr", "add", "10.7.0.1/24", "dev", port)
            else:
                ip(node, "link", "set", port, "master", "br0")
            ip(node, "link", "set", port, "up")
            ip(host, "link", "set", "lo", "up")
            ip(host, "link", "set", peer, "up")
            ip(host, "addr", "add", f"{addr}/24", "dev", peer)
            ip(host, "route", "add", "default", "via", addr.rsplit(".", 1)[0] + ".1")
            hosts[port] = host
        ip(node, "route", "add", "10.8.0.0/16", "dev", "e1")
        for key in SYSCTLS:
            subprocess.run(["ip", "netns", "exec", node, "sysctl", "-qw", key], check=True)
        subprocess.run(["ip", "netns", "exec", node, "iptables-legacy-restore"], input=RULES,
                       text=True, check=True, capture_output=True)
        time.sleep(0.5)  # carrier on the veths
        yield {"node": node, **hosts}


def counted(node: str) -> list[tuple[str, int]]:
    """(chain, rule number) of the rules that counted packets since the last zeroing."""
    out = subprocess.run(["ip", "netns", "exec", node, "iptables-legacy-save", "-c"],
                         capture_output=True, text=True, check=True).stdout
    hits: list[tuple[str, int]] = []
    numbers: dict[str, int] = {}
    for line in out.splitlines():
        if not line.startswith("[") or " -A " not in line:
            continue
        counts, _, rule = line.partition(" -A ")
        chain = rule.split()[0]
        numbers[chain] = numbers.get(chain, 0) + 1
        if int(counts.strip("[]").split(":")[0]):
            hits.append((chain, numbers[chain]))
    return hits


# (from which host, to which address, the rule the kernel counts)
TRAFFIC = [("v1", "10.5.0.1", ("INPUT", 1)), ("v2", "10.5.0.1", ("INPUT", 2)),
           ("v1", "10.5.0.12", ("FORWARD", 1)), ("v2", "10.5.0.11", ("FORWARD", 2)),
           # routed from e1 out of br0 through v1: no physdev rule matches, not even
           # --physdev-out v1 (the IP hooks never know a routed packet's bridge port)
           ("e1", "10.5.0.11", ("FORWARD", 5))]


@pytest.fixture(scope="module")
def seen(lab: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Each datagram's counted rules (the node's neighbours and fdb learn from them), then a
    snapshot taken after them."""
    from netproxy.cli import main

    node = lab["node"]
    hits = []
    for port, dst, _ in TRAFFIC:
        subprocess.run(["ip", "netns", "exec", node, "iptables-legacy", "-Z"], check=True)
        send(lab[port], dst)
        time.sleep(0.2)
        hits.append(counted(node))
    # The node answered the first two with an ICMP error, so it knows both hosts' MACs.
    path = tmp_path_factory.mktemp("snap") / "node.snap"
    main(["snapshot", "--netns", node, "-o", str(path)])
    return {"hits": hits, "snap": path}


@pytest.mark.parametrize("case", range(len(TRAFFIC)))
def test_bridge_ports_from_the_fdb_agree_with_the_kernel(
        seen: dict[str, object], case: int, capsys: pytest.CaptureFixture[str]) -> None:
    port, dst, rule = TRAFFIC[case]
    assert seen["hits"][case] == [rule]  # type: ignore[index]
    code, out, err = run(capsys, "trace", "--rules", str(seen["snap"]), "--src", HOSTS[port],
                         "--dst", dst, "--proto", "udp", "--sport", "4000", "--dport", "9999",
                         "--json")
    assert code == 0, err
    data = json.loads(out)
    (outcome,) = data["outcomes"]
    assert not data.get("assumptions"), data  # no stated default: the ports are known
    last = outcome["path"][-1]
    assert (last["chain"], last["rule"]) == rule, outcome["path"]
    if port == "e1":
        assert data["inferred"]["bridge"] == "arrived through no bridge port"
        return
    assert data["packet"]["physdev_in"] == port
    other = "v2" if port == "v1" else "v1"
    if dst == "10.5.0.1":  # to the node: routed off the bridge, no output port
        assert data["inferred"]["bridge"] == ("routed by br0, not bridged: no output bridge "
                                              f"port, in through {port}")
    else:
        assert data["inferred"]["bridge"] == f"bridged by br0 from port {port} to port {other}"
        assert data["packet"]["physdev_out"] == other
        assert outcome["route"]["kind"] == "bridged"
    assert any(n.startswith("inferred: ") and f"behind {port} (bridge fdb)" in n
               for n in data["notes"]), data["notes"]


# (trace flags, `ip route get` words, refused by the kernel)
SOURCE_CASES = [
    # e0 is strict with src_valid_mark: the route back to 10.8.1.1 with mark 0x7 is table
    # 100's, via e0 -- accepted; without the mark it is main's, via e1 -- dropped.
    (["--src", "10.8.1.1", "-i", "e0", "--mark", "0x7"],
     ["from", "10.8.1.1", "iif", "e0", "mark", "0x7"], False),
    (["--src", "10.8.1.1", "-i", "e0"], ["from", "10.8.1.1", "iif", "e0"], True),
    # e1 is strict without src_valid_mark: the mark does not count, main's route is via e1.
    (["--src", "10.8.1.1", "-i", "e1", "--mark", "0x7"],
     ["from", "10.8.1.1", "iif", "e1", "mark", "0x7"], False),
    # The node's own address arriving from outside: a martian on e0 (accept_local 0) ...
    (["--src", "10.5.0.1", "-i", "e0", "--from", "external"],
     ["from", "10.5.0.1", "iif", "e0"], True),
    # ... and on e1 too: accept_local is on, but e1 is strict and the address is br0's.
    (["--src", "10.5.0.1", "-i", "e1", "--from", "external"],
     ["from", "10.5.0.1", "iif", "e1"], True),
]


@pytest.mark.parametrize(("flags", "words", "refused"), SOURCE_CASES,
                         ids=[" ".join(c[0]) for c in SOURCE_CASES])
def test_source_check_agrees_with_the_kernel(
        lab: dict[str, str], seen: dict[str, object], capsys: pytest.CaptureFixture[str],
        flags: list[str], words: list[str], refused: bool) -> None:
    proc = subprocess.run(["ip", "-n", lab["node"], "route", "get", "10.9.9.9", *words],
                          capture_output=True, text=True, check=False)
    assert (proc.returncode != 0) == refused, proc.stderr or proc.stdout
    if refused:
        assert "Invalid argument" in proc.stderr
    code, out, err = run(capsys, "trace", "--rules", str(seen["snap"]), *flags,
                         "--dst", "10.9.9.9", "--dport", "80", "--json")
    assert code == 0, err
    (outcome,) = json.loads(out)["outcomes"]
    if refused:
        assert outcome["verdict"] == "DROP", outcome
        assert outcome["route"]["kind"] in ("rp-filter", "martian"), outcome
    else:
        assert (outcome["verdict"], outcome["delivered"]) == ("ACCEPT", "forwarded"), outcome


def test_bridging_does_not_need_forwarding(lab: dict[str, str], seen: dict[str, object],
                                           tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """With forwarding off the kernel still bridges v1 -> v2 through FORWARD, and the trace
    from a snapshot taken then says the same."""
    from netproxy.cli import main

    node = lab["node"]
    subprocess.run(["ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=0"],
                   check=True)
    try:
        subprocess.run(["ip", "netns", "exec", node, "iptables-legacy", "-Z"], check=True)
        send(lab["v1"], "10.5.0.12")
        time.sleep(0.2)
        assert counted(node) == [("FORWARD", 1)]
        path = tmp_path / "off.snap"
        main(["snapshot", "--netns", node, "-o", str(path)])
    finally:
        subprocess.run(["ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                       check=True)
    code, out, err = run(capsys, "trace", "--rules", str(path), "--src", "10.5.0.11",
                         "--dst", "10.5.0.12", "--proto", "udp", "--sport", "4000",
                         "--dport", "9999", "--json")
    assert code == 0, err
    (outcome,) = json.loads(out)["outcomes"]
    assert (outcome["verdict"], outcome["route"]["kind"]) == ("ACCEPT", "bridged")
    assert (outcome["path"][-1]["chain"], outcome["path"][-1]["rule"]) == ("FORWARD", 1)


def test_snapshot_records_l2_and_source_check_values(seen: dict[str, object],
                                                     lab: dict[str, str]) -> None:
    from netproxy.node.snapshot import read_snapshot

    ctx = read_snapshot(Path(str(seen["snap"])))
    assert ctx.version == 2
    assert ctx.sysctls["net.ipv4.conf.e0.src_valid_mark"] == "1"
    assert ctx.sysctls["net.ipv4.conf.e1.accept_local"] == "1"
    router = ctx.router("ipv4")
    assert router.bridge_port("br0", 0x0A05000B)[0] == "v1"
    assert router.bridge_port("br0", 0x0A05000C)[0] == "v2"
