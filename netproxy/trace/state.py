"""The state of one branch of a walk, and the memory that outlives a packet.

A :class:`Walk` is one possible history of a packet: its (possibly rewritten) header, marks,
conntrack facts, the chain stack, the hops so far and the probability of this branch. Forking
(``statistic --mode random``) copies it. :class:`Memory` holds what the kernel keeps between
packets -- ``recent`` lists, ``nth`` counters, ``limit`` buckets -- and is copied on write so
forks never see each other's changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from netproxy.trace.fields import DS_UNKNOWN
from netproxy.trace.packet import Resolved


class Memory:
    """Kernel state that persists across the packets of a sequence (copy on write).

    Entries are keyed ``("recent", list name, address)``, ``("nftset", table, set, element)``
    (an nft dynamic set's element, valued by its expiry time), ``("nth", rule key)`` and
    ``("limit", rule key)``. ``writes`` holds what this world changed; reads that miss it
    go to ``base`` (the state left by earlier packets, see :mod:`netproxy.trace.sequence`)
    and are recorded in ``reads`` (shared by the forks of one trace).
    """

    __slots__ = ("writes", "base", "reads")

    def __init__(self, writes: dict[Any, Any] | None = None,
                 base: Callable[[Any], Any] | None = None,
                 reads: set[Any] | None = None) -> None:
        self.writes: dict[Any, Any] = writes if writes is not None else {}
        self.base = base
        self.reads: set[Any] = reads if reads is not None else set()

    def get(self, key: Any) -> Any:
        """The entry's value, None when absent."""
        writes = self.writes
        if key in writes:
            return writes[key]
        self.reads.add(key)
        return self.base(key) if self.base is not None else None

    def with_(self, key: Any, value: Any) -> Memory:
        writes = dict(self.writes)
        writes[key] = value
        return Memory(writes, self.base, self.reads)

    def with_recent(self, name: str, addr: int, stamps: tuple[float, ...] | None) -> Memory:
        return self.with_(("recent", name, addr), stamps)

    @property
    def recent(self) -> dict[str, dict[int, tuple[float, ...]]]:
        """The recent lists this world wrote (name -> address -> time stamps)."""
        out: dict[str, dict[int, tuple[float, ...]]] = {}
        for key, value in self.writes.items():
            if key[0] == "recent" and value is not None:
                out.setdefault(key[1], {})[key[2]] = value
        return out

    def key(self) -> tuple[Any, ...]:
        """A hashable summary of what this world wrote."""
        return tuple(sorted(self.writes.items(), key=repr))


class Walk:
    """One branch of a packet's walk through the hooks."""

    __slots__ = ("pkt", "src", "dst", "sport", "dport", "mark", "ctmark", "ct", "hook", "iif",
                 "oif", "prob", "stack", "path", "steps", "si", "dnat", "snat", "masquerade",
                 "masq_flags", "memory", "nat_ok", "looped", "orig_dst", "orig_dport", "facts",
                 "assumed", "decided", "conn", "reverse", "route", "pending", "nat_hook",
                 "fixed", "rec", "rec_at", "tail", "tail_at", "tail_next", "tail_tried", "ds")

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
        self.ds: tuple[int, int, int] = (DS_UNKNOWN if p.tos is None else (p.tos, 0xFF, 0))
        """The DS field as (value, known bits, flipped bits): see
        :mod:`netproxy.trace.fields`."""
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
        self.nat_hook = ""
        """The hook where a nat chain last set up the connection's NAT: the kernel consults
        no further nat chain at that hook (nf_nat_inet_fn)."""
        self.pending: tuple[str, Any, int] | None = None
        """A branch forked by an nft ``numgen`` lookup: the action it takes when resumed
        (kind, data, rule position)."""
        self.conn: tuple[str, Any] | None = None
        """The connection a later packet belongs to (a packet sequence): ("orig", (dnat
        address, port, masqueraded)) or ("reply", (service address, port, client address,
        port)); its NAT is applied where the kernel applies it, without the nat rules."""
        self.reverse: str | None = None
        """For a reply: what the connection's reverse NAT did."""
        self.fixed: tuple[Any, ...] = (pkt.proto, pkt.ct, pkt.tcp_flags, pkt.icmp,
                                       pkt.origin, p.physdev_in, p.physdev_out, p.bridged,
                                       p.uid, p.gid)
        """The packet's fields that no rule changes and evaluators may read besides its
        addresses and ports (part of a base chain summary's key)."""
        self.rec: list[Any] | None = None
        """While a base chain is walked to be summarized: the checks its result rests on
        (see :meth:`netproxy.trace.engine.Tracer._replay`); None otherwise, and dropped
        when the branch forks."""
        self.rec_at = 0
        """Length of ``path`` when the summarized base chain was entered."""
        self.tail: list[Any] | None = None
        """While the rest of the walk after a DNAT is recorded: its checks and NATs (see
        :meth:`netproxy.trace.engine.Tracer._replay_tail`); None otherwise."""
        self.tail_at = 0
        self.tail_next = False
        """A DNAT just happened: look for a recorded tail at the next step."""
        self.tail_tried = False

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
        o.ds = self.ds
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
        o.nat_hook = self.nat_hook
        o.conn = self.conn
        o.reverse = self.reverse
        o.fixed = self.fixed
        o.rec = o.tail = None
        o.rec_at = o.tail_at = 0
        o.tail_next = False
        o.tail_tried = self.tail_tried
        self.rec = self.tail = None  # a walk that forks cannot be summarized
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
