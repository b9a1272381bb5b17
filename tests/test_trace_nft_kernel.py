"""The nftables trace against the real kernel: a ruleset loaded with `nft -f` into a fresh
namespace, real TCP connections from another one, and the tracer's verdicts for the same
packets (read back with `nft list ruleset`, as a node's listing would be)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from netproxy.netfilter.model import Ruleset
from netproxy.parser.nftables import parse_nft_json, parse_nft_text
from netproxy.trace import Packet, Tracer

pytestmark = pytest.mark.netns

RULESET = """
table inet guard {
	chain early {
		type filter hook prerouting priority -10; policy accept;
		tcp dport 7003 drop
	}

	chain input {
		type filter hook input priority filter; policy accept;
		tcp dport 7002 reject with tcp reset
		tcp dport { 7000, 7001, 8000, 8001 } accept
	}

	chain late {
		type filter hook input priority 10; policy accept;
		tcp dport 7001 drop
	}
}
table ip lb {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		meta l4proto tcp tcp dport 9000 dnat ip addr . port to numgen random mod 2 map { 0 : 10.77.0.2 . 8000, 1 : 10.77.0.2 . 8001 }
	}
}
"""
SERVER = """
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("10.77.0.2", port)); s.listen(64)
    while True:
        c, _ = s.accept(); c.sendall(str(port).encode()); c.close()
for p in (7000, 7001, 7002, 7003, 8000, 8001):
    threading.Thread(target=serve, args=(p,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""
CLIENT = """
import socket, sys
port = int(sys.argv[1])
s = socket.socket(); s.settimeout(1.0)
try:
    s.connect(("10.77.0.2", port)); print("ACCEPT", s.recv(16).decode())
except ConnectionRefusedError:
    print("REJECT")
except (TimeoutError, socket.timeout):
    print("DROP")
"""


def sh(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done.stdout


@pytest.fixture
def lab() -> Iterator[tuple[str, str]]:
    client, server = f"np-nftp-c{os.getpid()}", f"np-nftp-s{os.getpid()}"
    proc = None
    try:
        for ns in (client, server):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", client, "link", "add", "c0", "type", "veth", "peer", "name", "s0",
           "netns", server)
        sh("ip", "-n", client, "addr", "add", "10.77.0.1/24", "dev", "c0")
        sh("ip", "-n", server, "addr", "add", "10.77.0.2/24", "dev", "s0")
        sh("ip", "-n", client, "link", "set", "c0", "up")
        sh("ip", "-n", server, "link", "set", "s0", "up")
        done = subprocess.run(["ip", "netns", "exec", server, "nft", "-f", "-"], input=RULESET,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
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


def kernel(client: str, port: int) -> str:
    return sh("ip", "netns", "exec", client, sys.executable, "-c", CLIENT, str(port)).strip()


def test_trace_agrees_with_the_kernel(lab: tuple[str, str]) -> None:
    client, server = lab
    listing = parse_nft_text(sh("ip", "netns", "exec", server, "nft", "list", "ruleset"),
                             source="netns", strict=True)
    tracer = Tracer(Ruleset(family="ipv4"), local_ips=["10.77.0.2"], nft=[listing])
    as_json = parse_nft_json(sh("ip", "netns", "exec", server, "nft", "-j", "list", "ruleset"),
                             source="netns-json", strict=True)
    json_tracer = Tracer(Ruleset(family="ipv4"), local_ips=["10.77.0.2"], nft=[as_json])

    def traced(port: int, t: Tracer = tracer) -> dict[tuple[str, str | None], float]:
        res = t.trace(Packet(src="10.77.0.1", dst="10.77.0.2", dport=port, in_interface="s0"))
        out: dict[tuple[str, str | None], float] = {}
        for o in res.outcomes:
            out[(o.verdict, o.dnat)] = out.get((o.verdict, o.dnat), 0.0) + o.probability
        return out

    for port in (7000, 7001, 7002, 7003, 9000):  # the JSON listing traces alike
        assert traced(port, json_tracer) == traced(port)

    for port in (7000, 7001, 7002, 7003):
        seen = kernel(client, port)
        (verdict, _), = traced(port)
        assert seen.split()[0] == verdict, f"port {port}: kernel {seen}, trace {verdict}"
    # numgen: the tracer's two equal branches, and the kernel reaching both backends
    assert traced(9000) == {("ACCEPT", "10.77.0.2:8000"): 0.5, ("ACCEPT", "10.77.0.2:8001"): 0.5}
    backends = set()
    deadline = time.monotonic() + 20
    while len(backends) < 2 and time.monotonic() < deadline:
        seen = kernel(client, 9000)
        assert seen.startswith("ACCEPT"), seen
        backends.add(seen.split()[1])
    assert backends == {"8000", "8001"}
