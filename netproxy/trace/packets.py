"""Packet sequences from a file: one packet per line, ``key=value`` words or a JSON object.

    # client 10.244.1.5 asks the same Service twice, ten seconds apart
    src=10.244.1.5 dst=10.96.0.10 dport=53 proto=udp
    src=10.244.1.5 dst=10.96.0.10 dport=53 proto=udp time=10

Keys are :class:`~netproxy.trace.packet.Packet` fields (``in-interface`` spelling accepted);
values given on the command line fill in what a line leaves out. ``state=auto`` (or
``ct_state=auto``) lets the state follow from the connections of the earlier lines, as in a
capture: a later packet of a connection, or its reply, is ESTABLISHED and gets the
connection's NAT (and ``ct direction reply`` matches the reply).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import IO, Any

from netproxy.errors import InputError, TraceError
from netproxy.trace.packet import Packet
from netproxy.trace.sequence import AUTO_STATE


def read_packets(path: str, defaults: dict[str, Any]) -> Iterator[Packet]:
    """The packets of the file, one at a time as they are read (a long file is never held
    in memory)."""
    try:
        stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    except OSError as err:
        raise InputError(f"cannot read packets: {err.strerror or err}", where=path) from None
    try:
        yield from _packets(path, stream, defaults)
    except UnicodeDecodeError as err:
        raise InputError(f"cannot read packets: {err}", where=path) from None
    finally:
        if stream is not sys.stdin:
            stream.close()


def _packets(path: str, stream: IO[str], defaults: dict[str, Any]) -> Iterator[Packet]:
    seen = 0
    for n, raw in enumerate(stream, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{n}"
        data: dict[str, Any]
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"bad JSON: {err.msg}", where=where) from None
            if not isinstance(data, dict):
                raise InputError("a packet line must be a JSON object", where=where)
        else:
            data = {}
            for word in line.split():
                key, sep, value = word.partition("=")
                if not sep:
                    raise InputError(f"expected key=value, got {word!r}", where=where)
                data[key] = value
        merged = {k: v for k, v in defaults.items() if v is not None}
        merged.update({str(k).replace("-", "_"): v for k, v in data.items()})
        state = merged.get("state", merged.get("ct_state"))
        auto = isinstance(state, str) and state.lower() == AUTO_STATE
        if auto:
            merged.pop("state", None)
            merged.pop("ct_state", None)
        try:
            packet = Packet.from_mapping(merged, where=where)
        except TypeError as err:
            raise TraceError(f"bad packet: {err}", where=where) from None
        if auto:
            packet.extra["ct"] = AUTO_STATE
        seen += 1
        yield packet
    if not seen:
        raise InputError("no packets in the file", where=path)
