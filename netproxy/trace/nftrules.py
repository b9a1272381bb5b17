"""nftables rules ready to walk: each statement becomes an evaluator over a
:class:`~netproxy.trace.state.Walk`, in rule order (matches and statements interleave in
nftables: ``meta mark set ...`` takes effect even when a later match fails), and the rule's
verdict becomes the kind of action the engine knows (``jump``, ``ACCEPT``, ``DNAT``, ...).

Lookups that decide the verdict at run time (``vmap``, ``dnat to ... map``, ``numgen``) become
the action kind ``dyn``: a function of the walk returning ``None`` (no element: the rule ends,
the next one runs), an action ``(kind, data)``, a list of weighted actions ``[(p, kind, data),
...]`` (``numgen random mod N``: every value with weight exactly 1/N), or a string saying why it
cannot be decided. The engine re-runs a lookup to check that a base chain summary fits
another branch (:meth:`~netproxy.trace.engine.Tracer._replay`), so one with side effects
(kernel memory, marks) drops the walk's recordings (``w.rec``, ``w.tail``).

Stated assumptions: ``limit`` buckets start full (a plain limit matches, ``limit rate over``
does not); quotas start unused; a packet is in the original direction of its connection.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from netproxy.netfilter.nft import NftChain, NftRule, NftSet, NftTable
from netproxy.trace.addr import (
    BITS,
    LOOPBACK,
    format_addr,
    format_endpoint,
    is_limited_broadcast,
    is_multicast,
    parse_addr,
)
from netproxy.trace.index import ChainCode
from netproxy.trace.matches import (
    ASSUMED_IIF,
    ASSUMED_OIF,
    FORK,
    UNNAMED_IFACE,
    Context,
    Matcher,
    _addrtype_eval,
)
from netproxy.trace.packet import PORT_PROTOCOLS, PROTOCOLS
from netproxy.trace.state import Cond, Walk


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
_EFFECTS = frozenset({"mangle", "set", "notrack", "limit", "quota", "xt"})
"""Statements that act and let the rule go on (xt: matches; an xt target is quiet)."""


_GOES_ON = _EFFECTS | _QUIET | {"match", "unknown"}
"""Statements that are not the rule's action: the statements after them run."""


def _action_at(exprs: list[dict[str, Any]]) -> int:
    """Where the rule's action is (the statements after it never run); ``len(exprs)`` when
    it has none."""
    for i, stmt in enumerate(exprs):
        (key, _), = stmt.items()
        if key not in _GOES_ON:
            return i
    return len(exprs)


def verdict_action(value: Any) -> Action | str:
    """A verdict value (``{"goto": {"target": C}}``, ``{"drop": None}``) as an engine action."""
    if isinstance(value, dict) and len(value) == 1:
        (key, body), = value.items()
        if key in _VERDICTS or key in ("jump", "goto"):
            return _verdict(key, body)
    return f"map value {value!r} is not a verdict"


def _verdict(key: str, body: Any) -> Action:
    return (_VERDICTS[key], None) if key in _VERDICTS else (key, body["target"])




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


@dataclass(slots=True)
class _Index:
    """A set's or map's elements ready for lookups, keyed as :func:`_reader` reads (a value,
    or a concatenation's tuple): exact keys hashed (as the kernel's hash sets are), intervals
    and interface wildcards scanned in order, then the elements earlier packets added
    (``update @set``, kept in the walk's memory with their expiry time)."""

    exact: dict[Any, Any]
    ranges: list[tuple[tuple[Any, ...], Any]]
    single: bool
    dynamic: tuple[str, str] | None
    """(table label, set name) when packets can add elements."""
    hit: Any
    """An added element's value: True in a set; in a map, why it is not known."""

    @property
    def hashed_only(self) -> bool:
        """No intervals or wildcards and no elements added by packets: :meth:`find` is a
        lookup in ``exact``."""
        return not self.ranges and self.dynamic is None

    def find(self, key: Any, w: Walk | None = None) -> Any:
        """The value (True for sets) of ``key``, or MISSING."""
        found = self.exact.get(key, MISSING)
        if found is not MISSING:
            return found
        parts = (key,) if self.single else key
        for consts, value in self.ranges:
            if all(map(_part_in, parts, consts)):
                return value
        if self.dynamic is not None and w is not None:
            expiry = w.memory.get(("nftset", *self.dynamic, key))
            if expiry is not None and expiry > w.pkt.packet.time:
                return self.hit
        return MISSING


class _Keyed(NamedTuple):
    """A getter with the kind of value it yields (so constants convert alike)."""

    get: Get
    kind: str
    attr: str | None = None
    """The walk's attribute (a dotted path) ``get`` reads: its value whenever ``get``
    gives neither NO nor a :class:`Why` (see :func:`_read`)."""
    plain: bool = False
    """``get`` never gives NO or a Why: the attribute is the value."""


def _attr(path: str, kind: str) -> _Keyed:
    """A getter that is a plain attribute of the walk (``w.dst``, ``w.pkt.proto``)."""
    return _Keyed(operator.attrgetter(path), kind, path, True)


