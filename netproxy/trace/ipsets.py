"""ipset contents (``ipset save`` text) and the ``-m set --match-set`` evaluator.

Without the contents of a set the match cannot be decided: the walk forks into both cases
("10.96.0.10,udp:53 in KUBE-CLUSTER-IP" and not), or the branch is UNKNOWN under --strict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from netproxy.errors import InputError
from netproxy.netfilter.model import Option
from netproxy.textsafe import digits
from netproxy.trace.addr import family_of, format_addr, parse_addr, parse_net, parse_port_range
from netproxy.trace.packet import PROTOCOLS
from netproxy.trace.state import Cond, Walk

_DIMS = {"ip", "net", "port"}


@dataclass(slots=True)
class IpSet:
    name: str
    kind: str
    dims: tuple[str, ...]
    members: list[tuple[tuple[Any, ...], bool]] = field(default_factory=list)
    """(one value per dimension, nomatch flag)."""


def read_ipsets(path: str) -> dict[str, IpSet]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise InputError(f"cannot read ipsets: {err.strerror or err}", where=path) from None
    return parse_ipsets(text, path)


def parse_ipsets(text: str, source: str = "<ipsets>") -> dict[str, IpSet]:
    """Parse ``ipset save`` output (``create`` and ``add`` lines)."""
    sets: dict[str, IpSet] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        where = f"{source}:{n}"
        if words[0] == "create" and len(words) >= 3:
            kind = words[2]
            method, _, dims = kind.partition(":")
            sets[words[1]] = IpSet(words[1], kind, tuple(dims.split(",")) if dims else ())
        elif words[0] == "add" and len(words) >= 3:
            found = sets.get(words[1])
            if found is None:
                raise InputError(f"add to undeclared set {words[1]!r}", where=where)
            try:
                found.members.append((_member(found, words[2]), "nomatch" in words[3:]))
            except ValueError as err:
                raise InputError(f"bad member {words[2]!r}: {err}", where=where) from None
        else:
            raise InputError(f"cannot read line {raw[:60]!r}", where=where)
    return sets


def _member(s: IpSet, text: str) -> tuple[Any, ...]:
    parts = text.split(",")
    if len(parts) != len(s.dims):
        raise ValueError(f"{s.kind} needs {len(s.dims)} parts")
    out: list[Any] = []
    for dim, part in zip(s.dims, parts, strict=True):
        if dim in ("ip", "net"):
            if "-" in part and "/" not in part:
                raise ValueError("address ranges are not supported")
            out.append(parse_net(part, family_of(part)))
        elif dim == "port":
            proto, _, port = part.rpartition(":")
            if proto and not digits(port) and "-" not in port:
                raise ValueError("bad port")
            num = PROTOCOLS.get(proto or "tcp", 6)
            out.append((num, parse_port_range(port.replace("-", ":"))))
        else:
            raise ValueError(f"dimension {dim!r} is not supported")
    return tuple(out)


def set_eval(o: Option, ctx: Any) -> Any:
    name, flags_text = o.args[0], (o.args[1] if len(o.args) > 1 else "src")
    flags = flags_text.split(",")
    negated = o.negated
    sets = ctx.ipsets

    assume = bool(getattr(ctx, "assume", False))
    family = ctx.family

    def f(w: Walk) -> object:
        if sets is None or name not in sets:
            if assume:
                return _membership(w, name, flags, family, negated)
            return f"contents of ipset {name!r} are not known (give --ipsets FILE)"
        s = sets[name]
        if not s.dims or not set(s.dims) <= _DIMS:
            return f"ipset type {s.kind} is not modelled"
        values: list[Any] = []
        for i, dim in enumerate(s.dims):
            side = flags[i] if i < len(flags) else flags[-1]
            if dim == "port":
                port = w.sport if side == "src" else w.dport
                if port is None:
                    return f"port needed for ipset {name!r} not given"
                values.append((w.pkt.proto, port))
            else:
                values.append(w.src if side == "src" else w.dst)
        hit = nomatch = False
        for member, excluded in s.members:
            if all(_inside(dim, m, v) for dim, m, v in zip(s.dims, member, values, strict=True)):
                if excluded:
                    nomatch = True
                else:
                    hit = True
        return (hit and not nomatch) != negated
    return f


_PROTO_NAMES = {num: text for text, num in PROTOCOLS.items()}


def _membership(w: Walk, name: str, flags: list[str], family: str, negated: bool) -> object:
    """The fact "this packet's element is in set ``name``", for a set without contents.

    The set's dimensions are not known either: the element is read from the match's flags
    as kube-proxy's IPVS sets are laid out (``dst,dst``: address and port; ``dst,dst,src``:
    address, port and address)."""
    parts: list[str] = []
    for i, side in enumerate(flags):
        if i != 1:  # kube-proxy's hash:ip / ip,port / ip,port,ip / ip,port,net sets
            parts.append(format_addr(w.src if side == "src" else w.dst, family))
            continue
        port = w.sport if side == "src" else w.dport
        if port is None:
            return f"port needed for ipset {name!r} not given"
        parts.append(f"{_PROTO_NAMES.get(w.pkt.proto, w.pkt.proto)}:{port}")
    element = ",".join(parts)
    return Cond(("set", name, element), f"{element} in {name}", f"{element} not in {name}",
                "--ipsets FILE", negated)


BOUND_SETS = frozenset({
    "KUBE-CLUSTER-IP", "KUBE-EXTERNAL-IP", "KUBE-EXTERNAL-IP-LOCAL", "KUBE-LOAD-BALANCER",
    "KUBE-LOAD-BALANCER-LOCAL", "KUBE-LOAD-BALANCER-FW", "KUBE-LOAD-BALANCER-SOURCE-CIDR",
    "KUBE-LOAD-BALANCER-SOURCE-IP"})
"""kube-proxy's IPVS-mode sets whose elements begin with a Service address (a cluster IP, an
external IP, a load balancer ingress IP). kube-proxy binds each of those addresses to its
dummy interface kube-ipvs0, so an element in one of these sets makes its address the node's,
and an address that is not the node's is in none of them."""


