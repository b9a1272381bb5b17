"""The kernel's own rule path for one packet: ``-j TRACE`` plus ``xtables-monitor --trace``.

Only for iptables-nft (the legacy TRACE target logs through nfnetlink_log, which needs a
logger bound in the namespace). A temporary TRACE rule in the lab node's raw table selects
the packet; the monitor prints every rule the packet matched, in iptables syntax.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from netproxy.backend import netns
from netproxy.errors import BackendError

_TRACE = re.compile(r"^\s*TRACE: \d+ ([0-9a-f]+) (\w+):([^:]+):(rule|policy|return):?(\S*)\s*(.*)$")
_PACKET = re.compile(r"^PACKET: \d+ ([0-9a-f]+) ")


@dataclass(frozen=True, slots=True)
class KernelHop:
    table: str
    chain: str
    kind: str  # rule / policy
    text: str  # "-A CHAIN ..." for rules, the policy verdict for policies

    def key(self) -> tuple[str, str, str]:
        return self.table, self.chain, self.text


def parse_monitor(output: str, src: str = "") -> list[KernelHop]:
    """The hops of the connection's first packet: the monitor's ``PACKET:`` headers tell
    packets apart (a TCP SYN without ACK from ``src``); ``return`` pseudo-hops left out."""
    first: str | None = None
    wanted = False
    hops: list[KernelHop] = []
    for line in output.splitlines():
        head = _PACKET.match(line)
        if head:
            flags = line.split()
            tcp_ack = "ACK" in flags
            from_src = not src or f"SRC={src}" in flags
            wanted = from_src and not tcp_ack and (first is None or head.group(1) == first)
            continue
        found = _TRACE.match(line)
        if not found or not wanted:
            continue
        pkt, table, chain, kind, verdict, rest = found.groups()
        first = first or pkt
        if pkt != first or kind == "return":
            continue
        if kind == "policy":
            hops.append(KernelHop(table, chain, "policy", verdict.split(":")[0]))
            continue
        text = re.sub(r"^-[46] -t \S+ ", "", rest.strip())
        hops.append(KernelHop(table, chain, "rule", text))
    return hops


MONITOR_DEADLINE = 30.0
"""Seconds a trace monitor may take to start listening, and to print what it was sent."""


class _Lines:
    """A monitor's output lines, read as they come, and waited on for a word."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._done = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def wait_for(self, word: str, timeout: float) -> bool:
        """True once a line holding ``word`` (in any case) was printed; False when none was
        within ``timeout``."""
        def seen() -> bool:
            return any(word in line.lower() for line in self.lines)

        with self._cond:
            self._cond.wait_for(lambda: self._done or seen(), timeout)
            return seen()

    def text(self) -> str:
        self._thread.join(5)
        with self._cond:
            return "".join(self.lines)


def monitor_output(node: str, argv: list[str], send: Callable[[], object],
                   mark: Callable[[str], None]) -> str:
    """What the trace monitor ``argv`` (run in ``node``) prints while ``send()`` sends a
    packet; the monitor is stopped in every case. ``mark(name)`` makes a ruleset change the
    monitor prints with ``name`` in it (in any case): made (again) until printed before the
    packet is sent, so the monitor listens, and once after it: the kernel queued the packet's
    trace events before that change, so once it is printed they are too. No sleeping on a
    guess of how busy the machine is."""
    # line-buffered: a monitor's stdio holds a pipe's output back in blocks otherwise
    monitor = subprocess.Popen(netns.exec_argv(node, ["stdbuf", "-oL", *argv]),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert monitor.stdout is not None
    lines = _Lines(monitor.stdout)
    try:
        deadline = time.monotonic() + MONITOR_DEADLINE
        while True:
            mark("np-mark-ready")
            if lines.wait_for("np-mark-ready", 0.5):
                break
            if time.monotonic() > deadline or monitor.poll() is not None:
                raise BackendError(f"netns {node}: {argv[0]} did not start listening "
                                   f"within {MONITOR_DEADLINE:.0f} s")
        send()
        mark("np-mark-end")
        if not lines.wait_for("np-mark-end", MONITOR_DEADLINE):
            raise BackendError(f"netns {node}: {argv[0]} printed no end of the trace within "
                               f"{MONITOR_DEADLINE:.0f} s")
    finally:
        monitor.terminate()
        try:
            monitor.wait(timeout=3)
        except subprocess.TimeoutExpired:
            monitor.kill()
            monitor.wait()
    return lines.text()


def kernel_path(node: str, match: list[str], hook: str, send: Callable[[], object],
                src: str = "") -> list[KernelHop]:
    """Trace one packet matching ``match`` (iptables words) from ``hook`` (PREROUTING or
    OUTPUT) while ``send()`` sends it; the TRACE rule is removed again in every case."""
    rule = ["-t", "raw", "-I", hook, "1", *match, "-j", "TRACE"]

    def mark(name: str) -> None:  # a chain made and removed: the monitor prints both
        chain = name.upper()
        netns.run(node, ["iptables-nft", "-t", "raw", "-N", chain])
        netns.run(node, ["iptables-nft", "-t", "raw", "-X", chain])

    netns.run(node, ["iptables-nft", *rule])
    try:
        out = monitor_output(node, ["xtables-monitor", "--trace", "--event"], send, mark)
    finally:
        netns.run(node, ["iptables-nft", "-t", "raw", "-D", hook, *match, "-j", "TRACE"], check=False)
    return parse_monitor(out, src)
