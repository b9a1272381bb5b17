"""Packet fields a user may leave out and rules may test: the DS field and the sender's uid.

The DS field is the IPv4 TOS byte or the IPv6 traffic class: six DSCP bits and two ECN bits.
``-m tos``/``-m dscp`` test it, ``-j TOS``/``-j DSCP`` rewrite it, and a policy rule's ``tos``
(or ``dscp``) selects on it. A walk holds it as ``(value, known, flip)``: the bits in
``known`` are ``value``'s; every other bit is the packet's original bit XOR ``flip``'s (a
``--xor-tos`` of a bit nobody knows). When the user did not give the field, a test of
unknown bits is a fact about the original packet, ``("ds", mask, value)``, "its bits
``mask`` are ``value``", forked like any other unknown; a later test is answered from the
facts a branch already assumed where they decide it (``DSCP is EF`` makes ``DSCP is AF11``
false), so no branch holds contradicting assumptions.

The sending user (``-m owner --uid-owner``, a policy rule's ``uidrange``) likewise: the fact
``("owner", "uid", lo, hi)``, "the uid is in lo..hi".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

DS_UNKNOWN = (0, 0, 0)
"""The DS field of a packet whose field the user did not give."""
DSCP_MASK = 0xFC
RT_TOS_MASK = 0x1C
"""The bits of the TOS byte a policy rule's ``tos`` is compared with (``IPTOS_RT_MASK``:
Linux masks off the ECN bits and the old "min cost" bit before the rule lookup)."""

DSCP_CLASSES = {"CS0": 0, "CS1": 8, "CS2": 16, "CS3": 24, "CS4": 32, "CS5": 40, "CS6": 48,
                "CS7": 56, "BE": 0, "AF11": 10, "AF12": 12, "AF13": 14, "AF21": 18, "AF22": 20,
                "AF23": 22, "AF31": 26, "AF32": 28, "AF33": 30, "AF41": 34, "AF42": 36,
                "AF43": 38, "EF": 46, "VA": 44, "LE": 1}
"""``--dscp-class`` names (iptables-extensions) and their DSCP values."""
TOS_NAMES = {"minimize-delay": 0x10, "maximize-throughput": 0x08,
             "maximize-reliability": 0x04, "minimize-cost": 0x02, "normal-service": 0x00}
"""``-m tos --tos NAME`` (a name implies the mask 0x3f)."""
RT_DSFIELD = {"default": 0x00, "lowdelay": 0x10, "throughput": 0x08, "reliability": 0x04,
              "mincost": 0x02, "priority": 0x20, "immediate": 0x40, "flash": 0x60,
              "flash-override": 0x80, "critical": 0xA0, "internet": 0xC0, "network": 0xE0,
              **{name.lower(): dscp << 2 for name, dscp in DSCP_CLASSES.items()
                 if name.startswith(("AF", "EF", "CS"))}}
"""The names iproute2 prints for a TOS value (its ``rt_dsfield`` table)."""

DS_FLAG = "--tos/--dscp"
UID_FLAG = "--uid"


def _byte(text: str, what: str) -> int:
    value = int(text, 0)
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{what} {text!r} is not a byte")
    return value


def parse_tos(text: str) -> tuple[int, int]:
    """``-m tos --tos`` / ``--set-tos`` value as (value, mask): ``0x10/0x3f``, ``0x10``
    (mask 0xff) or a name (mask 0x3f)."""
    name = TOS_NAMES.get(text.lower())
    if name is not None:
        return name, 0x3F
    value, sep, mask = text.partition("/")
    return _byte(value, "TOS value"), _byte(mask, "TOS mask") if sep else 0xFF


def parse_dscp(text: str) -> int:
    """A DSCP value (0..63, decimal or hex) or class name (``EF``, ``AF41``, ``CS1``)."""
    found = DSCP_CLASSES.get(text.upper())
    if found is not None:
        return found
    value = int(text, 0)
    if not 0 <= value <= 0x3F:
        raise ValueError(f"DSCP {text!r} is not in 0..63")
    return value


def rule_tos(text: str) -> int:
    """A policy rule's ``tos`` as ``ip -j rule`` prints it (hex, or an rt_dsfield name)."""
    found = RT_DSFIELD.get(text.lower())
    return found if found is not None else _byte(text, "tos")


def ds_text(mask: int, value: int) -> str:
    """The fact "the DS field's bits ``mask`` are ``value``" in words."""
    if mask == DSCP_MASK:
        dscp = value >> 2
        name = next((n for n, v in DSCP_CLASSES.items() if v == dscp and n not in ("CS0", "LE")),
                    None)
        return f"the packet's DSCP is {dscp}" + (f" ({name})" if name else "")
    if mask == 0xFF:
        return f"the packet's TOS byte is 0x{value:02x}"
    return f"the packet's TOS byte & 0x{mask:02x} is 0x{value:02x}"


def ds_test(ds: tuple[int, int, int], facts: Iterable[tuple[Any, bool]], mask: int,
            value: int) -> bool | tuple[int, int]:
    """Whether the DS field's bits ``mask`` are ``value``: True or False when the known
    bits and the facts assumed decide it, else the original packet's bits to assume
    (``(mask, value)`` of the fact ``("ds", mask, value)``). ``facts``: (key, value) pairs."""
    cur, known, flip = ds
    k = mask & known
    if (cur ^ value) & k:
        return False
    u = mask & ~known & 0xFF
    if not u:
        return True
    want = (value ^ flip) & u
    for key, holds in facts:
        if key[0] != "ds":
            continue
        m1, v1 = key[1], key[2]
        if holds:
            if (v1 ^ want) & m1 & u:
                return False
            if not u & ~m1:
                return True
        elif not m1 & ~u and (want & m1) == v1:
            return False  # its bits m1 are known not to be v1, which this needs
    return u, want


def set_ds(ds: tuple[int, int, int], value: int, mask: int) -> tuple[int, int, int]:
    """The DS field after ``-j TOS``/``-j DSCP``: ``field = (field & ~mask) ^ value``."""
    cur, known, flip = ds
    keep = ~mask & 0xFF
    cur = (cur & keep) ^ value
    # Bits cleared by the mask become known; XOR into an unknown bit flips it.
    known = (known | mask) & 0xFF
    flip = (flip & keep) ^ (value & ~known & 0xFF)
    return cur & 0xFF, known, flip & ~known & 0xFF


def uid_test(uid: int | None, facts: Iterable[tuple[Any, bool]], lo: int,
             hi: int) -> bool | None:
    """Whether the sender's uid is in ``lo..hi``: decided by ``uid`` when known, else by
    the uid facts assumed (a uid in 5..5 is not in 7..9); None: it is a new fact."""
    if uid is not None:
        return lo <= uid <= hi
    for key, holds in facts:
        if key[0] != "owner" or key[1] != "uid":
            continue
        a, b = key[2], key[3]
        if holds:
            if lo <= a and b <= hi:
                return True
            if b < lo or a > hi:
                return False
        elif a <= lo and hi <= b:
            return False
    return None


def uid_texts(lo: int, hi: int) -> tuple[str, str]:
    spec = str(lo) if lo == hi else f"{lo}-{hi}"
    return f"the sender's uid is {spec}", f"the sender's uid is not {spec}"
