"""Match evaluators, one compiler per match module of the extension table.

Every evaluator takes a :class:`~netproxy.trace.state.Walk` and answers ``True`` or
``False``, a string saying why it cannot be decided (the branch becomes UNKNOWN), or
:data:`FORK` for ``statistic --mode random`` (the walk splits with the kernel's probability).
Evaluators are built once per rule, the first time a packet reaches it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from netproxy.netfilter import extensions as ext
from netproxy.netfilter.model import Option, Rule
from netproxy.netfilter.values import kernel_probability, parse_mark
from netproxy.textsafe import digits
from netproxy.trace.addr import (
    is_limited_broadcast,
    is_multicast,
    parse_addr,
    parse_net,
    parse_port_range,
)
from netproxy.trace.fields import (
    DS_FLAG,
    DSCP_CLASSES,
    DSCP_MASK,
    UID_FLAG,
    ds_test,
    ds_text,
    parse_dscp,
    parse_tos,
    uid_test,
    uid_texts,
)
from netproxy.trace.ipsets import known_fact
from netproxy.trace.packet import PROTOCOLS
from netproxy.trace.state import Cond, Walk

FORK = object()
"""Returned by a ``statistic --mode random`` evaluator: fork the walk here."""

Eval = Callable[[Walk], object]

RECENT_STAMPS = 20
"""``ip_pkt_list_tot``: how many time stamps the kernel keeps per recent entry."""


@dataclass(slots=True)
class Context:
    """What evaluators need beyond the packet: family, local addresses, ipset contents."""

    family: str
    local: Callable[[int], bool]
    ipsets: dict[str, Any] | None = None
    assume: bool = False
    """Answer anyway: an unnamed interface or bridge port takes a stated default, and an
    unknowable fact (ipset membership, whether an address is the node's) forks into both
    cases. False: those are UNKNOWN (``--strict``)."""
    placed: Callable[[int], bool | None] | None = None
    """Whether an address is the node's: True, False, or None when it cannot be placed
    (only with ``assume``; otherwise ``local`` decides)."""
    bound_only: bool = False
    """IPVS mode with the node's other addresses given: an unplaced address is the node's
    only through kube-proxy's Service sets (see :func:`netproxy.trace.ipsets.known_fact`);
    the fact "is a node address" is then supplied by ``--ipsets FILE``."""


UNNAMED_IFACE = "\x00"
"""The stated default for an interface not given: one that no rule names (no stem is a
prefix of it, only ``+`` matches it)."""
ASSUMED_IIF = "input interface: one that no rule names (give --in-interface)"
ASSUMED_OIF = "output interface: one that no rule names (give --out-interface)"
ASSUMED_BRIDGE = "not bridged (give --physdev-in/--physdev-out)"


def local_cond(addr: int, family: str, flag: str = "--local-ip") -> Cond:
    """The fact "``addr`` is one of the node's own addresses"."""
    from netproxy.trace.addr import format_addr

    text = format_addr(addr, family)
    return Cond(("local", addr), f"{text} is a node address",
                f"{text} is not a node address", flag)


def local_flag(ctx: Context) -> str:
    """The flag that tells whether an unplaced address is the node's."""
    return "--ipsets FILE" if ctx.bound_only else "--local-ip"


@dataclass(slots=True)
class Matcher:
    """The compiled match part of a rule."""

    evals: tuple[Eval, ...]
    pure: tuple[bool, ...]
    """False for evaluators with side effects (recent, nth, limit): after an undecidable
    match nothing past them can be concluded."""
    forks: dict[int, tuple[float, bool]] = field(default_factory=dict)
    """Evaluator position -> (kernel probability, negated) of each random statistic match."""
    header: tuple[bool, ...] | None = None
    """Per evaluator: it may read the packet's addresses or ports (as they are after NAT,
    or as they were), which a walk's summary has to check again (see
    :meth:`netproxy.trace.engine.Tracer._replay`); the others read only what the summary's
    key holds (marks, conntrack state, interfaces, the packet's fixed fields). None: all
    may (a matcher built elsewhere)."""
    keyed_effects: frozenset[int] = frozenset()
    """Positions of evaluators with side effects that follow from what a summary's key
    holds (nft's ``meta mark set meta mark | 0x4000``: a mark from marks and constants): a
    walk being summarized notes the state they leave and goes on recording (see
    :meth:`netproxy.trace.engine.Tracer._note_eval`), where any other side effect ends it."""


def _const(value: object) -> Eval:
    return lambda w: value


def _unknown(reason: str) -> Eval:
    return lambda w: reason


def _neg(f: Eval, negated: bool) -> Eval:
    if not negated:
        return f

    def inverted(w: Walk) -> object:
        r = f(w)
        if r is True:
            return False
        if r is False:
            return True
        if type(r) is Cond:
            return r.flipped()
        return r
    return inverted


# ---------------------------------------------------------------- built-in (ip_packet_match)

def _addr_match(which: str, opt: Option, ctx: Context) -> Eval:
    net, mask = parse_net(opt.value, ctx.family)
    neg = opt.negated
    if which == "src":
        if neg:
            return lambda w: (w.src & mask) != net
        return lambda w: (w.src & mask) == net
    if neg:
        return lambda w: (w.dst & mask) != net
    return lambda w: (w.dst & mask) == net


def _iface_match(which: str, opt: Option, ctx: Context) -> Eval:
    name = opt.value
    prefix = name.endswith("+")
    stem = name[:-1] if prefix else name
    flag = "--in-interface" if which == "iif" else "--out-interface"
    assume = ctx.assume
    stated = ASSUMED_IIF if which == "iif" else ASSUMED_OIF

    def f(w: Walk) -> object:
        have = w.iif if which == "iif" else w.oif
        if have is None:
            if not assume:
                return (f"{'input' if which == 'iif' else 'output'} interface not known "
                        f"(give {flag})")
            if stated not in w.assumed:
                w.assumed = w.assumed | {stated}
            have = UNNAMED_IFACE
        return have.startswith(stem) if prefix else have == stem
    return _neg(f, opt.negated)


def _proto_match(opt: Option) -> Eval:
    text = opt.value.lower()
    if text in ("all", "0"):
        return _const(not opt.negated)
    num = int(text) if digits(text) else PROTOCOLS.get(text)
    if num is None:
        return _unknown(f"protocol {opt.value!r} is not modelled")
    if num == 1 and text == "icmp":
        nums = {1}
    elif num == 58:
        nums = {58}
    else:
        nums = {num}
    if opt.negated:
        return lambda w: w.pkt.proto not in nums
    return lambda w: w.pkt.proto in nums


def _builtin(opt: Option, ctx: Context) -> Eval:
    name = opt.name
    if name == "source":
        return _addr_match("src", opt, ctx)
    if name == "destination":
        return _addr_match("dst", opt, ctx)
    if name == "in-interface":
        return _iface_match("iif", opt, ctx)
    if name == "out-interface":
        return _iface_match("oif", opt, ctx)
    if name == "protocol":
        return _proto_match(opt)
    if name == "fragment":
        # Traced packets are whole (or first fragments): -f never matches.
        return _const(opt.negated)
    return _unknown(f"built-in match -{name} is not modelled")


# ---------------------------------------------------------------- modules

def _port_eval(which: str, spec: str, negated: bool) -> Eval:
    lo, hi = parse_port_range(spec)
    flag = "--sport" if which == "sport" else "--dport"

    def f(w: Walk) -> object:
        port = w.sport if which == "sport" else w.dport
        if port is None:
            return f"{'source' if which == 'sport' else 'destination'} port not given ({flag})"
        return (lo <= port <= hi) != negated
    return f


def _multi_eval(which: str, spec: str, negated: bool) -> Eval:
    ranges = [parse_port_range(p) for p in spec.split(",") if p]

    def inside(port: int) -> bool:
        return any(lo <= port <= hi for lo, hi in ranges)

    def f(w: Walk) -> object:
        if which == "ports":
            known = [p for p in (w.sport, w.dport) if p is not None]
            if any(inside(p) for p in known):
                return not negated
            if len(known) < 2:
                return "source or destination port not given"
            return negated
        port = w.sport if which == "sports" else w.dport
        if port is None:
            return f"{'source' if which == 'sports' else 'destination'} port not given"
        return inside(port) != negated
    return f


_TCP_FLAGS = {"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"}


def _flag_set(text: str) -> frozenset[str]:
    words = {t.strip().upper() for t in text.split(",") if t.strip()}
    if "ALL" in words:
        return frozenset(_TCP_FLAGS)
    if "NONE" in words:
        return frozenset()
    if not words <= _TCP_FLAGS:
        raise ValueError(f"unknown TCP flag in {text!r}")
    return frozenset(words)


def _tcp_flags_eval(mask_text: str, comp_text: str, negated: bool) -> Eval:
    mask, comp = _flag_set(mask_text), _flag_set(comp_text)
    return lambda w: ((w.pkt.tcp_flags & mask) == comp) != negated


def _ports_module(opts: list[Option], ctx: Context) -> list[Eval]:
    out: list[Eval] = []
    for o in opts:
        if o.name in ("sport", "dport"):
            out.append(_port_eval(o.name, o.value, o.negated))
        elif o.name == "tcp-flags":
            out.append(_tcp_flags_eval(o.args[0], o.args[1], o.negated))
        elif o.name == "syn":
            out.append(_tcp_flags_eval("SYN,RST,ACK,FIN", "SYN", o.negated))
        else:
            out.append(_unknown(f"--{o.name} is not modelled"))
    return out


_ICMP4 = {"any": None, "echo-reply": (0, None), "pong": (0, None),
          "destination-unreachable": (3, None), "network-unreachable": (3, 0),
          "host-unreachable": (3, 1), "protocol-unreachable": (3, 2), "port-unreachable": (3, 3),
          "fragmentation-needed": (3, 4), "source-route-failed": (3, 5),
          "network-prohibited": (3, 9), "host-prohibited": (3, 10),
          "communication-prohibited": (3, 13), "source-quench": (4, None),
          "redirect": (5, None), "echo-request": (8, None), "ping": (8, None),
          "router-advertisement": (9, None), "router-solicitation": (10, None),
          "time-exceeded": (11, None), "ttl-exceeded": (11, None),
          "ttl-zero-during-transit": (11, 0), "ttl-zero-during-reassembly": (11, 1),
          "parameter-problem": (12, None), "timestamp-request": (13, None),
          "timestamp-reply": (14, None), "address-mask-request": (17, None),
          "address-mask-reply": (18, None)}
_ICMP6 = {"any": None, "destination-unreachable": (1, None), "no-route": (1, 0),
          "communication-prohibited": (1, 1), "address-unreachable": (1, 3),
          "port-unreachable": (1, 4), "packet-too-big": (2, None), "time-exceeded": (3, None),
          "ttl-exceeded": (3, None), "parameter-problem": (4, None),
          "echo-request": (128, None), "ping": (128, None), "echo-reply": (129, None),
          "pong": (129, None), "router-solicitation": (133, None),
          "router-advertisement": (134, None), "neighbour-solicitation": (135, None),
          "neighbor-solicitation": (135, None), "neighbour-advertisement": (136, None),
          "neighbor-advertisement": (136, None), "redirect": (137, None)}


def _icmp_module(opts: list[Option], ctx: Context, v6: bool) -> list[Eval]:
    out: list[Eval] = []
    names = _ICMP6 if v6 else _ICMP4
    for o in opts:
        text = o.value.lower()
        want: tuple[int, int | None] | None
        if text in names:
            want = names[text]
        else:
            kind, _, code = text.partition("/")
            if not digits(kind) or (code and not digits(code)):
                out.append(_unknown(f"icmp type {o.value!r} is not modelled"))
                continue
            want = (int(kind), int(code) if code else None)
        neg = o.negated
        if want is None:
            out.append(_const(not neg))
            continue
        t, c = want

        def f(w: Walk, t: int = t, c: int | None = c, neg: bool = neg) -> object:
            have = w.pkt.icmp
            if have is None:
                return neg
            return (have[0] == t and (c is None or have[1] == c)) != neg
        out.append(f)
    return out


def _mark_eval(text: str, negated: bool, conn: bool) -> Eval:
    value, mask = parse_mark(text)
    if conn:
        return lambda w: ((w.ctmark & mask) == value) != negated
    return lambda w: ((w.mark & mask) == value) != negated


def _mark_module(opts: list[Option], ctx: Context, conn: bool) -> list[Eval]:
    return [_mark_eval(o.value, o.negated, conn) for o in opts if o.name == "mark"]


_NAT_STATES = frozenset({"SNAT", "DNAT"})


def _ctstate_eval(text: str, negated: bool, assume: bool) -> Eval:
    wanted = frozenset(s.strip().upper() for s in text.split(",") if s.strip())
    nat = wanted & _NAT_STATES
    names = " or ".join(f"{s}ed" for s in sorted(nat))
    cond = Cond(("ctnat", nat), f"the connection was {names}", f"the connection was not {names}",
                "--ct-state", negated)

    def f(w: Walk) -> object:
        if w.ct & wanted:
            return not negated
        if nat and w.pkt.ct & {"ESTABLISHED", "RELATED"} and not w.pkt.ct & _NAT_STATES:
            # A later packet of a connection: whether it was NATed is not in the packet.
            if assume:
                return cond
            return ("whether the connection was NATed is not known for a non-NEW packet "
                    "(add DNAT or SNAT to --ct-state)")
        return negated
    return f


def _conntrack_module(opts: list[Option], ctx: Context) -> list[Eval]:
    out: list[Eval] = []
    for o in opts:
        if o.name in ("ctstate", "state"):
            out.append(_ctstate_eval(o.value, o.negated, ctx.assume))
        elif o.name == "ctproto":
            out.append(_neg(_proto_match(Option("", "protocol", o.args)), o.negated))
        elif o.name in ("ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst"):
            out.append(_ct_addr(o, ctx))
        elif o.name in ("ctorigsrcport", "ctorigdstport", "ctreplsrcport", "ctrepldstport"):
            out.append(_ct_port(o))
        elif o.name == "ctdir":
            # The first packet of a connection always travels in the original direction.
            out.append(_new_only(_const(o.value.upper() == "ORIGINAL"), o.negated))
        elif o.name == "ctstatus":
            # A connection not yet confirmed has no status bits: only NONE matches.
            wanted = {s.strip().upper() for s in o.value.split(",")}
            out.append(_new_only(_const("NONE" in wanted), o.negated))
        else:
            out.append(_unknown(f"conntrack --{o.name} is not modelled"))
    return out


def _new_only(f: Eval, negated: bool) -> Eval:
    """Facts about the conntrack entry that are known only for the first packet."""
    def g(w: Walk) -> object:
        if "NEW" not in w.ct:
            return "conntrack entry of a non-NEW packet is not modelled"
        r = f(w)
        return r if isinstance(r, str) else r != negated
    return g


def _ct_addr(o: Option, ctx: Context) -> Eval:
    net, mask = parse_net(o.value, ctx.family)
    pick: dict[str, Callable[[Walk], int]] = {
        "ctorigsrc": lambda w: w.pkt.src, "ctorigdst": lambda w: w.orig_dst,
        "ctreplsrc": lambda w: w.dst, "ctrepldst": lambda w: w.src}
    get = pick[o.name]
    return _new_only(lambda w: (get(w) & mask) == net, o.negated)


def _ct_port(o: Option) -> Eval:
    lo, hi = parse_port_range(o.value)
    pick: dict[str, Callable[[Walk], int | None]] = {
        "ctorigsrcport": lambda w: w.pkt.packet.sport, "ctorigdstport": lambda w: w.orig_dport,
        "ctreplsrcport": lambda w: w.dport, "ctrepldstport": lambda w: w.sport}
    get = pick[o.name]

    def f(w: Walk) -> object:
        port = get(w)
        if port is None:
            return "port not given"
        return lo <= port <= hi
    return _new_only(f, o.negated)


_ROUTE_TYPES = {"BLACKHOLE", "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE", "ANYCAST"}


def _addrtype_module(opts: list[Option], ctx: Context) -> list[Eval]:
    limited = any(o.name in ("limit-iface-in", "limit-iface-out") for o in opts)
    out: list[Eval] = []
    for o in opts:
        if o.name not in ("src-type", "dst-type"):
            continue
        types = {t.strip().upper() for t in o.value.split(",") if t.strip()}
        out.append(_addrtype_eval(o.name == "src-type", types, o.negated, limited, ctx))
    return out


def _addrtype_eval(src: bool, types: set[str], negated: bool, limited: bool,
                   ctx: Context) -> Eval:
    local = ctx.local
    placed = ctx.placed
    family = ctx.family
    bound_only = ctx.bound_only
    flag = local_flag(ctx)

    def f(w: Walk) -> object:
        addr = w.src if src else w.dst
        if placed is not None:
            here = placed(addr)
            if here is None:
                known = known_fact(w.facts, ("local", addr), bound_only)
                if known is None:
                    # Cannot place the address: fork on "it is the node's" when the answer
                    # of this test depends on it (LOCAL versus UNICAST).
                    if not limited and ("LOCAL" in types) != ("UNICAST" in types):
                        return Cond(("local", addr), *_local_texts(addr, family), flag,
                                    negated != ("LOCAL" not in types))
                    here = False
                else:
                    here = known
        else:
            here = local(addr)
        if here:
            if limited:
                return "addrtype --limit-iface-* (per-interface addresses are not modelled)"
            kind = "LOCAL"
        elif is_multicast(addr, family):
            kind = "MULTICAST"
        elif is_limited_broadcast(addr, family):
            kind = "BROADCAST"
        else:
            if types & _ROUTE_TYPES or "BROADCAST" in types:
                return "route type of a non-local address is not modelled"
            kind = "UNICAST"
        return (kind in types) != negated
    return f


def _local_texts(addr: int, family: str) -> tuple[str, str]:
    c = local_cond(addr, family)
    return c.text, c.text_not


def _statistic_module(opts: list[Option], ctx: Context, key: Any) -> list[tuple[Eval, Any]]:
    mode = next((o.value for o in opts if o.name == "mode"), "")
    if mode == "random":
        prob = next((o for o in opts if o.name == "probability"), None)
        if prob is None:
            return [(_unknown("statistic random without --probability"), None)]
        return [(_const(FORK), (kernel_probability(prob.value), prob.negated))]
    if mode == "nth":
        every_o = next((o for o in opts if o.name == "every"), None)
        packet_o = next((o for o in opts if o.name == "packet"), None)
        if every_o is None:
            return [(_unknown("statistic nth without --every"), None)]
        every = int(every_o.value) - 1
        start = every - (int(packet_o.value) if packet_o is not None else 0)
        negated = every_o.negated

        def nth(w: Walk) -> object:
            count = w.memory.get(("nth", key))
            if count is None:
                count = start
            nval = 0 if count == every else count + 1
            w.memory = w.memory.with_(("nth", key), nval)
            return (nval == 0) != negated
        return [(nth, "impure")]
    return [(_unknown(f"statistic mode {mode!r} is not modelled"), None)]


def _recent_module(opts: list[Option], ctx: Context) -> list[Eval]:
    names = {o.name: o for o in opts}
    if "rttl" in names:
        return [_unknown("recent --rttl is not modelled")]
    name = names["name"].value if "name" in names else "DEFAULT"
    full = (1 << (32 if ctx.family == "ipv4" else 128)) - 1
    mask = parse_addr(names["mask"].value, ctx.family) if "mask" in names else full
    dest = "rdest" in names
    seconds = float(names["seconds"].value) if "seconds" in names else 0.0
    hitcount = int(names["hitcount"].value) if "hitcount" in names else 0
    reap = "reap" in names
    command = next((c for c in ("set", "rcheck", "update", "remove") if c in names), "rcheck")
    negated = names[command].negated if command in names else False

    def f(w: Walk) -> object:
        addr = (w.dst if dest else w.src) & mask
        now = w.pkt.packet.time
        stamps = w.memory.get(("recent", name, addr))
        ret = negated
        if stamps is None:
            if command != "set":
                return ret
            w.memory = w.memory.with_recent(name, addr, (now,))
            return not ret
        if command == "set":
            ret = not ret
        elif command == "remove":
            w.memory = w.memory.with_recent(name, addr, None)
            return not ret
        else:
            since = now - seconds
            hits = 0
            for stamp in stamps:
                if seconds and stamp < since:
                    continue
                hits += 1
                if not hitcount or hits >= hitcount:
                    ret = not ret
                    break
            if reap and stamps[-1] < since:
                w.memory = w.memory.with_recent(name, addr, None)
                stamps = ()
        if command == "set" or (command == "update" and ret != negated):
            w.memory = w.memory.with_recent(name, addr, (stamps + (now,))[-RECENT_STAMPS:])
        return ret
    return [f]


def _iprange_module(opts: list[Option], ctx: Context) -> list[Eval]:
    out: list[Eval] = []
    for o in opts:
        lo_t, _, hi_t = o.value.partition("-")
        lo = parse_addr(lo_t, ctx.family)
        hi = parse_addr(hi_t or lo_t, ctx.family)
        out.append(_range_eval(o.name == "src-range", lo, hi, o.negated))
    return out


def _range_eval(src: bool, lo: int, hi: int, neg: bool) -> Eval:
    if src:
        return lambda w: (lo <= w.src <= hi) != neg
    return lambda w: (lo <= w.dst <= hi) != neg


def _physdev_module(opts: list[Option], ctx: Context) -> list[Eval]:
    out: list[Eval] = []
    for o in opts:
        out.append(_physdev_eval(o, ctx.assume))
    return out


def _physdev_eval(o: Option, assume: bool) -> Eval:
    """xt_physdev: the bridge ports a packet came in on / leaves by ("" for none).

    ``--physdev-is-bridged`` means the packet is being bridged (it has an output port);
    a packet routed after arriving through a bridge has only an input port.
    """
    name = o.name
    inbound = name in ("physdev-in", "physdev-is-in")
    if name not in ("physdev-in", "physdev-out", "physdev-is-in", "physdev-is-out",
                    "physdev-is-bridged"):
        return _unknown(f"physdev --{name} is not modelled")
    want = o.value

    def f(w: Walk) -> object:
        p = w.pkt.packet
        port = p.physdev_in if inbound else p.physdev_out
        if port is None and p.bridged is False:
            port = ""
        if port is None and assume:
            if ASSUMED_BRIDGE not in w.assumed:
                w.assumed = w.assumed | {ASSUMED_BRIDGE}
            port = ""
        if port is None:
            return ("bridge port not known (give --physdev-in/--physdev-out, or "
                    "--not-bridged)")
        if name.startswith("physdev-is-"):
            return (port != "") != o.negated
        if not port:
            if name == "physdev-out" and p.physdev_in:
                # Came in through a bridge port and is routed: xt_physdev finds no output
                # port and fails --physdev-out, inverted or not.
                return False
            return o.negated
        ok = port.startswith(want[:-1]) if want.endswith("+") else port == want
        return ok != o.negated
    return f


_RATE_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
               "h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0}


def _limit_module(opts: list[Option], ctx: Context, key: Any) -> list[Eval]:
    rate_t = next((o.value for o in opts if o.name == "limit"), "3/hour")
    burst = int(next((o.value for o in opts if o.name == "limit-burst"), "5"))
    count, _, unit = rate_t.partition("/")
    per = _RATE_UNITS.get(unit.lower() or "s")
    if per is None or not digits(count):
        return [_unknown(f"limit rate {rate_t!r} is not modelled")]
    rate = int(count) / per

    def f(w: Walk) -> object:
        now = w.pkt.packet.time
        credit, last = w.memory.get(("limit", key)) or (float(burst), now)
        credit = min(float(burst), credit + (now - last) * rate)
        ok = credit >= 1.0
        w.memory = w.memory.with_(("limit", key), (credit - 1.0 if ok else credit, now))
        return ok
    return [f]


def _owner_module(opts: list[Option], ctx: Context) -> list[Eval]:
    out: list[Eval] = []
    for o in opts:
        out.append(_owner_eval(o, ctx.assume))
    return out


def _ds_module(opts: list[Option], ctx: Context, module: str) -> list[Eval]:
    """``-m tos --tos V[/M]`` (the DS field's bits M are V) and ``-m dscp --dscp D`` /
    ``--dscp-class NAME`` (its six DSCP bits are D)."""
    out: list[Eval] = []
    for o in opts:
        if module == "tos" and o.name == "tos":
            value, mask = parse_tos(o.value)
        elif module == "dscp" and o.name in ("dscp", "dscp-class"):
            if o.name == "dscp-class" and o.value.upper() not in DSCP_CLASSES:
                raise ValueError(f"unknown DSCP class {o.value!r}")
            mask, value = DSCP_MASK, parse_dscp(o.value) << 2
        else:
            out.append(_unknown(f"-m {module} --{o.name} is not modelled"))
            continue
        out.append(_ds_eval(value & mask, mask, o.negated, ctx.assume))
    return out


def _ds_eval(value: int, mask: int, negated: bool, assume: bool) -> Eval:
    def f(w: Walk) -> object:
        r = ds_test(w.ds, ((k, v[0]) for k, v in w.facts.items()) if w.facts else (),
                    mask, value)
        if r is True or r is False:
            return r != negated
        if not assume:
            return f"the packet's DS field (TOS/DSCP) is not known (give {DS_FLAG})"
        m, v = r
        text = ds_text(m, v)
        return Cond(("ds", m, v), text, text.replace(" is ", " is not ", 1), DS_FLAG, negated)
    return f


def _owner_eval(o: Option, assume: bool) -> Eval:
    lo = hi = -1
    if o.name in ("uid-owner", "gid-owner"):
        a, _, b = o.value.partition("-")
        if not digits(a) or (b and not digits(b)):
            return _unknown(f"owner name {o.value!r} is not modelled (numeric ids only)")
        lo, hi = int(a), int(b or a)

    def f(w: Walk) -> object:
        if w.pkt.origin not in ("node", "localhost"):
            return o.negated  # no local socket: only inverted owner options match
        p = w.pkt.packet
        if o.name == "socket-exists":
            return "whether a socket exists is not known" if p.uid is None else not o.negated
        have = p.uid if o.name == "uid-owner" else p.gid if o.name == "gid-owner" else None
        if o.name not in ("uid-owner", "gid-owner"):
            return f"owner --{o.name} is not modelled"
        if have is None and o.name == "uid-owner" and w.facts:
            decided = uid_test(None, ((k, v[0]) for k, v in w.facts.items()), lo, hi)
            if decided is not None:
                return decided != o.negated
        if have is None:
            if assume and o.name == "uid-owner":
                return Cond(("owner", "uid", lo, hi), *uid_texts(lo, hi), UID_FLAG, o.negated)
            if assume:
                return Cond(("owner", "gid", lo, hi), f"the sender's gid is {o.value}",
                            f"the sender's gid is not {o.value}", "gid= in a packets file",
                            o.negated)
            return "the sending user is not known (give uid/gid in a packets file)"
        return (lo <= have <= hi) != o.negated
    return f


def _pkttype_module(opts: list[Option], ctx: Context) -> list[Eval]:
    out: list[Eval] = []
    for o in opts:
        want = o.value.lower()

        def f(w: Walk, want: str = want, neg: bool = o.negated) -> object:
            if is_multicast(w.dst, ctx.family):
                kind = "multicast"
            elif is_limited_broadcast(w.dst, ctx.family):
                kind = "broadcast"
            else:
                kind = "unicast"
            return (kind == want) != neg
        out.append(f)
    return out


def _set_module(opts: list[Option], ctx: Context) -> list[Eval]:
    from netproxy.trace.ipsets import set_eval

    out: list[Eval] = []
    for o in opts:
        if o.name != "match-set":
            if o.name == "return-nomatch" or o.name.startswith("update"):
                continue
            out.append(_unknown(f"set --{o.name} is not modelled"))
            continue
        out.append(set_eval(o, ctx))
    return out


_ALWAYS = {"comment", "nfacct"}


def compile_matches(rule: Rule, ctx: Context, key: Any, *,
                    skip_addresses: bool = False) -> Matcher:
    """Evaluators for ``rule`` in kernel order: the built-in header match, then each ``-m``.

    ``skip_addresses``: leave ``-s``/``-d`` out (the caller checks them itself).
    """
    evals: list[Eval] = []
    pure: list[bool] = []
    header: list[bool] = []
    forks: dict[int, tuple[float, bool]] = {}
    for opt in rule.matches:
        if skip_addresses and not opt.module and opt.name in ("source", "destination"):
            continue
        if not opt.module:
            evals.append(_safe(opt, ctx))
            pure.append(True)
            header.append(opt.name in ("source", "destination"))
    for index, (module, opts) in enumerate(_instances(rule.matches)):
        made = _module(module, opts, ctx, (key, index))
        header += _reads_header(module, opts, len(made))
        for f, extra in made:
            if isinstance(extra, tuple):
                forks[len(evals)] = extra
            evals.append(f)
            pure.append(extra != "impure")
    return Matcher(tuple(evals), tuple(pure), forks, tuple(header))


_KEYED_MODULES = frozenset({"icmp", "icmp6", "ipv6-icmp", "mark", "connmark", "physdev",
                            "owner", "helper", "comment", "nfacct"})
"""Modules whose evaluators read no address or port of the packet (see ``Matcher.header``)."""
_KEYED_OPTIONS = {**{m: frozenset({"tcp-flags", "syn"})
                     for m in ("tcp", "udp", "sctp", "udplite", "dccp")},
                  "conntrack": frozenset({"ctstate", "state", "ctproto", "ctdir", "ctstatus"}),
                  "state": frozenset({"state", "ctstate"})}
"""Per module with one evaluator per option: the options that read no address or port."""


def _reads_header(module: str, opts: list[Option], made: int) -> list[bool]:
    """``Matcher.header`` for the ``made`` evaluators of one module instance; anything not
    known to read none of the packet's addresses and ports is taken to read them."""
    if module in _KEYED_MODULES:
        return [False] * made
    keyed = _KEYED_OPTIONS.get(module)
    if keyed is not None and made == len(opts):
        return [o.name not in keyed for o in opts]
    return [True] * made


def _instances(items: Iterable[Option]) -> list[tuple[str, list[Option]]]:
    """Group module options under their ``-m`` token (``-p tcp`` loads ``tcp`` implicitly)."""
    out: list[tuple[str, list[Option]]] = []
    current: dict[str, list[Option]] = {}
    for opt in items:
        if not opt.module:
            continue
        if not opt.name:
            group: list[Option] = []
            out.append((opt.module, group))
            current[opt.module] = group
            continue
        group = current.get(opt.module)  # type: ignore[assignment]
        if group is None:
            group = []
            out.append((opt.module, group))
            current[opt.module] = group
        group.append(opt)
    return out


def _safe(opt: Option, ctx: Context) -> Eval:
    try:
        return _builtin(opt, ctx)
    except (ValueError, IndexError) as err:
        return _unknown(f"cannot evaluate: {err}")


def _module(module: str, opts: list[Option], ctx: Context, key: Any) -> list[tuple[Eval, Any]]:
    try:
        return _module_unsafe(module, opts, ctx, key)
    except (ValueError, IndexError, KeyError) as err:
        return [(_unknown(f"cannot evaluate -m {module}: {err}"), None)]


def _module_unsafe(module: str, opts: list[Option], ctx: Context,
                   key: Any) -> list[tuple[Eval, Any]]:
    if module in _ALWAYS:
        return []
    known = ext.match(module)
    if known is None:
        return [(_unknown(f"match module {module!r} is unknown"), None)]
    for o in opts:
        if known.lookup(o.name) is None:
            return [(_unknown(f"option --{o.name} of -m {module} is unknown"), None)]
    plain: list[Eval]
    if module in ("tcp", "udp", "sctp", "udplite", "dccp"):
        plain = _ports_module(opts, ctx)
    elif module == "icmp":
        plain = _icmp_module(opts, ctx, False)
    elif module in ("icmp6", "ipv6-icmp"):
        plain = _icmp_module(opts, ctx, True)
    elif module in ("mark", "connmark"):
        plain = _mark_module(opts, ctx, module == "connmark")
    elif module in ("conntrack", "state"):
        plain = _conntrack_module(opts, ctx)
    elif module == "addrtype":
        plain = _addrtype_module(opts, ctx)
    elif module == "statistic":
        return _statistic_module(opts, ctx, key)
    elif module == "recent":
        return [(f, "impure") for f in _recent_module(opts, ctx)]
    elif module == "limit":
        return [(f, "impure") for f in _limit_module(opts, ctx, key)]
    elif module == "multiport":
        plain = [_multi_eval(o.name, o.value, o.negated) for o in opts]
    elif module == "iprange":
        plain = _iprange_module(opts, ctx)
    elif module == "physdev":
        plain = _physdev_module(opts, ctx)
    elif module == "owner":
        plain = _owner_module(opts, ctx)
    elif module == "pkttype":
        plain = _pkttype_module(opts, ctx)
    elif module in ("tos", "dscp"):
        plain = _ds_module(opts, ctx, module)
    elif module == "set":
        plain = _set_module(opts, ctx)
    elif module == "helper":
        plain = [_unknown("conntrack helper of the connection is not modelled")]
    else:
        plain = [_unknown(f"match -m {module} is not modelled")]
    return [(f, None) for f in plain]