class NftRules:
    """Compiles the rules of nft tables for one address family."""

    def __init__(self, family: str, ctx: Context, router: Any = None) -> None:
        self.family = family
        self.ctx = ctx
        self.router = router
        """The node's routing (:class:`netproxy.node.routing.Router`) for ``fib`` lookups,
        or None."""
        self._rule: tuple[str, int, Any] = ("", 0, 0)
        """(table, line, id) of the rule being compiled: the key of its per-rule kernel
        state (``numgen inc`` counters, hash buckets) in the walk's memory."""
        self.v4 = family == "ipv4"
        self._indexes: dict[Any, _Index] = {}
        self._written: dict[str, frozenset[str]] = {}
        self._matchers: dict[tuple[str, str], tuple[Matcher, bool, tuple[str, ...]]] = {}
        self.unmodelled: list[str] = []
        """Why the last compiled rule cannot always be decided (for ``--strict``)."""

    def _no(self, reason: str) -> Callable[[Walk], object]:
        """An evaluator for something not modelled: UNKNOWN whenever it is reached."""
        self.unmodelled.append(reason)
        return _const(Why(reason))

    # ------------------------------------------------------------------ rules

    def compile(self, label: str, table: NftTable, rule: NftRule, ident: Any = None
                ) -> tuple[Matcher, str, Any]:
        """(matcher, action kind, action data) of one rule. ``ident`` names the rule's
        kernel state (numgen inc counters); the rule object's identity by default."""
        exprs = rule.exprs
        end = _action_at(exprs)
        # Rules with the same statements before their action share one matcher (kube-proxy
        # repeats ``meta l4proto tcp`` and ``ct state new`` thousands of times); equal
        # statements print alike, and a rule is compiled once, so the key costs little.
        # (Per-rule kernel state, numgen inc and hash buckets, is only in actions.)
        key = (label, repr(exprs[:end]))
        known = self._matchers.get(key)
        if known is None:
            self.unmodelled = []
            known = self._matchers[key] = (*self.matcher(exprs[:end], label, table),
                                           tuple(self.unmodelled))
        matcher, complete, reasons = known
        self.unmodelled = list(reasons)
        self._rule = (label, rule.line, id(rule) if ident is None else ident)
        kind, data = "none", None
        if complete and end < len(exprs):
            (name, body), = exprs[end].items()
            try:
                kind, data = self.action(name, body, label, table)
                if name == "vmap" and end + 1 < len(exprs):
                    data = self._then(data, rule, end + 1, label, table)
            except (ValueError, KeyError, TypeError, IndexError) as err:
                matcher = Matcher(matcher.evals + (self._no(f"{name} not modelled ({err})"),),
                                  matcher.pure + (False,), matcher.forks,
                                  (*(matcher.header or ()), True), matcher.keyed_effects)
        if kind == "unknown":
            self.unmodelled.append(str(data))
        return matcher, kind, data

    def matcher(self, exprs: list[Any], label: str, table: NftTable) -> tuple[Matcher, bool]:
        """The matches and statements before a rule's action, in order; False when one of
        them ends the rule early (not understood: the action is never reached)."""
        evals: list[Any] = []
        pure: list[bool] = []
        header: list[bool] = []
        """Per evaluator: whether it reads more than a walk summary's key holds (see
        ``Matcher.header``)."""
        effects: set[int] = set()
        forks: dict[int, tuple[float, bool]] = {}
        complete = True
        for stmt in exprs:
            (key, body), = stmt.items()
            try:
                if key == "match":
                    got = self.match(body, label, table)
                    if isinstance(got, tuple):
                        forks[len(evals)] = got[1]
                        got = got[0]
                    header.append(not self._keyed_match(body, label, table))
                    evals.append(got)
                    pure.append(True)
                    continue
                if key in _QUIET or (key == "xt" and body.get("type") == "target"):
                    continue
                if key == "unknown":
                    evals.append(self._no(f"not understood: {body}"))
                else:
                    evals.append(self.statement(key, body, label, table))
                    pure.append(False)
                    header.append(True)
                    if _keyed_statement(key, body):
                        effects.add(len(evals) - 1)
                    continue
            except (ValueError, KeyError, TypeError, IndexError) as err:
                evals.append(self._no(f"{key} not modelled ({err})"))
            pure.append(False)
            header.append(True)
            complete = False
            break
        return Matcher(tuple(evals), tuple(pure), forks, tuple(header), frozenset(effects)), \
            complete

    def _keyed_match(self, body: dict[str, Any], label: str, table: NftTable) -> bool:
        """Whether a match reads only what a walk summary's key holds: no address, port or
        connection of the packet's, and no set that packets add elements to."""
        right = body["right"]
        if isinstance(right, str) and right.startswith("@"):
            nset = table.sets.get(right[1:])
            if nset is None or nset.dynamic or nset.name in self._updated(label, table):
                return False
        return _keyed(body["left"]) and _keyed(right)

    def _then(self, lookup: Callable[[Walk], Any], rule: NftRule, at: int, label: str,
              table: NftTable) -> Callable[[Walk], Any]:
        """A verdict map followed by more statements: the kernel goes on with them only when
        the element's verdict is ``continue`` (any other verdict ends the rule, a missing
        element too)."""
        kept = self.unmodelled
        # The statements after the vmap are compiled as a rule of their own, a temporary
        # object: their state is named by the real rule and the position instead, so that
        # no later temporary (which may get the same id) shares a numgen counter with them.
        matcher, kind, data = self.compile(label, table, NftRule(rule.exprs[at:], rule.line),
                                           ident=(id(rule), at))
        self._rule = (label, rule.line, id(rule))
        self.unmodelled = kept + self.unmodelled
        evals = matcher.evals

        def then(w: Walk) -> Any:
            w.rec = w.tail = None  # its statements may set marks: no summary rests on it
            found = lookup(w)
            if found != ("none", None):
                return found
            for ev in evals:
                r = ev(w)
                if r is False:
                    return None
                if r is not True:
                    return str(r) if type(r) is Why or isinstance(r, str) else (
                        "a fork after a verdict map's continue is not modelled")
            return data(w) if kind == "dyn" else (kind, data)
        return then

    def statement(self, key: str, body: Any, label: str, table: NftTable) -> Any:
        """An evaluator for a statement that does not end the rule (one of _EFFECTS)."""
        if key == "mangle":
            target = body["key"]
            value = self.getter(body["value"])
            if target == {"meta": {"key": "mark"}}:
                return _decided(value.get, _setter("mark"), True)
            if target == {"ct": {"key": "mark"}}:
                return _decided(value.get, _setter("ctmark"), True)
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
        return self._no(f"xt {body.get('type')} {body.get('name')!r} is not modelled")

    def action(self, key: str, body: Any, label: str, table: NftTable) -> Action:
        if key in _VERDICTS or key in ("jump", "goto"):
            return _verdict(key, body)
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
            if type(a) is dict and p is None:
                pair = a.get("concat")
                if pair is not None and len(pair) == 2:
                    a, p = pair
            if type(a) is dict or type(p) is dict and kind == "DNAT":
                return f"{key} to a range {a}:{p} (the kernel picks one)"
            try:
                num = parse_addr(a, family) if a is not None else None
            except ValueError:
                return f"{key} to {a}: not an address of this family"
            # Only SNAT's target is shown as text; a DNAT's destination is shown from the
            # walk, so a service's endpoints are not formatted when its rule is compiled.
            text = _nat_text(num, p, family) if kind == "SNAT" else None
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
        if isinstance(key, dict) and ("numgen" in key or "jhash" in key or "symhash" in key):
            (mode, gen), = key.items()
            mod, off = int(gen["mod"]), int(gen.get("offset", 0))
            acts: list[Action] = []
            for act in self._numbered(data, off, mod, label, table, to_action):
                if act is MISSING:
                    act = ("none", None)
                elif isinstance(act, str):
                    return self._no(act)
                acts.append(act)
            if mode == "numgen" and gen.get("mode") == "random":
                merged = _merge([(1.0 / mod, k, d) for k, d in acts])
                return lambda w: merged
            if mode == "numgen":
                return self._counter(gen, acts)
            return self._hashed(mode, gen, acts)
        getters = [self.getter(p) for p in _parts(key)]
        index = self.index(data, tuple(g.kind for g in getters), label, table, to_action)
        if index.hashed_only:  # no value is None: a missing key gives None as it should
            get = index.exact.get
            return _decided(_read(getters), lambda k, w: get(k), None)

        def action(k: Any, w: Walk) -> Any:
            found = index.find(k, w)
            return None if found is MISSING else found
        return _decided(_read(getters), action, None)

    def _numbered(self, data: Any, off: int, mod: int, label: str, table: NftTable,
                  to_action: Callable[[Any], Action | str]) -> list[Any]:
        """The map's value (an action, why not, or MISSING) for each number a ``numgen`` or
        hash gives, ``off`` to ``off + mod - 1``. An anonymous map keyed by plain numbers
        (kube-proxy's endpoints, one per number, thousands of them) is read as it is;
        others through an index."""
        items = data.get("set") if isinstance(data, dict) else None
        if items is not None:
            values: dict[int, Any] = {}
            for item in items:
                if type(item) is not list or type(item[0]) is not int:
                    break  # a range, or a set rather than a map: through an index
                values.setdefault(item[0], item[1])  # the first element of a key counts
            else:
                return [to_action(values[n]) if n in values else MISSING
                        for n in range(off, off + mod)]
        index = self.index(data, ("int",), label, table, to_action)
        return [index.find(n) for n in range(off, off + mod)]

    def _counter(self, gen: dict[str, Any], acts: list[Action]) -> Callable[[Walk], Any]:
        """``numgen inc mod N``: one counter per expression, shared by every packet that
        evaluates it, giving 0, 1, ..., N-1, 0, ... Its value is kept in the walk's memory,
        so a packet sequence follows it exactly; where no earlier packet of the sequence
        set it (the counter's state before the sequence), each of the N values is a
        branch of weight 1/N."""
        mod = len(acts)
        label, line, ident = self._rule
        entry = ("numgen", label, ident, line)

        takes = [_taking(entry, n, acts[n]) for n in range(mod)]
        weight = 1.0 / mod

        def counter(w: Walk) -> Any:
            w.rec = w.tail = None  # the counter is kernel memory: no summary rests on it
            last = w.memory.get(entry)
            if last is not None:
                return takes[(last + 1) % mod](w)
            first = takes[0](w)
            return [(weight, first[0], first[1])] + [
                (weight, "dyn", take) for take in takes[1:]]
        return counter

    def _hashed(self, mode: str, gen: dict[str, Any], acts: list[Action]
                ) -> Callable[[Walk], Any]:
        """``jhash EXPR mod N`` / ``symhash mod N``: the flow's hash decides, the same bucket
        for every packet of the flow. The hash itself is not computed (symhash's key is
        random per boot, jhash's seed when none is listed): each bucket is a branch weighted
        by its share of the 32-bit hash space (the kernel scales the hash to ``mod``), and
        the bucket a flow took is kept for the later packets of a sequence."""
        mod = len(acts)
        label, line, _ident = self._rule
        weights = _bucket_shares(mod)
        if mode == "jhash":
            read = _read([self.getter(p) for p in _parts(gen["expr"])])
        else:  # symhash: the flow, the same in both directions
            read = _flow_ends

        def hashed(k: Any, w: Walk) -> Any:
            w.rec = w.tail = None  # the flow's bucket is kept in memory: no summary either
            entry = ("hash", label, line, mode, k)
            known = w.memory.get(entry)
            if known is not None:
                return acts[known]
            first = _taking(entry, 0, acts[0])(w)
            return [(weights[0], first[0], first[1])] + [
                (weights[b], "dyn", _taking(entry, b, acts[b])) for b in range(1, mod)]
        return _decided(read, hashed, None)

    def index(self, data: Any, kinds: tuple[str, ...], label: str, table: NftTable,
              convert: Callable[[Any], Any] | None = None) -> _Index:
        """Elements of a named (``@name``) or anonymous set, converted for ``kinds``, map
        values through ``convert``: built when a rule using it is compiled, once per named
        set and conversion (an anonymous set belongs to its one rule)."""
        ident = (label, data, kinds, convert) if isinstance(data, str) else None
        found = self._indexes.get(ident)
        if found is not None:
            return found
        items: list[tuple[Any, Any]] = []
        dynamic = None
        if isinstance(data, str):
            nset: NftSet | None = table.sets.get(data[1:])
            if nset is None:
                raise KeyError(f"set {data} is not in table {label}")
            items = [(e.key, e.value if nset.kind == "map" else True) for e in nset.elements]
            if nset.dynamic or nset.name in self._updated(label, table):
                dynamic = (label, nset.name)
        else:
            items = [(i[0], i[1]) if isinstance(i, list) else (i, True) for i in data["set"]]
        exact: dict[Any, Any] = {}
        ranges: list[tuple[Any, Any]] = []
        single = len(kinds) == 1
        convs = [self._converter(kind) for kind in kinds]
        conv = convs[0]
        for k, value in items:
            if convert is not None:
                value = convert(value)
            if single and type(k) is not dict:  # a plain value (cluster-ips' addresses)
                part = conv(k)
                if type(part) is tuple:  # an interface wildcard
                    ranges.append(((part,), value))
                else:
                    exact.setdefault(part, value)
                continue
            raw = k["concat"] if type(k) is dict and "concat" in k else (k,)
            if len(raw) < len(kinds):
                continue
            parts = tuple(map(_call, convs, raw))
            if tuple in map(type, parts):  # a range, prefix or wildcard
                ranges.append((parts, value))
            else:
                exact.setdefault(parts[0] if single else parts, value)
        hit = True if convert is None or dynamic is None else \
            f"{data}: the value of an element a packet added"
        found = _Index(exact, ranges, single, dynamic, hit)
        if ident is not None:
            self._indexes[ident] = found
        return found

    def _updated(self, label: str, table: NftTable) -> frozenset[str]:
        """Names of the sets rules of ``table`` add elements to (``add``/``update @set``)."""
        found = self._written.get(label)
        if found is None:
            found = self._written[label] = frozenset(
                stmt["set"]["set"][1:] for chain in table.chains.values()
                for rule in chain.rules for stmt in rule.exprs
                if "set" in stmt and isinstance(stmt["set"], dict)
                and isinstance(stmt["set"].get("set"), str))
        return found

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
        op = body["op"]
        span = float(timeout) if timeout is not None else float("inf")

        def update(k: Any, w: Walk) -> object:
            now = w.pkt.packet.time
            entry = ("nftset", label, name, k)
            if op == "delete":
                w.memory = w.memory.with_(entry, None)
            elif op == "update" or (w.memory.get(entry) or -1.0) <= now:
                w.memory = w.memory.with_(entry, now + span)
            return True
        return _decided(_read([self.getter(p) for p in _parts(elem)]), update, True)

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
        if isinstance(left, dict) and "numgen" in left and left["numgen"]["mode"] == "random":
            # numgen random mod N OP value: the share of the N equally likely values that match
            gen = left["numgen"]
            off = int(gen.get("offset", 0))
            values = range(off, off + int(gen["mod"]))
            hits = sum(1 for n in values if self._holds(n, op, right))
            return (lambda w: FORK), (hits / len(values), False)
        if isinstance(left, dict) and ("numgen" in left or "jhash" in left or "symhash" in left):
            (name, _), = left.items()
            return self._no(f"{name} compared outside a map is not modelled")
        getters = [self.getter(p) for p in _parts(left)]
        kinds = tuple(g.kind for g in getters)
        if "never" in kinds:  # a header of the other family: nft's dependency fails
            return _const(False)
        test = self.test(kinds, op, right, label, table)
        if isinstance(test, str):
            return self._no(test)
        return _decided(_read(getters), test, False)

    def test(self, kinds: tuple[str, ...], op: str, right: Any, label: str, table: NftTable
             ) -> Callable[[Any, Walk], bool] | str:
        """What ``op right`` asks of the left side's value (a tuple for a concatenation),
        or why that is not modelled."""
        negated = op == "!="
        if isinstance(right, str) and right.startswith("@") or \
                isinstance(right, dict) and "set" in right:
            index = self.index(right, kinds, label, table)
            find = index.find
            if kinds[0] in _FLAG_KINDS:  # a flag set is in the set if one of its flags is
                return lambda v, w: any(find(x, w) is not MISSING for x in v) != negated
            if index.hashed_only:
                exact = index.exact
                return (lambda v, w: v not in exact) if negated else (lambda v, w: v in exact)
            return lambda v, w: (find(v, w) is not MISSING) != negated
        if len(kinds) != 1:
            consts = tuple(self.const(p, k) for p, k in zip(_parts(right), kinds, strict=True))
            return lambda v, w: all(map(_part_in, v, consts)) != negated
        kind = kinds[0]
        if kind in _FLAG_KINDS:
            wanted = frozenset(right if isinstance(right, list) else [right])
            if op == "in":
                return lambda v, w: not v.isdisjoint(wanted)
            if op == "==":
                return lambda v, w: v == wanted
            if op == "!=":
                return lambda v, w: v.isdisjoint(wanted)
            return f"{op} on flags is not modelled"
        const = self.const(right, kind)
        if op in ("==", "!="):
            if isinstance(const, tuple):  # a range, prefix or interface wildcard
                return lambda v, w: _part_in(v, const) != negated
            return (lambda v, w: v != const) if negated else (lambda v, w: v == const)
        order = _ORDER.get(op)
        if order is None:
            return f"operator {op} is not modelled"
        return lambda v, w: order(v, const)

    def _holds(self, value: int, op: str, right: Any) -> bool:
        """``value OP right`` for a number and a constant, a range or an anonymous set."""
        items = right["set"] if isinstance(right, dict) and "set" in right else (
            right if isinstance(right, list) else [right])
        consts = [self.const(c, "int") for c in items]
        if op in ("==", "!=", "in"):
            return any(_part_in(value, c) for c in consts) != (op == "!=")
        c = consts[0]
        return {"<": value < c, ">": value > c, "<=": value <= c, ">=": value >= c}[op]

    def fib(self, fib: dict[str, Any], op: str, right: Any) -> Any:
        flags = fib["flags"]
        if fib["result"] != "type":
            return self.fib_route(flags, op, right)
        types = {t.upper() for t in (right if isinstance(right, list) else
                                     right.get("set", []) if isinstance(right, dict) else [right])}
        if flags in (["saddr"], ["daddr"]):
            return _addrtype_eval(flags == ["saddr"], types, op == "!=", False, self.ctx)
        if sorted(flags) in (["oif", "saddr"], ["daddr", "iif"]):
            return self.fib_type_on(flags[0] == "saddr", types, op == "!=")
        return self._no(f"fib {' . '.join(flags)} type is not modelled")

    def fib_type_on(self, src: bool, types: set[str], negated: bool) -> Any:
        """``fib saddr . oif type`` / ``fib daddr . iif type``: the address's type on that
        interface only (local when it is one of the interface's own addresses; the
        loopback network belongs to ``lo``). Which interface holds an address comes from
        the node's addresses (a snapshot); without them it is a stated fork."""
        full = _addrtype_eval(src, types, negated, False, self.ctx)
        local_any = _addrtype_eval(src, {"LOCAL"}, False, False, self.ctx)
        router = self.router
        assume = self.ctx.assume
        family = self.family
        lo_net, lo_mask = LOOPBACK[family]
        owners: dict[int, set[str]] = {}
        if router is not None:
            for a in router.addresses:
                owners.setdefault(a.addr, set()).add(a.dev)
        local_wanted = "LOCAL" in types

        def f(w: Walk) -> object:
            dev = w.oif if src else w.iif
            if not dev:
                return Why(f"{'output' if src else 'input'} interface not known (give "
                           f"{'--out-interface' if src else '--in-interface'})")
            addr = w.src if src else w.dst
            if addr & lo_mask == lo_net:
                on = dev == "lo"
            else:
                anywhere = local_any(w)
                if anywhere is False:  # not the node's: the same type on every interface
                    return full(w)
                if isinstance(anywhere, str):
                    return anywhere
                if router is not None:
                    on = dev in owners.get(addr, ())
                elif not assume:
                    return Why(f"which interface holds {format_addr(addr, family)} is not "
                               "known (give --snapshot)")
                else:
                    text = f"{format_addr(addr, family)} is an address of {dev}"
                    return Cond(("addr-on", addr, dev), text,
                                text.replace(" is an ", " is not an "), "--snapshot",
                                local_wanted == negated)
            return (on == local_wanted) != negated
        return f

    def fib_route(self, flags: list[str], op: str, right: Any) -> Any:
        """``fib saddr|daddr [. mark] [. iif|oif] oif|oifname``: the interface of the node's
        route to the address (saddr: the reverse path, as rp_filter checks it), none when
        there is no unicast route or, with ``. iif``/``. oif``, when it does not go through
        that interface; a packet that arrived on ``lo`` finds ``lo`` (the kernel's loopback
        shortcut). From the node's routes (a snapshot); without them whether the route
        exists is a stated fork."""
        if not ({"saddr", "daddr"} & set(flags)) or not set(flags) <= {
                "saddr", "daddr", "mark", "iif", "oif"}:
            return self._no(f"fib {' . '.join(flags)} oif is not modelled")
        src = "saddr" in flags
        use_mark = "mark" in flags
        bound = "iif" if "iif" in flags else "oif" if "oif" in flags else None
        family = self.family
        router = self.router
        assume = self.ctx.assume
        local = self.ctx.local
        name: str | None = None
        if right is True or right is False or right == 0:
            wanted = right is True  # exists / missing (0)
        else:
            wanted, name = True, str(right)
        wanted = wanted != (op == "!=")

        def f(w: Walk) -> object:
            restrict = None
            addr = w.src if src else w.dst
            through = name
            if bound is not None:
                restrict = w.iif if bound == "iif" else w.oif
                if not restrict:
                    side = "input" if bound == "iif" else "output"
                    flag = "--in-interface" if bound == "iif" else "--out-interface"
                    if not assume:
                        return Why(f"{side} interface not known (give {flag})")
                    text = format_addr(addr, family)
                    return Cond(("route", addr, bound, w.mark if use_mark else 0),
                                f"the node routes {text} through the {side} interface",
                                f"the node does not route {text} through the {side} "
                                "interface", flag, not wanted)
                through = restrict
            if w.hook in ("PREROUTING", "INGRESS") and w.iif == "lo":
                dev: str | None = "lo"
            elif router is not None:
                found = router.lookup(addr, src=w.dst if src else w.src,
                                      mark=w.mark if use_mark else 0)
                dev = found.dev if found.kind == "unicast" else None
            elif not src and w.pkt.packet.out_interface and not local(addr):
                dev = w.pkt.packet.out_interface  # the route the user named (-o)
            else:
                text = format_addr(addr, family)
                if not assume:
                    return Why(f"the node's route to {text} is not known (give --snapshot)")
                if through is None:
                    yes, no = (f"the node has a route to {text}",
                               f"the node has no route to {text}")
                else:
                    yes, no = (f"the node routes {text} through {through}",
                               f"the node does not route {text} through {through}")
                return Cond(("route", addr, through, w.mark if use_mark else 0), yes, no,
                            "--snapshot", not wanted)
            if restrict is not None and dev != restrict:
                dev = None
            found_it = dev is not None and (name is None or restrict is not None or
                                            _part_in(dev, self.const(name, "iface")))
            return found_it == wanted
        return f

    # ------------------------------------------------------------------ expressions

    def getter(self, expr: Any) -> _Keyed:
        """How to read an expression from a walk, and what kind of value it is."""
        if not isinstance(expr, dict):
            return _Keyed(_const(expr), "int" if isinstance(expr, int) else "str")
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
            fn = _BITWISE[key]
            if isinstance(other, int):  # the usual case: a constant mask
                return _Keyed(_lift(inner.get, lambda v: fn(v, other)), "int")
            both = _reader([inner.get, self.getter(other).get])
            return _Keyed(_lift(both, lambda v: fn(*v)), "int")
        raise ValueError(f"expression {key!r}")

    def payload(self, proto: str, field: str) -> _Keyed:
        v4 = self.v4
        if proto in ("ip", "ip6"):
            if (proto == "ip") != v4:
                return _Keyed(lambda w: NO, "never")
            if field == "saddr":
                return _attr("src", "addr")
            if field == "daddr":
                return _attr("dst", "addr")
            if field in ("protocol", "nexthdr"):
                return _attr("pkt.proto", "proto")
            if field == "version":
                return _Keyed(_const(4 if v4 else 6), "int")
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
                return _Keyed(port, "port", field)
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
            return _attr("pkt.proto", "proto")
        if key == "nfproto":
            return _Keyed(_const("ipv4" if v4 else "ipv6"), "str")
        if key == "protocol":
            return _Keyed(_const("ip" if v4 else "ip6"), "str")
        if key == "mark":
            return _attr("mark", "int")
        if key in ("iifname", "iif", "oifname", "oif"):
            src = key.startswith("i")
            flag = "--in-interface" if src else "--out-interface"
            assume = self.ctx.assume
            stated = ASSUMED_IIF if src else ASSUMED_OIF

            def iface(w: Walk) -> Any:
                have = w.iif if src else w.oif
                if have is not None:
                    return have
                if not assume:
                    return Why(f"{'input' if src else 'output'} interface not known "
                               f"(give {flag})")
                # as for iptables' -i/-o: a stated interface that no rule names
                if stated not in w.assumed:
                    w.assumed = w.assumed | {stated}
                return UNNAMED_IFACE
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
            return self.ct_tuple(direction, key)
        if key == "state":
            return _Keyed(lambda w: _ct_states(w.ct), "ctstate")
        if key == "status":
            known: dict[tuple[frozenset[str], frozenset[str]], Any] = {}
            """The status of a packet outside a sequence's connections, by its conntrack
            facts as walked and as it arrived (a handful of pairs)."""

            def status(w: Walk) -> Any:
                conn = w.conn
                if conn is None:
                    found = known.get((w.ct, w.pkt.ct))
                    if found is None:
                        found = known[(w.ct, w.pkt.ct)] = _ct_status(w.ct, w.pkt.ct)
                    return found
                # a later packet of a connection the sequence saw
                have = {s.lower() for s in w.ct & {"DNAT", "SNAT"}}
                nat = conn[1]
                dnat, snat = ((nat[0] is not None, bool(nat[2])) if conn[0] == "orig"
                              else (nat[0] is not None, nat[2] is not None))
                have |= {"dnat"} if dnat else set()
                have |= {"snat"} if snat else set()
                return frozenset(have | {"confirmed"})
            return _Keyed(status, "ctstatus")
        if key == "mark":
            return _attr("ctmark", "int")
        if key == "direction":
            return _Keyed(lambda w: "reply" if w.conn is not None and w.conn[0] == "reply"
                          else "original", "str")
        if key in ("l3proto", "protocol"):
            return self.ct_tuple("original", key)
        return _Keyed(self._no(f"ct {key} is not modelled"), "int")

    def ct_tuple(self, direction: str, key: str) -> _Keyed:
        """``ct original|reply saddr|daddr|proto-src|proto-dst|protocol``: the connection's
        tuples. The original tuple is the first packet as it arrived; the reply tuple is its
        inverse after NAT (the DNAT destination is the reply's source, the SNAT source its
        destination), as the kernel sets it when the NAT is set up. A reply packet of a
        sequence arrives with the reply tuple."""
        field = key.split()[-1]
        if field == "l3proto":
            return _Keyed(_const("ipv4" if self.v4 else "ipv6"), "str")
        if field == "protocol":
            return _attr("pkt.proto", "proto")
        if field not in ("saddr", "daddr", "proto-src", "proto-dst"):
            return _Keyed(self._no(f"ct {direction} {key} is not modelled"), "int")
        want = (direction == "reply", field)
        kind = "addr" if field.endswith("addr") else "port"

        def value(w: Walk) -> Any:
            p = w.pkt.packet
            arrived = (w.pkt.src, w.pkt.dst, p.sport, p.dport)
            conn = w.conn
            if conn is not None and conn[0] == "reply":
                vip, vport, client, cport = conn[1]
                reply = arrived
                original = (client if client is not None else w.pkt.dst,
                            vip if vip is not None else w.pkt.src, cport,
                            vport if vip is not None else p.sport)
            else:
                original = (w.pkt.src, w.orig_dst, p.sport, w.orig_dport)
                to, to_port = w.dst, w.dport
                if conn is not None and conn[1][0] is not None:  # a later packet: its DNAT
                    to, to_port = conn[1][0], conn[1][1]
                back: Any = w.src
                if w.masquerade and w.snat is None or conn is not None and conn[1][2]:
                    back = Why("the address masquerade picks (the output interface's) is "
                               "not known")
                reply = (to, back, to_port, w.sport)
            at = {"saddr": 0, "daddr": 1, "proto-src": 2, "proto-dst": 3}[want[1]]
            got = (reply if want[0] else original)[at]
            if got is None:
                return Why(f"ct {direction} {key}: the port is not given (--sport/--dport)")
            return got
        return _Keyed(value, kind)

    def _converter(self, kind: str) -> Callable[[Any], Any]:
        """:meth:`const` for one kind, quicker for the plain addresses and numbers of big
        sets (kube-proxy's hold an element per Service)."""
        const = self.const
        if kind == "addr":
            family = self.family
            return lambda v: parse_addr(v, family) if type(v) is str else const(v, kind)
        if kind in ("int", "port", "str"):
            return lambda v: const(v, kind) if type(v) is dict else v
        return lambda v: const(v, kind)

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
_KEYED_META = frozenset({"l4proto", "nfproto", "protocol", "mark", "iifname", "iif", "oifname",
                         "oif", "skuid", "skgid"})
