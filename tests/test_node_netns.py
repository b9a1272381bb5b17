"""The route-based trace agrees with the kernel: a namespace with two interfaces, a policy
rule by fwmark, a second table, blackhole/prohibit/unreachable routes and equal prefixes with
different metrics; `netproxy snapshot --netns` records it, the trace decides each packet's
route, and `ip route get` inside the namespace (with the packet's mark and iif after
PREROUTING) is the kernel's answer. Reverse path filtering too: a0 is strict, b0 loose, and
`ip route get ... iif DEV` refuses what the kernel's rp_filter drops. Also: both snapshot
producers write the same sections."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_doctor_cli import run

from netproxy.backend import netns
from netproxy.node.snapshot import parse_snapshot, read_snapshot
from netproxy.trace.addr import parse_addr

pytestmark = pytest.mark.netns

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "node-snapshot.sh"

SETUP = """
link set lo up
link add a0 type veth peer name a1
link add b0 type veth peer name b1
link set a0 up
link set a1 up
link set b0 up
link set b1 up
addr add 10.1.0.1/24 dev a0
addr add 10.2.0.1/24 dev b0
route add default via 10.2.0.254
route add 10.9.0.0/16 via 10.1.0.254 metric 5
route add 10.9.0.0/16 via 10.2.0.254 metric 10
route add blackhole 10.8.0.0/16
route add prohibit 10.6.0.0/16
route add unreachable 10.4.0.0/16
route add 10.7.0.0/16 via 10.1.0.253 table 100
rule add fwmark 0x10/0xff lookup 100 pref 100
-6 addr add fd01::1/64 dev a0 nodad
-6 addr add fd02::1/64 dev b0 nodad
-6 route add fd09::/32 via fd01::fe
-6 route add blackhole fd08::/32
-6 route add prohibit fd06::/32
-6 route add fd07::/32 via fd02::fd table 100
-6 rule add fwmark 0x10/0xff lookup 100 pref 100
"""
RULES = """*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p udp -m udp --dport 5353 -j MARK --set-xmark 0x10/0xff
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d 10.2.0.1/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.7.0.5:80
-A PREROUTING -d 10.2.0.1/32 -p tcp -m tcp --dport 8081 -j DNAT --to-destination 10.8.0.5:80
-A PREROUTING -d 10.2.0.1/32 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.7.0.6:53
COMMIT
"""
RULES6 = """*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p udp -m udp --dport 5353 -j MARK --set-xmark 0x10/0xff
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -d fd02::1/128 -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd09::5]:80
-A PREROUTING -d fd02::1/128 -p tcp -m tcp --dport 8081 -j DNAT --to-destination [fd08::5]:80
COMMIT
"""

KERNEL_ERRORS = {"Invalid argument": "blackhole", "Permission denied": "prohibit",
                 "No route to host": "unreachable", "Network is unreachable": "none"}
"""What `ip route get` says for each discarding route."""

# (trace flags, `ip route get` words for the packet after PREROUTING, expected kind)
CASES = [
    (["--src", "10.2.0.9", "--dst", "10.7.1.1", "--dport", "80"],
     ["10.7.1.1", "from", "10.2.0.9", "iif", "b0"], "unicast"),
    (["--src", "10.2.0.9", "--dst", "10.7.1.1", "--dport", "5353", "--proto", "udp"],
     ["10.7.1.1", "from", "10.2.0.9", "iif", "b0", "mark", "0x10"], "unicast"),
    (["--src", "10.1.0.9", "--dst", "10.9.1.1", "--dport", "80"],
     ["10.9.1.1", "from", "10.1.0.9", "iif", "a0"], "unicast"),
    (["--src", "10.2.0.9", "--dst", "10.2.0.1", "--dport", "8080"],
     ["10.7.0.5", "from", "10.2.0.9", "iif", "b0"], "unicast"),
    (["--src", "10.2.0.9", "--dst", "10.2.0.1", "--dport", "5353", "--proto", "udp"],
     ["10.7.0.6", "from", "10.2.0.9", "iif", "b0", "mark", "0x10"], "unicast"),
    (["--src", "10.2.0.9", "--dst", "10.2.0.1", "--dport", "8081"],
     ["10.8.0.5", "from", "10.2.0.9", "iif", "b0"], "blackhole"),
    (["--src", "10.2.0.9", "--dst", "10.6.1.1", "--dport", "80"],
     ["10.6.1.1", "from", "10.2.0.9", "iif", "b0"], "prohibit"),
    (["--src", "10.2.0.9", "--dst", "10.4.1.1", "--dport", "80"],
     ["10.4.1.1", "from", "10.2.0.9", "iif", "b0"], "unreachable"),
    (["--src", "10.2.0.9", "--dst", "10.1.0.1", "--dport", "22"],
     ["10.1.0.1", "from", "10.2.0.9", "iif", "b0"], "local"),
    (["--src", "10.1.0.9", "--dst", "10.1.0.255", "--dport", "9", "--proto", "udp"],
     ["10.1.0.255", "from", "10.1.0.9", "iif", "a0"], "broadcast"),
    (["--from", "node", "--dst", "10.7.1.1", "--mark", "0x10"],
     ["10.7.1.1", "mark", "0x10"], "unicast"),
    (["--from", "node", "--dst", "10.9.3.3"], ["10.9.3.3"], "unicast"),
    (["--from", "node", "--dst", "10.8.3.3"], ["10.8.3.3"], "blackhole"),
    # IPv6: the same decisions in the other family's tables and rules.
    (["--src", "fd02::9", "--dst", "fd09::1", "--dport", "80"],
     ["fd09::1", "from", "fd02::9", "iif", "b0"], "unicast"),
    (["--src", "fd02::9", "--dst", "fd07::1", "--dport", "5353", "--proto", "udp"],
     ["fd07::1", "from", "fd02::9", "iif", "b0", "mark", "0x10"], "unicast"),
    (["--src", "fd02::9", "--dst", "fd07::1", "--dport", "53", "--proto", "udp"],
     ["fd07::1", "from", "fd02::9", "iif", "b0"], "none"),
    (["--src", "fd02::9", "--dst", "fd02::1", "--dport", "8080"],
     ["fd09::5", "from", "fd02::9", "iif", "b0"], "unicast"),
    (["--src", "fd02::9", "--dst", "fd02::1", "--dport", "8081"],
     ["fd08::5", "from", "fd02::9", "iif", "b0"], "blackhole"),
    (["--src", "fd02::9", "--dst", "fd06::1", "--dport", "80"],
     ["fd06::1", "from", "fd02::9", "iif", "b0"], "prohibit"),
    (["--src", "fd02::9", "--dst", "fd01::1", "--dport", "22"],
     ["fd01::1", "from", "fd02::9", "iif", "b0"], "local"),
    (["--from", "node", "--dst", "fd09::3"], ["fd09::3"], "unicast"),
    (["--from", "node", "--dst", "fd07::3", "--mark", "0x10"], ["fd07::3", "mark", "0x10"],
     "unicast"),
]


@pytest.fixture(scope="module")
def node() -> Iterator[str]:
    with netns.Namespaces("nodectx") as made:
        name = made.make()
        for line in SETUP.strip().splitlines():
            subprocess.run(["ip", "-n", name, *line.split()], check=True, capture_output=True)
        for key in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
                    "net.ipv4.conf.default.rp_filter=0", "net.ipv6.conf.all.forwarding=1",
                    "net.ipv4.conf.a0.rp_filter=1", "net.ipv4.conf.b0.rp_filter=2"):
            subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw", key], check=True)
        subprocess.run(["ip", "netns", "exec", name, "iptables-legacy-restore"], input=RULES,
                       text=True, check=True, capture_output=True)
        subprocess.run(["ip", "netns", "exec", name, "ip6tables-legacy-restore"], input=RULES6,
                       text=True, check=True, capture_output=True)
        wait_until_settled(name)
        yield name


def wait_until_settled(name: str, limit: float = 10.0) -> None:
    """Wait until the veths have carrier and no route is `linkdown` any more: carrier comes up
    a moment after `link set up`, and a snapshot taken before it records other route flags than
    one taken after (on a loaded machine the two producers' snapshots differed that way)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        routes = "".join(subprocess.run(["ip", "-n", name, *family, "route", "show", "table",
                                         "all"], capture_output=True, text=True).stdout
                         for family in ([], ["-6"]))
        links = json.loads(subprocess.run(["ip", "-n", name, "-j", "link"], capture_output=True,
                                          text=True).stdout)
        if "linkdown" not in routes and all(link.get("operstate") in ("UP", "UNKNOWN")
                                            for link in links):
            return
        time.sleep(0.05)
    raise AssertionError(f"namespace {name}: links or routes still down after {limit} s")


