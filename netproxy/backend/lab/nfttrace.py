"""The kernel's own rule path for one packet in nftables mode: ``meta nftrace set 1`` plus
``nft monitor trace``.

A temporary table (``np-trace``) in the lab node marks the packet at priority -350 in
prerouting and output, before kube-proxy's chains; the monitor prints every rule of every
table the packet then matched, in ``nft list`` spelling, and each base chain's policy.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from netproxy.backend import netns
from netproxy.backend.lab.ktrace import KernelHop, monitor_output

TRACE_TABLE = "np-trace"
_LINE = re.compile(r"^trace id ([0-9a-f]+) (\w+) (\S+) (\S+) (packet|rule|policy|verdict)\b ?(.*)$")


def parse_trace(output: str) -> list[KernelHop]:
    """The hops of the first packet traced (a TCP SYN or the first datagram), and of its
    loopback re-entry (a packet the node sends to itself comes back in on ``lo`` under a
    new trace id): rules with their text (the ``(verdict …)`` note left out) and base-chain
    policies (the packet details nft adds after them left out). The marking table's own
    hops and chains' ``verdict continue`` returns are left out; the next packet ends it."""
    current: str | None = None
    reentered = False
    hops: list[KernelHop] = []
    for line in output.splitlines():
        found = _LINE.match(line.rstrip())
        if not found:
            continue
        tid, _family, table, chain, kind, rest = found.groups()
        if table == TRACE_TABLE and kind == "packet":
            if current is None:
                if "tcp flags" in rest and "tcp flags == syn" not in rest:
                    continue
                current = tid
            elif not reentered and tid != current and 'iif "lo"' in rest:
                current, reentered = tid, True
            elif tid != current:
                break
            continue
        if tid != current or table == TRACE_TABLE or kind in ("packet", "verdict"):
            continue
        if kind == "policy":
            hops.append(KernelHop(table, chain, "policy", f"policy {rest.split()[0]}"))
            continue
        text = re.sub(r" \(verdict [^)]*\)$", "", rest.strip())
        hops.append(KernelHop(table, chain, "rule", text))
    return hops


def kernel_path(node: str, src: str, dst: str, proto: str, port: int,
                send: Callable[[], object]) -> list[KernelHop]:
    """Trace the packet ``src -> dst:port/proto`` while ``send()`` sends it; the marking
    table is deleted again in every case."""
    match = f"ip saddr {src} ip daddr {dst} meta l4proto {proto} th dport {port}"
    table = (f"table ip {TRACE_TABLE} {{\n"
             f"  chain pre {{ type filter hook prerouting priority -350; {match} meta nftrace set 1; }}\n"
             f"  chain out {{ type filter hook output priority -350; {match} meta nftrace set 1; }}\n"
             "}\n")

    def mark(name: str) -> None:  # a table made and removed: the monitor prints both
        netns.run(node, ["nft", "add", "table", "ip", name])
        netns.run(node, ["nft", "delete", "table", "ip", name])

    netns.run(node, ["nft", "-f", "-"], input_text=table)
    try:
        out = monitor_output(node, ["nft", "monitor"], send, mark)
    finally:
        netns.run(node, ["nft", "delete", "table", "ip", TRACE_TABLE], check=False)
    return parse_trace(out)
