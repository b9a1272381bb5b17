"""A fast reader of classic pcap files: only the IP and transport headers the tracer needs.

scapy dissects every layer of every frame (about a hundred microseconds each); a capture of
hundreds of thousands of packets is read here with :mod:`struct` instead. pcapng and link
types not listed fall back to scapy (:mod:`netproxy.trace.pcap`).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from typing import IO, Any

MAGICS = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
          b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}
LINK_OFFSETS = {1: 14, 101: 0, 228: 0, 229: 0, 12: 0, 14: 0, 113: 16, 276: 20, 0: 4}
"""Link type -> bytes before the network header (Ethernet, raw IP, Linux cooked v1/v2,
BSD loopback). Ethernet also steps over VLAN tags."""
_TCP_FLAGS = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")
_PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", 132: "sctp"}


class Truncated(Exception):  # noqa: N818 - reported by the caller as a damaged capture
    pass


def is_classic(head: bytes) -> bool:
    return head[:4] in MAGICS


def frames(stream: IO[bytes]) -> Iterator[dict[str, Any] | None]:
    """One dict of header fields per frame (None for a frame that is not IPv4/IPv6)."""
    head = stream.read(24)
    if len(head) < 24:
        raise Truncated("the file header is cut short")
    order, unit = MAGICS[head[:4]]
    link = struct.unpack(order + "I", head[20:24])[0] & 0x0FFFFFFF
    offset = LINK_OFFSETS.get(link)
    if offset is None:
        raise ValueError(f"link type {link} is not read here")
    record = struct.Struct(order + "IIII")
    read = stream.read
    ntop = socket.inet_ntop
    inet, inet6 = socket.AF_INET, socket.AF_INET6
    while True:
        rec = read(16)
        if not rec:
            return
        if len(rec) < 16:
            raise Truncated("the last record header is cut short")
        sec, frac, caplen, _wire = record.unpack(rec)
        data = read(caplen)
        if len(data) < caplen:
            raise Truncated("the last packet is cut short")
        pos = offset
        if link == 1:
            etype = int.from_bytes(data[12:14], "big")
            while etype in (0x8100, 0x88A8) and len(data) >= pos + 4:
                etype = int.from_bytes(data[pos + 2:pos + 4], "big")
                pos += 4
            if etype not in (0x0800, 0x86DD):
                yield None
                continue
        if len(data) < pos + 20:
            yield None
            continue
        version = data[pos] >> 4
        if version == 4:
            ihl = (data[pos] & 0x0F) * 4
            tos = data[pos + 1]
            proto = data[pos + 9]
            src = ntop(inet, data[pos + 12:pos + 16])
            dst = ntop(inet, data[pos + 16:pos + 20])
            l4 = pos + ihl
        elif version == 6 and len(data) >= pos + 40:
            tos = (data[pos] & 0x0F) << 4 | data[pos + 1] >> 4  # the traffic class
            proto = data[pos + 6]
            src = ntop(inet6, data[pos + 8:pos + 24])
            dst = ntop(inet6, data[pos + 24:pos + 40])
            l4 = pos + 40
        else:
            yield None
            continue
        fields: dict[str, Any] = {"src": src, "dst": dst, "time": sec + frac * unit,
                                  "proto": _PROTO_NAMES.get(proto, str(proto)), "tos": tos}
        if proto in (6, 17, 132) and len(data) >= l4 + 4:
            fields["sport"] = int.from_bytes(data[l4:l4 + 2], "big")
            fields["dport"] = int.from_bytes(data[l4 + 2:l4 + 4], "big")
            if proto == 6 and len(data) >= l4 + 14:
                bits = data[l4 + 13]
                fields["tcp_flags"] = ",".join(n for i, n in enumerate(_TCP_FLAGS)
                                               if bits & (1 << i))
        elif proto in (1, 58) and len(data) >= l4 + 2:
            fields["icmp_type"] = f"{data[l4]}/{data[l4 + 1]}"
        yield fields