@pytest.fixture(scope="module")
def snap(node: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from netproxy.cli import main

    path = tmp_path_factory.mktemp("snap") / "node.snap"
    main(["snapshot", "--netns", node, "-o", str(path)])  # exits only on errors
    return path


def kernel(node: str, words: list[str]) -> dict[str, str | None]:
    proc = subprocess.run(["ip", "-n", node, "-j", "route", "get", *words], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        kind = next((k for msg, k in KERNEL_ERRORS.items() if msg in proc.stderr), None)
        assert kind is not None, proc.stderr
        return {"kind": kind}
    (route,) = json.loads(proc.stdout)
    return {"kind": route.get("type", "unicast"), "dev": route.get("dev"),
            "gateway": route.get("gateway"), "table": route.get("table", "main"),
            "src": route.get("prefsrc")}


@pytest.mark.parametrize(("flags", "words", "kind"), CASES,
                         ids=[" ".join(c[0]) for c in CASES])
def test_route_based_trace_agrees_with_the_kernel(
        node: str, snap: Path, capsys: pytest.CaptureFixture[str], flags: list[str],
        words: list[str], kind: str) -> None:
    want = kernel(node, words)
    assert want["kind"] == kind  # the topology really routes the packet this way
    code, out, err = run(capsys, "trace", "--rules", str(snap), *flags, "--json")
    assert code == 0, err
    data = json.loads(out)
    (outcome,) = data["outcomes"]
    route = outcome["route"]
    assert route["kind"] == want["kind"], (route, want)
    if kind == "unicast":
        assert (route["dev"], route["gateway"], route["table"]) == (
            want["dev"], want["gateway"], want["table"])
        if "--from" in flags:  # the node's own packet: the kernel's source
            assert data["packet"]["src"] == want["src"] == route["src"]
        else:
            assert outcome["verdict"] == "ACCEPT" and outcome["delivered"] == "forwarded"
    elif kind in ("local", "broadcast"):
        assert route["table"] == want["table"] == "local"
        assert outcome["verdict"] == "ACCEPT" and outcome["delivered"] == "local"
    else:
        assert outcome["verdict"] == ("DROP" if kind == "blackhole" else "REJECT")
        assert data["summary"].endswith(outcome["reason"])  # "... by routing: <route>"
    if "--src" in flags:  # the input interface was inferred from the source's route
        assert data["inferred"]["in_interface"] == words[words.index("iif") + 1]


def test_forwarding_off_is_a_drop_like_the_kernel(node: str, snap: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    text = snap.read_text().replace("net.ipv4.ip_forward = 1", "net.ipv4.ip_forward = 0")
    off = tmp_path / "off.snap"
    off.write_text(text)
    code, out, err = run(capsys, "trace", "--rules", str(off), "--src", "10.2.0.9",
                         "--dst", "10.9.1.1", "--brief")
    assert code == 0, err
    assert "DROP 100% by routing: forwarding is off on the node" in out


# (trace flags, `ip route get` words, the kernel's refusal or None when it routes the packet;
# a martian source is refused with EINVAL whatever the reason)
RP_CASES = [
    # a0 is strict: 10.2.0.9 is routed back via b0, so it may not arrive on a0 ...
    (["--src", "10.2.0.9", "-i", "a0", "--dst", "10.9.1.1"],
     ["10.9.1.1", "from", "10.2.0.9", "iif", "a0"], "Invalid argument"),
    # ... while on b0 it may.
    (["--src", "10.2.0.9", "-i", "b0", "--dst", "10.9.1.1"],
     ["10.9.1.1", "from", "10.2.0.9", "iif", "b0"], None),
    # b0 is loose: any route back will do (10.1.0.9 is routed back via a0) ...
    (["--src", "10.1.0.9", "-i", "b0", "--dst", "10.9.1.1"],
     ["10.9.1.1", "from", "10.1.0.9", "iif", "b0"], None),
    # ... but a blackhole is no route back.
    (["--src", "10.8.0.9", "-i", "b0", "--dst", "10.9.1.1"],
     ["10.9.1.1", "from", "10.8.0.9", "iif", "b0"], "Invalid argument"),
    # strict, and the route back leaves by a0 itself: accepted.
    (["--src", "10.1.0.9", "-i", "a0", "--dst", "10.9.1.1"],
     ["10.9.1.1", "from", "10.1.0.9", "iif", "a0"], None),
]


@pytest.mark.parametrize(("flags", "words", "refusal"), RP_CASES,
                         ids=[" ".join(c[0]) for c in RP_CASES])
def test_reverse_path_filter_agrees_with_the_kernel(
        node: str, snap: Path, capsys: pytest.CaptureFixture[str], flags: list[str],
        words: list[str], refusal: str | None) -> None:
    proc = subprocess.run(["ip", "-n", node, "-j", "route", "get", *words],
                          capture_output=True, text=True, check=False)
    if refusal is None:
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode != 0 and refusal in proc.stderr, proc.stderr
    code, out, err = run(capsys, "trace", "--rules", str(snap), *flags, "--dport", "80",
                         "--json")
    assert code == 0, err
    (outcome,) = json.loads(out)["outcomes"]
    if refusal is None:
        assert (outcome["verdict"], outcome["delivered"]) == ("ACCEPT", "forwarded")
        assert outcome["route"]["kind"] == "unicast"
    else:
        iif = flags[flags.index("-i") + 1]
        mode = "strict" if iif == "a0" else "loose"
        assert outcome["verdict"] == "DROP" and outcome["route"]["kind"] == "rp-filter"
        assert outcome["reason"].startswith(f"routing: reverse path filter ({mode}, "
                                            "net.ipv4.conf rp_filter all = 0, "
                                            f"{iif} = {1 if mode == 'strict' else 2})"), outcome


def test_snapshot_records_the_namespace(snap: Path, node: str) -> None:
    ctx = read_snapshot(snap)
    assert ctx.header["netns"] == node
    assert ctx.sysctls["net.ipv4.ip_forward"] == "1"
    assert ctx.sysctls["net.ipv4.conf.a0.rp_filter"] == "1"
    assert ctx.sysctls["net.ipv4.conf.b0.rp_filter"] == "2"
    assert "iptables-save (legacy)" in ctx.sections
    assert set(ctx.addresses("ipv4")) == {"127.0.0.1", "10.1.0.1", "10.2.0.1"}
    assert {"fd01::1", "fd02::1"} <= set(ctx.addresses("ipv6"))
    assert "ip6tables-save (legacy)" in ctx.sections
    assert [r.priority for r in ctx.router("ipv4").rules] == [0, 100, 32766, 32767]


def test_shell_script_writes_the_same_sections(node: str, snap: Path) -> None:
    proc = subprocess.run(["ip", "netns", "exec", node, "sh", str(SCRIPT)], capture_output=True,
                          text=True, check=True)
    ctx = parse_snapshot(proc.stdout, "node-snapshot.sh")
    ours = read_snapshot(snap)
    assert list(ctx.sections) == list(ours.sections)
    assert ctx.notes == ours.notes
    for name in ctx.sections:  # the same node gives the same text (but for timers, counters)
        if name in ("ip -j addr", "ip -j link", "nft list ruleset",
                    "ip -6 -j route show table all", "ip -j neigh show",
                    "bridge -j fdb show"):  # lifetimes, link-local routes and multicast
            continue  # groups after DAD, neighbours probed

        def kept(lines: list[str]) -> list[str]:  # without dated comments and counters
            return [re.sub(r"\[\d+:\d+\]$", "[0:0]", line) for line in lines
                    if not line.startswith("#")]

        assert kept(ctx.sections[name].lines) == kept(ours.sections[name].lines), name
    assert ctx.ruleset().tables.keys() == ours.ruleset().tables.keys()
    assert ctx.router("ipv4").lookup(0x0A070101, mark=0x10).gateway == "10.1.0.253"
    for dst in ("fd09::1", "fd07::1", "fd08::1", "fd02::1"):
        for mark in (0, 0x10):
            addr = parse_addr(dst, "ipv6")
            assert ctx.router("ipv6").lookup(addr, mark=mark) == \
                ours.router("ipv6").lookup(addr, mark=mark)


def test_missing_namespace_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "snapshot", "--netns", netns.unique_name("node-absent"))
    assert code == 2 and out == "" and "no network namespace" in err
