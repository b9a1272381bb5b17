"""The walk: netfilter's hooks and tables in kernel order, every branch with its weight.

Hook order by where the packet comes from:

* arriving (``external``/``pod``): PREROUTING (raw, mangle, nat), then the routing decision
  on the node's local addresses: INPUT (mangle, filter, security, nat) for a local
  destination, else FORWARD (mangle, filter, security) and POSTROUTING (mangle, nat);
* generated on the node (``node``/``localhost``): OUTPUT (raw, mangle, nat, filter,
  security) and POSTROUTING (mangle, nat); a local destination then loops back through
  ``lo``: PREROUTING (raw, mangle) and INPUT (mangle, filter, security) -- nat is not
  consulted again because the connection's NAT bindings are already set up.

The routing decision is the node's own when the tracer has a ``router`` (a
:class:`netproxy.node.routing.Router`, from a node snapshot): a route lookup after
PREROUTING nat (after DNAT, as the kernel does) chooses local delivery, forwarding with its
output interface, or a discard (blackhole, unreachable, prohibit, no route); for packets
generated on the node the lookup is made before OUTPUT (the output interface and, when not
given, the source address) and again after OUTPUT nat (a DNAT or a new mark reroutes). An
arriving packet without ``in_interface`` gets the interface the node routes its source to,
stated as inferred. Without a router, only local addresses decide (local versus forwarded).

The nat table is consulted only for the first packet of a connection (conntrack NEW), as
the kernel does; ``NOTRACK`` in raw makes the packet UNTRACKED and skips nat as well.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from netproxy.errors import TraceError
from netproxy.gcpause import paused_gc
from netproxy.netfilter import extensions as ext
from netproxy.netfilter.model import Option, Rule, Ruleset
from netproxy.netfilter.nft import FAMILY_OF, NftRuleset, NftTable
from netproxy.trace.addr import (
    LOOPBACK,
    format_endpoint,
    is_limited_broadcast,
    is_multicast,
    net_of,
    parse_addr,
    parse_net,
)
from netproxy.trace.fields import DS_UNKNOWN, set_ds
from netproxy.trace.hooks import HOOKS, MARKERS, BaseChain, Step, iptables_priority, plan
from netproxy.trace.index import CACHE_MAX, INDEX_MIN_RULES, ChainCode
from netproxy.trace.ipsets import known_fact
from netproxy.trace.ipvs import DELIVERED as IPVS_DELIVERED
from netproxy.trace.ipvs import IpvsNode
from netproxy.trace.matches import (
    FORK,
    Context,
    Matcher,
    compile_matches,
    local_cond,
    local_flag,
)
from netproxy.trace.nftrules import NftRules
from netproxy.trace.packet import ORIGINS, Packet, Resolved, resolve
from netproxy.trace.result import Hop, Outcome, TraceResult
from netproxy.trace.state import Cond, Memory, Walk, ct_with
from netproxy.trace.targets import compile_target, plain_dnat

MAX_DEPTH = 1000
"""Deepest chain nesting followed (iptables-nft refuses more than 16; legacy has no fixed
limit, but a ruleset nested this deep is a generated mistake)."""
MAX_BRANCHES = 50_000
MAX_HOPS = 20_000
"""Longest path of one branch: chains re-entered over and over (legal, but a generated
mistake at this size) end with a clear error instead of running for hours."""



class Compiled:
    """A rule ready to evaluate: its matcher and target."""

    __slots__ = ("addr", "matcher", "kind", "data")

    def __init__(self, addr: tuple[tuple[bool, int, int, bool], ...], matcher: Matcher,
                 kind: str, data: Any) -> None:
        self.addr = addr
        """Source/destination matches as (is_source, network, mask, negated): checked first,
        as the kernel's ip header match is, and kept out of the shared matcher."""
        self.matcher = matcher
        self.kind = kind
        self.data = data


_UNPARSED = Compiled((), Matcher((), ()), "unknown", "the rule could not be parsed")
_LOOKUP = Matcher((), (True,))
"""What an nft lookup (a ``dyn`` action) is to :meth:`Tracer._note_eval`: pure, reads the
packet (lookups with side effects end the recording themselves)."""

_CAND, _ADDR, _EVAL, _NAT, _ROUTE, _STATE = 0, 1, 2, 3, 4, 5
"""What a base chain summary's checks are: a chain index lookup, a rule's address matches,
an evaluator that reads addresses or ports, and (last) the NAT the chain ended with; a
tail's also the routing decision, and the walk's state where its next checks were made
(:meth:`Tracer._state`)."""
SUMMARY_KEYS = 20_000
"""Entry states summarized at most (they hold the facts a branch assumed, so a capture with
many unplaced addresses would otherwise add some with every packet)."""
SUMMARIES_PER_KEY = 16
"""Summaries kept for one base chain and entry state (each for other addresses or ports).
When that many do not fit three branches in four, the key is given up: its branches are
walked (a chain whose walk depends on each packet's address, like a nat chain that leads
to a different Service for each)."""


class Tail:
    """What the rest of a branch's walk did after its NAT, to the packet's delivery, for any
    branch that has the same key there (:meth:`Tracer._tail_key`) and passes the same
    ``checks`` (the base chains' checks, and the routing decision on its destination): the
    hops, the marks, conntrack state and stated defaults it left, the NATs on the way (with
    their hooks) and how the packet was delivered."""

    __slots__ = ("checks", "path", "mark", "ctmark", "ct", "nat_ok", "assumed", "nats",
                 "delivered")

    def __init__(self, rec: list[Any], path: tuple[Any, ...], w: Walk, delivered: str) -> None:
        self.checks = _asked(c for c in rec if c[0] != _NAT)
        self.nats = tuple(c[1:] for c in rec if c[0] == _NAT)
        self.path = path
        self.mark = w.mark
        self.ctmark = w.ctmark
        self.ct = w.ct
        self.nat_ok = w.nat_ok
        self.assumed = w.assumed
        self.delivered = delivered


def _asked(checks: Iterable[Any]) -> tuple[Any, ...]:
    """The checks without the ``_STATE`` entries no evaluator was asked in (before the next
    one, or at the end): only evaluators read the state."""
    out: list[Any] = []
    unasked: int | None = None  # where the last state no evaluator was asked in is
    for check in checks:
        if check[0] == _STATE:
            if unasked is not None:
                del out[unasked]
            unasked = len(out)
        elif check[0] == _EVAL:
            unasked = None
        out.append(check)
    if unasked is not None:
        del out[unasked]
    return tuple(out)


def _given_up(slot: list[Any]) -> bool:
    """Whether a key's summaries or tails are given up: as many as a key keeps, and they fit
    fewer than one branch in four of at least four times that many tries."""
    return (len(slot[0]) >= SUMMARIES_PER_KEY and slot[1] >= 4 * SUMMARIES_PER_KEY
            and slot[2] * 4 < slot[1])


def _take_state(w: Walk, done: Summary | Tail) -> None:
    """The marks, conntrack state and stated defaults a recorded walk left, on ``w``."""
    w.mark, w.ctmark, w.ct = done.mark, done.ctmark, done.ct
    w.nat_ok, w.assumed = done.nat_ok, done.assumed


class Summary:
    """What walking one base chain did, for any branch that enters it in the same state
    (its key: the chain, marks, conntrack state, interfaces, stated defaults and facts, the
    packet's fixed fields) and passes the same ``checks``: those of the packet's addresses
    and ports that the walk read, each with the answer it got. The hops it added, the marks,
    conntrack state and stated defaults it left, and the NAT it ended with (or None: the
    chain accepted or returned) follow."""

    __slots__ = ("checks", "path", "mark", "ctmark", "ct", "nat_ok", "assumed", "nat")

    def __init__(self, checks: tuple[Any, ...], path: tuple[Any, ...], w: Walk,
                 nat: tuple[str, Any, bool] | None) -> None:
        self.checks = checks
        self.path = path
        self.mark = w.mark
        self.ctmark = w.ctmark
        self.ct = w.ct
        self.nat_ok = w.nat_ok
        self.assumed = w.assumed
        self.nat = nat