_KEYED_CT = frozenset({"state", "mark"})
"""``ct`` keys read from the walk's own state (``ct status`` and ``ct direction`` also read the
connection a later packet of a sequence belongs to, which no summary key holds)."""
_KEYED_PAYLOAD = frozenset({("ip", "protocol"), ("ip6", "nexthdr"), ("ip", "version"),
                            ("ip6", "version"), ("tcp", "flags"), ("icmp", "type"),
                            ("icmp", "code"), ("icmpv6", "type"), ("icmpv6", "code")})


def _keyed(expr: Any) -> bool:
    """Whether an expression reads only what a walk summary's key holds -- marks, conntrack
    state, interfaces, the packet's fixed fields (protocol, TCP flags, ICMP type), constants --
    and so needs no check when a summary is replayed (see ``Matcher.header``)."""
    if not isinstance(expr, dict):
        return True  # a constant, or a list of them
    if len(expr) != 1:
        return False
    (key, body), = expr.items()
    if key == "meta":
        return body.get("key") in _KEYED_META
    if key == "ct":
        return "dir" not in body and body.get("key") in _KEYED_CT
    if key == "payload":
        return (body.get("protocol"), body.get("field")) in _KEYED_PAYLOAD
    if key in ("&", "|", "^", "concat"):
        return all(_keyed(part) for part in body)
    if key == "set":
        return all(_keyed(part) for part in body) if isinstance(body, list) else _keyed(body)
    return key in ("prefix", "range", "elem")  # constants


