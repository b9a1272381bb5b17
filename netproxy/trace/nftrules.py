"""nftables rules ready to walk: each statement becomes an evaluator over a
:class:`~netproxy.trace.state.Walk`, in rule order (matches and statements interleave in
nftables: ``meta mark set ...`` takes effect even when a later match fails), and the rule's
verdict becomes the kind of action the engine knows (``jump``, ``ACCEPT``, ``DNAT``, ...).

Lookups that decide the verdict at run time (``vmap``, ``dnat to ... map``, ``numgen``) become
the action kind ``dyn``: a function of the walk returning ``None`` (no element: the rule ends,
the next one runs), an action ``(kind, data)``, a list of weighted actions ``[(p, kind, data),
...]`` (``numgen random mod N``: every value with weight exactly 1/N), or a string saying why it
cannot be decided.

Stated assumptions: ``limit`` buckets start full (a plain limit matches, ``limit rate over``
does not); quotas start unused; a packet is in the original direction of its connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from netproxy.netfilter.nft import NftChain, NftRule, NftSet, NftTable
from netproxy.trace.addr import (
    BITS,
    format_endpoint,
    is_limited_broadcast,
    is_multicast,
    parse_addr,
)
from netproxy.trace.index import ChainCode
from netproxy.trace.matches import FORK, Context, Matcher, _addrtype_eval
from netproxy.trace.packet import PORT_PROTOCOLS, PROTOCOLS
from netproxy.trace.state import Walk


class Why(str):
    """A reason the value cannot be known: the rule's branch becomes UNKNOWN."""


NO: Any = object()
"""The expression's protocol does not apply to the packet (``tcp dport`` of a UDP packet):
the match fails, as nft's implicit dependency (``meta l4proto tcp``) would."""
MISSING: Any = object()

Get = Callable[[Walk], Any]
Action = tuple[str, Any]

ICMP_NAMES = {"echo-reply": 0, "destination-unreachable": 3, "source-quench": 4, "redirect": 5,
              "echo-request": 8, "router-advertisement": 9, "router-solicitation": 10,
              "time-exceeded": 11, "parameter-problem": 12, "timestamp-request": 13,
              "timestamp-reply": 14, "info-request": 15, "info-reply": 16,
              "address-mask-request": 17, "address-mask-reply": 18}
ICMP6_NAMES = {"destination-unreachable": 1, "packet-too-big": 2, "time-exceeded": 3,
               "parameter-problem": 4, "echo-request": 128, "echo-reply": 129,
               "mld-listener-query": 130, "mld-listener-report": 131,
               "mld-listener-done": 132, "mld-listener-reduction": 132,
               "nd-router-solicit": 133, "nd-router-advert": 134, "nd-neighbor-solicit": 135,
               "nd-neighbor-advert": 136, "nd-redirect": 137, "router-renumbering": 138,
               "ind-neighbor-solicit": 141, "ind-neighbor-advert": 142,
               "mld2-listener-report": 143}
_STATES = {"NEW": "new", "ESTABLISHED": "established", "RELATED": "related",
           "INVALID": "invalid", "UNTRACKED": "untracked"}
_VERDICTS = {"accept": "ACCEPT", "drop": "DROP", "return": "RETURN", "continue": "none"}
_QUIET = frozenset({"counter", "log", "flow", "comment", "notrack_never"})


def verdict_action(value: Any) -> Action | str:
    """A verdict value (``{"goto": {"target": C}}``, ``{"drop": None}``) as an engine action."""
    if isinstance(value, dict) and len(value) == 1:
        (key, body), = value.items()
        if key in _VERDICTS:
            return _VERDICTS[key], None
        if key in ("jump", "goto"):
            return key, body["target"]
    return f"map value {value!r} is not a verdict"


