"""Values of nft listings: numbers, prefixes, ranges, time spans, and the normal form that
makes a text listing and a JSON listing of one ruleset compare equal."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from netproxy.textsafe import digits

_TIME = re.compile(r"(\d+)(ms|d|h|m|s)")
_NUM = re.compile(r"(?:0x[0-9a-fA-F]+|\d+)$")
BITMASK_KEYS = frozenset({("ct", "state"), ("ct", "status"), ("tcp", "flags")})
"""Expressions whose implicit comparison is a flag test (nft's JSON says ``op: in``)."""
REJECT_DEFAULT = "port-unreachable"


def parse_time(text: str) -> float | None:
    """``1d2h3m4s500ms`` (nft's time format) as seconds; None when it is not one."""
    if digits(text):
        return float(text)
    total = 0.0
    pos = 0
    for m in _TIME.finditer(text):
        if m.start() != pos:
            return None
        pos = m.end()
        n = int(m.group(1))
        total += {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}[m.group(2)] * n
    return total if pos == len(text) and pos else None


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def number(text: str) -> int | None:
    if _NUM.match(text):
        return int(text, 0) if text.startswith("0x") else int(text)
    return None


def word_value(text: str) -> Any:
    """A word of a listing as a value: int, prefix, range or plain string."""
    n = number(text)
    if n is not None:
        return n
    if "/" in text:
        addr, _, plen = text.rpartition("/")
        if digits(plen) and is_address(addr):
            return {"prefix": {"addr": addr, "len": int(plen)}}
    if "-" in text and not text.startswith("-"):
        lo, _, hi = text.partition("-")
        nlo, nhi = number(lo), number(hi)
        if nlo is not None and nhi is not None:
            return {"range": [nlo, nhi]}
        if is_address(lo) and is_address(hi):
            return {"range": [lo, hi]}
    return text


_ORDERED = frozenset({"concat", "range", "&", "|", "^", "<<", ">>"})
"""Keys whose list operands keep their order (everything else listed is a set of flags)."""


def normal(value: Any) -> Any:
    """The normal form of a statement or expression (both front ends end here)."""
    if isinstance(value, list):
        items = [normal(v) for v in value]
        return sorted(items) if all(isinstance(v, str) for v in items) else items
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in _ORDERED and isinstance(item, list):
            out[key] = [normal(v) for v in item]
        elif key == "set" and isinstance(item, list):
            out[key] = sorted((normal(v) for v in item), key=lambda v: json.dumps(v, sort_keys=True))
        elif key == "limit" and isinstance(item, dict):
            out[key] = {k: v for k, v in item.items()
                        if (k, v) not in (("inv", False), ("burst_unit", "packets"),
                                          ("rate_unit", "packets"), ("burst", 0),
                                          ("burst", 5))}
        elif key == "match":
            right = normal(item["right"])
            if isinstance(right, list):
                right = sorted(right, key=str)
                if len(right) == 1:
                    right = right[0]
            out[key] = {"op": item["op"], "left": normal(item["left"]), "right": right}
        elif key in ("masquerade", "snat", "dnat", "redirect") and isinstance(item, dict):
            stmt = {k: normal(v) for k, v in item.items()}
            flags = stmt.get("flags")
            if isinstance(flags, str):
                stmt["flags"] = [flags]
            elif flags is not None:
                stmt["flags"] = sorted(flags)
            out[key] = stmt or None
        elif key == "reject" and isinstance(item, dict):
            out[key] = (None if item.get("expr", REJECT_DEFAULT) == REJECT_DEFAULT
                        and item.get("type", "icmpx") in ("icmp", "icmpv6", "icmpx")
                        else {k: normal(v) for k, v in item.items()})
        elif key in ("numgen", "jhash", "symhash") and isinstance(item, dict):
            out[key] = {"offset": 0, **{k: normal(v) for k, v in item.items()}}
        elif key == "fib" and isinstance(item, dict):
            flags = item.get("flags", [])
            out[key] = {"result": item["result"],
                        "flags": [flags] if isinstance(flags, str) else list(flags)}
        else:
            out[key] = normal(item)
    return out
