"""The node's routing decision: policy rules, then the selected table, as Linux decides it.

:class:`Router` answers what ``ip route get`` answers for one family: policy rules in
priority order (``from``/``to`` prefixes, ``iif``/``oif``, ``fwmark``/mask, ``not``,
``ipproto``/ports, ``goto``, ``nop``, ``suppress_prefixlength``, and the ``blackhole``/
``unreachable``/``prohibit`` actions), then the longest prefix match in the chosen table
(lowest metric among equal prefixes; ``throw`` continues with the next rule), with ``local``,
``broadcast``, ``blackhole``, ``unreachable`` and ``prohibit`` routes. It returns the kind of
the decision, the output interface, the gateway, the preferred source and the table.

The inputs are iproute2's JSON (``ip -j route show table all``, ``ip -j rule``, ``ip -j addr``);
:func:`routes_from_json` and :func:`rules_from_json` read them. Pure: no kernel access.

Reverse path filtering (``rp_filter``, IPv4): a packet arriving on an interface whose
effective mode (the larger of ``conf.all`` and the interface's own value) is strict (1) is
dropped unless the node routes its source back out of that interface; loose (2) only needs a
route back at all. Without the interface's own value the ``default`` one is taken, and
without any value the check is off; either is said in :attr:`Decision.notes`.

Selectors on what the packet's addresses do not say: ``tos``/``dscp`` compare the packet's
DS field (``tos``: its bits ``0x1c`` in IPv4, as Linux masks it, its DSCP in IPv6; ``dscp``:
its six DSCP bits),
``uidrange`` the sending socket's uid (0 for a packet arriving from elsewhere, as the kernel
takes it), and ``l3mdev`` selects the table of the VRF the input (or output) interface
belongs to, from the node's VRF devices (:attr:`Router.vrfs`). A lookup made with
``ask=True`` and a DS field or uid that is not known stops at the first rule that needs it
and returns the fact to assume (:attr:`Decision.needs`); the caller forks and asks again
with the fact's value in ``facts``. Without ``ask`` (and without VRF devices recorded) such
selectors are taken as not matching, said in :attr:`Decision.notes`. Multipath routes answer
with their first next hop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from netproxy.textsafe import digits
from netproxy.trace.addr import BITS, format_addr, parse_addr
from netproxy.trace.fields import DSCP_MASK, RT_TOS_MASK, parse_dscp, rule_tos

TABLE_NAMES = {"255": "local", "254": "main", "253": "default", "0": "unspec"}
"""Reserved table ids and the names iproute2 prints for them."""

ROUTE_KINDS = frozenset({"unicast", "local", "broadcast", "anycast", "multicast", "blackhole",
                         "unreachable", "prohibit", "throw", "nat"})
DELIVERED = frozenset({"local", "broadcast", "anycast", "multicast"})
"""Decisions that deliver the packet to the node itself (INPUT)."""
REFUSED = frozenset({"blackhole", "unreachable", "prohibit", "none", "not-forwarding",
                     "rp-filter", "martian", "undecided"})
"""Decisions that discard the packet (``none``: no route at all, ENETUNREACH;
``rp-filter``: the reverse path check failed)."""
SILENT = frozenset({"blackhole", "not-forwarding", "rp-filter", "martian"})
"""Discards without an ICMP error (the others answer unreachable or prohibited)."""
RP_MODES = {0: "off", 1: "strict", 2: "loose"}


class RpMode(NamedTuple):
    """The reverse path filter's mode for an interface and how it was found."""

    mode: int
    how: str
    assumed: bool
    """A value the snapshot lacks was taken (``default``'s, or off): ``how`` says which."""


class RouteDataError(ValueError):
    """A route, rule or address entry of iproute2 JSON that cannot be read."""


def table_name(value: Any) -> str:
    text = str(value if value is not None else "main")
    return TABLE_NAMES.get(text, text)


@dataclass(frozen=True, slots=True)
class Route:
    table: str
    kind: str
    net: int
    plen: int
    dev: str | None = None
    gateway: str | None = None
    prefsrc: str | None = None
    metric: int = 0
    multipath: bool = False
    text: str = ""


