"""The state of one branch of a walk, and the memory that outlives a packet.

A :class:`Walk` is one possible history of a packet: its (possibly rewritten) header, marks,
conntrack facts, the chain stack, the hops so far and the probability of this branch. Forking
(``statistic --mode random``) copies it. :class:`Memory` holds what the kernel keeps between
packets -- ``recent`` lists, ``nth`` counters, ``limit`` buckets -- and is copied on write so
forks never see each other's changes.
"""

from __future__ import annotations

from typing import Any

from netproxy.trace.packet import Resolved


class Memory:
    """Kernel state that persists across the packets of a sequence (copy on write)."""

    __slots__ = ("recent", "nth", "limit", "sets")

    def __init__(self, recent: dict[str, dict[int, tuple[float, ...]]] | None = None,
                 nth: dict[Any, int] | None = None,
                 limit: dict[Any, tuple[float, float]] | None = None,
                 sets: dict[Any, dict[Any, float]] | None = None) -> None:
        self.recent = recent or {}
        self.nth = nth or {}
        self.limit = limit or {}
        self.sets = sets or {}
        """Elements nft rules added to dynamic sets (``update @affinity { ip saddr }``):
        (table, set) -> element key -> expiry time."""

    def with_recent(self, name: str, addr: int, stamps: tuple[float, ...] | None) -> Memory:
        table = dict(self.recent.get(name, {}))
        if stamps is None:
            table.pop(addr, None)
        else:
            table[addr] = stamps
        recent = dict(self.recent)
        recent[name] = table
        return Memory(recent, self.nth, self.limit, self.sets)

    def with_nth(self, key: Any, count: int) -> Memory:
        nth = dict(self.nth)
        nth[key] = count
        return Memory(self.recent, nth, self.limit, self.sets)

    def with_limit(self, key: Any, bucket: tuple[float, float]) -> Memory:
        limit = dict(self.limit)
        limit[key] = bucket
        return Memory(self.recent, self.nth, limit, self.sets)

    def with_set(self, name: Any, key: Any, expiry: float | None) -> Memory:
        table = dict(self.sets.get(name, {}))
        if expiry is None:
            table.pop(key, None)
        else:
            table[key] = expiry
        sets = dict(self.sets)
        sets[name] = table
        return Memory(self.recent, self.nth, self.limit, sets)

    def key(self) -> tuple[Any, ...]:
        """A hashable summary, so identical worlds of a packet sequence can be merged."""
        recent = tuple(sorted((n, tuple(sorted(t.items()))) for n, t in self.recent.items() if t))
        return (recent, tuple(sorted(self.nth.items(), key=repr)),
                tuple(sorted(self.limit.items(), key=repr)),
                tuple(sorted((n, tuple(sorted(t.items(), key=repr)))
                             for n, t in self.sets.items() if t)))


class Walk:
    """One branch of a packet's walk through the hooks."""

    __slots__ = ("pkt", "src", "dst", "sport", "dport", "mark", "ctmark", "ct", "hook", "iif",
                 "oif", "prob", "stack", "path", "steps", "si", "dnat", "snat", "masquerade",
                 "masq_flags", "memory", "nat_ok", "looped", "orig_dst", "orig_dport", "facts",
                 "assumed", "decided", "route", "pending")

    def __init__(self, pkt: Resolved, memory: Memory) -> None:
        p = pkt.packet
        self.pkt = pkt
        self.src = pkt.src
        self.dst = pkt.dst
        self.sport = p.sport
        self.dport = p.dport
        self.orig_dst = pkt.dst
        self.orig_dport = p.dport
        self.mark = p.mark
        self.ctmark = p.ctmark
        self.ct: frozenset[str] = pkt.ct
        self.hook = ""
        self.iif: str | None = ""
        self.oif: str | None = ""
        self.prob = 1.0
        self.stack: list[list[Any]] = []
        self.path: list[Any] = []
        self.steps: tuple[tuple[str, str, str], ...] = ()
        self.si = 0
        self.dnat: tuple[int, int | None] | None = None
        self.snat: str | None = None
        self.masquerade = False
        self.masq_flags = ""
        """Options of the MASQUERADE rule that applied (``--random-fully``)."""
        self.memory = memory
        self.nat_ok = "NEW" in pkt.ct and "UNTRACKED" not in pkt.ct
        self.looped = False
        self.route: Any = None
        """The node's latest routing decision for this branch (with a router only)."""
        self.facts: dict[Any, tuple[bool, Cond]] = _NO_FACTS
        """Unknown facts this branch assumed (key -> (value, condition)); copy on write."""
        self.assumed: frozenset[str] = frozenset()
        """Stated defaults this branch relied on (an unnamed interface, not bridged)."""
        self.decided: object = None
        """A forked branch re-visiting the rule it forked on: that rule's match result."""
        self.pending: tuple[str, Any, int] | None = None
        """A branch forked by an nft ``numgen`` lookup: the action it takes when resumed
        (kind, data, rule position)."""

    def assume(self, cond: Cond, value: bool) -> None:
        facts = dict(self.facts)
        facts[cond.key] = (value, cond)
        self.facts = facts

    def fork(self) -> Walk:
        o = Walk.__new__(Walk)
        o.pkt = self.pkt
        o.src = self.src
        o.dst = self.dst
        o.sport = self.sport
        o.dport = self.dport
        o.mark = self.mark
        o.ctmark = self.ctmark
        o.ct = self.ct
        o.hook = self.hook
        o.iif = self.iif
        o.oif = self.oif
        o.prob = self.prob
        o.stack = [f[:] for f in self.stack]
        o.path = self.path[:]
        o.steps = self.steps
        o.si = self.si
        o.dnat = self.dnat
        o.snat = self.snat
        o.masquerade = self.masquerade
        o.masq_flags = self.masq_flags
        o.memory = self.memory
        o.nat_ok = self.nat_ok
        o.looped = self.looped
        o.route = self.route
        o.orig_dst = self.orig_dst
        o.orig_dport = self.orig_dport
        o.facts = self.facts
        o.assumed = self.assumed
        o.decided = None
        o.pending = None
        return o


class Cond:
    """A fact the tracer cannot know (an ipset's contents, whether an address is the node's):
    the walk forks into both cases and each outcome says which it assumed.

    ``key`` identifies the fact (the same question asked twice in a walk gets the answer the
    branch already assumed); ``text`` states it as true, ``flag`` says what supplies it.
    An evaluator returns a Cond with ``negated`` set when the rule matches on the fact
    being false."""

    __slots__ = ("key", "text", "text_not", "flag", "negated")

    def __init__(self, key: Any, text: str, text_not: str, flag: str,
                 negated: bool = False) -> None:
        self.key = key
        self.text = text
        self.text_not = text_not
        self.flag = flag
        self.negated = negated

    def flipped(self) -> Cond:
        return Cond(self.key, self.text, self.text_not, self.flag, not self.negated)

    def state(self, value: bool) -> str:
        return self.text if value else self.text_not


_NO_FACTS: dict[Any, tuple[bool, Cond]] = {}
