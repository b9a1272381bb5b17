"""Packet sequences in linear time: kernel memory kept as independent factors.

What the kernel remembers between packets -- ``recent`` entries (session affinity), ``nth``
counters, ``limit`` buckets, and, for captures, the connections and their NAT -- depends on
the random branches earlier packets took. Keeping one world per combination multiplies:
twenty clients of affinity Services with ten endpoints each are 10^20 worlds. But packets
of different clients and Services touch different entries, so the state is kept as
*factors*: a factor is a set of entries with its alternatives (probability, values), and
entries of different factors are independent.

A packet is traced once per joint alternative of the factors whose entries it reads (one
trace when they are all certain), and those factors, with what the packet wrote, become one
new factor. Each packet costs what it touches, not what came before it; the state grows
with the connections and clients seen (as conntrack and the recent lists do).

A packet whose walk forked on a fact the tracer cannot know (an ipset without contents,
whether an address is the node's) leaves one state per case: each alternative also holds the
facts its outcome assumed (entries keyed ``("fact", key)``), and a later packet traced in that
alternative takes those facts as given, so it follows its own case's state and its outcomes
carry the case's conditions. Probabilities are within a case, as in one packet's outcomes: for
every assignment of the facts, the alternatives that fit it sum to 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import product
from typing import Any

from netproxy.errors import TraceError
from netproxy.gcpause import paused_gc
from netproxy.trace.addr import family_of, format_addr, parse_addr
from netproxy.trace.ipsets import known_fact
from netproxy.trace.packet import Packet
from netproxy.trace.result import Outcome, TraceResult
from netproxy.trace.state import Memory

MAX_ALTERNATIVES = 50_000
MAX_CASE_FACTS = 6
"""Facts a TCP packet inside a connection is checked against case by case (2^n cases); with
more, the connection's worlds are kept as in a sequence without unknown facts."""
FACT = "fact"
"""Tag of a state entry that records an unknown fact an alternative assumed."""
AUTO_STATE = "auto"
"""``Packet.extra["ct"]``: the conntrack state follows from the connections seen so far
(captures): a later packet of a connection, or a reply to it, is ESTABLISHED and gets the
connection's NAT; anything else is NEW."""


class Factor:
    """Entries that depend on each other, with their joint alternatives."""

    __slots__ = ("keys", "alts", "conditional")

    def __init__(self, keys: set[Any], alts: list[tuple[float, Any]],
                 conditional: bool = False) -> None:
        """``alts``: (probability, entries) where entries read like a dict (``get``,
        ``keys``, ``items``); ``conditional``: some alternative holds assumed facts
        (``(FACT, key) -> (value, Cond)`` entries, never in ``keys``) and its probability is
        within that case."""
        self.keys = keys
        self.alts = alts
        self.conditional = conditional


class _Unsettled(Exception):  # noqa: N818 - internal control flow, not an error
    """A trace read an entry of a factor with several alternatives not yet enumerated."""

    def __init__(self, factor: AnyFactor) -> None:
        self.factor = factor


def _flow(p: Packet) -> tuple[Any, ...]:
    return (p.proto.lower(), p.src, p.sport, p.dst, p.dport)