def _keyed_statement(key: str, body: Any) -> bool:
    """A statement whose effect follows from what a walk summary's key holds: a mark or
    conntrack mark set from marks and constants, or one with no effect on the walk."""
    if key in ("limit", "quota"):
        return True  # decided by constants (stated assumptions)
    if key != "mangle":
        return False
    target = body.get("key")
    if target in ({"meta": {"key": "nftrace"}}, {"meta": {"key": "priority"}}):
        return True
    return target in ({"meta": {"key": "mark"}}, {"ct": {"key": "mark"}}) and \
        _keyed(body.get("value"))


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


def _call(f: Callable[[Any], Any], value: Any) -> Any:
    return f(value)


def _const(value: object) -> Callable[[Walk], object]:
    return lambda w: value


def _read(parts: Sequence[_Keyed]) -> Get:
    """:func:`_reader` of getters; a concatenation of the walk's attributes (kube-proxy's
    ``ip daddr . meta l4proto . th dport``, read for every packet) in one C-level read,
    after asking the parts that may be NO or a Why (a port of another protocol, or not
    given), in order."""
    if len(parts) == 1 or any(p.attr is None for p in parts):
        return _reader([p.get for p in parts])
    whole = operator.attrgetter(*(p.attr for p in parts if p.attr is not None))
    guards = [p.get for p in parts if not p.plain]
    if not guards:
        return whole

    def read(w: Walk) -> Any:
        for g in guards:
            v = g(w)
            if v is NO or type(v) is Why:
                return v
        return whole(w)
    return read


