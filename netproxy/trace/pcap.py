"""Packets from a capture file: classic pcap read directly (:mod:`netproxy.trace.pcapfile`),
pcapng and unusual link types through scapy (imported only then)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from netproxy.errors import InputError
from netproxy.trace.packet import Packet
from netproxy.trace.pcapfile import Truncated, frames, is_classic
from netproxy.trace.sequence import AUTO_STATE


def read_pcap(path: str, defaults: dict[str, Any]) -> Iterator[Packet]:
    """One :class:`Packet` per IPv4/IPv6 packet of the capture, read as it is traced (other
    frames are skipped). The conntrack state is left to the sequence (NEW, or ESTABLISHED
    for a later packet or reply of a connection seen before) unless ``ct_state`` is given."""
    base = {k: v for k, v in defaults.items() if v is not None}
    try:
        with open(path, "rb") as probe:
            classic = is_classic(probe.read(4))
    except OSError as err:
        raise InputError(f"cannot read capture: {err.strerror or err}", where=path) from None
    if classic:
        try:
            yield from _fast(path, base)
            return
        except _NotHere:
            pass  # a link type the fast reader does not know: scapy's turn
    try:
        from scapy.layers.inet import ICMP, IP, TCP, UDP
        from scapy.layers.inet6 import IPv6
        from scapy.utils import PcapReader
    except ImportError as err:  # pragma: no cover - scapy is a dependency
        raise InputError(f"reading captures needs scapy: {err}", where=path) from None
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
            fields.update(src=ip.src, dst=ip.dst, time=when - start,
                          tos=int(ip.tos if isinstance(ip, IP) else ip.tc))
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


class _NotHere(Exception):  # noqa: N818 - internal: fall back to scapy
    pass


def _fast(path: str, base: dict[str, Any]) -> Iterator[Packet]:
    """Classic pcap through :mod:`netproxy.trace.pcapfile` (no per-packet dissection)."""
    count = 0
    start: float | None = None
    auto = "ct_state" not in base
    with open(path, "rb") as stream:
        try:
            it = frames(stream)
            for fields in it:
                if fields is None:
                    continue
                when = fields["time"]
                start = when if start is None else start
                fields["time"] = when - start
                fields.update(base)
                packet = Packet(**fields)
                if auto:
                    packet.extra["ct"] = AUTO_STATE
                count += 1
                yield packet
        except ValueError as err:
            if count == 0 and "link type" in str(err):
                raise _NotHere() from None
            raise InputError(f"cannot read capture: {err}", where=path) from None
        except Truncated as err:
            raise InputError(f"cannot read capture after packet {count}: {err}",
                             where=path) from None
    if not count:
        raise InputError("no IP packets in the capture", where=path)


_FLAGS = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")


def _tcp_flags(bits: int) -> list[str]:
    return [name for i, name in enumerate(_FLAGS) if bits & (1 << i)]