@dataclass(frozen=True, slots=True)
class PolicyRule:
    priority: int
    action: str = "lookup"
    """``lookup``, ``goto``, ``nop``, ``blackhole``, ``unreachable`` or ``prohibit``."""
    table: str = "main"
    src: tuple[int, int] | None = None
    """(network, prefix length); None for ``from all``."""
    dst: tuple[int, int] | None = None
    iif: str | None = None
    oif: str | None = None
    fwmark: int | None = None
    fwmask: int = 0xFFFFFFFF
    invert: bool = False
    ipproto: int | None = None
    sport: tuple[int, int] | None = None
    dport: tuple[int, int] | None = None
    goto: int | None = None
    suppress_prefixlen: int = -1
    unmodelled: str = ""
    """A selector the lookup cannot evaluate: the rule never matches (stated)."""
    text: str = ""
    ds: tuple[int, int] | None = None
    """``tos``/``dscp``: (mask, value) the packet's DS field must show."""
    uid: tuple[int, int] | None = None
    """``uidrange``: the sending socket's uid range."""
    l3mdev: bool = False
    """``l3mdev``: the table is the VRF's of the input or output interface."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer of one lookup."""

    kind: str
    """A route type (``unicast``, ``local``, ``broadcast``, ``multicast``, ``blackhole``,
    ``unreachable``, ``prohibit``), ``none`` (no route), ``not-forwarding`` (a packet that
    would be forwarded while forwarding is off) or ``rp-filter`` (its source failed the
    reverse path check)."""
    dev: str | None = None
    gateway: str | None = None
    src: str | None = None
    """The preferred source address (the route's ``src``, else the one Linux would pick)."""
    table: str | None = None
    rule: int | None = None
    """Priority of the policy rule that decided."""
    route: str = ""
    """The route as ``ip route`` prints it."""
    notes: tuple[str, ...] = ()
    needs: tuple[Any, ...] | None = None
    """``kind == "undecided"``: the fact the lookup needs, (key, text, text if false,
    flag), as :mod:`netproxy.trace.fields` names it."""

    @property
    def delivered_here(self) -> bool:
        return self.kind in DELIVERED

    @property
    def refused(self) -> bool:
        return self.kind in REFUSED

    @property
    def silent(self) -> bool:
        """Discarded without an ICMP error (DROP rather than REJECT)."""
        return self.kind in SILENT

    def describe(self) -> str:
        """One phrase: ``10.9.0.0/16 via 10.1.0.254 dev a0 (table main, rule 32766)``."""
        where = []
        if self.table is not None:
            where.append(f"table {self.table}")
        if self.rule is not None:
            where.append(f"rule {self.rule}")
        tail = f" ({', '.join(where)})" if where else ""
        if self.kind == "none":
            return "no route (network unreachable)" + tail
        if self.kind == "not-forwarding":
            return f"forwarding is off on the node, {self.route}{tail}"
        if self.kind in ("rp-filter", "martian"):
            return self.route
        if self.kind == "undecided" and self.needs is not None:
            return (f"the policy rules need to know whether {self.needs[1]} (give "
                    f"{self.needs[3]})")
        return (self.route or self.kind) + tail


@dataclass(frozen=True, slots=True)
class Address:
    dev: str
    addr: int
    plen: int
    scope: str = "global"
    text: str = ""


@dataclass(slots=True)
class _Table:
    by_plen: dict[int, dict[int, list[Route]]] = field(default_factory=dict)
    plens: list[int] = field(default_factory=list)


_CACHE_MAX = 1 << 16
"""Decisions kept per router (a lookup depends only on the fields the rules select on)."""

_PROTO_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "ipv6-icmp": 58, "dccp": 33,
                  "udplite": 136, "gre": 47, "esp": 50, "ah": 51}


