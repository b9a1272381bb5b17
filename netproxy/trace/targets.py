"""Targets compiled to small (kind, data) pairs the engine switches on."""

from __future__ import annotations

from typing import Any

from netproxy.netfilter import extensions as ext
from netproxy.netfilter.model import Target
from netproxy.netfilter.values import parse_int, parse_mark
from netproxy.textsafe import digits
from netproxy.trace.addr import parse_addr

FULL = 0xFFFFFFFF
NO_EFFECT = frozenset({"LOG", "NFLOG", "TRACE", "CHECKSUM", "TCPMSS", "CLASSIFY", "SET", "ULOG"})
"""Targets that do not change where the packet goes (the walk continues after them)."""


def compile_target(target: Target | None, chains: dict[str, Any], family: str) -> tuple[str, Any]:
    """(kind, data): kind is a verdict, ``jump``/``goto``, a NAT or mark action, ``nop``,
    ``none`` (rule without target) or ``unknown`` (data says why)."""
    if target is None:
        return "none", None
    name = target.name
    if name in chains:
        return ("goto" if target.goto else "jump"), name
    try:
        return _extension(target, family)
    except ValueError as err:
        return "unknown", f"cannot read -j {name}: {err}"


def _extension(target: Target, family: str) -> tuple[str, Any]:
    name = target.name
    if name == "DNAT" and len(target.options) == 1:
        fast = plain_dnat(target.options[0], family)
        if fast is not None:
            return fast
    if ext.target(name) is None:
        return "unknown", f"target or chain {name!r} is unknown"
    if name in ("ACCEPT", "DROP", "RETURN"):
        return name, None
    if name == "REJECT":
        opt = target.get("reject-with")
        return "REJECT", opt.value if opt is not None else None
    if name in NO_EFFECT:
        return "nop", None
    if name == "NOTRACK" or (name == "CT" and target.get("notrack") is not None):
        return "notrack", None
    if name == "CT":
        return "nop", None
    if name == "MARK":
        return "MARK", _mark_op(target)
    if name in ("TOS", "DSCP"):
        return "DS", _ds_op(target)
    if name == "CONNMARK":
        return "CONNMARK", _connmark_op(target)
    if name == "DNAT":
        return _nat(target, "to-destination", family, "DNAT")
    if name == "SNAT":
        return _nat(target, "to-source", family, "SNAT")
    if name == "MASQUERADE":
        flags = [o.name for o in target.options if o.name in ("random", "random-fully")]
        return "MASQUERADE", " ".join(f"--{f}" for f in flags)
    if name == "REDIRECT":
        ports = target.get("to-ports")
        port = _single_port(ports.value) if ports is not None else None
        return "REDIRECT", port
    if name in ("QUEUE", "NFQUEUE"):
        return "unknown", f"-j {name}: the verdict is given by a userspace program"
    return "unknown", f"target {name} is not modelled"


def _ds_op(target: Target) -> tuple[int, int]:
    """(xor value, clear mask) of ``-j TOS``/``-j DSCP``: the kernel does
    ``field = (field & ~mask) ^ value`` on the DS field."""
    from netproxy.trace.fields import DSCP_MASK, parse_dscp, parse_tos

    for opt in target.options:
        if opt.name in ("set-dscp", "set-dscp-class"):
            return parse_dscp(opt.value) << 2, DSCP_MASK
        if opt.name == "set-tos":
            value, mask = parse_tos(opt.value)
            return value, mask
        bits = int(opt.value, 0) & 0xFF
        if opt.name == "and-tos":
            return 0, ~bits & 0xFF
        if opt.name == "or-tos":
            return bits, bits
        if opt.name == "xor-tos":
            return bits, 0
    raise ValueError(f"-j {target.name} without a value")


def _mark_op(target: Target) -> tuple[int, int]:
    """(xor value, clear mask): the kernel does ``mark = (mark & ~mask) ^ value``."""
    for opt in target.options:
        if opt.name == "set-xmark":
            return parse_mark(opt.value)
        if opt.name == "set-mark":
            value, mask = parse_mark(opt.value)
            return value, (mask | value) & FULL
        if opt.name == "and-mark":
            bits = parse_int(opt.value)
            return 0, ~bits & FULL
        if opt.name == "or-mark":
            bits = parse_int(opt.value)
            return bits, bits
        if opt.name == "xor-mark":
            return parse_int(opt.value), 0
    raise ValueError("MARK without an operation")


def _connmark_op(target: Target) -> tuple[str, int, int]:
    """("set", value, ctmask) or ("save"/"restore", nfmask, ctmask)."""
    names = {o.name: o for o in target.options}
    for op in ("save-mark", "restore-mark"):
        if op in names:
            both = parse_int(names["mask"].value) if "mask" in names else FULL
            nf = parse_int(names["nfmask"].value) if "nfmask" in names else both
            ct = parse_int(names["ctmask"].value) if "ctmask" in names else both
            return op.split("-")[0], nf, ct
    value, mask = _mark_op(Target("MARK", target.options))
    return "set", value, mask


def _single_port(text: str) -> int:
    lo, _, hi = text.partition("-")
    if hi and hi != lo:
        raise ValueError(f"port range {text} (the kernel picks a port)")
    if not digits(lo):
        raise ValueError(f"bad port {text!r}")
    return int(lo)


def plain_dnat(opt: Any, family: str) -> tuple[str, Any] | None:
    """The common ``--to-destination a.b.c.d:port`` / ``[v6]:port``, parsed cheaply
    (kube-proxy writes one per endpoint); None sends anything else the general way."""
    if opt.name != "to-destination" or not opt.args:
        return None
    text = opt.args[0]
    if text.startswith("["):
        head, sep, port_t = text[1:].partition("]:")
    elif family == "ipv4":
        head, sep, port_t = text.partition(":")
    else:
        return None
    if not sep or not digits(port_t) or "-" in head or not head:
        return None
    port = int(port_t)
    if port > 65535:
        return None
    try:
        return "DNAT", (parse_addr(head, family), port, text)
    except ValueError:
        return None


def _nat(target: Target, option: str, family: str, kind: str) -> tuple[str, Any]:
    values = [o.value for o in target.options if o.name == option]
    if not values or not values[0]:
        return "unknown", f"{kind} without --{option}"
    if len(values) > 1:
        return "unknown", f"{kind} with several --{option} (the kernel picks one)"
    text = values[0]
    if text.startswith("["):
        addr_t, _, rest = text[1:].partition("]")
        port_t = rest[1:] if rest.startswith(":") else ""
    elif family == "ipv6":
        addr_t, port_t = text, ""
    else:
        addr_t, _, port_t = text.partition(":")
    addr: int | None = None
    if addr_t:
        lo, _, hi = addr_t.partition("-")
        if hi and hi != lo:
            return "unknown", f"{kind} to an address range {addr_t} (the kernel picks one)"
        addr = parse_addr(lo, family)
    port = _single_port(port_t) if port_t else None
    return kind, (addr, port, text)