def _reader(gets: Sequence[Get]) -> Get:
    """How to read a key: the value of one expression, or the tuple of a concatenation's
    values; NO or a :class:`Why` as soon as one part is that."""
    if len(gets) == 1:
        return gets[0]

    def read(w: Walk) -> Any:
        values = []
        for g in gets:
            v = g(w)
            if v is NO or type(v) is Why:
                return v
            values.append(v)
        return tuple(values)
    return read


def _decided(read: Get, then: Callable[[Any, Walk], Any], absent: object) -> Callable[[Walk], Any]:
    """The one shape of every evaluator that reads the packet: ``absent`` where the
    expression does not apply (NO: a match fails, a statement does nothing, a lookup finds
    nothing), the reason where the value is not known, else ``then(value, walk)``."""
    def evaluate(w: Walk) -> Any:
        v = read(w)
        if v is NO:
            return absent
        if type(v) is Why:
            return str(v)
        return then(v, w)
    return evaluate


def _lift(get: Get, fn: Callable[[Any], Any]) -> Get:
    """A getter of ``fn`` of another getter's value (NO and Why passed on)."""
    def f(w: Walk) -> Any:
        v = get(w)
        return v if v is NO or type(v) is Why else fn(v)
    return f


def _setter(attr: str) -> Callable[[Any, Walk], object]:
    def f(v: Any, w: Walk) -> object:
        setattr(w, attr, v & 0xFFFFFFFF)
        return True
    return f


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, ">": operator.gt, "<=": operator.le, ">=": operator.ge}
_BITWISE: dict[str, Callable[[int, int], int]] = {
    "&": operator.and_, "|": operator.or_, "^": operator.xor}