class Router:
    """Route lookups for one family over a node's rules, tables and addresses."""

    def __init__(self, family: str, routes: Iterable[Route], rules: Iterable[PolicyRule],
                 addresses: Iterable[Address] = (), *, forwarding: bool | None = None) -> None:
        self.family = family
        self.bits = BITS[family]
        self.full = (1 << self.bits) - 1
        self.forwarding = forwarding
        """False when the node does not forward this family (a sysctl); None: not known."""
        self.bridging: tuple[bool | None, frozenset[str] | None, str] = (None, None, "")
        """What the node says about bridges, for ``-m physdev``: (whether bridged traffic
        passes iptables, or None; the interfaces that have ports enslaved to them (bridges,
        but also bonds), or None when the links are not known; why the first holds)."""
        self.ports: dict[str, tuple[str, ...]] = {}
        """Each interface that has ports enslaved to it (a bridge), with its ports."""
        self.rp_filter: dict[str, int] | None = None
        """rp_filter values by interface (and ``all``, ``default``); None: not recorded."""
        self.accept_local: dict[str, int] | None = None
        """accept_local values likewise (a packet from one of the node's own addresses
        arriving on another interface than ``lo`` is a martian unless it is on)."""
        self.src_valid_mark: dict[str, int] | None = None
        """src_valid_mark values likewise (the reverse path lookup uses the packet's mark)."""
        self.vrfs: dict[str, str] | None = None
        """VRF devices and their tables (for ``l3mdev`` rules); None: not recorded."""
        self.neighbours: dict[tuple[str, str], str] | None = None
        """(device, address) -> the neighbour's MAC (``ip neigh``); None: not recorded."""
        self.fdb: dict[tuple[str, str], str] | None = None
        """(bridge, MAC) -> the bridge port behind which the MAC was learned or set
        (``bridge fdb``); None: not recorded."""
        self.rules: list[PolicyRule] = sorted(rules, key=lambda r: r.priority)
        if not self.rules:  # no rule dump: the kernel's defaults
            self.rules = [PolicyRule(0, table="local"), PolicyRule(32766, table="main"),
                          PolicyRule(32767, table="default")]
        rules_ = self.rules
        self._uses = (any(r.src is not None for r in rules_),
                      any(r.fwmark is not None for r in rules_),
                      any(r.iif is not None or r.l3mdev for r in rules_),
                      any(r.oif is not None or r.l3mdev for r in rules_),
                      any(r.ipproto is not None or r.sport is not None or r.dport is not None
                          for r in rules_),
                      any(r.ds is not None or r.uid is not None or r.l3mdev for r in rules_))
        """Which packet fields any policy rule selects on: only those key the cache."""
        self.selects_more = self._uses[5]
        """Some policy rule selects by the DS field, the uid or the VRF: lookups take
        ``ds``/``uid``/``facts`` (see :meth:`lookup`)."""
        self._cache: dict[tuple[Any, ...], Decision] = {}
        self.tables: dict[str, _Table] = {}
        for route in routes:
            table = self.tables.setdefault(route.table, _Table())
            table.by_plen.setdefault(route.plen, {}).setdefault(route.net, []).append(route)
        for table in self.tables.values():
            table.plens = sorted(table.by_plen, reverse=True)
            for bucket in table.by_plen.values():
                for routes_ in bucket.values():
                    routes_.sort(key=lambda r: r.metric)
        self.addresses = list(addresses)
        hosts = {a.addr for a in self.addresses}
        nets: list[tuple[int, int]] = []
        local = self.tables.get("local")
        for plen, bucket in (local.by_plen.items() if local is not None else ()):
            for routes_ in bucket.values():
                for rt in routes_:
                    if rt.kind != "local":
                        continue
                    if plen == self.bits:
                        hosts.add(rt.net)
                    else:
                        nets.append((rt.net, self._mask(plen)))
        self.local_hosts: frozenset[int] = frozenset(hosts)
        """Addresses the node owns (its interfaces' and its host ``local`` routes)."""
        self.local_nets: tuple[tuple[int, int], ...] = tuple(nets)
        """``local`` routes wider than a host (127.0.0.0/8, AnyIP prefixes) as (net, mask)."""

    def _mask(self, plen: int) -> int:
        return self.full ^ ((1 << (self.bits - plen)) - 1)

    def routed_off_bridge(self, bridge: str, dst: int) -> str | None:
        """Why a packet that arrived on ``bridge`` for ``dst`` is routed, not bridged: its
        destination is the node's, or lies on none of the bridge's own networks, so the
        sender addressed the bridge itself (its gateway) and the node routes it on. None
        when it may be bridged (a neighbour on the bridge's network) or the bridge has no
        address to tell by."""
        text = format_addr(dst, self.family)
        if self.is_local(dst):
            return f"{text} is the node's: delivered up from the bridge {bridge}, not bridged"
        nets = [a for a in self.addresses if a.dev == bridge]
        if not nets or any(dst & self._mask(a.plen) == a.addr & self._mask(a.plen)
                           for a in nets):
            return None
        where = ", ".join(f"{a.text}/{a.plen}" for a in nets)
        return (f"{text} is on none of {bridge}'s networks ({where}): the sender sent it to "
                "the node as its gateway, and a routed packet's output bridge port is never "
                "known at the IP hooks")

    def set_l2(self, neighbours: dict[tuple[str, str], str],
               fdb: dict[tuple[str, str], str]) -> None:
        """The node's neighbour table and bridge forwarding database: bridge ports of
        packets from and to known neighbours (:meth:`bridge_port`)."""
        self.neighbours = dict(neighbours)
        self.fdb = dict(fdb)

    def bridged(self, bridge: str, port: str) -> Decision:
        """The "decision" for a packet bridged port to port: none is made (br_netfilter
        passes it through FORWARD with the bridge as input and output interface)."""
        return Decision("bridged", dev=bridge or None,
                        route=f"bridged by {bridge} out of {port}: no routing decision")

    def l2_hop(self, bridge: str, addr: int) -> int | None:
        """The neighbour on ``bridge`` that a packet to or from ``addr`` passes: ``addr``
        itself on one of the bridge's networks, else the gateway the node routes it via on
        the bridge; None when the node does not reach ``addr`` through ``bridge``."""
        mask = self._mask
        if any(addr & mask(a.plen) == a.addr & mask(a.plen)
               for a in self.addresses if a.dev == bridge):
            return addr
        back = self.lookup(addr)
        if back.dev == bridge and back.gateway:
            with contextlib.suppress(ValueError):
                return parse_addr(back.gateway, self.family)
        return None

    def bridge_port(self, bridge: str, addr: int) -> tuple[str | None, str]:
        """The port of ``bridge`` behind which the neighbour for ``addr`` (see
        :meth:`l2_hop`) is, from its MAC (``ip neigh``) and the forwarding database, with
        how it was found; (None, why not) when that is not known."""
        text = format_addr(addr, self.family)
        if self.fdb is None or self.neighbours is None:
            return None, "the snapshot has no neighbour table and bridge forwarding database"
        hop = self.l2_hop(bridge, addr)
        if hop is None:
            return None, f"the node does not reach {text} through {bridge}"
        hop_text = format_addr(hop, self.family)
        via = "" if hop == addr else f" (the gateway to {text})"
        mac = self.neighbours.get((bridge, hop_text))
        if mac is None:
            return None, f"{hop_text}{via} has no MAC in the node's neighbour table on {bridge}"
        port = self.fdb.get((bridge, mac))
        if port is None:
            return None, (f"{hop_text}{via} is {mac}, which is not in {bridge}'s forwarding "
                          "database")
        return port, f"{hop_text}{via} is {mac} (ip neigh), behind {port} (bridge fdb)"

    def set_rp_filter(self, values: dict[str, int]) -> None:
        """The node's rp_filter sysctls (``all``, ``default`` and per interface): from now
        on, arriving packets are checked (IPv4 only; IPv6 has no such sysctl)."""
        if self.family != "ipv4":
            return
        self.rp_filter = dict(values)
        src, mark, iif, oif, ports, more = self._uses
        self._uses = (True, mark, True, oif, ports, more)  # the check reads source, interface
        self._cache.clear()

    def set_conf(self, name: str, values: dict[str, int]) -> None:
        """Another ``net.ipv4.conf`` sysctl that changes the source check (``accept_local``,
        ``src_valid_mark``): ``all``, ``default`` and per interface."""
        if self.family != "ipv4":
            return
        setattr(self, name, dict(values))
        src, mark, iif, oif, ports, more = self._uses
        self._uses = (True, mark, True, oif, ports, more)
        self._cache.clear()

    def set_vrfs(self, tables: dict[str, str]) -> None:
        """The node's VRF devices and their tables: ``l3mdev`` rules select by them."""
        self.vrfs = dict(tables)
        self._cache.clear()

    def vrf_table(self, dev: str | None) -> str | None:
        """The table of the VRF ``dev`` is (or is enslaved to), None when it is in none."""
        if not dev or not self.vrfs:
            return None
        found = self.vrfs.get(dev)
        if found is not None:
            return found
        for master, ports in self.ports.items():
            if dev in ports and master in self.vrfs:
                return self.vrfs[master]
        return None

    def _conf(self, name: str, iif: str) -> tuple[int | None, str]:
        """A boolean ``net.ipv4.conf`` value for ``iif`` (``all`` OR the interface's own,
        as the kernel's IN_DEV_ORCONF reads it) and how it was found; None: not recorded."""
        values = getattr(self, name)
        if values is None:
            return None, f"{name} is not recorded in the snapshot"
        every = values.get("all")
        own = values.get(iif, values.get("default"))
        if every is None and own is None:
            return None, f"{name} is not recorded in the snapshot"
        value = int(bool(every) or bool(own))
        parts = ([f"all = {every}"] if every is not None else []) + (
            [f"{iif} = {own}"] if own is not None else [])
        return value, f"net.ipv4.conf {name} {', '.join(parts)}"

    def rp_mode(self, iif: str) -> RpMode:
        """The effective rp_filter mode of ``iif``, how it was found, and whether a value
        missing from the snapshot was taken for it."""
        values = self.rp_filter
        unrecorded = RpMode(0, "rp_filter is not recorded in the snapshot: the reverse path "
                               "check is taken as off", True)
        if values is None:
            return unrecorded
        every = values.get("all")
        own = values.get(iif)
        why = []
        if own is None:
            own = values.get("default")
            if own is not None:
                why.append(f"{iif}'s own value is not recorded: taken as "
                           f"net.ipv4.conf.default.rp_filter = {own}")
        mode = max(every or 0, own or 0)
        if every is None and own is None:
            return unrecorded
        parts = []
        if every is not None:
            parts.append(f"all = {every}")
        if own is not None:
            parts.append(f"{iif} = {own}")
        return RpMode(mode, f"net.ipv4.conf rp_filter {', '.join(parts)}"
                      + (f" ({why[0]})" if why else ""), bool(why))

    def _source_check(self, decision: Decision, src: int | None, dst: int, iif: str,
                      notes: list[str], mark: int, ds: tuple[int, int, int] | None,
                      facts: tuple[Any, ...], ask: bool) -> Decision:
        """Linux's source validation (``fib_validate_source``) of an arriving packet whose
        route was found: the route back to the source, looked up with the addresses
        swapped, the packet's DS field, uid 0 and -- only with ``src_valid_mark`` -- its
        mark. A source that is the node's own is a martian unless ``accept_local`` is on;
        rp_filter strict needs the route back to leave by ``iif``, loose a unicast route
        back at all."""
        if src is None or not iif:
            return decision
        if self.rp_filter is None and self.accept_local is None:
            return decision  # no sysctls given (a router built without a snapshot)
        mode, why, assumed = (self.rp_mode(iif) if self.rp_filter is not None
                              else RpMode(0, "", False))
        if assumed:
            notes.append(why)
        fam = self.family
        local_src = self.is_local(src)
        if mode == 0 and not local_src:
            return decision
        back_mark = 0
        unmarked = False  # a marked packet checked without its mark, for want of the sysctl
        if mark:
            vmark, _vwhy = self._conf("src_valid_mark", iif)
            if vmark:
                back_mark = mark
            else:  # (the mark is part of the lookup cache's key when rules select by it)
                unmarked = vmark is None and self._uses[1]
        back = self.lookup(src, src=dst, mark=back_mark, ds=ds, uid=0, facts=facts, ask=ask)
        if back.kind == "undecided":
            return back
        problem = kind = None
        if local_src or back.kind == "local":
            accept, awhy = self._conf("accept_local", iif)
            if accept is None:
                notes.append(f"{awhy}: taken as 0 (the kernel's default)")
            if not accept:
                kind = "martian"
                problem = (f"martian source: {format_addr(src, fam)} is the node's own "
                           f"address and it arrived on {iif} ("
                           + (f"{awhy}" if accept is not None else "accept_local taken as 0")
                           + ")")
            elif mode == 1 and not any(a.addr == src and a.dev == iif for a in self.addresses):
                kind = "rp-filter"
                problem = (f"{format_addr(src, fam)} is the node's own address on another "
                           f"interface than {iif} ({awhy})")
        elif mode == 0:
            return decision
        elif back.kind == "none":
            problem = f"the node has no route back to {format_addr(src, fam)}"
        elif back.kind != "unicast":
            problem = (f"the route back to {format_addr(src, fam)} is {back.kind} "
                       f"({back.describe()})")
        elif mode == 1 and back.dev != iif:
            problem = (f"the node routes {format_addr(src, fam)} back via {back.dev}, not "
                       f"{iif} ({back.describe()})")
            if back_mark:
                problem += f", looked up with mark 0x{back_mark:x} (src_valid_mark)"
            if "multipath" in " ".join(back.notes):
                notes.append(f"the route back to {format_addr(src, fam)} is multipath: only "
                             "its first next hop was compared")
        if problem is None:
            return decision
        if kind == "martian":
            return Decision("martian", dev=decision.dev, table=decision.table,
                            rule=decision.rule, route=problem, notes=tuple(notes))
        if unmarked:
            problem += (f"; the route back was looked up without the packet's mark {mark:#x} "
                        "(src_valid_mark is not recorded: taken as 0, the kernel's default)")
        name = RP_MODES.get(mode, str(mode))
        return Decision("rp-filter", dev=decision.dev, table=decision.table,
                        rule=decision.rule,
                        route=f"reverse path filter ({name}, {why}): {problem}",
                        notes=tuple(notes))

    def is_local(self, addr: int) -> bool:
        """Does the node own ``addr`` (a ``local`` route, as ``addrtype LOCAL`` decides)?"""
        if addr in self.local_hosts:
            return True
        return any(addr & mask == net for net, mask in self.local_nets)

    # ------------------------------------------------------------------ lookups

    def lookup(self, dst: int, *, src: int | None = None, mark: int = 0, iif: str | None = None,
               oif: str | None = None, proto: int | None = None, sport: int | None = None,
               dport: int | None = None, ds: tuple[int, int, int] | None = None,
               uid: int | None = None, facts: tuple[Any, ...] = (),
               ask: bool = False) -> Decision:
        """The decision for a packet to ``dst``. ``iif`` None: generated on the node (the
        kernel looks it up as coming from ``lo``); else it arrived on ``iif`` and a route
        to elsewhere means forwarding. ``ds``: the DS field as :mod:`netproxy.trace.fields`
        holds it, ``uid`` the sending socket's (for a generated packet), ``facts`` the
        (key, value) pairs assumed about them; with ``ask`` a selector they do not decide
        makes the decision ``undecided`` (see :attr:`Decision.needs`)."""
        uses = self._uses
        key = (dst, iif is not None and iif != "lo", src if uses[0] else None,
               mark if uses[1] else None, iif if uses[2] else None, oif if uses[3] else None,
               (proto, sport, dport) if uses[4] else None,
               (ds, uid, facts, ask) if uses[5] else None)
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= _CACHE_MAX:  # a long capture: memory stays flat
                self._cache.clear()
            found = self._cache[key] = self._lookup(dst, src, mark, iif, oif, proto, sport,
                                                    dport, ds, uid, facts, ask)
        return found

    def _lookup(self, dst: int, src: int | None, mark: int, iif: str | None, oif: str | None,
                proto: int | None, sport: int | None, dport: int | None,
                ds: tuple[int, int, int] | None = None, uid: int | None = None,
                facts: tuple[Any, ...] = (), ask: bool = False) -> Decision:
        notes: list[str] = []
        arriving = iif is not None and iif != "lo"
        flow_iif = iif if iif is not None else "lo"
        saddr = src if src is not None else 0
        rules = self.rules
        i = 0
        n = len(rules)
        while i < n:
            rule = rules[i]
            i += 1
            if rule.unmodelled:
                notes.append(f"policy rule {rule.text or rule.priority} selects by "
                             f"{rule.unmodelled}, which is not modelled: taken as not matching")
                continue
            table = rule.table
            if rule.ds is not None or rule.uid is not None or rule.l3mdev:
                # The plain selectors first (without "not"), then the others.
                if (self._selects(rule, dst, saddr, mark, flow_iif, oif, proto, sport, dport)
                        == rule.invert):
                    if not rule.invert:
                        continue
                else:
                    more = self._selects_more(rule, arriving, flow_iif, oif, ds, uid, facts,
                                              ask, notes)
                    if isinstance(more, Decision):
                        return more
                    if (more is not None) == rule.invert:
                        continue
                    if isinstance(more, str):
                        table = more
            elif not self._selects(rule, dst, saddr, mark, flow_iif, oif, proto, sport, dport):
                continue
            action = rule.action
            if action == "nop":
                continue
            if action == "goto":
                target = rule.goto or 0
                while i < n and rules[i].priority < target:
                    i += 1
                continue
            if action != "lookup":
                return Decision(action, rule=rule.priority, route=f"rule {action}",
                                notes=tuple(notes))
            found = self._table_lookup(table, dst)
            if found is None:
                continue
            if found.kind == "throw":
                continue
            if rule.suppress_prefixlen >= 0 and found.plen <= rule.suppress_prefixlen:
                continue
            decision = self._decide(found, rule, dst, arriving, notes)
            if arriving and not decision.refused:
                decision = self._source_check(decision, src, dst, flow_iif, notes, mark, ds,
                                              facts, ask)
                if notes and decision.notes != tuple(notes) and decision.kind != "undecided":
                    decision = replace(decision, notes=tuple(notes))
            return decision
        return Decision("none", notes=tuple(notes))

    def _selects_more(self, rule: PolicyRule, arriving: bool, iif: str, oif: str | None,
                      ds: tuple[int, int, int] | None, uid: int | None,
                      facts: tuple[Any, ...], ask: bool,
                      notes: list[str]) -> str | bool | None | Decision:
        """A rule's ``tos``/``dscp``, ``uidrange`` and ``l3mdev`` selectors: the table to
        look up (``l3mdev``: the VRF's) or True when they select the packet, None when they
        do not, an ``undecided`` decision when a fact is needed."""
        from netproxy.trace.fields import (
            DS_FLAG,
            DS_UNKNOWN,
            UID_FLAG,
            ds_test,
            ds_text,
            uid_test,
            uid_texts,
        )

        label = rule.text or str(rule.priority)
        if rule.ds is not None:
            mask, value = rule.ds
            if value & ~mask:
                return None  # bits the kernel masks off: it never matches
            if ds is None and not ask:
                notes.append(f"policy rule {label} selects by the packet's DS field (tos), "
                             "which is not given: taken as not matching")
                return None
            got = ds_test(ds or DS_UNKNOWN, facts, mask, value)
            if got is False:
                return None
            if got is not True:
                m, v = got
                text = ds_text(m, v)
                return Decision("undecided", needs=(("ds", m, v), text,
                                                    text.replace(" is ", " is not ", 1),
                                                    DS_FLAG))
        if rule.uid is not None:
            lo, hi = rule.uid
            if arriving:
                have: bool | None = lo <= 0 <= hi  # the kernel's uid for a packet from afar
            else:
                have = uid_test(uid, facts, lo, hi)
            if have is None and not ask:
                notes.append(f"policy rule {label} selects by uidrange, and the sending "
                             "socket's uid is not given: taken as not matching")
                return None
            if have is None:
                return Decision("undecided", needs=(("owner", "uid", lo, hi),
                                                    *uid_texts(lo, hi), UID_FLAG))
            if not have:
                return None
        if rule.l3mdev:
            if self.vrfs is None:
                notes.append(f"policy rule {label} selects by l3mdev (the VRF of the "
                             "interface), and the snapshot does not record the node's VRF "
                             "devices: taken as not matching")
                return None
            table = self.vrf_table(oif) or (self.vrf_table(iif) if arriving else None)
            if table is None:
                if not arriving and self.vrfs:
                    notes.append(f"policy rule {label} selects by l3mdev: a packet of the "
                                 "node's is taken as sent from no VRF (a socket bound to one "
                                 "is not modelled)")
                return None
            return table
        return True

    def reverse(self, src: int, *, mark: int = 0) -> Decision:
        """Where the node sends packets to ``src``: the interface a packet from ``src``
        most likely arrived on."""
        return self.lookup(src, mark=mark)

    def _selects(self, rule: PolicyRule, dst: int, saddr: int, mark: int, iif: str,
                 oif: str | None, proto: int | None, sport: int | None,
                 dport: int | None) -> bool:
        ok = not (
            rule.src is not None and (saddr & self._mask(rule.src[1])) != rule.src[0]
            or rule.dst is not None and (dst & self._mask(rule.dst[1])) != rule.dst[0]
            or rule.iif is not None and rule.iif != iif
            or rule.oif is not None and rule.oif != oif
            or rule.fwmark is not None and (rule.fwmark ^ mark) & rule.fwmask
            or rule.ipproto is not None and rule.ipproto != proto
            or rule.sport is not None and (sport is None
                                           or not rule.sport[0] <= sport <= rule.sport[1])
            or rule.dport is not None and (dport is None
                                           or not rule.dport[0] <= dport <= rule.dport[1]))
        return ok != rule.invert

    def _table_lookup(self, name: str, dst: int) -> Route | None:
        table = self.tables.get(name)
        if table is None:
            return None
        for plen in table.plens:
            routes = table.by_plen[plen].get(dst & self._mask(plen))
            if routes:
                return routes[0]
        return None

    def _decide(self, route: Route, rule: PolicyRule, dst: int, arriving: bool,
                notes: list[str]) -> Decision:
        kind = route.kind
        if kind == "anycast":
            kind = "local"
        if route.multipath:
            notes.append(f"{route.text}: multipath, the first next hop is shown (the kernel "
                         "picks one by a hash of the flow)")
        if kind == "unicast" and arriving and self.forwarding is False:
            kind = "not-forwarding"
        src = route.prefsrc
        dev = route.dev
        if kind == "local":  # delivered through the loopback device, from itself
            src = format_addr(dst, self.family)
            dev = "lo"
        elif src is None and route.dev is not None:
            src = self._pick_source(route, dst)
        return Decision(kind, dev=dev, gateway=route.gateway, src=src, table=route.table,
                        rule=rule.priority, route=route.text, notes=tuple(notes))

    def _pick_source(self, route: Route, dst: int) -> str | None:
        """The address Linux gives a packet leaving by ``route`` without a ``src``
        (``inet_select_addr``): a global address of the output device, the first in the
        gateway's (else the destination's) subnet, else its first; else any global address
        of the node."""
        near = dst
        if route.gateway is not None:
            with contextlib.suppress(ValueError):
                near = parse_addr(route.gateway, self.family)
        on_dev = [a for a in self.addresses if a.dev == route.dev and a.scope == "global"]
        on_dev.sort(key=lambda a: near & self._mask(a.plen) != a.addr & self._mask(a.plen))
        if on_dev:
            return on_dev[0].text
        anywhere = [a for a in self.addresses if a.scope == "global"]
        return anywhere[0].text if anywhere else None


