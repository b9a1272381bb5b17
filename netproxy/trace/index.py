"""Per-chain candidate index: big chains are not scanned rule by rule.

A chain with many rules (kube-proxy's KUBE-SERVICES, KUBE-NODEPORTS, ...) is split by one
dimension -- the exact destination address, or the (protocol, destination port) pair --
chosen as the one most of its rules pin down. A rule that pins the dimension can only match
packets with that value; every other rule is kept for all packets. For a packet the walk
visits the union of the bucket for its value and the kept rules, in the chain's order, so
the first-match semantics are exactly those of a linear scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from netproxy.netfilter.model import Chain, Rule
from netproxy.textsafe import digits
from netproxy.trace.addr import BITS, parse_net
from netproxy.trace.packet import PROTOCOLS

INDEX_MIN_RULES = 24
"""Chains shorter than this are scanned linearly (an index would cost more than it saves)."""
CACHE_MAX = 200_000


class ChainCode:
    """A chain prepared for walking: rules, lazily compiled rules, and its index."""

    __slots__ = ("table", "name", "chain", "rules", "compiled", "builtin", "policy", "dim",
                 "buckets", "always", "all", "cache", "table_chains", "nat")

    def __init__(self, table: str, chain: Chain, family: str) -> None:
        self.table = table
        self.name = chain.name
        self.chain = chain
        self.rules: list[Rule] = chain.rules
        self.compiled: list[Any] = [None] * len(chain.rules)
        self.table_chains: dict[str, Chain] = {}
        """All chains of the table (jump targets), set by the tracer."""
        self.builtin = chain.policy is not None
        self.policy = chain.policy
        self.nat = table == "nat"
        """Consulted only for the first packet of a connection."""
        self.all: Sequence[int] = range(len(chain.rules))
        self.dim: str | None = None
        if len(chain.rules) >= INDEX_MIN_RULES:
            self.buckets: dict[Any, list[int]] = {}
            self.always: tuple[int, ...] = ()
            self.cache: dict[Any, tuple[int, ...]] = {}
            self._build(family)

    def _build(self, family: str) -> None:
        full = (1 << BITS[family]) - 1
        by_dst: dict[Any, list[int]] = {}
        by_port: dict[Any, list[int]] = {}
        n_dst = n_port = 0
        keys: list[tuple[Any, Any]] = []
        for pos, rule in enumerate(self.rules):
            dkey, pkey = _keys(rule, family, full)
            keys.append((dkey, pkey))
            if dkey is not None:
                by_dst.setdefault(dkey, []).append(pos)
                n_dst += 1
            if pkey is not None:
                by_port.setdefault(pkey, []).append(pos)
                n_port += 1
        best = max(n_dst, n_port)
        if best * 2 < len(self.rules):
            return
        self.dim = "dst" if n_dst >= n_port else "dport"
        which = 0 if self.dim == "dst" else 1
        self.buckets = by_dst if which == 0 else by_port
        self.always = tuple(pos for pos, k in enumerate(keys) if k[which] is None)

    def candidates(self, dst: int, proto: int, dport: int | None) -> Sequence[int]:
        """Positions of the rules that can match a packet with this destination, in order."""
        if self.dim is None:
            return self.all
        if self.dim == "dst":
            key: Any = dst
        elif dport is None:
            return self.all
        else:
            key = (proto, dport)
        found = self.cache.get(key)
        if found is not None:
            return found
        bucket = self.buckets.get(key)
        if bucket is None:
            return self.always
        # Two ascending runs: sorted() merges them in one pass, in C (heapq.merge is Python).
        found = tuple(sorted([*bucket, *self.always]))
        if len(self.cache) >= CACHE_MAX:
            self.cache.clear()
        self.cache[key] = found
        return found


def _keys(rule: Rule, family: str, full: int) -> tuple[Any, Any]:
    """(exact destination, (protocol, single destination port)) the rule pins, or None."""
    if rule.opaque is not None:
        return None, None
    dkey: Any = None
    proto: int | None = None
    port: int | None = None
    for opt in rule.matches:
        if opt.negated:
            continue
        if not opt.module:
            if opt.name == "destination" and opt.args:
                try:
                    net, mask = parse_net(opt.args[0], family)
                except ValueError:
                    continue
                if mask == full:
                    dkey = net
            elif opt.name == "protocol" and opt.args:
                proto = PROTOCOLS.get(opt.args[0].lower())
        elif opt.name == "dport" and opt.module in ("tcp", "udp", "sctp") and opt.args:
            text = opt.args[0]
            if digits(text):
                port = int(text)
    pkey = (proto, port) if proto is not None and port is not None else None
    return dkey, pkey
