"""A hand-written (not kube-proxy) nftables ruleset against the kernel, with a mixed node:
a firewalld-like inet filter (zones dispatched by an interface verdict map, an address set
with intervals, a port set, an rp_filter-like `fib` check) and a `numgen inc` DNAT are loaded
with `nft -f` into a fresh namespace that also holds iptables-nft and iptables-legacy rules.
Real TCP connections come from another namespace; for each, `nft monitor trace` gives the
kernel's rule path, which must equal the tracer's hop by hop, and `netproxy trace --netns`
(reading the namespace's nft ruleset and both iptables variants) must give the verdict the
client saw."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netproxy.backend.lab.nfttrace import kernel_path
from netproxy.commands.rulesource import live_node, node_rules
from netproxy.trace import Packet, Tracer

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[1]
TABLES = ("fw", "lb")
"""The hand-written tables whose hops are compared (iptables-legacy's are not in nft's
monitor; iptables-nft's print in nft's spelling, not in iptables-save's)."""

RULESET = """
table inet fw {
	set trusted {
		type ipv4_addr
		flags interval
		elements = { 10.78.0.0/28 }
	}

	set blocked {
		type inet_service
		elements = { 7003 }
	}

	map zones {
		type ifname : verdict
		elements = { "s0" : jump zone_public }
	}

	chain early {
		type filter hook prerouting priority -10; policy accept;
		fib saddr . iif oif missing drop
		tcp dport 7004 meta mark set 0x00000010
	}

	chain input {
		type filter hook input priority 10; policy drop;
		ct state established,related accept
		ct state invalid drop
		iifname "lo" accept
		iifname vmap @zones
		reject with icmpx admin-prohibited
	}

	chain zone_public {
		tcp dport @blocked drop
		ip saddr @trusted tcp dport 7001 accept
		meta mark 0x00000010 accept
		tcp dport { 7000, 8000, 8001 } accept
	}
}
table ip lb {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		tcp dport 9000 dnat ip addr . port to numgen inc mod 2 map { 0 : 10.78.0.2 . 8000, 1 : 10.78.0.2 . 8001 }
	}
}
"""
IPTABLES = [("iptables-legacy", ["-A", "INPUT", "-p", "tcp", "--dport", "7005", "-j", "REJECT",
                                 "--reject-with", "tcp-reset"]),
            ("iptables-nft", ["-A", "INPUT", "-p", "tcp", "--dport", "7006", "-j", "DROP"])]
PORTS = (7000, 7001, 7002, 7003, 7004, 7005, 7006, 8000, 8001)
SERVER = f"""
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("10.78.0.2", port)); s.listen(64)
    while True:
        c, _ = s.accept(); c.sendall(str(port).encode()); c.close()
for p in {PORTS!r}:
    threading.Thread(target=serve, args=(p,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""
CLIENT = """
import socket, sys
port = int(sys.argv[1])
s = socket.socket(); s.settimeout(1.0)
s.bind(("10.78.0.1", int(sys.argv[2])))
try:
    s.connect(("10.78.0.2", port)); print("ACCEPT", s.recv(16).decode())
except ConnectionRefusedError:
    print("REJECT")
except (TimeoutError, socket.timeout):
    print("DROP")
except OSError as err:  # the ICMP admin-prohibited answer
    print("REJECT", err.errno)
"""


def sh(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(args, capture_output=True, text=True, input=stdin)
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done.stdout


@pytest.fixture
def node() -> Iterator[tuple[str, str]]:
    for tool in ("nft", "iptables-legacy", "iptables-nft", "iptables-legacy-save",
                 "iptables-nft-save"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup.sh installs it)")
    client, server = f"np-nfttrace-c{os.getpid()}", f"np-nfttrace-s{os.getpid()}"
    proc = None
    try:
        for ns in (client, server):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", client, "link", "add", "c0", "type", "veth", "peer", "name", "s0",
           "netns", server)
        sh("ip", "-n", client, "addr", "add", "10.78.0.1/24", "dev", "c0")
        sh("ip", "-n", server, "addr", "add", "10.78.0.2/24", "dev", "s0")
        sh("ip", "-n", client, "link", "set", "c0", "up")
        sh("ip", "-n", server, "link", "set", "s0", "up")
        sh("ip", "netns", "exec", server, "nft", "-f", "-", stdin=RULESET)
        for tool, rule in IPTABLES:
            sh("ip", "netns", "exec", server, tool, *rule)
        proc = subprocess.Popen(["ip", "netns", "exec", server, sys.executable, "-c", SERVER],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield client, server
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        for ns in (client, server):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


def node_tracer(server: str, *, strict: bool = False) -> Tracer:
    """The namespace as `trace --netns` reads it: both iptables variants, the nft ruleset,
    its addresses and routes (for `fib saddr . iif oif`)."""
    node = live_node(server)
    ruleset, listings, notes = node_rules(node, "auto", "ipv4", strict=strict)
    assert notes == []
    # each rule read once: legacy is the iptables ruleset walked (its REJECT of 7005),
    # iptables-nft's filter table (its DROP of 7006) comes with the nft listing
    assert [r.target.name for r in ruleset.tables["filter"].chains["INPUT"].rules] == ["REJECT"]
    assert sorted(t.label for t in listings[0].tables.values()) == ["inet fw", "ip filter",
                                                                    "ip lb"]
    return Tracer(ruleset, local_ips=node.addresses("ipv4"), nft=listings,
                  router=node.router("ipv4"), strict=strict)


def connect(client: str, port: int, sport: int) -> str:
    return sh("ip", "netns", "exec", client, sys.executable, "-c", CLIENT, str(port),
              str(sport)).strip()


def seen_key(port: int, seen: str) -> tuple[str, str | None]:
    """(verdict, DNAT endpoint) as the tracer names them, from what the client saw."""
    words = seen.split()
    if words[0] != "ACCEPT" or words[1] == str(port):
        return words[0], None
    return "ACCEPT", f"10.78.0.2:{words[1]}"


def test_hand_written_ruleset_paths_agree_with_nft_monitor_trace(node: tuple[str, str]) -> None:
    client, server = node
    tracer = node_tracer(server, strict=True)
    sport = 42000
    for port in (*PORTS, 9000, 9000):
        sport += 1

        seen: list[str] = []

        def send(port: int = port, sport: int = sport, seen: list[str] = seen) -> None:
            seen.append(connect(client, port, sport))

        hops = kernel_path(server, "10.78.0.1", "10.78.0.2", "tcp", port, send)
        kernel = [(h.table, h.chain, h.text) for h in hops if h.table in TABLES]
        verdict, dnat = seen_key(port, seen[0])
        result = tracer.trace(Packet(src="10.78.0.1", dst="10.78.0.2", dport=port, sport=sport,
                                     in_interface="s0"))
        paths = [[(h.table, h.chain, h.text) for h in o.path if h.table in TABLES]
                 for o in result.outcomes if (o.verdict, o.dnat) == (verdict, dnat)]
        assert kernel and kernel in paths, f"port {port}: kernel {seen[0]} {kernel}, tracer {paths}"


def test_numgen_inc_round_robin_agrees_with_the_kernel(node: tuple[str, str]) -> None:
    client, server = node
    tracer = node_tracer(server)
    syns = [Packet(src="10.78.0.1", dst="10.78.0.2", dport=9000, sport=43000 + n,
                   in_interface="s0") for n in range(4)]
    traced = tracer.trace_sequence(syns)
    assert [r.same_as_previous for r in traced[1:]] == [0.0, 0.0, 0.0]
    backends = [connect(client, 9000, 43000 + n).split()[1] for n in range(4)]
    # the kernel's counter starts where the rule was loaded: 0, 1, 0, 1
    assert backends == ["8000", "8001", "8000", "8001"]


def test_trace_netns_reads_nft_and_both_iptables_variants(node: tuple[str, str]) -> None:
    client, server = node
    for port, sport in ((7000, 44001), (7002, 44002), (7003, 44003), (7005, 44005),
                        (7006, 44006)):
        seen = connect(client, port, sport)
        r = subprocess.run([sys.executable, "-m", "netproxy", "trace", "--netns", server,
                            "--local-ip", "10.78.0.2", "--src", "10.78.0.1", "--dst",
                            "10.78.0.2", "--dport", str(port), "-i", "s0", "--json"],
                           capture_output=True, text=True, timeout=120, cwd=REPO)
        assert r.returncode == 0, r.stderr
        verdicts = {o["verdict"] for o in json.loads(r.stdout)["outcomes"]}
        assert verdicts == {seen.split()[0]}, f"port {port}: kernel {seen}, trace {verdicts}"