# ---------------------------------------------------------------------- iproute2 JSON


def _prefix(text: str, family: str, where: str) -> tuple[int, int]:
    bits = BITS[family]
    if text == "default":
        return 0, 0
    base, sep, plen = text.partition("/")
    try:
        addr = parse_addr(base, family)
    except ValueError as err:
        raise RouteDataError(f"{where}: {err}") from None
    if not sep:
        return addr, bits
    if not digits(plen) or int(plen) > bits:
        raise RouteDataError(f"{where}: bad prefix length in {text!r}")
    n = int(plen)
    return addr & (((1 << bits) - 1) ^ ((1 << (bits - n)) - 1)), n


def _family_of_entry(item: dict[str, Any]) -> str | None:
    dst = str(item.get("dst", ""))
    if dst == "default" or not dst:
        return None
    return "ipv6" if ":" in dst else "ipv4"


def routes_from_json(items: Sequence[Any], family: str, where: str = "routes") -> list[Route]:
    """Routes of ``family`` from ``ip -j route show table all`` (entries of the other family,
    which ``table all`` may also list, are skipped)."""
    if not isinstance(items, list):
        raise RouteDataError(f"{where}: expected a JSON list")
    out: list[Route] = []
    for n, item in enumerate(items, 1):
        at = f"{where}: entry {n}"
        if not isinstance(item, dict) or "dst" not in item:
            raise RouteDataError(f"{at}: not a route (no dst)")
        fam = _family_of_entry(item)
        if fam is not None and fam != family:
            continue
        kind = str(item.get("type", "unicast"))
        if kind not in ROUTE_KINDS:
            continue
        net, plen = _prefix(str(item["dst"]), family, at)
        gateway = item.get("gateway")
        via = item.get("via")
        if gateway is None and isinstance(via, dict):
            gateway = via.get("host")
        dev = item.get("dev")
        multipath = False
        hops = item.get("nexthops")
        if isinstance(hops, list) and hops and isinstance(hops[0], dict):
            gateway = gateway or hops[0].get("gateway")
            dev = dev or hops[0].get("dev")
            multipath = len(hops) > 1
        flags = item.get("flags") or []
        if "dead" in flags:
            continue
        try:
            metric = int(item.get("metric", 0))
        except (TypeError, ValueError):
            raise RouteDataError(f"{at}: bad metric {item.get('metric')!r}") from None
        text = " ".join(p for p in (
            "" if kind == "unicast" else kind, str(item["dst"]),
            f"via {gateway}" if gateway else "", f"dev {dev}" if dev else "",
            f"src {item['prefsrc']}" if item.get("prefsrc") else "",
            f"metric {metric}" if item.get("metric") is not None else "") if p)
        out.append(Route(table_name(item.get("table")), kind, net, plen,
                         str(dev) if dev else None, str(gateway) if gateway else None,
                         str(item["prefsrc"]) if item.get("prefsrc") else None, metric,
                         multipath, text))
    return out


