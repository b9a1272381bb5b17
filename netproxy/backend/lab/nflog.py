"""The legacy kernel's rule path: ``-j TRACE`` logged through nfnetlink_log (group 0).

iptables-legacy's TRACE target hands every matched rule to the namespace's IPv4 logger with
a prefix ``TRACE: table:chain:type:rulenum``; with the logger set to nfnetlink_log (a sysctl
of the lab's node namespace) those records arrive on a netlink socket opened inside the
namespace, together with the packet, so the first packet of a connection can be picked out.
Rule numbers are turned into rule text with the rules read back from the node.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable

from netproxy.backend import netns
from netproxy.backend.lab.ktrace import MONITOR_DEADLINE, KernelHop
from netproxy.backend.nsthread import run_in_netns
from netproxy.errors import BackendError

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET, NFULNL_MSG_CONFIG = 0, 1
NFULA_CFG_CMD, NFULA_CFG_MODE = 1, 2
NFULNL_CFG_CMD_BIND, NFULNL_CFG_CMD_PF_BIND, NFULNL_CFG_CMD_PF_UNBIND = 1, 3, 4
NFULNL_COPY_PACKET = 2
NFULA_PAYLOAD, NFULA_PREFIX = 9, 10
NLM_F_REQUEST, NLM_F_ACK = 1, 4


def _attr(kind: int, data: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + b"\0" * (-len(raw) % 4)


def _config(sock: socket.socket, family: int, group: int, attrs: bytes, seq: int) -> None:
    body = struct.pack("=BBH", family, 0, socket.htons(group)) + attrs
    msg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG
    sock.send(struct.pack("=IHHII", 16 + len(body), msg_type, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body)
    sock.recv(65536)


def _records(data: bytes) -> list[tuple[str, bytes]]:
    out = []
    offset = 0
    while offset + 16 <= len(data):
        length, mtype = struct.unpack_from("=IH", data, offset)
        if length < 16:
            break
        if mtype == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET:
            prefix, payload = "", b""
            pos = offset + 20
            while pos + 4 <= offset + length:
                alen, akind = struct.unpack_from("=HH", data, pos)
                if alen < 4:
                    break
                value = data[pos + 4: pos + alen]
                if akind & 0x7FFF == NFULA_PREFIX:
                    prefix = value.rstrip(b"\0").decode(errors="replace")
                elif akind & 0x7FFF == NFULA_PAYLOAD:
                    payload = value
                pos += (alen + 3) & ~3
            out.append((prefix, payload))
        offset += (length + 3) & ~3
    return out


def _first_packet(records: list[tuple[str, bytes]], src: str) -> list[tuple[str, str, str, int]]:
    """(table, chain, type, rulenum) of the first packet from ``src`` that is not a TCP ACK."""
    hops = []
    for prefix, payload in records:
        if not prefix.startswith("TRACE: ") or len(payload) < 20:
            continue
        ihl = (payload[0] & 0x0F) * 4
        if socket.inet_ntoa(payload[12:16]) != src:
            continue
        if payload[9] == 6 and len(payload) >= ihl + 14 and payload[ihl + 13] & 0x10:
            break  # the connection's second packet (ACK): the first one is complete
        table, chain, kind, num = prefix[7:].strip().split(":")
        hops.append((table, chain, kind, int(num)))
    return hops


def kernel_path(node: str, match: list[str], hook: str, send: Callable[[], object], src: str,
                rule_text: Callable[[str, str, int], str], policy: Callable[[str, str], str]) -> list[KernelHop]:
    """Trace one packet on iptables-legacy; ``rule_text(table, chain, n)`` and
    ``policy(table, chain)`` turn rule numbers into the text the tracer prints."""
    netns.run(node, ["sh", "-c", "echo nfnetlink_log > /proc/sys/net/netfilter/nf_log/2"])
    received: list[bytes] = []
    ready = threading.Event()
    stop = threading.Event()

    def listen() -> None:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
            sock.settimeout(0.2)
            _config(sock, socket.AF_INET, 0, _attr(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_PF_UNBIND])), 1)
            _config(sock, socket.AF_INET, 0, _attr(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_PF_BIND])), 2)
            _config(sock, socket.AF_UNSPEC, 0, _attr(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_BIND])), 3)
            _config(sock, socket.AF_UNSPEC, 0, _attr(NFULA_CFG_MODE, struct.pack("!IBx", 0xFFFF, NFULNL_COPY_PACKET)), 4)
            ready.set()
            while not stop.is_set():
                try:
                    received.append(sock.recv(1 << 20))
                except TimeoutError:
                    continue
            # what the kernel queued before stop (all of the packet sent): read to the end
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while True:
                    received.append(sock.recv(1 << 20))

    listener = threading.Thread(target=lambda: run_in_netns(node, listen), daemon=True)
    listener.start()
    if not ready.wait(MONITOR_DEADLINE):
        stop.set()
        raise BackendError(f"netns {node}: the nfnetlink_log listener did not bind within "
                           f"{MONITOR_DEADLINE:.0f} s")
    rule = ["-t", "raw", "-I", hook, "1", *match, "-j", "TRACE"]
    netns.run(node, ["iptables-legacy", *rule])
    try:
        send()  # returns once the packet's fate is known: its records are queued by then
    finally:
        stop.set()
        listener.join(MONITOR_DEADLINE)
        netns.run(node, ["iptables-legacy", "-t", "raw", "-D", hook, *match, "-j", "TRACE"], check=False)
    records = [r for chunk in received for r in _records(chunk)]
    hops: list[KernelHop] = []
    for table, chain, kind, num in _first_packet(records, src):
        if kind == "rule":
            hops.append(KernelHop(table, chain, "rule", rule_text(table, chain, num)))
        elif kind == "policy":
            hops.append(KernelHop(table, chain, "policy", policy(table, chain)))
    return hops