_CT_STATES: dict[frozenset[str], frozenset[str]] = {}


def _ct_states(ct: frozenset[str]) -> frozenset[str]:
    """nft's ``ct state`` flags of the walk's conntrack facts (a handful of distinct sets,
    converted once each)."""
    found = _CT_STATES.get(ct)
    if found is None:
        found = _CT_STATES[ct] = frozenset(_STATES[s] for s in ct if s in _STATES)
    return found


def _ct_status(ct: frozenset[str], arrived: frozenset[str]) -> Any:
    """``ct status`` of a packet with conntrack facts ``ct`` (as walked) that arrived with
    ``arrived`` and belongs to no connection a sequence saw."""
    have = {s.lower() for s in ct & {"DNAT", "SNAT"}}
    if not have and arrived & {"ESTABLISHED", "RELATED"}:
        return Why("whether the connection was NATed is not known for a non-NEW "
                   "packet (add DNAT or SNAT to --ct-state)")
    if "NEW" not in arrived or have:
        have.add("confirmed")
    return frozenset(have)


def _nat_text(num: int | None, port: Any, family: str) -> str:
    """A NAT target as written: ``addr``, ``addr:port``, ``[addr6]:port`` or ``:port``."""
    addr = format_endpoint(num, None, family) if num is not None else ""
    if port is None:
        return addr
    if num is not None and family == "ipv6":
        addr = f"[{addr}]"
    return f"{addr}:{_port_text(port)}"


