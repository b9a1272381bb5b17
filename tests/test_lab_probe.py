"""The lab's client and echo server on loopback (no namespaces needed): every attempt comes
from its own source port, and a slow endpoint is an answer, not a timeout."""

from __future__ import annotations

import socket
import threading
import time

from netproxy.backend import echo, probe


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _echo() -> tuple[int, int]:
    tcp, udp = _free_port(socket.SOCK_STREAM), _free_port(socket.SOCK_DGRAM)
    threading.Thread(target=echo.serve, args=([tcp], [udp], "127.0.0.1"), daemon=True).start()
    for _ in range(100):  # until it listens
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", tcp)) == 0:
                return tcp, udp
        time.sleep(0.02)
    raise AssertionError("echo server did not start")


def test_every_attempt_comes_from_its_own_source_port() -> None:
    """The kernel picks UDP source ports at random and reuses them: a reused one would ride
    an earlier datagram's conntrack entry (no new DNAT). The probes name theirs."""
    tcp, udp = _echo()
    sport = _free_port(socket.SOCK_DGRAM)
    probes = [{"dst": "127.0.0.1", "port": port, "proto": proto, "src": None, "count": 5,
               "timeout": 0.9, "sport": sport} for port, proto in ((udp, "udp"), (tcp, "tcp"))]
    for out in probe.run(probes, time.monotonic() + 30):
        peers = [r["peer"] for r in out["results"]]
        assert [r["kind"] for r in out["results"]] == ["answered"] * 5
        assert peers == [f"127.0.0.1:{sport + i}" for i in range(5)]


def test_a_slow_answer_is_an_answer() -> None:
    """A UDP endpoint that answers after 1.5 s (a CPU-starved echo process) is answered, not
    a timeout, although the attempt's timeout is 0.9 s; nothing at all is a timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]

        def late() -> None:
            _, peer = server.recvfrom(100)
            time.sleep(1.5)
            server.sendto(echo._reply(server.getsockname(), peer), peer)

        threading.Thread(target=late, daemon=True).start()
        result, _ = probe.attempt("127.0.0.1", port, "udp", None, 0.9)
        assert result["kind"] == "answered"
        silent, _ = probe.attempt("127.0.0.1", port, "udp", None, 0.2, wait=0.5)
        assert silent == {"kind": "timeout"}