class NftChainCode(ChainCode):
    """An nftables chain prepared for walking (scanned in order: kube-proxy's nftables
    rules keep their big lookups in maps, which are hashed here as in the kernel)."""

    __slots__ = ("family_name", "table_name", "nft_table", "source")

    def __init__(self, label: str, table: NftTable, chain: NftChain, source: str) -> None:
        self.table = label
        self.name = chain.name
        self.chain = chain  # type: ignore[assignment]
        self.rules = chain.rules  # type: ignore[assignment]
        self.compiled = [None] * len(chain.rules)
        self.table_chains = table.chains  # type: ignore[assignment]
        self.builtin = chain.base
        self.policy = (chain.policy or "accept").upper() if chain.base else None
        self.all = range(len(chain.rules))
        self.dim = None
        self.nat = chain.type == "nat"
        self.family_name = table.family
        self.table_name = table.name
        self.nft_table = table
        self.source = source


class _Keyed:
    """A getter with the kind of value it yields (so constants convert alike)."""

    __slots__ = ("get", "kind")

    def __init__(self, get: Get, kind: str) -> None:
        self.get = get
        self.kind = kind


class NftRules:
    """Compiles the rules of nft tables for one address family."""

    def __init__(self, family: str, ctx: Context) -> None:
        self.family = family
        self.ctx = ctx
        self.v4 = family == "ipv4"
        self._indexes: dict[Any, tuple[dict[Any, Any], list[Any]]] = {}
        self.unmodelled: list[str] = []
        """Why the last compiled rule cannot always be decided (for ``--strict``)."""

    def _no(self, reason: str) -> Callable[[Walk], object]:
        """An evaluator for something not modelled: UNKNOWN whenever it is reached."""
        self.unmodelled.append(reason)
        return _const(Why(reason))

    # ------------------------------------------------------------------ rules

    def compile(self, label: str, table: NftTable, rule: NftRule
                ) -> tuple[Matcher, str, Any]:
        """(matcher, action kind, action data) of one rule."""
        self.unmodelled = []
        evals: list[Any] = []
        pure: list[bool] = []
        forks: dict[int, tuple[float, bool]] = {}
        kind, data = "none", None
        for stmt in rule.exprs:
            (key, body), = stmt.items()
            try:
                if key == "match":
                    got = self.match(body, label, table)
                    if isinstance(got, tuple):
                        forks[len(evals)] = got[1]
                        got = got[0]
                    evals.append(got)
                    pure.append(True)
                    continue
                if key in _QUIET or (key == "xt" and body.get("type") == "target"):
                    continue
                if key == "unknown":
                    evals.append(self._no(f"not understood: {body}"))
                    pure.append(False)
                    break
                effect = self.statement(key, body, label, table)
                if effect is not None:
                    evals.append(effect)
                    pure.append(False)
                    continue
                kind, data = self.action(key, body, label, table)
                break
            except (ValueError, KeyError, TypeError, IndexError) as err:
                evals.append(self._no(f"{key} not modelled ({err})"))
                pure.append(False)
                break
        if kind == "unknown":
            self.unmodelled.append(str(data))
        return Matcher(tuple(evals), tuple(pure), forks), kind, data

    def statement(self, key: str, body: Any, label: str, table: NftTable) -> Any:
        """An evaluator for a statement that does not end the rule, or None."""
        if key == "mangle":
            target = body["key"]
            value = self.getter(body["value"])
            if target == {"meta": {"key": "mark"}}:
                return _setter(value.get, "mark")
            if target == {"ct": {"key": "mark"}}:
                return _setter(value.get, "ctmark")
            if target in ({"meta": {"key": "nftrace"}}, {"meta": {"key": "priority"}}):
                return lambda w: True
            return self._no(f"setting {target} is not modelled")
        if key == "set":
            return self.set_update(body, label, table)
        if key == "notrack":
            def notrack(w: Walk) -> object:
                w.ct = frozenset({"UNTRACKED"})
                w.nat_ok = False
                return True
            return notrack
        if key == "limit":
            return _const(not body.get("inv", False))
        if key == "quota":
            if isinstance(body, str):
                obj = next((o for o in table.objects if o.kind == "quota" and o.name == body),
                           None)
                over = obj is not None and "over" in obj.values
            else:
                over = bool(body.get("inv"))
            return _const(not over)
        if key == "xt":
            return self._no(f"xt {body.get('type')} {body.get('name')!r} is not modelled")
        return None

    def action(self, key: str, body: Any, label: str, table: NftTable) -> Action:
        if key in _VERDICTS:
            return _VERDICTS[key], None
        if key in ("jump", "goto"):
            return key, body["target"]
        if key == "reject":
            return "REJECT", None
        if key == "vmap":
            return "dyn", self.lookup_action(body["key"], body["data"], label, table,
                                             verdict_action)
        if key in ("dnat", "snat"):
            return self.nat(key, body, label, table)
        if key == "masquerade":
            flags = (body or {}).get("flags") or []
            return "MASQUERADE", " ".join(flags)
        if key == "redirect":
            port = (body or {}).get("port")
            if isinstance(port, dict):
                return "unknown", "redirect to a port range (the kernel picks one)"
            return "REDIRECT", port
        if key == "queue":
            return "unknown", "queue: the verdict is given by a userspace program"
        return "unknown", f"statement {key!r} is not modelled"

    def nat(self, key: str, body: dict[str, Any], label: str, table: NftTable) -> Action:
        kind = key.upper()
        addr, port = body.get("addr"), body.get("port")
        family = self.family

        def make(a: Any, p: Any) -> Action | str:
            if isinstance(a, dict) and "concat" in a and p is None and len(a["concat"]) == 2:
                a, p = a["concat"]
            if isinstance(a, dict) or isinstance(p, dict) and kind == "DNAT":
                return f"{key} to a range {a}:{p} (the kernel picks one)"
            try:
                num = parse_addr(a, family) if a is not None else None
            except ValueError:
                return f"{key} to {a}: not an address of this family"
            text = (format_endpoint(num, None, family) if num is not None else "") + (
                f":{_port_text(p)}" if p is not None else "")
            if num is not None and p is not None and family == "ipv6":
                text = f"[{format_endpoint(num, None, family)}]:{_port_text(p)}"
            return kind, (num, p if isinstance(p, int) else None, text)

        if isinstance(addr, dict) and "map" in addr:
            return "dyn", self.lookup_action(addr["map"]["key"], addr["map"]["data"], label,
                                             table, lambda v: make(v, port))
        made = make(addr, port)
        return ("unknown", made) if isinstance(made, str) else made

    # ------------------------------------------------------------------ lookups

    def lookup_action(self, key: Any, data: Any, label: str, table: NftTable,
                      to_action: Callable[[Any], Action | str]) -> Callable[[Walk], Any]:
        """A ``dyn`` action: look the key up in a map (named or anonymous)."""
        if isinstance(key, dict) and "numgen" in key:
            ng = key["numgen"]
            if ng.get("mode") != "random":
                return self._no("numgen inc (a counter shared by all packets) is not modelled")
            mod, off = int(ng["mod"]), int(ng.get("offset", 0))
            weight = 1.0 / mod
            alts: list[tuple[float, str, Any]] = []
            for n in range(off, off + mod):
                value = self.find(data, ("int",), label, table, (n,))
                act = ("none", None) if value is MISSING else to_action(value)
                if isinstance(act, str):
                    return self._no(act)
                alts.append((weight, act[0], act[1]))
            merged = _merge(alts)
            return lambda w: merged
        parts = _parts(key)
        getters = [self.getter(p) for p in parts]
        kinds = tuple(g.kind for g in getters)
        gets = tuple(g.get for g in getters)
        cache: dict[Any, Any] = {}

        def f(w: Walk) -> Any:
            values = []
            for g in gets:
                v = g(w)
                if v is NO:
                    return None
                if type(v) is Why:
                    return str(v)
                values.append(v)
            k = tuple(values)
            value = self.find(data, kinds, label, table, k, w)
            if value is MISSING:
                return None
            act = cache.get(id(value))
            if act is None:
                act = cache[id(value)] = to_action(value)
            return act
        return f

    def find(self, data: Any, kinds: tuple[str, ...], label: str, table: NftTable,
             key: tuple[Any, ...], w: Walk | None = None) -> Any:
        """The value (True for sets) of ``key`` in a set or map, or MISSING."""
        exact, ranges = self.index(data, kinds, label, table)
        found = exact.get(key, MISSING)
        if found is not MISSING:
            return found
        for parts, value in ranges:
            if all(_part_in(v, p) for v, p in zip(key, parts, strict=True)):
                return value
        if w is not None and isinstance(data, str):
            expiry = w.memory.get(("nftset", label, data[1:], key))
            if expiry is not None and expiry > w.pkt.packet.time:
                return True
        return MISSING

    def index(self, data: Any, kinds: tuple[str, ...], label: str, table: NftTable
              ) -> tuple[dict[Any, Any], list[Any]]:
        """Elements of a named (``@name``) or anonymous set, converted for ``kinds``."""
        ident = (label, data, kinds) if isinstance(data, str) else (id(data), kinds)
        found = self._indexes.get(ident)
        if found is not None:
            return found
        items: list[tuple[Any, Any]] = []
        if isinstance(data, str):
            nset: NftSet | None = table.sets.get(data[1:])
            if nset is None:
                raise KeyError(f"set {data} is not in table {label}")
            items = [(e.key, e.value if nset.kind == "map" else True) for e in nset.elements]
        else:
            for item in data["set"]:
                if isinstance(item, list):
                    items.append((item[0], item[1]))
                else:
                    items.append((item, True))
        exact: dict[Any, Any] = {}
        ranges: list[Any] = []
        for k, value in items:
            parts = tuple(self.const(p, kind) for p, kind in zip(_parts(k), kinds, strict=False))
            if len(parts) != len(kinds):
                continue
            if all(not isinstance(p, tuple) for p in parts):
                exact.setdefault(parts, value)
            else:
                ranges.append((parts, value))
        self._indexes[ident] = (exact, ranges)
        return exact, ranges

    def set_update(self, body: dict[str, Any], label: str, table: NftTable) -> Any:
        elem = body["elem"]
        timeout = None
        if isinstance(elem, dict) and "elem" in elem:
            timeout = elem["elem"].get("timeout")
            elem = elem["elem"]["val"]
        name = body["set"][1:]
        nset = table.sets.get(name)
        if timeout is None and nset is not None:
            timeout = nset.timeout
        gets = [self.getter(p).get for p in _parts(elem)]
        op = body["op"]
        span = float(timeout) if timeout is not None else float("inf")

        def update(w: Walk) -> object:
            values = []
            for g in gets:
                v = g(w)
                if v is NO:
                    return True
                if type(v) is Why:
                    return str(v)
                values.append(v)
            k = tuple(values)
            now = w.pkt.packet.time
            entry = ("nftset", label, name, k)
            if op == "delete":
                w.memory = w.memory.with_(entry, None)
            elif op == "update" or (w.memory.get(entry) or -1.0) <= now:
                w.memory = w.memory.with_(entry, now + span)
            return True
        return update

    # ------------------------------------------------------------------ matches

    def match(self, body: dict[str, Any], label: str, table: NftTable) -> Any:
        """An evaluator for ``left op right``; ``(eval, (p, negated))`` for a random fork."""
        left, op, right = body["left"], body["op"], body["right"]
        if isinstance(left, dict) and "&" in left and left["&"][0] == {"meta": {"key": "random"}}:
            # iptables-nft's statistic: meta random & 0x7fffffff < N
            mask = int(left["&"][1])
            if op in ("<", "<=") and isinstance(right, int):
                p = (right + (op == "<=")) / (mask + 1)
                return (lambda w: FORK), (min(1.0, p), False)
            return self._no("meta random comparison is not modelled")
        if isinstance(left, dict) and "fib" in left:
            return self.fib(left["fib"], op, right)
        if isinstance(left, dict) and "numgen" in left:
            return self._no("numgen outside a map is not modelled")
        parts = _parts(left)
        getters = [self.getter(p) for p in parts]
        kinds = tuple(g.kind for g in getters)
        if "never" in kinds:  # a header of the other family: nft's dependency fails
            return _const(False)
        gets = tuple(g.get for g in getters)
        negated = op == "!="
        if isinstance(right, str) and right.startswith("@") or \
                isinstance(right, dict) and "set" in right:
            if len(gets) == 1:
                g0 = gets[0]

                def lookup1(w: Walk) -> object:
                    v = g0(w)
                    if v is NO:
                        return False
                    if type(v) is Why:
                        return str(v)
                    if kinds[0] in _FLAG_KINDS:
                        return any(self.find(right, kinds, label, table, (x,), w) is not MISSING
                                   for x in v) != negated
                    return (self.find(right, kinds, label, table, (v,), w) is not MISSING) != negated
                return lookup1

            def lookup(w: Walk) -> object:
                values = []
                for g in gets:
                    v = g(w)
                    if v is NO:
                        return False
                    if type(v) is Why:
                        return str(v)
                    values.append(v)
                return (self.find(right, kinds, label, table, tuple(values), w)
                        is not MISSING) != negated
            return lookup
        if len(gets) != 1:
            rparts = _parts(right)
            consts = tuple(self.const(p, k) for p, k in zip(rparts, kinds, strict=True))

            def concat(w: Walk) -> object:
                for g, c in zip(gets, consts, strict=True):
                    v = g(w)
                    if v is NO:
                        return False
                    if type(v) is Why:
                        return str(v)
                    if not _part_in(v, c):
                        return negated
                return not negated
            return concat
        get, kind = gets[0], kinds[0]
        if kind in _FLAG_KINDS:
            wanted = frozenset(right if isinstance(right, list) else [right])

            def flags(w: Walk) -> object:
                v = get(w)
                if v is NO:
                    return False
                if type(v) is Why:
                    return str(v)
                if op == "in" or op == "==":
                    return bool(v & wanted) if op == "in" else v == wanted
                return not (v & wanted) if op == "!=" else Why(f"{op} on flags")
            return flags
        const = self.const(right, kind)

        def compare(w: Walk) -> object:
            v = get(w)
            if v is NO:
                return False
            if type(v) is Why:
                return str(v)
            if op == "==":
                return _part_in(v, const)
            if op == "!=":
                return not _part_in(v, const)
            if op == "<":
                return v < const
            if op == ">":
                return v > const
            if op == "<=":
                return v <= const
            if op == ">=":
                return v >= const
            return Why(f"operator {op}")
        return compare

    def fib(self, fib: dict[str, Any], op: str, right: Any) -> Any:
        flags = fib["flags"]
        if fib["result"] != "type" or flags not in (["saddr"], ["daddr"]):
            return self._no(f"fib {' . '.join(flags)} {fib['result']}: the route lookup "
                              "is not modelled")
        types = {t.upper() for t in (right if isinstance(right, list) else
                                     right.get("set", []) if isinstance(right, dict) else [right])}
        return _addrtype_eval(flags == ["saddr"], types, op == "!=", False, self.ctx)

    # ------------------------------------------------------------------ expressions

    def getter(self, expr: Any) -> _Keyed:
        """How to read an expression from a walk, and what kind of value it is."""
        if not isinstance(expr, dict):
            value = expr
            return _Keyed(lambda w: value, "int" if isinstance(expr, int) else "str")
        (key, body), = expr.items()
        if key == "payload":
            return self.payload(body["protocol"], body["field"])
        if key == "meta":
            return self.meta(body["key"])
        if key == "ct":
            return self.ct(body)
        if key in ("&", "|", "^"):
            inner = self.getter(body[0])
            other = body[1]
            if inner.kind in _FLAG_KINDS:
                mask = frozenset(other if isinstance(other, list) else [other])
                return _Keyed(_lift(inner.get, lambda v: v & mask), inner.kind)
            operand = self.getter(other)
            fn = {"&": int.__and__, "|": int.__or__, "^": int.__xor__}[key]
            return _Keyed(_lift2(inner.get, operand.get, fn), "int")
        raise ValueError(f"expression {key!r}")

    def payload(self, proto: str, field: str) -> _Keyed:
        v4 = self.v4
        if proto in ("ip", "ip6"):
            if (proto == "ip") != v4:
                return _Keyed(lambda w: NO, "never")
            if field == "saddr":
                return _Keyed(lambda w: w.src, "addr")
            if field == "daddr":
                return _Keyed(lambda w: w.dst, "addr")
            if field in ("protocol", "nexthdr"):
                return _Keyed(lambda w: w.pkt.proto, "proto")
            if field == "version":
                version = 4 if v4 else 6
                return _Keyed(lambda w: version, "int")
            return _Keyed(self._no(f"{proto} {field} is not modelled"), "int")
        if proto in ("tcp", "udp", "sctp", "udplite", "dccp", "th"):
            wanted = PORT_PROTOCOLS if proto == "th" else frozenset({PROTOCOLS[proto]})
            if field in ("sport", "dport"):
                src = field == "sport"
                flag = "--sport" if src else "--dport"

                def port(w: Walk) -> Any:
                    if w.pkt.proto not in wanted:
                        return NO
                    value = w.sport if src else w.dport
                    return value if value is not None else Why(f"{field} not given ({flag})")
                return _Keyed(port, "port")
            if proto == "tcp" and field == "flags":
                return _Keyed(lambda w: (frozenset(f.lower() for f in w.pkt.tcp_flags)
                                         if w.pkt.proto == 6 else NO), "tcpflags")
            return _Keyed(self._no(f"{proto} {field} is not modelled"), "int")
        if proto in ("icmp", "icmpv6") and field in ("type", "code"):
            number = 1 if proto == "icmp" else 58
            at = 0 if field == "type" else 1
            return _Keyed(lambda w: w.pkt.icmp[at] if w.pkt.proto == number and w.pkt.icmp
                          else NO, proto if field == "type" else "int")
        return _Keyed(self._no(f"{proto} {field} is not modelled"), "int")

    def meta(self, key: str) -> _Keyed:
        v4 = self.v4
        if key == "l4proto":
            return _Keyed(lambda w: w.pkt.proto, "proto")
        if key == "nfproto":
            name = "ipv4" if v4 else "ipv6"
            return _Keyed(lambda w: name, "str")
        if key == "protocol":
            name = "ip" if v4 else "ip6"
            return _Keyed(lambda w: name, "str")
        if key == "mark":
            return _Keyed(lambda w: w.mark, "int")
        if key in ("iifname", "iif", "oifname", "oif"):
            src = key.startswith("i")
            flag = "--in-interface" if src else "--out-interface"

            def iface(w: Walk) -> Any:
                have = w.iif if src else w.oif
                return have if have is not None else Why(
                    f"{'input' if src else 'output'} interface not known (give {flag})")
            return _Keyed(iface, "iface")
        if key in ("skuid", "skgid"):
            attr = "uid" if key == "skuid" else "gid"

            def owner(w: Walk) -> Any:
                value = getattr(w.pkt.packet, attr)
                return value if value is not None else Why(
                    f"the sending socket's {attr} is not known")
            return _Keyed(owner, "int")
        if key == "pkttype":
            family = self.family

            def pkttype(w: Walk) -> Any:
                if is_multicast(w.dst, family):
                    return "multicast"
                if is_limited_broadcast(w.dst, family):
                    return "broadcast"
                return "host"
            return _Keyed(pkttype, "str")
        return _Keyed(self._no(f"meta {key} is not modelled"), "int")

    def ct(self, body: dict[str, Any]) -> _Keyed:
        key = body["key"]
        direction = body.get("dir")
        if direction is not None:
            if direction != "original":
                return _Keyed(self._no(f"ct {direction} {key} is not modelled"), "int")
            if key in ("saddr", "ip saddr", "ip6 saddr"):
                return _Keyed(lambda w: w.pkt.src, "addr")
            if key in ("daddr", "ip daddr", "ip6 daddr"):
                return _Keyed(lambda w: w.orig_dst, "addr")
            if key == "proto-dst":
                return _Keyed(lambda w: w.orig_dport, "port")
            if key == "protocol":
                return _Keyed(lambda w: w.pkt.proto, "proto")
            return _Keyed(self._no(f"ct original {key} is not modelled"), "int")
        if key == "state":
            return _Keyed(lambda w: frozenset(_STATES[s] for s in w.ct if s in _STATES),
                          "ctstate")
        if key == "status":
            def status(w: Walk) -> Any:
                have = {s.lower() for s in w.ct & {"DNAT", "SNAT"}}
                if not have and w.pkt.ct & {"ESTABLISHED", "RELATED"}:
                    return Why("whether the connection was NATed is not known for a non-NEW "
                               "packet (add DNAT or SNAT to --ct-state)")
                if "NEW" not in w.pkt.ct or have:
                    have.add("confirmed")
                return frozenset(have)
            return _Keyed(status, "ctstatus")
        if key == "mark":
            return _Keyed(lambda w: w.ctmark, "int")
        if key == "direction":
            return _Keyed(lambda w: "original", "str")
        if key in ("l3proto",):
            name = "ipv4" if self.v4 else "ipv6"
            return _Keyed(lambda w: name, "str")
        if key == "protocol":
            return _Keyed(lambda w: w.pkt.proto, "proto")
        return _Keyed(self._no(f"ct {key} is not modelled"), "int")

    def const(self, value: Any, kind: str) -> Any:
        """A constant as the getter's kind of value: exact, or ``(lo, hi)`` / ``("*", stem)``."""
        if isinstance(value, dict):
            if "prefix" in value:
                net = parse_addr(value["prefix"]["addr"], self.family)
                bits = BITS[self.family]
                size = 1 << (bits - int(value["prefix"]["len"]))
                lo = net & ~(size - 1)
                return (lo, lo + size - 1)
            if "range" in value:
                lo, hi = value["range"]
                return (self.const(lo, kind), self.const(hi, kind))
            if "elem" in value:
                return self.const(value["elem"]["val"], kind)
            raise ValueError(f"value {value}")
        if kind == "addr":
            return parse_addr(value, self.family)
        if kind == "proto":
            if isinstance(value, int):
                return value
            number = PROTOCOLS.get(value)
            if number is None:
                raise ValueError(f"protocol {value!r}")
            return number
        if kind in ("icmp", "icmpv6"):
            if isinstance(value, int):
                return value
            names = ICMP_NAMES if kind == "icmp" else ICMP6_NAMES
            return names[value]
        if kind == "iface" and isinstance(value, str) and value.endswith("*"):
            return ("*", value[:-1])
        return value