def _port_range(item: dict[str, Any], name: str, at: str) -> tuple[int, int] | None:
    try:
        if f"{name}_start" in item:
            return int(item[f"{name}_start"]), int(item[f"{name}_end"])
        if name in item:
            value = str(item[name])
            lo, _, hi = value.partition("-")
            return int(lo), int(hi or lo)
    except (TypeError, ValueError, KeyError):
        raise RouteDataError(f"{at}: bad {name}") from None
    return None


def rules_from_json(items: Sequence[Any], family: str, where: str = "rules") -> list[PolicyRule]:
    """Policy rules from ``ip -j rule`` (``ip -6 -j rule`` for ipv6)."""
    if not isinstance(items, list):
        raise RouteDataError(f"{where}: expected a JSON list")
    out: list[PolicyRule] = []
    for n, item in enumerate(items, 1):
        at = f"{where}: entry {n}"
        if not isinstance(item, dict) or "priority" not in item:
            raise RouteDataError(f"{at}: not a policy rule (no priority)")
        try:
            priority = int(item["priority"])
            src = dst = None
            if item.get("src") not in (None, "all"):
                src = _prefix(f"{item['src']}/{item.get('srclen', BITS[family])}", family, at)
            if item.get("dst") not in (None, "all"):
                dst = _prefix(f"{item['dst']}/{item.get('dstlen', BITS[family])}", family, at)
            fwmark = int(str(item["fwmark"]), 0) if "fwmark" in item else None
            fwmask = int(str(item.get("fwmask", "0xffffffff")), 0)
            proto_text = item.get("ipproto")
            ipproto = None
            if proto_text is not None:
                text = str(proto_text).removeprefix("ipproto-")
                ipproto = int(text) if digits(text) else _PROTO_NUMBERS.get(text, -1)
            goto = int(item["goto"]) if "goto" in item else None
            suppress = int(item.get("suppress_prefixlen", -1))
        except (TypeError, ValueError) as err:
            raise RouteDataError(f"{at}: {err}") from None
        action = "lookup"
        if "action" in item:
            action = str(item["action"])
        elif goto is not None:
            action = "goto"
        elif "nop" in item:
            action = "nop"
        if action not in ("lookup", "goto", "nop", "blackhole", "unreachable", "prohibit"):
            raise RouteDataError(f"{at}: unknown rule action {action!r}")
        ds = uid = None
        try:
            if item.get("tos") not in (None, "0", 0, "0x00", "default"):
                # IPv4 compares the bits IPTOS_RT_MASK keeps, IPv6 the DSCP (Linux 6.18).
                ds = (RT_TOS_MASK if family == "ipv4" else DSCP_MASK,
                      rule_tos(str(item["tos"])))
            if item.get("dscp") not in (None, "0", 0):
                ds = (DSCP_MASK, parse_dscp(str(item["dscp"])) << 2)
            if "uid_start" in item:
                start = int(item["uid_start"])
                uid = (start, int(item["uid_end"]) if "uid_end" in item else start)
        except (TypeError, ValueError) as err:
            raise RouteDataError(f"{at}: {err}") from None
        l3mdev = "l3mdev" in item and item["l3mdev"] not in (False, 0, "0")
        unmodelled = ""
        words = [f"{priority}:"] + (["not"] if "not" in item else [])
        words.append(f"from {item['src']}/{item.get('srclen')}" if src else "from all")
        if dst:
            words.append(f"to {item['dst']}/{item.get('dstlen')}")
        for key in ("iif", "oif", "ipproto"):
            if key in item:
                words.append(f"{key} {item[key]}")
        if fwmark is not None:
            words.append(f"fwmark {item['fwmark']}" + (f"/{item['fwmask']}" if "fwmask" in item
                                                        else ""))
        if ds is not None:
            words.append(f"tos {item['tos']}" if "tos" in item and "dscp" not in item
                         else f"dscp {item['dscp']}")
        if uid is not None:
            words.append(f"uidrange {uid[0]}-{uid[1]}")
        words.append("lookup [l3mdev-table]" if l3mdev and action == "lookup" else
                     {"lookup": f"lookup {table_name(item.get('table'))}",
                      "goto": f"goto {goto}", "nop": "nop"}.get(action, action))
        out.append(PolicyRule(priority, action, table_name(item.get("table")), src, dst,
                              str(item["iif"]) if "iif" in item else None,
                              str(item["oif"]) if "oif" in item else None,
                              fwmark, fwmask, "not" in item, ipproto,
                              _port_range(item, "sport", at), _port_range(item, "dport", at),
                              goto, suppress, unmodelled, " ".join(words), ds, uid, l3mdev))
    return out


def addresses_from_json(items: Sequence[Any], family: str,
                        where: str = "addresses") -> list[Address]:
    """Addresses of ``family`` from ``ip -j addr``."""
    if not isinstance(items, list):
        raise RouteDataError(f"{where}: expected a JSON list")
    inet = "inet6" if family == "ipv6" else "inet"
    out: list[Address] = []
    for n, link in enumerate(items, 1):
        if not isinstance(link, dict) or "ifname" not in link:
            raise RouteDataError(f"{where}: entry {n}: not an interface (no ifname)")
        for info in link.get("addr_info") or []:
            if not isinstance(info, dict) or info.get("family") != inet:
                continue
            try:
                text = str(info["local"])
                addr = parse_addr(text, family)
                plen = int(info.get("prefixlen", BITS[family]))
            except (KeyError, TypeError, ValueError) as err:
                raise RouteDataError(f"{where}: entry {n} ({link['ifname']}): bad address "
                                     f"{err}") from None
            out.append(Address(str(link["ifname"]), addr, plen,
                               str(info.get("scope", "global")), text))
    return out