class Stepper:
    """Traces the packets of one sequence in order, carrying the kernel's memory."""

    def __init__(self, tracer: Any) -> None:
        self.tracer = tracer
        self.family = tracer.family
        self.where: dict[Any, AnyFactor] = {}
        self.replies: dict[int, Any] = {}
        """hash of (protocol, address, port) a reply goes to -> the connections it may answer,
        each as (flow, reply address, endpoints that may reply); several in a list. One
        entry per connection whatever its endpoints; which connection a reply answers in a
        world is checked against that world's NAT of the connection."""
        self._new_replies: list[tuple[tuple[Any, ...], str | None, Any]] = []
        self._unplaced = False
        """Some connection was masqueraded to a node address the tracer does not know (its
        replies are kept under the address None)."""
        self._shapes: dict[tuple[Any, ...], _Shape] = {}
        """Interned :class:`_Shape` of the first packets seen, by how their outcomes ended."""

    def step(self, packet: Packet) -> TraceResult:
        auto = packet.extra.get("ct") == AUTO_STATE
        flow = _flow(packet)
        prev_key = ("prev", packet.src, packet.dst, packet.dport, packet.proto.lower())
        answers = self._answers(flow) if auto else ()
        pre = [prev_key] + ([("conn", flow)] if auto else []) + [("conn", c) for c in answers]
        touched: list[AnyFactor] = []
        for key in pre:
            f = self.where.get(key)
            if f is not None and len(f.alts) > 1 and f not in touched:
                touched.append(f)
        while True:
            try:
                runs = self._runs(packet, touched, pre, auto, flow, prev_key, answers)
                break
            except _Unsettled as need:
                touched.append(need.factor)
        return self._combine(packet, touched, runs, auto, flow, prev_key)

    # ------------------------------------------------------------------

    def _answers(self, flow: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """The connections (their flows) whose replies may be ``flow``, in the order they
        were seen: those from ``flow``'s source address and port to its destination, from
        one of the connection's endpoints (in any world)."""
        found = self.replies.get(hash((flow[0], flow[3], flow[4])))
        unplaced = (self.replies.get(hash((flow[0], None, flow[4]))) if self._unplaced
                    else None)
        if found is None and unplaced is None:
            return []
        out: list[tuple[Any, ...]] = []
        here = (flow[1], flow[2])
        for group, dst in ((found, flow[3]), (unplaced, None)):
            for conn_flow, reply_dst, eps in (() if group is None else group
                                              if type(group) is list else (group,)):
                if (reply_dst == dst and conn_flow[2] == flow[4] and conn_flow[0] == flow[0]
                        and (here in eps or (None in eps and here == conn_flow[3:]))
                        and conn_flow not in out):
                    out.append(conn_flow)
        return out

    def _lookup(self, choice: dict[int, dict[Any, Any]]) -> Any:
        where = self.where

        def get(key: Any) -> Any:
            f = where.get(key)
            if f is None:
                return None
            alt = choice.get(id(f))
            if alt is not None:
                return alt.get(key)
            if len(f.alts) == 1:
                return f.alts[0][1].get(key)
            raise _Unsettled(f)
        return get

    def _runs(self, packet: Packet, touched: list[AnyFactor], pre: list[Any], auto: bool,
              flow: tuple[Any, ...], prev_key: Any, answers: Any = ()) -> list[Any]:
        runs = []
        combos = product(*[f.alts for f in touched]) if touched else [()]
        for combo in combos:
            p = 1.0
            choice: dict[int, dict[Any, Any]] = {}
            facts: dict[Any, Any] | None = {}
            for f, (q, values) in zip(touched, combo, strict=True):
                p *= q
                choice[id(f)] = values
                if f.conditional and facts is not None:
                    facts = _case_of(values, facts)
            if facts is None:
                continue  # alternatives of contradicting cases: no such world
            runs += self._run(packet, p, choice, facts or None, auto, flow, prev_key, answers)
        if auto and packet.proto.lower() == "tcp" and any(r[4] for r in runs):
            flags = set((packet.tcp_flags or "").upper().split(","))
            if flags != {"SYN"}:
                # A TCP packet other than a SYN exists only within a connection: the capture
                # shows which of the worlds happened (the connection went this way).
                runs = _within_connection(runs)
        return runs

    def _run(self, packet: Packet, p: float, choice: dict[int, Any], facts: Any, auto: bool,
             flow: tuple[Any, ...], prev_key: Any, answers: Any) -> list[tuple[Any, ...]]:
        """The traces of ``packet`` in the world ``choice`` (of probability ``p``, within the
        case ``facts``), each as (p, choice, result, previous DNAT, connection found, facts,
        facts added to its outcomes): one, or two when whether it answers a connection
        masqueraded to an unknown node address depends on its destination being the node's
        (a case each)."""
        get = self._lookup(choice)
        if auto and get(("conn", flow)) is None:
            reply, need = self._reply_of(flow, answers, get, facts)
            if need is not None:
                from netproxy.trace.matches import local_cond, local_flag

                tracer = self.tracer
                cond = local_cond(need, self.family, local_flag(tracer.ctx))
                out = []
                for value in (True, False):
                    case = dict(facts or {})
                    case[cond.key] = (value, cond)
                    out.append(self._trace_run(packet, p, choice, case, True, flow, prev_key,
                                               get, reply if value else None))
                return out
            return [self._trace_run(packet, p, choice, facts, auto, flow, prev_key, get,
                                    reply)]
        return [self._trace_run(packet, p, choice, facts, auto, flow, prev_key, get, None)]

    def _trace_run(self, packet: Packet, p: float, choice: dict[int, Any], facts: Any,
                   auto: bool, flow: tuple[Any, ...], prev_key: Any, get: Any,
                   reply: Any) -> tuple[Any, ...]:
        pkt, conn = packet, None
        found = False
        if auto:
            orig = get(("conn", flow))
            found = orig is not None or reply is not None
            if orig is not None:
                pkt, conn = packet.with_(ct_state="ESTABLISHED"), ("orig", _conn_nat(orig))
            elif reply is not None:
                pkt, conn = packet.with_(ct_state="ESTABLISHED"), ("reply", reply)
            elif packet.ct_state != "NEW":
                pkt = packet.with_(ct_state="NEW")
        memory = Memory(base=get)
        res = (self.tracer.trace(pkt, memory, conn, facts) if facts
               else self.tracer.trace(pkt, memory, conn))
        return (p, choice, res, get(prev_key), found, facts, ())

    def _combine(self, packet: Packet, touched: list[AnyFactor], runs: list[Any], auto: bool,
                 flow: tuple[Any, ...], prev_key: Any) -> TraceResult:
        merged: dict[Any, Outcome] = {}
        same: list[tuple[float, tuple[Any, ...]]] = []
        """(probability, facts assumed) of each way this packet reached its client's
        previous endpoint."""
        had_prev = False
        alts: dict[Any, list[Any]] = {}
        where = self.where
        # Certain factors an outcome writes to join the new factor too.
        writes = [o.memory.writes for run in runs for o in run[2].outcomes
                  if o.memory is not None and o.memory.writes]
        for written in writes:
            for key in written:
                f = where.get(key)
                if f is not None and f not in touched:
                    touched.append(f)
        first = runs[0][2]
        if (len(runs) == 1 and not touched and not writes and not runs[0][6]
                and not any(o.assumes for o in first.outcomes)):
            if not auto:
                return self._independent(runs[0], prev_key)
            return self._alone(runs[0], flow, prev_key)
        one = len(runs) == 1 and not runs[0][6]
        """One world: its outcomes are the result as they are."""
        conditional = False
        for p, choice, res, prev, _found, _facts, extra in runs:
            if "NEW" not in res.packet.ct:
                prev = None  # a later packet of a connection keeps its endpoint anyway
            if prev is not None:
                had_prev = True
            base: dict[Any, Any] = {}
            for f in touched:
                base.update(choice.get(id(f)) or f.alts[0][1])
            # Every case's outcomes go on, each with the facts it assumed: a later packet
            # of this world follows its own case.
            for o in res.outcomes:
                assumes = _assuming(o.assumes, extra) if extra else o.assumes
                if assumes is None:
                    continue  # the outcome belongs to the other side of a fact of this case
                q = p * o.probability
                if prev is not None and o.raw_dnat == prev:
                    same.append((q, assumes))
                if not one:
                    k = (o.key(), tuple(c.state(v) for v, c in assumes))
                    if k in merged:
                        merged[k].probability += q
                    else:
                        m = Outcome(q, o.verdict, o.dnat, o.masquerade, o.snat, o.path,
                                    o.reason, o.delivered, None, o.masquerade_flags, o.final)
                        m.assumes, m.assumed, m.reverse = assumes, o.assumed, o.reverse
                        m.route, m.raw_dnat = o.route, o.raw_dnat
                        merged[k] = m
                values = dict(base)
                if o.memory is not None:
                    values.update(o.memory.writes)
                values[prev_key] = o.raw_dnat
                if auto and o.verdict == "ACCEPT" and "NEW" in res.packet.ct:
                    self._connection(values, res, o, flow)
                for v, c in assumes:
                    values[(FACT, c.key)] = (v, c)
                    conditional = True
                kept = {k: v for k, v in values.items() if v is not None}
                items = frozenset(kept.items())
                entry = alts.get(items)
                if entry is None:
                    # The entries as first produced, in that order (not the frozenset's hash
                    # order): the facts of a case are read in it, and so are split on.
                    alts[items] = [q, kept]
                else:
                    entry[0] += q
        if len(alts) > MAX_ALTERNATIVES:
            raise TraceError(f"packet sequence has more than {MAX_ALTERNATIVES} possible states "
                             "of one client and Service")
        for f in touched:
            for key in f.keys:
                if where.get(key) is f:
                    del where[key]
        keys: set[Any] = set()
        new_alts = []
        for prob, kept in alts.values():
            values = _values(kept.items())
            keys.update(k for k in values if not (type(k) is tuple and k[0] == FACT))
            new_alts.append((prob, values))
        if keys:
            # Within a case the alternatives sum to 1 already; without cases, the total is 1
            # up to rounding.
            total = 1.0 if conditional else (sum(prob for prob, _ in new_alts) or 1.0)
            factor = Factor(keys, [(prob / total, values) for prob, values in new_alts],
                            conditional)
            for key in keys:
                where[key] = factor
        self._add_replies()
        notes = list(dict.fromkeys(n for r in runs for n in r[2].notes))
        origins = sorted({r[2].packet.origin for r in runs})
        if len(origins) > 1:
            notes.append("where the packet comes from differs by case: " + ", ".join(origins))
        if auto and any(r[2].packet.ct != first.packet.ct for r in runs):
            notes.append("conntrack state differs by what earlier packets did: "
                         + ", ".join(sorted({",".join(sorted(r[2].packet.ct)) for r in runs})))
        outcomes = first.outcomes if one else list(merged.values())
        if one and runs[0][0] != 1.0:
            for o in outcomes:
                o.probability *= runs[0][0]
        independent = list(dict.fromkeys(t for r in runs for t in r[2].independent))
        if not one and self.tracer.assume and any(o.assumes for o in outcomes):
            from netproxy.trace.cases import settle

            outcomes, dropped = settle(outcomes)
            independent += [t for t in dropped if t not in independent]
        share = _same_share(same) if had_prev else None
        if had_prev and share is None:
            notes.append("the share reaching the same endpoint as before differs by case")
        result = TraceResult(first.packet, outcomes, notes, share)
        result.independent = independent
        result.inferred = first.inferred
        return result

    def _independent(self, run: Any, prev_key: Any) -> TraceResult:
        """The common case, fast: a packet whose outcomes depend on nothing uncertain and
        change no memory. Only its DNAT destinations are remembered, for the next packet of
        the same client and Service, as a factor of their own."""
        res, prev = run[2], run[3]
        dist: dict[Any, float] = {}
        same = 0.0
        for o in res.outcomes:
            if prev is not None and o.raw_dnat == prev:
                same += o.probability
        for o in res.outcomes:
            dist[o.raw_dnat] = dist.get(o.raw_dnat, 0.0) + o.probability
        old = self.where.get(prev_key)
        if old is not None:
            old.keys.discard(prev_key)
        if len(dist) == 1 and None in dist:
            self.where.pop(prev_key, None)
        else:
            total = sum(dist.values()) or 1.0
            self.where[prev_key] = Factor({prev_key}, [(q / total, _Small((prev_key, d)))
                                                       for d, q in dist.items()])
        res.same_as_previous = same if prev is not None else None
        return res

    def _alone(self, run: Any, flow: tuple[Any, ...], prev_key: Any) -> TraceResult:
        """A packet of a capture whose trace read nothing uncertain and wrote no memory (the
        first packet of a connection, usually): what :meth:`_combine` does, with the new
        factor kept as its keys and a shared :class:`_Shape` of its alternatives (no outcome
        assumed a fact: see :meth:`_combine` for those)."""
        res, prev = run[2], run[3]
        new = "NEW" in res.packet.ct
        if not new:
            prev = None  # a later packet of a connection keeps its endpoint anyway
        same = 0.0
        if prev is not None:
            for o in res.outcomes:
                if o.raw_dnat == prev:
                    same += o.probability
        key = tuple([(o.probability, o.raw_dnat, o.masquerade, new and o.verdict == "ACCEPT")
                     for o in res.outcomes])
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shapes[key] = _Shape(key, self.family)
        where = self.where
        if shape.prev or shape.conn:
            conn_key = ("conn", flow)
            factor = _Connection(prev_key, conn_key, shape)
            if shape.prev:
                where[prev_key] = factor
            if shape.conn:
                where[conn_key] = factor
        for masq, eps in shape.replies:
            reply_dst = flow[1]
            if masq:
                reply_dst = self.tracer.first_local()  # None: a node address not known
            self._new_replies.append((flow, reply_dst, eps))
        self._add_replies()
        result = TraceResult(res.packet, res.outcomes, list(res.notes),
                             same if prev is not None else None)
        result.independent = res.independent
        result.inferred = res.inferred
        return result

    def _add_replies(self) -> None:
        replies = self.replies
        for entry in self._new_replies:
            conn_flow, reply_dst, _eps = entry
            if reply_dst is None:
                self._unplaced = True
            h = hash((conn_flow[0], reply_dst, conn_flow[2]))
            known = replies.get(h)
            if known is None:
                replies[h] = entry
            elif type(known) is list:
                if entry not in known:
                    known.append(entry)
            elif known != entry:
                replies[h] = [known, entry]
        self._new_replies.clear()

    def _reply_of(self, flow: tuple[Any, ...], answers: Any, get: Any,
                  facts: Any) -> tuple[Any, int | None]:
        """The connection ``flow`` answers in this world, as (service address, port, client
        address, port) for the reverse NAT, or None when it answers none; and the address
        (or None) whether it is the node's decides that: a connection masqueraded to a node
        address the tracer does not know is answered at the node's address, so a reply to
        an address it cannot place answers it in the case where that address is the node's
        (one a case already placed follows that case)."""
        fam = self.family
        for conn_flow in answers:
            nat = get(("conn", conn_flow))
            if nat is None:
                continue
            addr, port, masq = _conn_nat(nat)
            proto, src, sport, dst, dport = conn_flow
            need = None
            if masq:
                local = self.tracer.first_local()
                if local is None:
                    target = parse_addr(flow[3], fam)
                    here = self.tracer.placed(target)
                    if here is None:
                        here = known_fact(facts or {}, ("local", target),
                                          self.tracer.ctx.bound_only)
                    if here is False:
                        continue
                    need = target if here is None else None
                    local = flow[3]
                reply_dst = local
            else:
                reply_dst = src
            back = (proto, format_addr(addr, fam) if addr is not None else dst,
                    port if addr is not None else dport, reply_dst, sport)
            if back != flow:
                continue
            return (parse_addr(dst, fam) if addr is not None else None,
                    dport if addr is not None else None,
                    parse_addr(src, fam) if masq else None, sport), need
        return None, None

    def _connection(self, values: dict[Any, Any], res: TraceResult, o: Outcome,
                    flow: tuple[Any, ...]) -> None:
        """Remember a new connection: its NAT for later packets, and its reply tuple."""
        dnat = o.raw_dnat
        # the raw DNAT tuple itself (shared with the "prev" entry), wrapped when masqueraded
        values[("conn", flow)] = (("masq", dnat) if o.masquerade else (dnat or _NO_DNAT))
        reply_dst = flow[1]
        if o.masquerade:
            reply_dst = self.tracer.first_local()  # None: a node address not known
        ep = (format_addr(dnat[0], self.family), dnat[1]) if dnat else None
        self._new_replies.append((flow, reply_dst, frozenset((ep,))))


class _Shape:
    """How the outcomes of a packet that started no uncertainty ended, without the packet's
    own keys: the new factor's alternatives as (probability, the client's last endpoint,
    the connection's NAT), and the endpoints (address text, port; None: the connection's
    own destination) replies may come from, unmasqueraded and masqueraded. Every first
    packet to the same Service from the same kind of client ends alike, so one shape
    serves them all; a connection keeps only its keys and this shared shape."""

    __slots__ = ("alts", "prev", "conn", "replies")

    def __init__(self, ends: tuple[Any, ...], family: str) -> None:
        """``ends``: (probability, DNAT, masqueraded, connection made) per outcome carried."""
        merged: dict[tuple[Any, Any], list[float]] = {}
        eps: dict[bool, list[Any]] = {}
        for prob, dnat, masq, made in ends:
            conn = None
            if made:
                # the raw DNAT tuple itself (shared with the "prev" entry), wrapped when
                # masqueraded, as _connection writes it
                conn = ("masq", dnat) if masq else (dnat or _NO_DNAT)
                eps.setdefault(masq, []).append(dnat)
            entry = merged.get((dnat, conn))
            if entry is None:
                merged[(dnat, conn)] = [prob]
            else:
                entry[0] += prob
        total = sum(e[0] for e in merged.values()) or 1.0
        self.alts = tuple((e[0] / total, dnat, conn) for (dnat, conn), e in merged.items())
        self.prev = any(dnat is not None for _p, dnat, _c in self.alts)
        self.conn = any(conn is not None for _p, _d, conn in self.alts)
        self.replies = tuple((masq, _Endpoints(e, family)) for masq, e in eps.items())


class _Endpoints:
    """The endpoints replies may come from, as (address text, port), None for the
    connection's own destination: spelled out when a packet is first checked against them
    (most connections of a capture never see one)."""

    __slots__ = ("dnats", "family", "_set")

    def __init__(self, dnats: list[Any], family: str) -> None:
        self.dnats = dnats
        self.family = family
        self._set: frozenset[Any] | None = None

    def __contains__(self, item: Any) -> bool:
        if self._set is None:
            self._set = frozenset((format_addr(d[0], self.family), d[1]) if d else None
                                  for d in self.dnats)
        return item in self._set


class _Connection:
    """A factor made by :meth:`Stepper._alone`: the keys of one packet (its client's last
    endpoint, its connection) and the shared :class:`_Shape` of their values, spelled out
    as a :class:`Factor`'s ``keys`` and ``alts`` only when a later packet reads them."""

    __slots__ = ("prev_key", "conn_key", "shape")
    conditional = False

    def __init__(self, prev_key: Any, conn_key: Any, shape: _Shape) -> None:
        self.prev_key = prev_key
        self.conn_key = conn_key
        self.shape = shape

    @property
    def keys(self) -> set[Any]:
        keys = set()
        if self.shape.prev:
            keys.add(self.prev_key)
        if self.shape.conn:
            keys.add(self.conn_key)
        return keys

    @property
    def alts(self) -> list[tuple[float, Any]]:
        out = []
        for prob, dnat, conn in self.shape.alts:
            pairs = []
            if dnat is not None:
                pairs.append((self.prev_key, dnat))
            if conn is not None:
                pairs.append((self.conn_key, conn))
            out.append((prob, _values(pairs)))
        return out


def _case_of(values: Any, facts: dict[Any, Any]) -> dict[Any, Any] | None:
    """``facts`` with the facts an alternative assumed added; None when they contradict."""
    out = facts
    for k, v in values.items():
        if type(k) is tuple and k[0] == FACT:
            known = out.get(k[1])
            if known is None:
                if out is facts:
                    out = dict(facts)
                out[k[1]] = v
            elif known[0] != v[0]:
                return None
    return out


def _assuming(assumes: tuple[Any, ...], extra: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """An outcome's assumed facts with a case's ``extra`` ones; None when they contradict."""
    have = {c.key: v for v, c in assumes}
    out = list(assumes)
    for v, c in extra:
        known = have.get(c.key)
        if known is None:
            out.append((v, c))
        elif known != v:
            return None
    return tuple(out)


def _fits(assumes: tuple[Any, ...], case: dict[Any, bool]) -> bool:
    return all(case.get(c.key, v) == v for v, c in assumes)


def _same_share(parts: list[tuple[float, tuple[Any, ...]]]) -> float | None:
    """The probability of reaching the previous endpoint, when it is the same in every case
    of the facts assumed (None when the cases differ, or there are too many to compare)."""
    conds: dict[Any, Any] = {}
    for _q, assumes in parts:
        for _v, c in assumes:
            conds.setdefault(c.key, c)
    if not conds:
        return sum(q for q, _ in parts)
    if len(conds) > MAX_CASE_FACTS:
        return None
    shares = set()
    for values in product((True, False), repeat=len(conds)):
        case = dict(zip(conds, values, strict=True))
        shares.add(round(sum(q for q, a in parts if _fits(a, case)), 9))
    return shares.pop() if len(shares) == 1 else None


def _within_connection(runs: list[Any]) -> list[Any]:
    """The worlds in which a TCP packet other than a SYN found its connection (the capture
    shows the connection went that way), each case of the facts the worlds assumed on its
    own: a case where no world holds the connection keeps its worlds as they are."""
    conds: dict[Any, Any] = {}
    for r in runs:
        for key, (_v, c) in (r[5] or {}).items():
            conds.setdefault(key, c)
    if not conds or len(conds) > MAX_CASE_FACTS:
        kept = [r for r in runs if r[4]]
        total = sum(r[0] for r in kept)
        return [(r[0] / total, *r[1:]) for r in kept]
    out = []
    for values in product((True, False), repeat=len(conds)):
        case = dict(zip(conds, values, strict=True))
        fit = [r for r in runs if all(case[k] == v for k, (v, _c) in (r[5] or {}).items())]
        found = [r for r in fit if r[4]]
        scale = sum(r[0] for r in fit) / sum(r[0] for r in found) if found else 1.0
        for r in found or fit:
            extra = tuple((case[k], c) for k, c in conds.items() if k not in (r[5] or {}))
            out.append((r[0] * scale, *r[1:6], extra))
    return out


class _Small:
    """One alternative's entries when there are one or two (a connection and its client's
    last endpoint, the usual case): a third of a dict's memory, the same reading."""

    __slots__ = ("k0", "v0", "k1", "v1")

    def __init__(self, first: tuple[Any, Any], second: tuple[Any, Any] | None = None) -> None:
        self.k0, self.v0 = first
        self.k1: Any
        self.v1: Any
        self.k1, self.v1 = second if second is not None else (_NONE, None)

    def get(self, key: Any, default: Any = None) -> Any:
        if key == self.k0:
            return self.v0
        if key == self.k1:
            return self.v1
        return default

    def keys(self) -> list[Any]:
        return [self.k0] if self.k1 is _NONE else [self.k0, self.k1]

    def __getitem__(self, key: Any) -> Any:
        if key == self.k0:
            return self.v0
        if key == self.k1 and self.k1 is not _NONE:
            return self.v1
        raise KeyError(key)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def __len__(self) -> int:
        return 1 if self.k1 is _NONE else 2

    def items(self) -> list[tuple[Any, Any]]:
        return [(k, self[k]) for k in self.keys()]


_NONE = object()
AnyFactor = Factor | _Connection


def _values(items: Iterable[tuple[Any, Any]]) -> Any:
    pairs = list(items)
    if 0 < len(pairs) <= 2:
        return _Small(*pairs)
    return dict(pairs)


_NO_DNAT = ("none",)


def _conn_nat(value: Any) -> tuple[Any, Any, bool]:
    """A remembered connection's NAT as (DNAT address, port, masqueraded)."""
    masq = value[0] == "masq"
    dnat = value[1] if masq else value
    if dnat is None or dnat[0] == "none":
        return None, None, masq
    return dnat[0], dnat[1], masq


def trace_stream(tracers: dict[str, Any], packets: Iterable[Packet],
                 skipped: dict[str, int] | None = None) -> Iterator[TraceResult]:
    """Trace ``packets`` in order, one result each as it is read (flat memory, linear time).

    ``tracers`` maps a family to its tracer; a packet of a family without one is counted in
    ``skipped`` (by family) instead of stopping the run."""
    steppers = {fam: Stepper(t) for fam, t in tracers.items()}
    # The remembered state grows with the connections seen and holds no reference cycles:
    # with the cyclic collector on, its full collections would walk it again and again,
    # making each packet cost more than the one before.
    with paused_gc():
        yield from _stream(steppers, tracers, packets, skipped)


def _stream(steppers: dict[str, Stepper], tracers: dict[str, Any], packets: Iterable[Packet],
            skipped: dict[str, int] | None) -> Iterator[TraceResult]:
    for packet in packets:
        fam = family_of(packet.dst)
        stepper = steppers.get(fam)
        if stepper is None:
            if skipped is None:
                raise TraceError(f"destination {packet.dst} is {fam} but the rules are "
                                 f"{'/'.join(tracers)}")
            skipped[fam] = skipped.get(fam, 0) + 1
            continue
        yield stepper.step(packet)