def known_fact(facts: dict[Any, tuple[bool, Cond]], key: Any,
               bound_only: bool = False) -> bool | None:
    """The value of the fact ``key`` on a branch that assumed ``facts``: the value assumed, or
    the one its assumptions imply through :data:`BOUND_SETS` (so "in KUBE-CLUSTER-IP" and "is a
    node address" are not forked as if independent); None when it is open.

    ``bound_only``: the node's addresses not otherwise placed are only those kube-proxy binds
    to kube-ipvs0 (``--local-ip`` given, set contents unknown), so an address the branch
    found in none of the Service sets it asked is not the node's."""
    known = facts.get(key)
    if known is not None:
        return known[0]
    if not facts:
        return None
    if key[0] == "local":
        found = None
        for k, (value, _c) in facts.items():
            if k[0] == "set" and k[1] in BOUND_SETS and bound_addr(k[2]) == key[1]:
                if value:
                    return True
                found = False
        return found if bound_only else None
    elif key[0] == "set" and key[1] in BOUND_SETS:
        local = facts.get(("local", bound_addr(key[2])))
        if local is not None and not local[0]:
            return False
    return None


@lru_cache(maxsize=4096)
def bound_addr(element: str) -> int | None:
    """The address an element of a :data:`BOUND_SETS` set begins with."""
    text = element.split(",", 1)[0]
    try:
        return parse_addr(text, family_of(text))
    except ValueError:
        return None


def _inside(dim: str, member: Any, value: Any) -> bool:
    if dim == "port":
        proto, (lo, hi) = member
        return bool(value[0] == proto and lo <= value[1] <= hi)
    net, mask = member
    return bool(value & mask == net)