_FLAG_KINDS = frozenset({"ctstate", "ctstatus", "tcpflags"})


def _parts(expr: Any) -> list[Any]:
    if isinstance(expr, dict) and "concat" in expr:
        return list(expr["concat"])
    return [expr]


def _part_in(value: Any, const: Any) -> bool:
    if isinstance(const, tuple):
        if const and const[0] == "*":
            return isinstance(value, str) and value.startswith(const[1])
        return bool(const[0] <= value <= const[1])
    return bool(value == const)


def _const(value: object) -> Callable[[Walk], object]:
    return lambda w: value


def _lift(get: Get, fn: Callable[[Any], Any]) -> Get:
    def f(w: Walk) -> Any:
        v = get(w)
        return v if v is NO or type(v) is Why else fn(v)
    return f


def _lift2(a: Get, b: Get, fn: Callable[[int, int], int]) -> Get:
    def f(w: Walk) -> Any:
        x = a(w)
        if x is NO or type(x) is Why:
            return x
        y = b(w)
        if y is NO or type(y) is Why:
            return y
        return fn(x, y)
    return f


def _setter(get: Get, attr: str) -> Callable[[Walk], object]:
    def f(w: Walk) -> object:
        v = get(w)
        if v is NO:
            return True
        if type(v) is Why:
            return str(v)
        setattr(w, attr, v & 0xFFFFFFFF)
        return True
    return f


def _port_text(port: Any) -> str:
    if isinstance(port, dict) and "range" in port:
        return f"{port['range'][0]}-{port['range'][1]}"
    return str(port)


def _merge(alts: list[tuple[float, str, Any]]) -> list[tuple[float, str, Any]]:
    """Equal actions of a numgen map joined (``1-2 : goto b`` is one branch of weight 2/3)."""
    out: dict[Any, list[Any]] = {}
    for p, kind, data in alts:
        key = (kind, repr(data))
        if key in out:
            out[key][0] += p
        else:
            out[key] = [p, kind, data]
    return [(v[0], v[1], v[2]) for v in out.values()]
