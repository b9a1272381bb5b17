"""The walk: netfilter's hooks and tables in kernel order, every branch with its weight.

Hook order by where the packet comes from:

* arriving (``external``/``pod``): PREROUTING (raw, mangle, nat), then the routing decision
  on the node's local addresses: INPUT (mangle, filter, security, nat) for a local
  destination, else FORWARD (mangle, filter, security) and POSTROUTING (mangle, nat);
* generated on the node (``node``/``localhost``): OUTPUT (raw, mangle, nat, filter,
  security) and POSTROUTING (mangle, nat); a local destination then loops back through
  ``lo``: PREROUTING (raw, mangle) and INPUT (mangle, filter, security) -- nat is not
  consulted again because the connection's NAT bindings are already set up.

The nat table is consulted only for the first packet of a connection (conntrack NEW), as
the kernel does; ``NOTRACK`` in raw makes the packet UNTRACKED and skips nat as well.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from netproxy.errors import TraceError
from netproxy.netfilter import extensions as ext
from netproxy.netfilter.model import Rule, Ruleset
from netproxy.trace.addr import LOOPBACK, format_addr, format_endpoint, parse_addr
from netproxy.trace.index import ChainCode
from netproxy.trace.matches import FORK, Context, Matcher, compile_matches
from netproxy.trace.packet import Packet, Resolved, resolve
from netproxy.trace.result import Hop, Outcome, TraceResult
from netproxy.trace.state import Memory, Walk
from netproxy.trace.targets import compile_target

MAX_DEPTH = 1000
"""Deepest chain nesting followed (iptables-nft refuses more than 16; legacy has no fixed
limit, but a ruleset nested this deep is a generated mistake)."""
MAX_BRANCHES = 100_000
MAX_STEPS = 2_000_000

_PRE = (("PREROUTING", "raw"), ("PREROUTING", "mangle"), ("PREROUTING", "nat"), ("ROUTE", ""))
_IN = (("INPUT", "mangle"), ("INPUT", "filter"), ("INPUT", "security"), ("INPUT", "nat"),
       ("DONE", "local"))
_FWD = (("FORWARD", "mangle"), ("FORWARD", "filter"), ("FORWARD", "security"),
        ("POSTROUTING", "mangle"), ("POSTROUTING", "nat"), ("DONE", "forwarded"))
_OUT = (("OUTPUT", "raw"), ("OUTPUT", "mangle"), ("OUTPUT", "nat"), ("OUTPUT", "filter"),
        ("OUTPUT", "security"), ("POSTROUTING", "mangle"), ("POSTROUTING", "nat"),
        ("LOOP", ""))
_LOOP = (("PREROUTING", "raw"), ("PREROUTING", "mangle"), ("INPUT", "mangle"),
         ("INPUT", "filter"), ("INPUT", "security"), ("DONE", "local"))
_SENT = (("DONE", "sent"),)


class Compiled:
    """A rule ready to evaluate: its matcher and target."""

    __slots__ = ("matcher", "kind", "data", "opaque")

    def __init__(self, matcher: Matcher, kind: str, data: Any, opaque: str | None) -> None:
        self.matcher = matcher
        self.kind = kind
        self.data = data
        self.opaque = opaque


class Tracer:
    """Walks packets through one ruleset. Build once (indexes big chains), trace many."""

    def __init__(self, ruleset: Ruleset, local_ips: Iterable[str] = (), *,
                 ipsets: dict[str, Any] | None = None, strict: bool = False) -> None:
        self.ruleset = ruleset
        self.family = ruleset.family
        self.source = ruleset.source
        fam = self.family
        self.local_ips: list[str] = []
        hosts: set[int] = set()
        for text in local_ips:
            try:
                hosts.add(parse_addr(text, fam))
            except ValueError as err:
                raise TraceError(f"bad --local-ip: {err}") from None
            self.local_ips.append(text)
        self._hosts = frozenset(hosts)
        lo_net, lo_mask = LOOPBACK[fam]
        self._lo = (lo_net, lo_mask)
        self.ctx = Context(fam, self.is_local, ipsets)
        self.codes: dict[tuple[str, str], ChainCode] = {}
        for tname, table in ruleset.tables.items():
            for chain in table.chains.values():
                self.codes[(tname, chain.name)] = ChainCode(tname, chain, fam)
        self._texts: dict[int, str] = {}
        if strict:
            self._check_strict()

    # ------------------------------------------------------------------ helpers

    def is_local(self, addr: int) -> bool:
        return addr in self._hosts or (addr & self._lo[1]) == self._lo[0]

    def _check_strict(self) -> None:
        for (tname, cname), code in self.codes.items():
            for pos, rule in enumerate(code.rules):
                where = f"{self.source}:{rule.line}" if rule.line else self.source
                if rule.opaque is not None:
                    raise TraceError(f"{tname}/{cname}: unreadable rule", where=where)
                for module in rule.modules():
                    if ext.match(module) is None:
                        raise TraceError(f"{tname}/{cname} #{pos + 1}: unknown match module "
                                         f"{module!r}", where=where)
                c = self._compile(code, pos)
                if c.kind == "unknown":
                    raise TraceError(f"{tname}/{cname} #{pos + 1}: {c.data}", where=where)

    def _compile(self, code: ChainCode, pos: int) -> Compiled:
        rule = code.rules[pos]
        if rule.opaque is not None:
            c = Compiled(Matcher((), ()), "unknown", "rule could not be parsed", rule.opaque)
        else:
            chains = self.ruleset.tables[code.table].chains
            matcher = compile_matches(rule, self.ctx, (code.table, code.name, pos))
            kind, data = compile_target(rule.target, chains, self.family)
            c = Compiled(matcher, kind, data, None)
        code.compiled[pos] = c
        return c

    def rule_text(self, table: str, chain: str, rule: Rule) -> str:
        """The saved-form text of ``rule`` (rendered once, cached)."""
        key = id(rule)
        text = self._texts.get(key)
        if text is None:
            from netproxy.render import rule_text

            try:
                text = rule_text(rule, chain, self.family, saved=True)
            except (ValueError, KeyError, IndexError):
                text = rule_text(rule, chain, self.family, saved=False)
            self._texts[key] = text
        return text

    def _hop(self, code: ChainCode, pos: int, depth: int) -> Hop:
        rule = code.rules[pos]
        return Hop(code.table, code.name, pos + 1, rule.line,
                   render=lambda: self.rule_text(code.table, code.name, rule), depth=depth)

    def _policy_hop(self, code: ChainCode) -> Hop:
        return Hop(code.table, code.name, None, code.chain.line,
                   text=f"-P {code.name} {code.policy}")

    # ------------------------------------------------------------------ public API

    def resolve(self, packet: Packet) -> Resolved:
        lo_net, lo_mask = self._lo
        first = next((ip for ip in self.local_ips
                      if parse_addr(ip, self.family) & lo_mask != lo_net), None)
        local = [(h, (1 << (32 if self.family == "ipv4" else 128)) - 1) for h in self._hosts]
        local.append(self._lo)
        return resolve(packet, self.family, local, first)

    def trace(self, packet: Packet, memory: Memory | None = None) -> TraceResult:
        """Every outcome of ``packet``; ``memory`` carries recent/nth/limit state between
        packets of a sequence (a fresh one when omitted)."""
        pkt = self.resolve(packet)
        walk = Walk(pkt, memory if memory is not None else Memory())
        walk.steps = _OUT if pkt.origin in ("node", "localhost") else _PRE
        outcomes = self._run(walk)
        notes: list[str] = []
        if not walk.nat_ok:
            notes.append("nat table not consulted: the packet is not the first of a "
                         "connection (conntrack " + ",".join(sorted(pkt.ct)) + ")")
        return TraceResult(pkt, outcomes, notes)

    def trace_sequence(self, packets: Sequence[Packet]) -> list[TraceResult]:
        """Trace packets in order; kernel memory (recent lists for session affinity, nth
        counters, limit buckets) carries over, in every world the earlier branches left."""
        worlds: list[tuple[float, Memory, str | None]] = [(1.0, Memory(), None)]
        results: list[TraceResult] = []
        for index, packet in enumerate(packets):
            merged: dict[tuple[Any, ...], Outcome] = {}
            nxt: dict[tuple[Any, ...], list[Any]] = {}
            same = 0.0
            first: TraceResult | None = None
            for weight, memory, previous in worlds:
                res = self.trace(packet, memory)
                first = first or res
                for o in res.outcomes:
                    p = weight * o.probability
                    if index and o.dnat is not None and o.dnat == previous:
                        same += p
                    k = o.key()
                    if k in merged:
                        merged[k].probability += p
                    else:
                        merged[k] = Outcome(p, o.verdict, o.dnat, o.masquerade, o.snat, o.path,
                                            o.reason, o.delivered, None, o.masquerade_flags,
                                            o.final)
                    mem = o.memory or Memory()
                    wk = (mem.key(), o.dnat)
                    if wk in nxt:
                        nxt[wk][0] += p
                    else:
                        nxt[wk] = [p, mem, o.dnat]
            worlds = [(w[0], w[1], w[2]) for w in nxt.values()]
            if len(worlds) > MAX_BRANCHES:
                raise TraceError(f"packet sequence has more than {MAX_BRANCHES} possible states")
            assert first is not None
            results.append(TraceResult(first.packet, list(merged.values()), first.notes,
                                       same if index else None))
        return results

    # ------------------------------------------------------------------ the walk

    def _run(self, start: Walk) -> list[Outcome]:
        todo = [start]
        out: list[Outcome] = []
        while todo:
            w = todo.pop()
            self._advance(w, todo, out)
            if len(out) + len(todo) > MAX_BRANCHES:
                raise TraceError(f"more than {MAX_BRANCHES} branches for one packet",
                                 where=self.source)
        return out

    def _enter(self, w: Walk, hook: str) -> None:
        p = w.pkt.packet
        w.hook = hook
        iif = "lo" if w.looped else p.in_interface
        if w.pkt.origin in ("node", "localhost") and not w.looped:
            iif = ""
        if hook in ("PREROUTING", "INPUT"):
            w.iif, w.oif = iif, ""
        elif hook == "FORWARD":
            w.iif, w.oif = iif, p.out_interface
        else:
            w.iif = ""
            local_out = w.pkt.origin in ("node", "localhost") and self.is_local(w.dst)
            w.oif = "lo" if local_out else p.out_interface

    def _advance(self, w: Walk, todo: list[Walk], out: list[Outcome]) -> None:
        codes = self.codes
        stack = w.stack
        while True:
            if not stack:
                if w.si >= len(w.steps):
                    raise TraceError("internal: walk ran past its last hook")
                hook, table = w.steps[w.si]
                w.si += 1
                if hook == "ROUTE":
                    w.steps = _IN if self.is_local(w.dst) else _FWD
                    w.si = 0
                    continue
                if hook == "LOOP":
                    w.steps = _LOOP if self.is_local(w.dst) else _SENT
                    w.looped = w.steps is _LOOP
                    w.si = 0
                    continue
                if hook == "DONE":
                    out.append(self._outcome(w, "ACCEPT", delivered=table))
                    return
                if table == "nat" and not w.nat_ok:
                    continue
                code = codes.get((table, hook))
                if code is None:
                    continue
                self._enter(w, hook)
                stack.append([code, code.candidates(w.dst, w.pkt.proto, w.dport), 0,
                              (hook,), code])
                continue
            frame = stack[-1]
            code = frame[0]
            cands = frame[1]
            i = frame[2]
            if i >= len(cands):
                stack.pop()
                base = frame[4]
                if base is not None:
                    w.path.append(self._policy_hop(base))
                    if base.policy == "ACCEPT":
                        stack.clear()
                        continue
                    out.append(self._outcome(w, base.policy or "DROP"))
                    return
                continue
            pos = cands[i]
            frame[2] = i + 1
            c = code.compiled[pos]
            if c is None:
                c = self._compile(code, pos)
            w.steps_done += 1
            if w.steps_done > MAX_STEPS:
                raise TraceError(f"walk did not finish within {MAX_STEPS} rule evaluations",
                                 where=self.source)
            r = self._match(c.matcher, w, todo)
            if r is False:
                continue
            hop = self._hop(code, pos, len(stack) - 1)
            w.path.append(hop)
            if r is not True:
                out.append(self._outcome(w, "UNKNOWN", reason=str(r)))
                return
            kind = c.kind
            if kind == "none" or kind == "nop":
                continue
            if kind == "jump" or kind == "goto":
                target = codes[(code.table, c.data)]
                self._check_jump(w, frame, target, pos)
                cands2 = target.candidates(w.dst, w.pkt.proto, w.dport)
                if kind == "jump":
                    stack.append([target, cands2, 0, (target.name,), None])
                else:
                    stack[-1] = [target, cands2, 0, frame[3] + (target.name,), frame[4]]
                continue
            if kind == "ACCEPT":
                stack.clear()
                continue
            if kind == "RETURN":
                stack.pop()
                base = frame[4]
                if base is not None:
                    w.path.append(self._policy_hop(base))
                    if base.policy == "ACCEPT":
                        stack.clear()
                        continue
                    out.append(self._outcome(w, base.policy or "DROP"))
                    return
                continue
            if kind == "DROP" or kind == "REJECT":
                out.append(self._outcome(w, kind))
                return
            if kind == "MARK":
                value, mask = c.data
                w.mark = (w.mark & ~mask & 0xFFFFFFFF) ^ value
                continue
            if kind == "CONNMARK":
                op, a, b = c.data
                if op == "set":
                    w.ctmark = (w.ctmark & ~b & 0xFFFFFFFF) ^ a
                elif op == "save":
                    w.ctmark = (w.ctmark & ~b & 0xFFFFFFFF) ^ (w.mark & a)
                else:
                    w.mark = (w.mark & ~a & 0xFFFFFFFF) ^ (w.ctmark & b)
                continue
            if kind == "notrack":
                w.ct = frozenset({"UNTRACKED"})
                w.nat_ok = False
                continue
            if kind in ("DNAT", "REDIRECT", "SNAT", "MASQUERADE"):
                reason = self._nat(w, kind, c.data, code.table)
                if reason is not None:
                    out.append(self._outcome(w, "UNKNOWN", reason=reason))
                    return
                w.nat_rule = hop
                stack.clear()
                continue
            out.append(self._outcome(w, "UNKNOWN", reason=str(c.data)))
            return

    def _check_jump(self, w: Walk, frame: list[Any], target: ChainCode, pos: int) -> None:
        for f in w.stack:
            if target.name in f[3]:
                names = [n for g in w.stack for n in g[3]] + [target.name]
                line = frame[0].rules[pos].line
                where = f"{self.source}:{line}" if line else self.source
                raise TraceError(f"jump loop in table {target.table}: " + " -> ".join(names),
                                 where=where)
        if len(w.stack) >= MAX_DEPTH:
            line = frame[0].rules[pos].line
            where = f"{self.source}:{line}" if line else self.source
            raise TraceError(f"chains nested deeper than {MAX_DEPTH} (at {frame[0].name} -> "
                             f"{target.name})", where=where)

    def _match(self, m: Matcher, w: Walk, todo: list[Walk]) -> object:
        evals = m.evals
        n = len(evals)
        j = 0
        while j < n:
            r = evals[j](w)
            if r is True:
                j += 1
                continue
            if r is False:
                return False
            if r is FORK:
                p, negated = m.forks[j]
                if negated:
                    p = 1.0 - p
                if p <= 0.0:
                    return False
                if p < 1.0:
                    other = w.fork()
                    other.prob *= 1.0 - p
                    todo.append(other)
                    w.prob *= p
                j += 1
                continue
            # Undecidable: the rule still cannot match if a later side-effect-free match fails.
            for k in range(j + 1, n):
                if not m.pure[k]:
                    break
                later = evals[k](w)
                if later is False:
                    return False
            return r
        return True

    def _nat(self, w: Walk, kind: str, data: Any, table: str) -> str | None:
        if table != "nat":
            return f"-j {kind} outside the nat table"
        if kind == "DNAT" or kind == "REDIRECT":
            if kind == "DNAT":
                addr, port, _text = data
            else:
                port = data
                if w.hook == "OUTPUT":
                    addr = self._lo[0] if self.family == "ipv4" else 1
                    if self.family == "ipv4":
                        addr = 0x7F000001
                else:
                    first = next((a for a in (parse_addr(t, self.family) for t in self.local_ips)
                                  if (a & self._lo[1]) != self._lo[0]), None)
                    if first is None:
                        return "REDIRECT: the incoming interface's address is not known " \
                               "(give --local-ip)"
                    addr = first
            if addr is not None:
                w.dst = addr
            if port is not None:
                w.dport = port
            w.dnat = (w.dst, w.dport)
            w.ct = w.ct | {"DNAT"}
            return None
        if kind == "SNAT":
            addr, port, text = data
            w.snat = text
            if addr is not None:
                w.src = addr
            if port is not None:
                w.sport = port
        else:
            w.masquerade = True
        w.ct = w.ct | {"SNAT"}
        return None

    def _outcome(self, w: Walk, verdict: str, *, reason: str | None = None,
                 delivered: str | None = None) -> Outcome:
        fam = self.family
        dnat = format_endpoint(w.dnat[0], w.dnat[1], fam) if w.dnat is not None else None
        flags = ""
        if w.masquerade and w.nat_rule is not None:
            c = self.codes[(w.nat_rule.table, w.nat_rule.chain)].compiled[w.nat_rule.rule - 1]
            flags = c.data if c is not None and c.kind == "MASQUERADE" else ""
        return Outcome(w.prob, verdict, dnat, w.masquerade, w.snat, w.path, reason, delivered,
                       w.memory, flags, format_endpoint(w.dst, w.dport, fam))


def describe_address(value: int, family: str) -> str:
    return format_addr(value, family)
