"""The packet a user asks about: addresses, ports, interfaces, marks, conntrack state."""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from typing import Any

from netproxy.errors import TraceError
from netproxy.textsafe import digits, shown
from netproxy.trace.addr import family_of, parse_addr

PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "icmpv6": 58, "ipv6-icmp": 58,
             "udplite": 136, "dccp": 33, "esp": 50, "ah": 51, "gre": 47}
PORT_PROTOCOLS = frozenset({6, 17, 132, 136, 33})
CT_STATES = frozenset({"NEW", "ESTABLISHED", "RELATED", "INVALID", "UNTRACKED", "SNAT", "DNAT"})
ORIGINS = {"external": "external", "pod": "pod", "node": "node", "local": "node",
           "localhost": "localhost"}
"""Where a packet comes from: ``external``/``pod`` arrive on an interface (PREROUTING);
``node``/``localhost`` are generated on the node (OUTPUT)."""


@dataclass(frozen=True, slots=True)
class Packet:
    """A packet to trace. Only ``dst`` is required; everything else has a stated default.

    ``src`` defaults to the first local address for ``origin="node"`` and to the loopback
    address for ``origin="localhost"``. ``origin`` is inferred when not given: a source that
    is a node address (or loopback) means the node generated the packet.
    """

    dst: str
    src: str | None = None
    proto: str = "tcp"
    dport: int | None = None
    sport: int | None = None
    in_interface: str | None = None
    out_interface: str | None = None
    ct_state: str = "NEW"
    mark: int = 0
    ctmark: int = 0
    origin: str | None = None
    tcp_flags: str | None = None
    """Comma list of set TCP flags; default SYN for NEW connections, ACK otherwise."""
    icmp_type: str | None = None
    """``type`` or ``type/code`` (numbers); default echo request."""
    uid: int | None = None
    gid: int | None = None
    tos: int | None = None
    """The DS field (IPv4 TOS byte, IPv6 traffic class: DSCP << 2 | ECN); None: not known
    (a test of it is an undecided fact, see :mod:`netproxy.trace.fields`)."""
    physdev_in: str | None = None
    """Bridge port the packet arrived on ("" for none); None means not known."""
    physdev_out: str | None = None
    """Bridge port the packet is bridged out of ("" when it is routed); None: not known."""
    bridged: bool | None = None
    """``False``: no bridge is involved (both physdev ports are empty)."""
    time: float = 0.0
    """Seconds since the first packet of a sequence (recent, limit)."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def with_(self, **changes: Any) -> Packet:
        return replace(self, **changes)

    @classmethod
    def from_mapping(cls, data: dict[str, Any], where: str = "packet") -> Packet:
        """Build from a dict of field names (``in-interface`` spelling accepted)."""
        names = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        dscp = None
        for key, value in data.items():
            name = str(key).replace("-", "_")
            name = {"from": "origin", "protocol": "proto", "state": "ct_state"}.get(name, name)
            if name == "dscp":
                dscp = value
                continue
            if name not in names or name == "extra":
                raise TraceError(f"unknown packet field {shown(key)}", where=where)
            values[name] = value
        if "dst" not in values:
            raise TraceError("a packet needs dst", where=where)
        for name, value in values.items():
            if value is not None or name == "dst":
                values[name] = _field_value(name, value, where)
        if dscp is not None:
            tos = dscp_tos(dscp, where)
            if values.get("tos") is not None and values["tos"] != tos:
                raise TraceError(f"dscp {shown(dscp)} and tos 0x{values['tos']:02x} disagree "
                                 "(give one)", where=where)
            values["tos"] = tos
        return cls(**values)


def dscp_tos(value: Any, where: str = "packet") -> int:
    """The DS field of a DSCP value (0..63 or a class name such as EF, AF41), ECN bits 0."""
    from netproxy.trace.fields import parse_dscp

    try:
        if value.__class__ is int:
            if not 0 <= value <= 63:
                raise ValueError(value)
            return value << 2
        if value.__class__ is str and value.isascii():
            return parse_dscp(value) << 2
    except ValueError:
        pass
    raise TraceError(f"dscp: want 0..63 or a class name (EF, AF41, CS1, ...), not "
                     f"{shown(value)}", where=where)


_NUMBERS = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]+").fullmatch
"""A mark: decimal or hexadecimal, ASCII digits only."""


def _field_value(name: str, value: Any, where: str) -> Any:
    """``value`` of packet field ``name`` as the field's type (numbers from text too)."""
    if name == "tos":
        number = value if value.__class__ is int else (
            int(value, 16 if value[:2] in ("0x", "0X") else 10)
            if value.__class__ is str and _NUMBERS(value) else -1)
        if not 0 <= number <= 0xFF:
            raise TraceError(f"tos: want a byte (0..255 or 0x00..0xff), not {shown(value)}",
                             where=where)
        return number
    if name in ("dport", "sport", "uid", "gid", "mark", "ctmark"):
        if value.__class__ is int:
            return value
        if value.__class__ is str and (digits(value) or name in ("mark", "ctmark") and _NUMBERS(value)):
            return int(value, 0) if name in ("mark", "ctmark") and value[:2] in ("0x", "0X") else int(value)
        raise TraceError(f"{name}: not a number: {shown(value)}", where=where)
    if name == "time":
        seconds = None
        if value.__class__ in (int, float):
            seconds = float(value)
        elif value.__class__ is str and value.isascii():
            with contextlib.suppress(ValueError):
                seconds = float(value)
        if seconds is not None and math.isfinite(seconds):
            return seconds
        raise TraceError(f"time: not a number of seconds: {shown(value)}", where=where)
    if name == "bridged":
        if value.__class__ is bool:
            return value
        if value.__class__ is str:
            return value.lower() in ("1", "true", "yes")
        raise TraceError(f"bridged: want true or false, not {shown(value)}", where=where)
    if value.__class__ is not str:
        raise TraceError(f"{name}: must be text, not {shown(value)}", where=where)
    # Checked here too (resolve checks them again for packets built in code) so that a
    # packets file's bad value names its line.
    if name == "ct_state" and not (_words(value) and _words(value) <= CT_STATES):
        raise TraceError(f"unknown conntrack state {shown(value)} (one or more of "
                         f"{','.join(sorted(CT_STATES))}, or auto in a packets file)",
                         where=where)
    if name == "proto" and not (digits(value) or value.lower() in PROTOCOLS):
        raise TraceError(f"unknown protocol {shown(value)} (one of {', '.join(PROTOCOLS)} "
                         "or a number)", where=where)
    return value


