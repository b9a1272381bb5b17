"""Packets from a capture file (scapy is imported only here, and only when a capture is read)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from netproxy.errors import InputError
from netproxy.trace.packet import Packet
from netproxy.trace.sequence import AUTO_STATE

_L4_HEADER = {6: 20, 17: 8}
"""Bytes of a TCP or UDP header: a packet cut short inside it has no ports or flags to trace."""


def read_pcap(path: str, defaults: dict[str, Any],
              note: Callable[[str], None] | None = None) -> Iterator[Packet]:
    """One :class:`Packet` per IPv4/IPv6 packet of the capture, read as it is traced (other
    frames are skipped). The conntrack state is left to the sequence (NEW, or ESTABLISHED
    for a later packet or reply of a connection seen before) unless ``ct_state`` is given.

    A packet cut short before the end of its TCP or UDP header (the last one of a capture
    copied while it was written, or a tiny snap length) is skipped too, and counted in a
    note: its ports and flags would be guesses.
    """
    try:
        from scapy.layers.inet import ICMP, IP, TCP, UDP
        from scapy.layers.inet6 import IPv6
        from scapy.utils import PcapReader
    except ImportError as err:  # pragma: no cover - scapy is a dependency
        raise InputError(f"reading captures needs scapy: {err}", where=path) from None
    base = {k: v for k, v in defaults.items() if v is not None}
    # scapy's own warnings ("packet has been truncated") would be a second voice on stderr
    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
    try:
        reader = PcapReader(path)
    except Exception as err:  # noqa: BLE001 - scapy raises anything on a non-capture
        raise InputError(f"cannot read capture: {err}", where=path) from None
    start: float | None = None
    count = 0
    cut_short = 0
    try:
        while True:
            try:
                frame = reader.read_packet()
            except EOFError:
                break
            except Exception as err:  # noqa: BLE001 - a truncated or damaged capture
                raise InputError(f"cannot read capture after packet {count}: {err}",
                                 where=path) from None
            ip = frame.getlayer(IP) or frame.getlayer(IPv6)
            if ip is None:
                cut_short += len(frame.original or b"") < (frame.wirelen or 0)
                continue
            header = _L4_HEADER.get(int(getattr(ip, "proto", getattr(ip, "nh", 0)) or 0))
            if header is not None:
                l4_layer = frame.getlayer(TCP) or frame.getlayer(UDP)
                if l4_layer is None or len(l4_layer.original or b"") < header:
                    cut_short += 1
                    continue
            when = float(frame.time)
            start = when if start is None else start
            fields: dict[str, Any] = dict(base)
            fields.update(src=ip.src, dst=ip.dst, time=when - start)
            l4 = frame.getlayer(TCP) or frame.getlayer(UDP)
            if l4 is not None:
                fields["proto"] = "tcp" if isinstance(l4, TCP) else "udp"
                fields["sport"], fields["dport"] = int(l4.sport), int(l4.dport)
                if isinstance(l4, TCP):
                    fields["tcp_flags"] = ",".join(_tcp_flags(int(l4.flags)))
            elif (icmp := frame.getlayer(ICMP)) is not None:
                fields["proto"] = "icmp"
                fields["icmp_type"] = f"{int(icmp.type)}/{int(icmp.code)}"
            else:
                nh = int(getattr(ip, "proto", getattr(ip, "nh", 0)))
                fields["proto"] = {58: "icmpv6"}.get(nh, str(nh))
            packet = Packet.from_mapping(fields, where=f"{path}: packet {count + 1}")
            if "ct_state" not in base:
                packet.extra["ct"] = AUTO_STATE
            count += 1
            yield packet
    finally:
        reader.close()
    if cut_short and count and note is not None:
        note(f"{path}: skipped {cut_short} packet(s) cut short before their TCP/UDP header ended "
             "(a truncated capture?)")
    if not count:
        raise InputError("no IP packets in the capture"
                         + (f" ({cut_short} cut short)" if cut_short else ""), where=path)


_FLAGS = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")


def _tcp_flags(bits: int) -> list[str]:
    return [name for i, name in enumerate(_FLAGS) if bits & (1 << i)]