_NO_EXTRA: dict[str, Any] = {}
"""No DS field, uid or facts for a route lookup (no policy rule selects by them)."""
_NO_CACHE_MODULES = frozenset({"limit", "statistic"})
"""Rules with per-rule kernel state (limit buckets, nth counters) get their own matcher."""
_IGNORED_IN_KEY = frozenset({"comment", "nfacct"})


class Tracer:
    """Walks packets through one ruleset. Build once (indexes big chains), trace many."""

    def __init__(self, ruleset: Ruleset, local_ips: Iterable[str] | None = (), *,
                 ipsets: dict[str, Any] | None = None, strict: bool = False,
                 pod_cidrs: Iterable[str] = (), assume: bool = False,
                 router: Any = None, nft: Sequence[NftRuleset] = (),
                 ipvs_device: Iterable[str] | None = None) -> None:
        """``assume``: answer anyway where context is missing -- an interface or bridge
        port not given takes a stated default, an unknowable fact (ipset contents, whether
        an address is the node's) forks into both cases. With ``local_ips=None`` the node's
        addresses are those the dump reveals (stated in ``notes``) and any other address is
        such a fact; a list, even empty, is the node's complete set of addresses.

        ``nft``: nftables listings walked together with ``ruleset`` (which may be empty):
        their base chains of the ruleset's family (ip or ip6, and inet) join each hook by
        priority.

        ``ipvs_device``: the addresses on kube-ipvs0 when the node says (a snapshot's ip
        addr; they are in ``local_ips`` too). Otherwise, in IPVS mode, the addresses of
        kube-proxy's Service sets are the node's as well (see :mod:`netproxy.trace.ipvs`)."""
        self.assume = assume and not strict
        infer = local_ips is None
        local_ips = local_ips or ()
        pod_cidrs = list(pod_cidrs)
        self.inferred: list[str] = []
        """What was inferred from the dump (stated with every result)."""
        service_ips: set[int] = set()
        service_nets: list[tuple[int, int]] = []
        several = len(nft) + bool(ruleset.tables) > 1
        if infer or (self.assume and not pod_cidrs):
            from netproxy.trace.inferred import infer_nft_node, infer_node

            # kube-proxy's iptables rules and its nftables table alike (a node may hold both)
            facts = infer_node(ruleset, source=ruleset.source if several else None)
            if nft:
                facts.merge(infer_nft_node(nft, ruleset.family, several=several))
            if infer:
                local_ips = [a for a, _ in facts.addresses]
                self.inferred += [f"{a} is a node address ({why})" for a, why in facts.addresses]
                self.inferred += facts.ranges
                self.inferred += facts.services
            if not pod_cidrs:
                pod_cidrs = [c for c, _ in facts.pod_cidrs]
                self.inferred += [f"{c} is the pod network, not the node's ({why})"
                                  for c, why in facts.pod_cidrs]
            service_ips = facts.service_ips
            service_nets = facts.service_nets
        self._complete = not (infer and self.assume)
        """The node's addresses are all known (given): any other address is remote."""
        self._service_ips = frozenset(service_ips)
        self._service_nets = tuple(service_nets)
        """Service CIDRs: no address in them is the node's (nftables mode says so)."""
        self.ruleset = ruleset
        self.family = ruleset.family
        self.source = ruleset.source
        fam = self.family
        self.local_ips: list[str] = []
        hosts: set[int] = set()
        for text in local_ips:
            other = "ipv6" if fam == "ipv4" else "ipv4"
            try:
                hosts.add(parse_addr(text, fam))
            except ValueError as err:
                try:
                    parse_addr(text, other)
                except ValueError:
                    raise TraceError(f"bad --local-ip: {err}") from None
                continue  # an address of the other family can never be a packet's
            self.local_ips.append(text)
        self._first_cache: tuple[tuple[str, ...], str | None] | None = None
        self.router = router
        """The node's routing (``lookup``/``reverse``/``is_local``/``local_hosts``/
        ``local_nets``, as :class:`netproxy.node.routing.Router`), or None."""
        self._local_nets: tuple[tuple[int, int], ...] = ()
        if router is not None:
            hosts |= router.local_hosts
            self._local_nets = tuple(router.local_nets)
        self.ipvs = IpvsNode(ruleset, fam, ipsets, given=not infer, assume=self.assume,
                             on_device=ipvs_device)
        hosts |= self.ipvs.hosts
        if self.ipvs.open:
            self._complete = False  # its Service addresses are placed by set facts
        self._hosts = frozenset(hosts)
        self._local_nets_of_hosts: list[tuple[int, int]] | None = None
        """The node's addresses as host networks, and loopback (made on first use)."""
        self._pods: list[tuple[int, int]] = []
        """Pod networks: a source inside one (and not local) is labelled ``pod``."""
        for text in pod_cidrs:
            try:
                self._pods.append(parse_net(text, fam))
            except ValueError:
                continue  # a CIDR of the other family
        self._lo = LOOPBACK[fam]
        self.ctx = Context(fam, self.is_local, ipsets, assume=self.assume,
                           placed=None if self._complete else self.placed,
                           bound_only=self.ipvs.open)
        self.codes: dict[tuple[str, str], ChainCode] = {}
        self._matchers: dict[Any, Matcher] = {}
        self._targets: dict[Any, tuple[str, Any]] = {}
        self._texts: dict[int, str] = {}
        self.summaries = True
        """Walk a base chain once per entry state and replay it for the branches and
        packets that enter it alike (see :meth:`_replay`), and the rest of a walk after a
        DNAT likewise (:meth:`_replay_tail`); False walks every branch."""
        self._summaries: dict[tuple[Any, ...], list[Any]] = {}
        """Key -> [summaries, branches that looked for one, branches that found one]."""
        self._delivered: dict[int, bool | None] = {}
        """Destination -> :meth:`_delivered_known`'s answer before the branch's facts."""
        self._tails: dict[tuple[Any, ...], list[Any]] = {}
        """Tail key -> [tails, branches that looked for one, branches that found one]."""
        with paused_gc():
            for tname, table in ruleset.tables.items():
                for chain in table.chains.values():
                    if chain.policy is not None or len(chain.rules) >= INDEX_MIN_RULES:
                        code = self.codes[(tname, chain.name)] = ChainCode(tname, chain, fam)
                        code.table_chains = table.chains
        self.notes: list[str] = []
        """Facts about the ruleset shown with every result."""
        self.notes += self.ipvs.notes
        bases = [BaseChain(hook, prio, 0, tname, hook, tname == "nat")
                 for tname, table in ruleset.tables.items() for hook in table.chains
                 if hook in HOOKS.values() and table.chains[hook].policy is not None
                 and (prio := iptables_priority(tname, hook)) is not None]
        self._nft_tables: dict[str, NftTable] = {}
        self._nft: NftRules | None = None
        self._several = several
        """Rules from several files: nft hops name their file beside the line."""
        if nft:
            bases += self._add_nft(nft)
        # Hook sequences without the chains that cannot have an effect (absent, or empty
        # with policy ACCEPT), so the walk does not step through them for every branch.
        self._steps: dict[str, tuple[Step, ...]] = {
            name: tuple(step for step in seq if self._may_act(*step))
            for name, seq in plan(bases).items()}
        if strict:
            self._check_strict()

    def _may_act(self, hook: str, table: str, chain: str) -> bool:
        if hook in MARKERS:
            return True
        if hook == "REROUTE":
            return self.router is not None
        code = self.codes.get((table, chain))
        return code is not None and bool(code.rules or code.policy != "ACCEPT")

    def _add_nft(self, listings: Sequence[NftRuleset]) -> list[BaseChain]:
        """Register the nftables tables a packet of this family walks; their base chains."""
        from netproxy.trace.nftrules import NftChainCode

        self._nft = NftRules(self.family, self.ctx, self.router)
        families = FAMILY_OF[self.family]
        bases: list[BaseChain] = []
        order = 0
        for listing in listings:
            for table in listing.tables.values():
                if table.family not in families:
                    if table.family in ("arp", "bridge", "netdev") and table.chains:
                        self.notes.append(f"table {table.label} ({listing.source}): the "
                                          f"{table.family} family is not traced")
                    continue
                label = table.label
                known = self._nft_tables.get(label)
                if known is not None:
                    # The same table in several listings (a listing of its base chains and
                    # one of its service chains, say): one table, as `nft -f` of both makes.
                    twice = sorted((set(known.chains) & set(table.chains))
                                   | (set(known.sets) & set(table.sets)))
                    if twice:
                        raise TraceError(f"table {label}: {twice[0]!r} is in two listings",
                                         where=listing.source)
                    table = replace(table, chains={**known.chains, **table.chains},
                                    sets={**known.sets, **table.sets},
                                    objects=[*known.objects, *table.objects],
                                    flowtables={**known.flowtables, **table.flowtables})
                self._nft_tables[label] = table
                for ft in table.flowtables.values():
                    self.notes.append(f"flowtable {ft.name} in {label}: offloaded connections "
                                      "skip the hooks after their first packets (not traced)")
                for chain in table.chains.values():
                    if known is not None and chain.name in known.chains:
                        continue
                    code = NftChainCode(label, table, chain, listing.source)
                    self.codes[(label, chain.name)] = code
                    if not chain.base:
                        continue
                    hook = HOOKS.get(chain.hook or "")
                    if hook is None or chain.priority is None:
                        self.notes.append(f"{label}/{chain.name}: hook {chain.hook} is not "
                                          "traced")
                        continue
                    order += 1
                    bases.append(BaseChain(hook, chain.priority, order, label, chain.name,
                                           chain.type == "nat"))
        return bases

    # ------------------------------------------------------------------ helpers

    def is_local(self, addr: int) -> bool:
        if addr in self._hosts or (addr & self._lo[1]) == self._lo[0]:
            return True
        return bool(self._local_nets) and any(addr & m == n for n, m in self._local_nets)

    def placed(self, addr: int) -> bool | None:
        """Whether ``addr`` is the node's: None when the tracer cannot tell (the node's
        addresses were not given, and nothing the dump reveals places it)."""
        if self.is_local(addr):
            return True
        if self._complete or addr in self._service_ips:
            return False
        if any(addr & m == n for n, m in self._service_nets):
            return False
        if is_multicast(addr, self.family) or is_limited_broadcast(addr, self.family):
            return False
        if any(addr & m == n for n, m in self._pods):
            return False
        return None

    def _local_fact(self, w: Walk, addr: int, todo: list[Walk] | None, rewind: bool) -> bool:
        """Whether ``addr`` is the node's on this branch; forks on it when nobody knows
        (the other branch re-does the current step with the opposite answer)."""
        here = self.placed(addr)
        if here is not None:
            return here
        known = known_fact(w.facts, ("local", addr), self.ctx.bound_only)
        if known is not None:
            return known
        if todo is None:
            return False
        self._fork_on(w, local_cond(addr, self.family, local_flag(self.ctx)), todo, rewind)
        return True

    @staticmethod
    def _fork_on(w: Walk, cond: Cond, todo: list[Walk], rewind: bool) -> None:
        """Both cases of a fact nobody gave: this branch assumes ``cond``, a copy (onto
        ``todo``) its opposite and, with ``rewind``, re-does the current step."""
        other = w.fork()
        other.assume(cond, False)
        if rewind:
            other.si -= 1
        todo.append(other)
        w.assume(cond, True)
    def _delivered_here(self, w: Walk, todo: list[Walk]) -> bool:
        """The routing decision: a local address, or multicast / limited broadcast (which the
        node receives; multicast routing is not modelled)."""
        addr = w.dst
        return (is_multicast(addr, self.family) or is_limited_broadcast(addr, self.family)
                or self._local_fact(w, addr, todo, True))

    def code(self, table: str, chain: str) -> ChainCode:
        """The prepared chain (made on first use for small chains)."""
        found = self.codes.get((table, chain))
        if found is None:
            if table in self._nft_tables:
                raise TraceError(f"{table}: no chain {chain!r}")
            chains = self.ruleset.tables[table].chains
            found = self.codes[(table, chain)] = ChainCode(table, chains[chain], self.family)
            found.table_chains = chains
        return found

    def _check_strict_nft(self) -> None:
        assert self._nft is not None or not self._nft_tables
        for label, nft_table in self._nft_tables.items():
            for cname, chain in nft_table.chains.items():
                code = self.codes[(label, cname)]
                for pos, nft_rule in enumerate(chain.rules):
                    self._compile(code, pos)
                    assert self._nft is not None
                    if self._nft.unmodelled:
                        where = f"{self.source}:{nft_rule.line}"
                        src = getattr(code, "source", self.source)
                        where = f"{src}:{nft_rule.line}" if nft_rule.line else src
                        raise TraceError(f"{label}/{cname} #{pos + 1}: "
                                         f"{self._nft.unmodelled[0]}", where=where)

    def _check_strict(self) -> None:
        self._check_strict_nft()
        for tname, table in self.ruleset.tables.items():
            for cname in table.chains:
                code = self.code(tname, cname)
                for pos, rule in enumerate(code.rules):
                    where = f"{self.source}:{rule.line}" if rule.line else self.source
                    if rule.opaque is not None:
                        raise TraceError(f"{tname}/{cname}: unreadable rule", where=where)
                    for module in rule.modules():
                        if ext.match(module) is None:
                            raise TraceError(f"{tname}/{cname} #{pos + 1}: unknown match "
                                             f"module {module!r}", where=where)
                    c = self._compile(code, pos)
                    if c.kind == "unknown":
                        raise TraceError(f"{tname}/{cname} #{pos + 1}: {c.data}", where=where)

    def _compile(self, code: ChainCode, pos: int) -> Compiled:
        if self._nft is not None and code.table in self._nft_tables:
            nft_table = self._nft_tables[code.table]
            nft_rule = nft_table.chains[code.name].rules[pos]
            nft_matcher, nft_kind, nft_data = self._nft.compile(code.table, nft_table, nft_rule)
            compiled = Compiled((), nft_matcher, nft_kind, nft_data)
            code.compiled[pos] = compiled
            return compiled
        rule = code.rules[pos]
        if rule.opaque is not None:
            code.compiled[pos] = _UNPARSED
            return _UNPARSED
        # Rules that differ only in comments share one matcher (kube-proxy's SEP and SVC
        # rules repeat the same few match shapes thousands of times).
        # Addresses are checked outside the matcher, so rules differing only in them share it.
        addr: list[tuple[bool, int, int, bool]] = []
        key_items: list[Option] = []
        bad_addr = False
        family = self.family
        for o in rule.matches:
            module, name, args, negated = o
            if module:
                if module not in _IGNORED_IN_KEY:
                    key_items.append(o)
                continue
            if name == "source" or name == "destination":
                try:
                    net, mask = net_of(args[0], family)
                except (ValueError, IndexError):
                    bad_addr = True
                    key_items.append(o)
                    continue
                addr.append((name == "source", net, mask, negated))
                continue
            key_items.append(o)
        key: tuple[Option, ...] | None = tuple(key_items)
        try:
            matcher = self._matchers.get(key)
        except TypeError:  # an option built in code with list arguments
            key, matcher = None, None
        if matcher is None:
            matcher = compile_matches(rule, self.ctx, (code.table, code.name, pos),
                                      skip_addresses=not bad_addr)
            if key is not None and not any(
                    o.module in _NO_CACHE_MODULES and o.name == "mode" and o.value != "random"
                    or o.module == "limit" for o in key):
                self._matchers[key] = matcher
        t = rule.target
        chains = code.table_chains
        target: tuple[str, Any] | None
        if t is None:
            target = ("none", None)
        elif not t.options and t.name in chains:  # a jump: to the chain, prepared now
            target = ("goto" if t.goto else "jump", self.code(code.table, t.name))
        elif (t.name == "DNAT" and len(t.options) == 1 and t.name not in chains
              and (plain := plain_dnat(t.options[0], self.family)) is not None):
            # One per endpoint, each different: not worth a cache entry.
            target = plain
        else:
            tkey: Any = (code.table, t.name, t.options, t.goto)
            try:
                target = self._targets.get(tkey)
            except TypeError:
                tkey, target = None, None
            if target is None:
                target = compile_target(t, chains, self.family)
                if tkey is not None:
                    self._targets[tkey] = target
        c = Compiled(() if bad_addr else tuple(addr), matcher, target[0], target[1])
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

    def hop(self, code: ChainCode, pos: int | None, depth: int) -> Hop:
        """A path entry as a :class:`Hop` (``pos`` None: the chain policy)."""
        if code.table in self._nft_tables:
            return self._nft_hop(code, pos, depth)
        if pos is None:
            return Hop(code.table, code.name, None, code.chain.line,
                       text=f"-P {code.name} {code.policy}", depth=depth)
        rule = code.rules[pos]
        return Hop(code.table, code.name, pos + 1, rule.line,
                   render=lambda: self.rule_text(code.table, code.name, rule), depth=depth)

    def hops(self, raw: list[tuple[Any, int | None, int]]) -> list[Hop]:
        """A branch's path, kept as (chain, rule position, depth) while walking, as hops."""
        return [self.hop(code, pos, depth) for code, pos, depth in raw]

    def _nft_hop(self, code: Any, pos: int | None, depth: int) -> Hop:
        source = code.source if self._several else None
        if pos is None:
            return Hop(code.table_name, code.name, None, code.chain.line,
                       text=f"policy {code.policy.lower()}", depth=depth,
                       family=code.family_name, source=source)
        rule = code.chain.rules[pos]
        return Hop(code.table_name, code.name, pos + 1, rule.line, text=rule.text, depth=depth,
                   family=code.family_name, handle=rule.handle, source=source)

    # ------------------------------------------------------------------ public API

    def first_local(self) -> str | None:
        """The node's first address that is not loopback (the source it masquerades to)."""
        key = tuple(self.local_ips)
        cached = self._first_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        lo_net, lo_mask = self._lo
        found = next((ip for ip in self.local_ips
                      if parse_addr(ip, self.family) & lo_mask != lo_net), None)
        self._first_cache = (key, found)
        return found

    def resolve(self, packet: Packet) -> Resolved:
        first = self.first_local()
        local = self._local_nets_of_hosts
        if local is None:
            full = (1 << (32 if self.family == "ipv4" else 128)) - 1
            local = self._local_nets_of_hosts = [*((h, full) for h in self._hosts), self._lo]
        return resolve(packet, self.family, local, first, self._pods)

    def trace(self, packet: Packet, memory: Memory | None = None,
              conn: tuple[str, Any] | None = None,
              facts: dict[Any, tuple[bool, Cond]] | None = None) -> TraceResult:
        """Every outcome of ``packet``; ``memory`` carries recent/nth/limit state between
        packets of a sequence (a fresh one when omitted); ``conn``: the connection a later
        packet belongs to, whose NAT applies (see :attr:`Walk.conn`); ``facts``: unknown
        facts the world of an earlier packet assumed (a sequence's case), which this walk
        takes as given and its outcomes carry."""
        inferred: dict[str, str] = {}
        first_route = None
        if self.router is not None:
            packet, first_route = self._infer(packet, inferred)
        pkt = self.resolve(packet)
        if facts and packet.origin is None and pkt.origin not in ("node", "localhost"):
            pkt, packet = self._origin_of_case(pkt, packet, facts, inferred)
        if (self.router is not None and pkt.origin not in ("node", "localhost")
                and packet.in_interface is None):
            back = self.router.reverse(pkt.src, mark=packet.mark)
            if back.dev and not back.refused:
                packet = packet.with_(in_interface=back.dev)
                pkt = replace(pkt, packet=packet)
                inferred["in_interface"] = back.dev
                inferred["in_interface_why"] = (f"the node routes {pkt.src_text} to "
                                                f"{back.dev}: {back.describe()}")
        if self.router is not None:
            packet = self._bridge_facts(packet, pkt.origin, inferred, pkt.dst)
            if packet is not pkt.packet:
                pkt = replace(pkt, packet=packet)
        walk = Walk(pkt, memory if memory is not None else Memory())
        walk.conn = conn
        if facts:
            walk.facts = dict(facts)
        walk.steps = self._steps["out" if pkt.origin in ("node", "localhost") else "pre"]
        starts = [walk]
        if self.router is not None and pkt.origin in ("node", "localhost"):
            if first_route is not None:
                walk.route = first_route
            else:  # a route that depends on an unknown fact: one start per case
                starts, pending = [], [walk]
                while pending:
                    w = pending.pop()
                    w.route = self._routed(w, pending, arriving=False, rewind=False)
                    starts.append(w)
        outcomes = self._run(starts)
        if self.ipvs.active:
            self._ipvs_deliveries(outcomes, pkt)
        independent: list[str] = []
        if self.assume:
            from netproxy.trace.cases import settle

            outcomes, independent = settle(outcomes)
        notes: list[str] = list(self.notes)
        notes += [f"inferred: {text}" for text in self.inferred]
        if "src" in inferred:
            notes.append(f"inferred: source {inferred['src']} ({inferred.pop('src_why')})")
        if "in_interface" in inferred:
            notes.append(f"inferred: input interface {inferred['in_interface']} "
                         f"({inferred.pop('in_interface_why')})")
        if "bridge" in inferred:
            notes.append(f"inferred: {inferred['bridge']} ({inferred.pop('bridge_why')})")
        if "origin" in inferred:
            notes.append(inferred.pop("origin"))
        if self.router is not None:  # what the routing decisions took as given
            for o in outcomes:
                for text in o.route.notes if o.route is not None else ():
                    if f"routing: {text}" not in notes:
                        notes.append(f"routing: {text}")
        if not walk.nat_ok:
            notes.append("nat table not consulted: the packet is not the first of a "
                         "connection (conntrack " + ",".join(sorted(pkt.ct)) + ")")
        result = TraceResult(pkt, outcomes, notes)
        result.independent = independent
        result.inferred = inferred
        return result

    def _origin_of_case(self, pkt: Resolved, packet: Packet, facts: dict[Any, Any],
                        inferred: dict[str, str]) -> tuple[Resolved, Packet]:
        """A later packet of a sequence from an address its case made the node's (a Service
        address kube-proxy binds to kube-ipvs0, say) is the node's own packet there."""
        if known_fact(facts, ("local", pkt.src), self.ctx.bound_only) is not True:
            return pkt, packet
        packet = packet.with_(origin="node")
        inferred["origin"] = (
            f"where its case makes {pkt.src_text} the node's, the packet is the node's own"
            + ("; a reply IPVS sends for a connection it took is its rewrite of the "
               "endpoint's reply, which is not traced" if self.ipvs.active else ""))
        return self.resolve(packet), packet

    def _ipvs_deliveries(self, outcomes: list[Outcome], pkt: Resolved) -> None:
        """A packet delivered to the node at a Service address of kube-proxy's IPVS mode is
        IPVS's from there on (not traced), not a local socket's."""
        for o in outcomes:
            if o.verdict != "ACCEPT" or o.delivered != "local":
                continue
            addr, port = o.raw_dnat if o.raw_dnat is not None else (pkt.dst,
                                                                    pkt.packet.dport)
            if self.ipvs.takes_over(addr, pkt.proto, port, o.assumes):
                o.delivered = IPVS_DELIVERED

    def _infer(self, packet: Packet, inferred: dict[str, str]) -> tuple[Packet, Any]:
        """A packet the node generates without a source takes its route's ``src``."""
        if packet.src is not None or ORIGINS.get(packet.origin or "") not in ("node",):
            return packet, None
        try:
            dst = parse_addr(packet.dst, self.family)
        except ValueError:
            return packet, None  # resolve() says what is wrong
        decision = self.router.lookup(dst, mark=packet.mark, **self._route_fields(
            packet.tos, packet.uid, None))
        if decision.kind == "undecided":
            return packet, None  # the route depends on a fact each case assumes
        if decision.src is None:
            return packet, decision
        inferred["src"] = decision.src
        inferred["src_why"] = f"the preferred source of {decision.describe()}"
        return packet.with_(src=decision.src), decision

    def _bridge_facts(self, packet: Packet, origin: str, inferred: dict[str, str],
                      dst: int) -> Packet:
        """What the node's links and sysctls say about bridge ports (``-m physdev``): with
        bridged traffic kept out of iptables, or no bridge on the node, physdev never
        matches; nor does it for a packet that entered through no bridge port (the node's
        own, or one arriving on an interface without ports), which carries no bridge
        information at all. A packet arriving on a bridge for a destination off the bridge's
        own networks is routed, not bridged: the IP hooks never know its output port, and its
        input port is the bridge's only port when it has one (see
        :meth:`netproxy.node.routing.Router.routed_off_bridge`)."""
        if (packet.bridged is not None or packet.physdev_in is not None
                or packet.physdev_out is not None):
            return packet
        calls, masters, why = getattr(self.router, "bridging", (None, None, ""))
        if calls is False:
            inferred["bridge"] = "not bridged"
            inferred["bridge_why"] = f"{why}: bridged traffic does not pass iptables"
            return packet.with_(bridged=False)
        if masters is None:
            return packet
        if not masters:
            inferred["bridge"] = "not bridged"
            inferred["bridge_why"] = "no interface of the node has ports: no bridge"
            return packet.with_(bridged=False)
        iif = packet.in_interface
        if origin in ("node", "localhost"):
            inferred["bridge"] = "not bridged"
            inferred["bridge_why"] = "the node's own packet enters through no bridge port"
            return packet.with_(bridged=False)
        if iif and iif not in masters:
            inferred["bridge"] = "arrived through no bridge port"
            inferred["bridge_why"] = (f"{iif} has no ports: it is not a bridge, so no bridge "
                                      "port applies, in or out")
            return packet.with_(bridged=False)
        router = self.router
        routed = router.routed_off_bridge(iif, dst) if iif else None
        if not iif:
            return packet
        ports = router.ports.get(iif, ())
        fields: dict[str, str] = {}
        whys: list[str] = []  # how each port was found
        only = len(ports) == 1
        if only:
            fields["physdev_in"] = ports[0]
            in_text = f"in through its only port {ports[0]}"
        else:  # the port behind which the source's hop was learned
            try:
                src = parse_addr(packet.src or "", self.family)
            except ValueError:
                src = None
            port, why = router.bridge_port(iif, src) if src is not None else (None, "")
            in_text = f"in through {port}" if port else ""
            if port:
                fields["physdev_in"] = port
                whys.append(why)
        if routed:
            fields["physdev_out"] = ""
            inferred["bridge"] = (f"routed by {iif}, not bridged: no output bridge port"
                                  + (f", {in_text}" if in_text else ""))
            inferred["bridge_why"] = "; ".join([routed, *whys])
            return packet.with_(**fields)
        # A neighbour on the bridge's own network: bridged port to port, out by the port
        # behind which the destination's MAC is.
        port, why = router.bridge_port(iif, dst)
        if port:
            fields["physdev_out"] = port
            whys.append(why)
        if not fields:
            return packet
        texts = [f"bridged by {iif}"] if port else [f"arrived on the bridge {iif}"]
        if "physdev_in" in fields:
            texts.append(f"from port {fields['physdev_in']}")
        if port:
            texts.append(f"to port {port}")
        inferred["bridge"] = " ".join(texts)
        inferred["bridge_why"] = "; ".join((["its only port"] if only else []) + whys)
        return packet.with_(**fields)

    def _route(self, w: Walk, *, arriving: bool) -> Any:
        """The router's decision for the branch as it is now."""
        pkt = w.pkt
        iif = (pkt.packet.in_interface or "") if arriving else None
        extra = self._route_fields(w.ds, 0 if arriving else pkt.packet.uid, w) \
            if getattr(self.router, "selects_more", False) else _NO_EXTRA
        return self.router.lookup(w.dst, src=w.src if arriving or pkt.packet.src else None,
                                  mark=w.mark, iif=iif, proto=pkt.proto, sport=w.sport,
                                  dport=w.dport, **extra)

    def _route_fields(self, ds: Any, uid: int | None, w: Walk | None) -> dict[str, Any]:
        """What a route lookup needs when policy rules select by the DS field, the uid or
        the VRF: the field (a packet's own, or a walk's ``(value, known, flip)``), the uid
        and the facts the branch assumed about them."""
        if not getattr(self.router, "selects_more", False):
            return _NO_EXTRA
        if ds is None or type(ds) is int:
            ds = DS_UNKNOWN if ds is None else (ds, 0xFF, 0)
        facts: tuple[Any, ...] = ()
        if w is not None and w.facts:
            facts = tuple(sorted(((k, v[0]) for k, v in w.facts.items()
                                  if k[0] in ("ds", "owner")), key=repr))
        return {"ds": ds, "uid": uid, "facts": facts, "ask": True}

    def _routed(self, w: Walk, todo: list[Walk], *, arriving: bool, rewind: bool = True) -> Any:
        """:meth:`_route`, forking on a fact the policy rules need and nobody gave (the DS
        field, the sender's uid): this branch assumes it, a copy (onto ``todo``) its
        opposite and, with ``rewind``, re-does the current step."""
        while True:
            decision = self._route(w, arriving=arriving)
            if decision.kind != "undecided" or not self.assume:
                return decision
            key, text, text_not, flag = decision.needs
            self._fork_on(w, Cond(key, text, text_not, flag), todo, rewind)

    def _refused(self, w: Walk, decision: Any) -> Outcome:
        """A discard by the routing decision: blackhole and not forwarding are silent (DROP);
        unreachable, prohibit and no route answer with an ICMP error (REJECT)."""
        if decision.kind == "undecided":
            return self._outcome(w, "UNKNOWN", reason=f"routing: {decision.describe()}")
        verdict = "DROP" if decision.silent else "REJECT"
        return self._outcome(w, verdict, reason=f"routing: {decision.describe()}")

    def trace_sequence(self, packets: Iterable[Packet]) -> list[TraceResult]:
        """Trace packets in order; kernel memory (recent lists for session affinity, nth
        counters, limit buckets) carries over, in every world the earlier branches left
        (see :mod:`netproxy.trace.sequence`)."""
        from netproxy.trace.sequence import trace_stream

        return list(trace_stream({self.family: self}, packets))

    # ------------------------------------------------------------------ the walk

    def _run(self, start: Walk | list[Walk]) -> list[Outcome]:
        todo = list(start) if isinstance(start, list) else [start]
        out: list[Outcome] = []
        with paused_gc():  # branches are freed by reference counting; no cycles to find
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
        local_origin = w.pkt.origin in ("node", "localhost")
        iif = "lo" if w.looped else ("" if local_origin else p.in_interface)
        oif = p.out_interface
        if oif is None and w.route is not None and w.route.dev:
            oif = w.route.dev
        if hook == "PREROUTING" or hook == "INPUT":
            w.iif, w.oif = iif, ""
        elif hook == "FORWARD":
            w.iif, w.oif = iif, oif
        else:
            w.iif = ""
            w.oif = ("lo" if local_origin and self._local_fact(w, w.dst, None, False)
                     else oif)

    def _advance(self, w: Walk, todo: list[Walk], out: list[Outcome]) -> None:
        """Run one branch until it ends (outcome appended); forks go onto ``todo``."""
        codes = self.codes
        stack = w.stack
        path = w.path
        proto = w.pkt.proto
        match = self._match
        steps = self._steps
        while True:
            if w.pending is not None:  # a branch of an nft numgen lookup takes its action
                kind, data, pos = w.pending
                w.pending = None
                frame = stack[-1]
                code = frame[0]
                if kind == "dyn":  # the branch first records its own state (numgen inc)
                    kind, data = data(w)
                if kind == "none":
                    continue
            elif not stack:
                if w.rec is not None:  # a base chain walked to the end: summarize it
                    self._remember(w)
                if w.tail_next:  # just NATed: the rest of the walk may be known
                    w.tail_next = False
                    if self._replay_tail(w, out):
                        return
                hook, table, chain = w.steps[w.si]
                w.si += 1
                if hook == "ROUTE":
                    if self.router is None:
                        here = self._delivered_here(w, todo)
                        if w.tail is not None:
                            w.tail.append((_ROUTE, here))
                    elif w.pkt.packet.physdev_out and w.dnat is None:
                        # Bridged port to port: br_netfilter makes no routing decision (no
                        # forwarding sysctl, no source check) unless DNAT moved it.
                        w.route = self.router.bridged(w.pkt.packet.in_interface or "",
                                                      w.pkt.packet.physdev_out)
                        here = False
                    else:
                        w.route = self._routed(w, todo, arriving=True)
                        if w.route.refused:
                            out.append(self._refused(w, w.route))
                            return
                        here = w.route.delivered_here
                    w.steps = steps["in" if here else "fwd"]
                    w.si = 0
                    continue
                if hook == "REROUTE":  # OUTPUT nat/mangle changed the packet: route again
                    w.route = self._routed(w, todo, arriving=False)
                    continue
                if hook == "LOOP":
                    if self.router is None:
                        w.looped = self._local_fact(w, w.dst, todo, True)
                    else:
                        if w.route.refused:
                            out.append(self._refused(w, w.route))
                            return
                        w.looped = w.route.delivered_here
                    w.steps = steps["loop" if w.looped else "sent"]
                    w.si = 0
                    continue
                if hook == "DONE":
                    if w.tail is not None:
                        self._remember_tail(w, table)
                    out.append(self._outcome(w, "ACCEPT", delivered=table))
                    return
                code = codes.get((table, chain))
                if code is None or (not code.rules and code.policy == "ACCEPT"):
                    continue  # absent, or empty with policy ACCEPT: no effect, not shown
                if code.nat and not w.nat_ok:
                    if w.conn is not None:
                        self._conn_nat(w, hook)
                    continue
                if code.nat and w.nat_hook == hook:
                    continue  # an earlier nat chain at this hook set up the NAT already
                self._enter(w, hook)
                if w.tail is not None:
                    w.tail.append(self._state(w))
                if self.summaries and self._replay(w, code):
                    continue
                cands = code.candidates(w.dst, proto, w.dport)
                if code.dim is not None:
                    if w.rec is not None:
                        w.rec.append((_CAND, code, cands))
                    if w.tail is not None:
                        w.tail.append((_CAND, code, cands))
                stack.append([code, cands, 0, (code.name,), code])
                continue
            else:
                frame = stack[-1]
                code = frame[0]
                cands = frame[1]
                compiled = code.compiled
                n = len(cands)
                i = frame[2]
                while i < n:
                    pos = cands[i]
                    i += 1
                    c = compiled[pos]
                    if c is None:
                        c = self._compile(code, pos)
                    if c.addr:
                        miss = False
                        for is_src, net, mask, neg in c.addr:
                            if (((w.src if is_src else w.dst) & mask) == net) is neg:
                                miss = True
                                break
                        if w.rec is not None:
                            w.rec.append((_ADDR, c.addr, miss))
                        if w.tail is not None:
                            w.tail.append((_ADDR, c.addr, miss))
                        if miss:
                            continue
                    if c.matcher.evals:
                        frame[2] = i  # a fork resumes after this rule
                        if w.decided is None:
                            r = match(c.matcher, w, todo)
                        else:  # a branch forked on an unknown fact of this very rule
                            r, w.decided = w.decided, None
                        if r is False:
                            continue
                    else:
                        r = True
                    frame[2] = i
                    path.append((code, pos, len(stack) - 1))
                    if r is not True:
                        out.append(self._outcome(w, "UNKNOWN", reason=str(r)))
                        return
                    kind = c.kind
                    if kind == "none" or kind == "nop":
                        continue
                    if kind == "MARK":
                        value, mask = c.data
                        w.mark = (w.mark & ~mask & 0xFFFFFFFF) ^ value
                        continue
                    data = c.data
                    break
                else:
                    # Falling off the end of a chain is a RETURN (the policy, in a built-in
                    # chain).
                    kind = "RETURN"
                    pos = -1
                if kind == "dyn":  # an nft lookup decides the action now
                    found = data(w)
                    if w.rec is not None or w.tail is not None:  # summaries rest on it too
                        self._note_eval(_LOOKUP, 0, w, found, data)
                    if found is None:  # no element: the rule ends, the next one runs
                        w.path.pop()  # and, like a rule that did not match, is not shown
                        continue
                    if type(found) is str:
                        out.append(self._outcome(w, "UNKNOWN", reason=found))
                        return
                    if type(found) is list:
                        for p, k, d in found[1:]:
                            other = w.fork()
                            other.prob *= p
                            other.pending = (k, d, pos)
                            todo.append(other)
                        p, kind, data = found[0]
                        w.prob *= p
                    else:
                        kind, data = found
                    if kind == "none":
                        continue
            if kind == "jump" or kind == "goto":
                # A rule's jump holds its chain prepared (see _compile); an nft rule's, and a
                # target extension's, the chain's name.
                target = data if type(data) is ChainCode else codes.get((code.table, data))
                if target is None:
                    if code.table in self._nft_tables:  # a cut-short or trimmed listing
                        out.append(self._outcome(w, "UNKNOWN", reason=f"{kind} {data}: the "
                                                 "listing has no such chain"))
                        return
                    target = self.code(code.table, data)
                if target.dim is None:
                    cands2 = target.all
                else:
                    cands2 = target.candidates(w.dst, proto, w.dport)
                    if w.rec is not None:
                        w.rec.append((_CAND, target, cands2))
                    if w.tail is not None:
                        w.tail.append((_CAND, target, cands2))
                if kind == "jump":
                    if cands2:  # no candidate rules: returns at once (and cannot loop)
                        self._check_jump(w, frame, target, pos)
                        stack.append([target, cands2, 0, (target.name,), None])
                else:
                    self._check_jump(w, frame, target, pos)
                    stack[-1] = [target, cands2, 0, frame[3] + (target.name,), frame[4]]
                continue
            if kind == "ACCEPT":
                stack.clear()
                continue
            if kind == "RETURN":  # back to the caller, or the policy of a built-in chain
                stack.pop()
                base = frame[4]
                if base is not None:
                    path.append((base, None, len(stack)))
                    if base.policy == "ACCEPT":
                        stack.clear()
                        continue
                    out.append(self._policy_outcome(w, base))
                    return
                continue
            if kind == "DROP" or kind == "REJECT":
                out.append(self._outcome(w, kind))
                return
            if kind == "CONNMARK":
                op, a, b = data
                if op == "set":
                    w.ctmark = (w.ctmark & ~b & 0xFFFFFFFF) ^ a
                elif op == "save":
                    w.ctmark = (w.ctmark & ~b & 0xFFFFFFFF) ^ (w.mark & a)
                else:
                    w.mark = (w.mark & ~a & 0xFFFFFFFF) ^ (w.ctmark & b)
                continue
            if kind == "DS":
                value, mask = data
                w.ds = set_ds(w.ds, value, mask)
                w.rec = w.tail = None  # later evaluators and the route see another field
                continue
            if kind == "notrack":
                w.rec = w.tail = None  # later evaluators see another conntrack state
                w.ct = frozenset({"UNTRACKED"})
                w.nat_ok = False
                continue
            if kind == "DNAT" or kind == "SNAT" or kind == "MASQUERADE" or kind == "REDIRECT":
                reason = self._nat(w, kind, data, stack[0][4].nat)  # the base chain's type
                if reason is not None:
                    out.append(self._outcome(w, "UNKNOWN", reason=reason))
                    return
                if kind == "MASQUERADE":
                    w.masq_flags = data
                w.nat_hook = w.hook
                if w.rec is not None:
                    w.rec.append((_NAT, kind, data, stack[0][4].nat))
                if w.tail is not None:
                    w.tail.append((_NAT, kind, data, stack[0][4].nat, w.hook))
                elif kind == "DNAT" and w.tail_tried is False:
                    w.tail_next = True
                stack.clear()
                continue
            out.append(self._outcome(w, "UNKNOWN", reason=str(data)))
            return

    # ------------------------------------------------------------------ summaries
    #
    # After a DNAT the branches of one packet (one per endpoint) and the packets of other
    # clients go through the same base chains (FORWARD, POSTROUTING, ...) in the same state
    # but for their addresses and ports, which those chains mostly do not look at. So a base
    # chain entered with an empty stack is walked once per entry state -- its key -- while
    # recording the checks of addresses and ports the walk made (index lookups, rules'
    # address matches, evaluators that read them) with their answers; a later branch with
    # the same key whose addresses and ports pass every check would walk the same rules to
    # the same end, so the summary's hops and state are taken over instead. nftables chains
    # alike: their evaluators that read more than the key holds and their set/map lookups
    # (``dyn`` actions) are checks. A statement whose effect follows from the key (a mark set
    # from marks) notes the state it leaves (``_STATE``), in which the checks after it are
    # asked again. Walks that fork, assume a fact, use kernel memory (recent, nth, limit,
    # numgen inc, dynamic sets updated) or end the packet are not summarized. Summaries
    # never change an answer: ``summaries = False`` walks everything and the tests compare
    # both.

    def _key(self, w: Walk, code: ChainCode) -> tuple[Any, ...]:
        facts = tuple((k, v[0]) for k, v in w.facts.items()) if w.facts else ()
        return (code, w.hook, w.mark, w.ctmark, w.ct, w.iif, w.oif, w.nat_ok, w.assumed,
                facts, w.fixed)

    def _replay(self, w: Walk, code: ChainCode) -> bool:
        """Take over a summary of ``code`` for this branch, if one fits (True); otherwise
        start recording one."""
        key = self._key(w, code)
        slot = self._summaries.get(key)
        if slot is not None:
            found = slot[0]
            if _given_up(slot):
                return False
            slot[1] += 1
            for s in found:
                if len(w.path) + len(s.path) > MAX_HOPS:
                    break  # walk it: the walk says where the branch got too long
                if not self._passes(w, s.checks):
                    continue
                if w.tail is not None:
                    w.tail.extend(s.checks)
                    if s.nat is not None:
                        w.tail.append((_NAT, *s.nat, w.hook))
                w.path.extend(s.path)
                _take_state(w, s)
                if s.nat is not None:
                    kind, data, nat = s.nat
                    self._renat(w, kind, data, nat, w.hook)
                slot[2] += 1
                return True
            if len(found) >= SUMMARIES_PER_KEY:
                return False
        elif len(self._summaries) >= SUMMARY_KEYS:
            return False
        w.rec = [key]
        w.rec_at = len(w.path)
        return False

    # After a DNAT, the rest of a branch's walk -- routing decision, FORWARD or INPUT,
    # POSTROUTING -- depends on the branch's new destination only through the checks the
    # base chains' summaries make and the routing decision; a branch that arrives there in
    # the same state (its tail key) and passes them all is delivered the same way. The tail
    # notes the walk's state as it enters each base chain (hook, interfaces, marks, conntrack
    # state, NAT so far: ``_STATE``), and a replay asks each check in the state it was
    # recorded in; a check made after a NAT changed the packet's addresses is not replayed
    # (the tail is not kept). Only arriving packets without a node routing table and outside
    # connections are followed this way (the routing decision then is whether the
    # destination is the node's).

    def _tail_key(self, w: Walk) -> tuple[Any, ...] | None:
        if (self.router is not None or w.conn is not None
                or w.pkt.origin in ("node", "localhost")):
            return None
        p = w.pkt.packet
        facts = tuple((k, v[0]) for k, v in w.facts.items()) if w.facts else ()
        return (id(w.steps), w.si, w.hook, w.mark, w.ctmark, w.ct, w.nat_ok, w.nat_hook,
                w.masquerade, w.masq_flags, w.snat, w.assumed, facts, w.fixed,
                p.in_interface, p.out_interface, w.reverse)

    def _replay_tail(self, w: Walk, out: list[Outcome]) -> bool:
        """Deliver the branch as a tail recorded before says (True), or start recording."""
        w.tail_tried = True
        key = self._tail_key(w) if self.summaries else None
        if key is None:
            return False
        slot = self._tails.get(key)
        if slot is not None:
            found = slot[0]
            if _given_up(slot):
                return False
            slot[1] += 1
            for t in found:
                if len(w.path) + len(t.path) > MAX_HOPS or not self._passes(w, t.checks):
                    continue
                w.path.extend(t.path)
                _take_state(w, t)
                for kind, data, nat, hook in t.nats:
                    w.hook = hook
                    self._renat(w, kind, data, nat, hook)
                slot[2] += 1
                out.append(self._outcome(w, "ACCEPT", delivered=t.delivered))
                return True
            if len(found) >= SUMMARIES_PER_KEY:
                return False
        elif len(self._tails) >= SUMMARY_KEYS:
            return False
        w.tail = [key]
        w.tail_at = len(w.path)
        return False

    def _renat(self, w: Walk, kind: str, data: Any, nat: bool, hook: str) -> None:
        """Redo the NAT a summary or tail recorded at ``hook`` (it succeeded then)."""
        self._nat(w, kind, data, nat)
        if kind == "MASQUERADE":
            w.masq_flags = data
        w.nat_hook = hook

    def _remember_tail(self, w: Walk, delivered: str) -> None:
        rec = w.tail
        assert rec is not None
        w.tail = None
        moved = False
        for check in rec[1:]:
            if check[0] == _NAT:
                kind, data = check[1], check[2]
                moved = moved or kind == "DNAT" or kind == "REDIRECT" or (
                    kind == "SNAT" and (data[0] is not None or data[1] is not None))
            elif moved and check[0] != _STATE:
                # A check made after a NAT changed the packet's addresses or ports got its
                # answer for the NATed ones, which a replay (checking the branch as it is at
                # the tail's start) would not ask about: not kept.
                return
        tail = Tail(rec[1:], tuple(w.path[w.tail_at:]), w, delivered)
        self._tails.setdefault(rec[0], [[], 0, 0])[0].append(tail)

    @staticmethod
    def _state(w: Walk) -> tuple[Any, ...]:
        """What evaluators may read of a walk besides the packet's addresses and ports, and
        what changes along one (hook, interfaces, marks, conntrack state, NAT so far, stated
        defaults): noted in a tail at each base chain it enters, and in a summary or tail
        after a keyed effect (``Matcher.keyed_effects``)."""
        return (_STATE, w.hook, w.iif, w.oif, w.mark, w.ctmark, w.ct, w.masquerade, w.snat,
                w.assumed)

    @staticmethod
    def _set_state(w: Walk, state: tuple[Any, ...]) -> None:
        (_, w.hook, w.iif, w.oif, w.mark, w.ctmark, w.ct, w.masquerade, w.snat,
         w.assumed) = state

    def _passes(self, w: Walk, checks: tuple[Any, ...]) -> bool:
        """Whether the branch's addresses and ports get the recorded answers. Evaluators
        are asked in the state the recording walk had when it asked them (its ``_STATE``
        entries), which is this branch's state there as well: that state follows from the
        key and the answers before; the branch's own state is restored afterwards."""
        proto = w.fixed[0]
        saved = None
        ok = True
        for check in checks:
            what = check[0]
            if what == _CAND:
                got: Any = check[1].candidates(w.dst, proto, w.dport)
                if got is not check[2] and got != check[2]:
                    ok = False
                    break
            elif what == _ADDR:
                miss = False
                for is_src, net, mask, neg in check[1]:
                    if (((w.src if is_src else w.dst) & mask) == net) is neg:
                        miss = True
                        break
                if miss != check[2]:
                    ok = False
                    break
            elif what == _ROUTE:
                if self._delivered_known(w) is not check[1]:
                    ok = False
                    break
            elif what == _STATE:
                if saved is None:
                    saved = self._state(w)
                self._set_state(w, check)
            elif check[1](w) != check[2]:
                ok = False
                break
        if saved is not None:
            self._set_state(w, saved)
        return ok

    def _delivered_known(self, w: Walk) -> bool | None:
        """The routing decision without a node routing table, None where it would fork."""
        addr = w.dst
        # Every branch after a DNAT asks this of its endpoint: the answers that do not depend
        # on the branch's facts are kept (a few per Service, bounded like the index caches).
        if addr in self._delivered:
            here = self._delivered[addr]
        else:
            if is_multicast(addr, self.family) or is_limited_broadcast(addr, self.family):
                here = True
            else:
                here = self.placed(addr)
            if len(self._delivered) >= CACHE_MAX:
                self._delivered.clear()
            self._delivered[addr] = here
        if here is not None:
            return here
        return known_fact(w.facts, ("local", addr), self.ctx.bound_only)

    def _remember(self, w: Walk) -> None:
        rec = w.rec
        assert rec is not None
        w.rec = None
        nat = rec.pop()[1:] if rec[-1][0] == _NAT and len(rec) > 1 else None
        summary = Summary(_asked(rec[1:]), tuple(w.path[w.rec_at:]), w, nat)
        self._summaries.setdefault(rec[0], [[], 0, 0])[0].append(summary)

    def _note_eval(self, m: Matcher, j: int, w: Walk, r: object, f: Any = None) -> None:
        """Record evaluator ``j``'s answer (or ``f``'s, an nft lookup's) as a check, when it
        reads addresses or ports; an answer that assumes a fact, or an evaluator with kernel
        memory, ends the recording."""
        if type(r) is Cond:
            w.rec = w.tail = None
        elif not m.pure[j]:
            if j in m.keyed_effects:  # the state it left, for the checks after it
                state = self._state(w)
                if w.rec is not None:
                    w.rec.append(state)
                if w.tail is not None:
                    w.tail.append(state)
            else:
                w.rec = w.tail = None
        elif m.header is None or m.header[j]:
            check = (_EVAL, f or m.evals[j], r)
            if w.rec is not None:
                w.rec.append(check)
            if w.tail is not None:
                w.tail.append(check)

    def _conn_nat(self, w: Walk, hook: str) -> None:
        """A later packet of a known connection: the kernel applies the connection's NAT at
        the nat hooks without consulting the nat rules (destination at PREROUTING/OUTPUT,
        source at POSTROUTING/INPUT); a reply gets the reverse of it."""
        assert w.conn is not None
        kind, data = w.conn
        dest_side = hook in ("PREROUTING", "OUTPUT")
        if kind == "orig":
            addr, port, masq = data
            if dest_side and addr is not None:
                w.dst, w.dport = addr, port
                w.dnat = (addr, port)
                w.ct = ct_with(w.ct, "DNAT")
            elif not dest_side and masq and not w.masquerade:
                w.masquerade = True
                w.ct = ct_with(w.ct, "SNAT")
            return
        vip, vport, client, cport = data
        fam = self.family
        if dest_side and client is not None and w.dst != client:
            w.dst, w.dport = client, cport
            w.reverse = ((w.reverse + ", ") if w.reverse else "") + \
                f"destination restored to {format_endpoint(client, cport, fam)}"
        elif not dest_side and vip is not None and (w.src, w.sport) != (vip, vport):
            w.src, w.sport = vip, vport
            w.reverse = ((w.reverse + ", ") if w.reverse else "") + \
                f"source restored to {format_endpoint(vip, vport, fam)}"

    def _policy_outcome(self, w: Walk, base: ChainCode) -> Outcome:
        if base.policy == "DROP":
            return self._outcome(w, "DROP")
        return self._outcome(w, "UNKNOWN", reason=f"chain policy {base.policy}: the verdict is "
                             "given by a userspace program")

    def _check_jump(self, w: Walk, frame: list[Any], target: ChainCode, pos: int) -> None:
        name = target.name
        for f in w.stack:
            if name in f[3]:
                names = [n for g in w.stack for n in g[3]] + [name]
                line = frame[0].rules[pos].line
                where = f"{self.source}:{line}" if line else self.source
                raise TraceError(f"jump loop in table {target.table}: " + " -> ".join(names),
                                 where=where)
        if len(w.path) > MAX_HOPS:
            line = frame[0].rules[pos].line
            where = f"{self.source}:{line}" if line else self.source
            raise TraceError(f"a branch of the walk is longer than {MAX_HOPS} hops (chains "
                             f"re-entered again and again, last {frame[0].name} -> {name})",
                             where=where)
        if len(w.stack) >= MAX_DEPTH:
            line = frame[0].rules[pos].line
            where = f"{self.source}:{line}" if line else self.source
            raise TraceError(f"chains nested deeper than {MAX_DEPTH} (at {frame[0].name} -> "
                             f"{name})", where=where)

    def _match(self, m: Matcher, w: Walk, todo: list[Walk], start: int = 0) -> object:
        j = start
        evals = m.evals
        n = len(evals)
        while j < n:
            r = evals[j](w)
            if w.rec is not None or w.tail is not None:
                self._note_eval(m, j, w, r)
            if r is True:
                j += 1
                continue
            if r is False:
                return False
            if type(r) is Cond:
                known = known_fact(w.facts, r.key)
                if known is None:
                    # Both cases: this branch assumes the fact, a copy assumes its opposite,
                    # finishes this rule's matches now and re-visits the rule with the result.
                    other = w.fork()
                    other.assume(r, False)
                    result = self._match(m, other, todo, j)
                    if result is not False:
                        other.decided = result
                        other.stack[-1][2] -= 1
                    todo.append(other)
                    w.assume(r, True)
                    known = True
                if known == r.negated:
                    return False
                j += 1
                continue
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
                if w.rec is not None or w.tail is not None:
                    self._note_eval(m, k, w, later)
                if later is False:
                    return False
            return r
        return True

    def _nat(self, w: Walk, kind: str, data: Any, nat: bool) -> str | None:
        if not nat:
            return f"{kind} outside a nat chain"
        if kind == "DNAT" or kind == "REDIRECT":
            if kind == "DNAT":
                addr, port, _text = data
            else:
                port = data
                if w.hook == "OUTPUT":
                    addr = 0x7F000001 if self.family == "ipv4" else 1
                else:
                    lo_net, lo_mask = self._lo
                    addr = next((a for a in (parse_addr(t, self.family) for t in self.local_ips)
                                 if (a & lo_mask) != lo_net), None)
                    if addr is None:
                        return ("REDIRECT: the incoming interface's address is not known "
                                "(give --local-ip)")
            if addr is not None:
                w.dst = addr
            if port is not None:
                w.dport = port
            w.dnat = (w.dst, w.dport)
            w.ct = ct_with(w.ct, "DNAT")
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
        w.ct = ct_with(w.ct, "SNAT")
        return None

    def _outcome(self, w: Walk, verdict: str, *, reason: str | None = None,
                 delivered: str | None = None) -> Outcome:
        dnat = w.dnat
        flags = w.masq_flags if w.masquerade else ""
        o = Outcome.lazy(w.prob, verdict, w.masquerade, w.snat, reason, delivered, w.memory,
                         flags, (self, w.path), (dnat, w.dst, w.dport, self.family))
        if w.facts:
            o.assumes = tuple(w.facts.values())
        if w.assumed:
            o.assumed = w.assumed
        if w.reverse:
            o.reverse = w.reverse
        o.raw_dnat = dnat
        o.route = w.route
        return o
