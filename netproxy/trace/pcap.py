"""Packets from a capture file (scapy is imported only here, and only when a capture is read)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from netproxy.errors import InputError
from netproxy.trace.packet import Packet
from netproxy.trace.sequence import AUTO_STATE


def read_pcap(path: str, defaults: dict[str, Any]) -> Iterator[Packet]:
    """One :class:`Packet` per IPv4/IPv6 packet of the capture, read as it is traced (other
    frames are skipped). The conntrack state is left to the sequence (NEW, or ESTABLISHED
    for a later packet or reply of a connection seen before) unless ``ct_state`` is given."""
    try:
        from scapy.layers.inet import ICMP, IP, TCP, UDP
        from scapy.layers.inet6 import IPv6
        from scapy.utils import PcapReader
    except ImportError as err:  # pragma: no cover - scapy is a dependency
        raise InputError(f"reading captures needs scapy: {err}", where=path) from None
    base = {k: v for k, v in defaults.items() if v is not None}
    try:
        reader = PcapReader(path)
    except Exception as err:  # noqa: BLE001 - scapy raises anything on a non-capture
        raise InputError(f"cannot read capture: {err}", where=path) from None
    start: float | None = None
    count = 0
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
    if not count:
        raise InputError("no IP packets in the capture", where=path)


_FLAGS = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")


def _tcp_flags(bits: int) -> list[str]:
    return [name for i, name in enumerate(_FLAGS) if bits & (1 << i)]