def _port_text(port: Any) -> str:
    if isinstance(port, dict) and "range" in port:
        return f"{port['range'][0]}-{port['range'][1]}"
    return str(port)


def _taking(entry: Any, n: int, act: Action) -> Callable[[Walk], Action]:
    """Alternative ``n`` of a counter or hash: the action, remembering which was taken."""
    def take(w: Walk) -> Action:
        w.memory = w.memory.with_(entry, n)
        return act
    return take


def _bucket_shares(mod: int) -> list[float]:
    """The share of 32-bit hash values the kernel's ``reciprocal_scale(hash, mod)`` (``hash *
    mod >> 32``) puts in each bucket: exact, nearly 1/mod each."""
    space = 1 << 32
    edges = [-(-b * space // mod) for b in range(mod + 1)]
    return [(edges[b + 1] - edges[b]) / space for b in range(mod)]


def _flow_ends(w: Walk) -> Any:
    """The flow as symhash sees it: protocol and both ends, in an order that does not
    depend on the direction."""
    ends = sorted([(w.src, w.sport or 0), (w.dst, w.dport or 0)])
    return (w.pkt.proto, *ends)


def _merge(alts: list[tuple[float, str, Any]]) -> list[tuple[float, str, Any]]:
    """Equal actions of a numgen map joined (``1-2 : goto b`` is one branch of weight 2/3)."""
    out: dict[Any, list[Any]] = {}
    for p, kind, data in alts:
        key = (kind, data)
        if key in out:
            out[key][0] += p
        else:
            out[key] = [p, kind, data]
    return [(v[0], v[1], v[2]) for v in out.values()]