@dataclass(frozen=True, slots=True)
class Resolved:
    """A validated packet: numeric addresses, the family, the origin decided."""

    packet: Packet
    family: str
    src: int
    dst: int
    src_text: str
    proto: int
    origin: str
    ct: frozenset[str]
    tcp_flags: frozenset[str]
    icmp: tuple[int, int] | None


def resolve(packet: Packet, family: str, local: list[tuple[int, int]],
            first_local: str | None, pods: Sequence[tuple[int, int]] = ()) -> Resolved:
    """Validate ``packet`` against the ruleset family and decide where it comes from."""
    pfam = family_of(packet.dst)
    if pfam != family:
        raise TraceError(f"destination {packet.dst} is {pfam} but the rules are {family}")
    try:
        dst = parse_addr(packet.dst, family)
    except ValueError as err:
        raise TraceError(f"bad destination address: {err}") from None
    origin = ORIGINS.get(packet.origin or "") if packet.origin else None
    if packet.origin and origin is None:
        raise TraceError(f"unknown origin {shown(packet.origin)} (pod, external, node, localhost)")
    src_text = packet.src
    if src_text is None:
        if origin == "localhost":
            src_text = "::1" if family == "ipv6" else "127.0.0.1"
        elif origin == "node" and first_local is not None:
            src_text = first_local
        elif origin == "node":  # no node address known to take as the source
            raise TraceError("--from node needs the node's address: give --src NODE_IP, "
                             "--local-ip NODE_IP or a snapshot (--snapshot node.snap)")
        else:
            raise TraceError("a source address is needed (--src), or --from node/localhost")
    try:
        src = parse_addr(src_text, family)
    except ValueError as err:
        raise TraceError(f"bad source address: {err}") from None
    if origin is None:
        if any(src & m == n for n, m in local):
            origin = "node"
        elif any(src & m == n for n, m in pods):
            origin = "pod"
        else:
            origin = "external"
    proto_name = packet.proto.lower()
    if digits(proto_name):
        proto = int(proto_name)
    elif proto_name in PROTOCOLS:
        proto = PROTOCOLS[proto_name]
    else:
        raise TraceError(f"unknown protocol {shown(packet.proto)}")
    if family == "ipv6" and proto == 1:
        proto = 58
    for name in ("dport", "sport"):
        port = getattr(packet, name)
        if port is not None and not 0 <= port <= 65535:
            raise TraceError(f"{name} {port} is not a port number")
    states = _words(packet.ct_state)
    if not states or not states <= CT_STATES:
        raise TraceError(f"unknown conntrack state {shown(packet.ct_state)}")
    if packet.tcp_flags is not None:
        flags = _words(packet.tcp_flags)
    else:
        flags = _SYN if "NEW" in states else _ACK
    icmp = None
    if proto in (1, 58):
        icmp = _icmp(packet.icmp_type, proto)
    return Resolved(packet, family, src, dst, src_text, proto, origin, states, flags, icmp)


_SYN, _ACK = frozenset({"SYN"}), frozenset({"ACK"})


@lru_cache(maxsize=256)
def _words(text: str) -> frozenset[str]:
    """A comma list (conntrack states, TCP flags) as a set of upper-case words; the few
    spellings a capture holds are read once."""
    return frozenset(w.strip().upper() for w in text.split(",") if w.strip())


def _icmp(text: str | None, proto: int) -> tuple[int, int]:
    if text is None:
        return (8, 0) if proto == 1 else (128, 0)
    kind, _, code = text.partition("/")
    try:
        if not digits(kind) or code and not digits(code):
            raise ValueError(text)
        return int(kind), int(code or 0)
    except ValueError:
        raise TraceError(f"icmp type must be numeric type[/code], not {shown(text)}") from None
