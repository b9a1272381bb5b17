"""Packets from a capture file (scapy is imported only here, and only when a capture is read)."""

from __future__ import annotations

from typing import Any

from netproxy.errors import InputError
from netproxy.trace.packet import Packet


def read_pcap(path: str, defaults: dict[str, Any]) -> list[Packet]:
    """One :class:`Packet` per IPv4/IPv6 packet of the capture (others are skipped)."""
    try:
        from scapy.layers.inet import ICMP, IP, TCP, UDP
        from scapy.layers.inet6 import IPv6
        from scapy.utils import PcapReader
    except ImportError as err:  # pragma: no cover - scapy is a dependency
        raise InputError(f"reading captures needs scapy: {err}", where=path) from None
    out: list[Packet] = []
    base = {k: v for k, v in defaults.items() if v is not None}
    try:
        reader = PcapReader(path)
    except (OSError, ValueError, TypeError) as err:
        raise InputError(f"cannot read capture: {err}", where=path) from None
    start: float | None = None
    seen: set[tuple[Any, ...]] = set()
    try:
        for frame in reader:
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
            if "ct_state" not in base:
                flow = (fields.get("proto"), ip.src, fields.get("sport"), ip.dst,
                        fields.get("dport"))
                back = (flow[0], flow[3], flow[4], flow[1], flow[2])
                fields["ct_state"] = "ESTABLISHED" if flow in seen or back in seen else "NEW"
                seen.add(flow)
            out.append(Packet.from_mapping(fields, where=path))
    except (OSError, EOFError, ValueError) as err:
        raise InputError(f"cannot read capture: {err}", where=path) from None
    finally:
        reader.close()
    if not out:
        raise InputError("no IP packets in the capture", where=path)
    return out


_FLAGS = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")


def _tcp_flags(bits: int) -> list[str]:
    return [name for i, name in enumerate(_FLAGS) if bits & (1 << i)]
