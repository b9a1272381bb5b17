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

Not modelled, and said so in :attr:`Decision.notes` when a rule needs it: ``uidrange``
(the socket owner), ``tos`` and ``l3mdev`` (VRF) selectors, which are taken as not matching;
multipath routes answer with their first next hop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from netproxy.textsafe import digits
from netproxy.trace.addr import BITS, format_addr, parse_addr

TABLE_NAMES = {"255": "local", "254": "main", "253": "default", "0": "unspec"}
"""Reserved table ids and the names iproute2 prints for them."""

ROUTE_KINDS = frozenset({"unicast", "local", "broadcast", "anycast", "multicast", "blackhole",
                         "unreachable", "prohibit", "throw", "nat"})
DELIVERED = frozenset({"local", "broadcast", "anycast", "multicast"})
"""Decisions that deliver the packet to the node itself (INPUT)."""
REFUSED = frozenset({"blackhole", "unreachable", "prohibit", "none", "not-forwarding",
                     "rp-filter"})
"""Decisions that discard the packet (``none``: no route at all, ENETUNREACH;
``rp-filter``: the reverse path check failed)."""
SILENT = frozenset({"blackhole", "not-forwarding", "rp-filter"})
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
    """A selector the lookup cannot evaluate (``uidrange``, ``tos``): the rule never matches."""
    text: str = ""


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
        if self.kind == "rp-filter":
            return self.route
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
        self.rules: list[PolicyRule] = sorted(rules, key=lambda r: r.priority)
        if not self.rules:  # no rule dump: the kernel's defaults
            self.rules = [PolicyRule(0, table="local"), PolicyRule(32766, table="main"),
                          PolicyRule(32767, table="default")]
        rules_ = self.rules
        self._uses = (any(r.src is not None for r in rules_),
                      any(r.fwmark is not None for r in rules_),
                      any(r.iif is not None for r in rules_),
                      any(r.oif is not None for r in rules_),
                      any(r.ipproto is not None or r.sport is not None or r.dport is not None
                          for r in rules_))
        """Which packet fields any policy rule selects on: only those key the cache."""
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

    def set_rp_filter(self, values: dict[str, int]) -> None:
        """The node's rp_filter sysctls (``all``, ``default`` and per interface): from now
        on, arriving packets are checked (IPv4 only; IPv6 has no such sysctl)."""
        if self.family != "ipv4":
            return
        self.rp_filter = dict(values)
        src, mark, iif, oif, ports = self._uses
        self._uses = (True, mark, True, oif, ports)  # the check reads source and interface
        self._cache.clear()

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
                      mark: int, notes: list[str]) -> Decision:
        """Linux's reverse path filter (``fib_validate_source``) on an arriving packet whose
        route was found: strict needs the route back to the source to leave by ``iif``,
        loose a unicast route back at all; the route back is looked up without the packet's
        mark (``src_valid_mark`` is not recorded: its default, off, is taken; a refusal says
        so when policy rules select by mark) and with its addresses swapped."""
        if self.rp_filter is None or src is None or not iif:
            return decision  # no sysctls given (a router built without a snapshot)
        mode, why, assumed = self.rp_mode(iif)
        if assumed:
            notes.append(why)
        if mode == 0:
            return decision
        back = self.lookup(src, src=dst)
        name = RP_MODES.get(mode, str(mode))
        fam = self.family
        problem = None
        if back.kind == "none":
            problem = f"the node has no route back to {format_addr(src, fam)}"
        elif back.kind != "unicast":
            problem = (f"the route back to {format_addr(src, fam)} is {back.kind} "
                       f"({back.describe()})")
        elif mode == 1 and back.dev != iif:
            problem = (f"the node routes {format_addr(src, fam)} back via {back.dev}, not "
                       f"{iif} ({back.describe()})")
            if "multipath" in " ".join(back.notes):
                notes.append(f"the route back to {format_addr(src, fam)} is multipath: only "
                             "its first next hop was compared")
        if problem is None:
            return decision
        if mark and self._uses[1]:  # (the mark is part of the lookup cache's key then)
            problem += (f"; the route back was looked up without the packet's mark {mark:#x} "
                        "(src_valid_mark is not recorded: taken as 0, the kernel's default)")
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
               dport: int | None = None) -> Decision:
        """The decision for a packet to ``dst``. ``iif`` None: generated on the node (the
        kernel looks it up as coming from ``lo``); else it arrived on ``iif`` and a route
        to elsewhere means forwarding."""
        uses = self._uses
        key = (dst, iif is not None and iif != "lo", src if uses[0] else None,
               mark if uses[1] else None, iif if uses[2] else None, oif if uses[3] else None,
               (proto, sport, dport) if uses[4] else None)
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= _CACHE_MAX:  # a long capture: memory stays flat
                self._cache.clear()
            found = self._cache[key] = self._lookup(dst, src, mark, iif, oif, proto, sport,
                                                    dport)
        return found

    def _lookup(self, dst: int, src: int | None, mark: int, iif: str | None, oif: str | None,
                proto: int | None, sport: int | None, dport: int | None) -> Decision:
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
            if not self._selects(rule, dst, saddr, mark, flow_iif, oif, proto, sport, dport):
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
            found = self._table_lookup(rule.table, dst)
            if found is None:
                continue
            if found.kind == "throw":
                continue
            if rule.suppress_prefixlen >= 0 and found.plen <= rule.suppress_prefixlen:
                continue
            decision = self._decide(found, rule, dst, arriving, notes)
            if arriving and not decision.refused:
                decision = self._source_check(decision, src, dst, flow_iif, mark, notes)
                if notes and decision.notes != tuple(notes):
                    decision = replace(decision, notes=tuple(notes))
            return decision
        return Decision("none", notes=tuple(notes))

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
        unmodelled = ", ".join(k for k in ("uid_start", "tos", "l3mdev", "uidrange")
                               if k in item and item[k] not in (None, "0", 0, "0x00"))
        unmodelled = unmodelled.replace("uid_start", "uidrange")
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
        words.append({"lookup": f"lookup {table_name(item.get('table'))}",
                      "goto": f"goto {goto}", "nop": "nop"}.get(action, action))
        out.append(PolicyRule(priority, action, table_name(item.get("table")), src, dst,
                              str(item["iif"]) if "iif" in item else None,
                              str(item["oif"]) if "oif" in item else None,
                              fwmark, fwmask, "not" in item, ipproto,
                              _port_range(item, "sport", at), _port_range(item, "dport", at),
                              goto, suppress, unmodelled, " ".join(words)))
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
