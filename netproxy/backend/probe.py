"""The lab's client: send bounded TCP/UDP probes and report what came back.

Run inside a client namespace with a JSON list of probes on stdin, each
``{"dst": ip, "port": n, "proto": "tcp"|"udp", "src": ip|null, "count": n, "timeout": s,
"wait": s, "sport": n}`` (``wait`` and ``sport`` optional: attempt ``i`` is sent from source
port ``sport + i``, else from one the kernel picks);
prints a JSON list with, per probe, the local address used and one result per attempt:
``{"kind": "answered", "local": ..., "peer": ...}`` (what the endpoint reported),
``{"kind": "refused"}`` (RST or ICMP port unreachable: REJECT), ``{"kind": "timeout"}``
(nothing came back: DROP), ``{"kind": "unreachable"}`` or ``{"kind": "error", ...}``.

Two waits, so that a busy machine cannot turn an answer into a timeout: ``timeout`` is what
the kernel gets to decide a TCP connection (SYN answered, refused, or not: kept under TCP's
first SYN retransmission, so one attempt stays one packet); ``wait`` (default
:data:`ANSWER_WAIT`) is how long an endpoint process may then take to say who it is -- for a
TCP connection the kernel has let through, and for a UDP datagram, where nothing but the
answer tells it from one dropped.
"""

from __future__ import annotations

import errno
import json
import socket
import sys
import time
from typing import Any

MAX_ATTEMPTS = 1000
ANSWER_WAIT = 5.0
"""Seconds an endpoint's echo process may take to answer (it may wait for a CPU)."""


def attempt(dst: str, port: int, proto: str, src: str | None, timeout: float,
            wait: float = ANSWER_WAIT, sport: int = 0) -> tuple[dict[str, Any], str]:
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(family, kind) as sock:
        sock.settimeout(timeout)
        if src or sport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((src or "", sport))
        local = ""
        try:
            sock.connect((dst, port))
            local = sock.getsockname()[0]
            if proto == "udp":
                sock.send(b"probe\n")
            answer_by = time.monotonic() + max(wait, timeout)
            data = b""
            while not data.endswith(b"\n"):
                sock.settimeout(max(0.0, answer_by - time.monotonic()))
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            if not data:
                return {"kind": "closed"}, local
            reply = json.loads(data.decode())
            return {"kind": "answered", "local": reply["local"], "peer": reply["peer"]}, local
        except TimeoutError:
            return {"kind": "timeout"}, local or _local(sock)
        except ConnectionRefusedError:
            return {"kind": "refused"}, local or _local(sock)
        except OSError as exc:
            if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                return {"kind": "unreachable"}, local or _local(sock)
            return {"kind": "error", "error": exc.strerror or str(exc)}, local or _local(sock)


def _local(sock: socket.socket) -> str:
    try:
        return str(sock.getsockname()[0])
    except OSError:
        return ""


def run(probes: list[dict[str, Any]], deadline: float) -> list[dict[str, Any]]:
    out = []
    for probe in probes:
        results: list[dict[str, Any]] = []
        local = ""
        sport = int(probe.get("sport", 0))
        for i in range(min(int(probe.get("count", 1)), MAX_ATTEMPTS)):
            if time.monotonic() > deadline:
                break
            result, local = attempt(probe["dst"], int(probe["port"]), probe.get("proto", "tcp"),
                                    probe.get("src"), float(probe.get("timeout", 0.5)),
                                    float(probe.get("wait", ANSWER_WAIT)), sport + i if sport else 0)
            results.append(result)
        out.append({"local": local, "results": results})
    return out


def main() -> int:
    probes = json.load(sys.stdin)
    budget = float(sys.argv[1]) if len(sys.argv) > 1 else 300.0
    json.dump(run(probes, time.monotonic() + budget), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
