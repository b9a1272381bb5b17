"""The kernel's own rule path for one packet: ``-j TRACE`` plus ``xtables-monitor --trace``.

Only for iptables-nft (the legacy TRACE target logs through nfnetlink_log, which needs a
logger bound in the namespace). A temporary TRACE rule in the lab node's raw table selects
the packet; the monitor prints every rule the packet matched, in iptables syntax.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from netproxy.backend import netns

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


def monitor_output(node: str, argv: list[str], send: Callable[[], object]) -> str:
    """What the trace monitor ``argv`` (run in ``node``) prints while ``send()`` sends a
    packet; the monitor is stopped in every case."""
    monitor = subprocess.Popen(netns.exec_argv(node, argv), stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        time.sleep(0.3)  # the monitor subscribes before the packet is sent
        send()
        time.sleep(0.3)
    finally:
        monitor.terminate()
        try:
            out, _ = monitor.communicate(timeout=3)
        except subprocess.TimeoutExpired:
            monitor.kill()
            out, _ = monitor.communicate()
    return out or ""


def kernel_path(node: str, match: list[str], hook: str, send: Callable[[], object],
                src: str = "") -> list[KernelHop]:
    """Trace one packet matching ``match`` (iptables words) from ``hook`` (PREROUTING or
    OUTPUT) while ``send()`` sends it; the TRACE rule is removed again in every case."""
    rule = ["-t", "raw", "-I", hook, "1", *match, "-j", "TRACE"]
    netns.run(node, ["iptables-nft", *rule])
    try:
        out = monitor_output(node, ["xtables-monitor", "--trace"], send)
    finally:
        netns.run(node, ["iptables-nft", "-t", "raw", "-D", hook, *match, "-j", "TRACE"], check=False)
    return parse_monitor(out, src)
