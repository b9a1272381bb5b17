"""A tiny TCP/UDP responder for lab pods: says which address answered and whom it saw.

Run inside a pod namespace: ``python -m netproxy.backend.echo --tcp 8080,80 --udp 53``.
Every TCP connection and every UDP datagram gets one JSON line back:
``{"local": "10.244.1.5:8080", "peer": "10.244.0.250:41234"}`` -- ``local`` is the address
and port that answered (after DNAT), ``peer`` the source it saw (after masquerading).
Prints ``ready`` once every socket listens; runs until killed.
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys


def _ports(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p]


def _reply(local: tuple[str, int], peer: tuple[str, int]) -> bytes:
    return (json.dumps({"local": f"{local[0]}:{local[1]}", "peer": f"{peer[0]}:{peer[1]}"}) + "\n").encode()


def serve(tcp: list[int], udp: list[int], address: str = "0.0.0.0") -> None:
    sel = selectors.DefaultSelector()
    for port in tcp:
        s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        s.listen(256)
        sel.register(s, selectors.EVENT_READ, "tcp")
    for port in udp:
        u = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((address, port))
        sel.register(u, selectors.EVENT_READ, "udp")
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                if key.data == "tcp":
                    conn, peer = sock.accept()
                    with conn:
                        conn.sendall(_reply(conn.getsockname()[:2], peer[:2]))
                else:
                    _, peer = sock.recvfrom(2048)
                    sock.sendto(_reply(sock.getsockname()[:2], peer[:2]), peer)
            except OSError:
                continue


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tcp", type=_ports, default=[])
    ap.add_argument("--udp", type=_ports, default=[])
    ap.add_argument("--address", default="0.0.0.0")
    args = ap.parse_args(argv)
    try:
        serve(args.tcp, args.udp, args.address)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
