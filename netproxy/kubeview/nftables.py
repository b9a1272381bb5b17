"""Read kube-proxy's nftables table into the Service model of :mod:`netproxy.kubeview.model`.

kube-proxy in nftables mode owns one table per family, ``table ip kube-proxy`` and ``table
ip6 kube-proxy``. Its Service ports are spread over verdict maps and per-port chains:

* ``service-ips`` (``IP . proto . port : goto service-|local-|external-<BASE>``) and
  ``service-nodeports`` (``proto . port : goto external-<BASE>``) are the frontends;
  ``firewall-ips`` sends load-balancer IPs with source ranges to ``firewall-<BASE>``;
* ``no-endpoint-services`` / ``no-endpoint-nodeports`` answer ports without (local)
  endpoints with ``goto reject-chain`` or ``drop``, the element's comment naming the port;
* ``service-<BASE>`` / ``local-<BASE>`` balance with ``numgen random mod N``: a DNAT map of
  ``IP . port`` (current layout) or a vmap of ``goto endpoint-<EPBASE>`` (ClientIP affinity,
  and every port up to v1.35), ``ip saddr @affinity-<EPBASE>`` rules in front for affinity;
* ``external-<BASE>`` marks for masquerading and picks the policy's chain;
* ``hairpin-connections`` (``EP . EP . proto . port``) and the ``masquerading`` chain
  masquerade; ``nodeport-ips`` says which addresses take NodePorts.

BASE is ``HASH8-ns/name/proto/portName`` (:mod:`netproxy.nftnames`), so every per-port
object names its Service port, protocol and (endpoint chains) endpoint. Anything else in the
listing -- other tables, iptables-nft's ``ip nat``/``ip filter`` -- is not kube-proxy's
nftables mode; iptables-mode chains of kube-proxy found there (a node switched modes, or runs
both) are reported in ``RulesetView.other_mode``, never mixed into the Service ports.
Nothing here judges the rules; the doctor's checks do.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from netproxy.gcpause import paused_gc
from netproxy.kubeview.model import (
    Address,
    EndpointChain,
    EndpointJump,
    NftRef,
    Ref,
    RulesetView,
    ServicePortView,
    hostport,
    verdict_chain,
)
from netproxy.kubeview.names import chain_role
from netproxy.kubeview.shares import numgen_shares
from netproxy.netfilter.model import Ruleset
from netproxy.netfilter.nft import NFT_FAMILY, NftChain, NftElement, NftRule, NftRuleset, NftTable
from netproxy.nftnames import COMMENT_MAX
from netproxy.parser.nftables.refs import references

TABLE = "kube-proxy"
FAMILIES = NFT_FAMILY
"""Address family to the nft family of kube-proxy's table (:data:`~netproxy.netfilter.nft.NFT_FAMILY`)."""
SERVICE_PREFIXES = {"service-": "SVC", "local-": "SVL", "external-": "EXT", "firewall-": "FW"}
"""Per-Service-port chain prefixes and the model role (``ServicePortView.chains``) of each."""
BALANCING = ("SVC", "SVL")
MASQ_CHAIN = "mark-for-masquerade"
"""The chain that set the masquerade mark up to v1.35 (now the mark is set inline)."""
REJECT_CHAIN = "reject-chain"
FRONTEND_MAPS = ("service-ips", "service-nodeports")
NO_ENDPOINT_MAPS = ("no-endpoint-services", "no-endpoint-nodeports")


# -- names ----------------------------------------------------------------------------------

def parse_base(base: str) -> tuple[str, str, str | None] | None:
    """``HASH-ns/name/proto/port[__ip/port]`` -> (Service port name, protocol, endpoint
    ``ip:port`` or None); None when the name is not one of kube-proxy's. A name kube-proxy
    cut to 240 characters (``...`` at the end) gives what is left of the Service port name,
    ending in ``...`` (protocol ``?`` when that was cut too), or the whole name when only the
    endpoint part was cut (no endpoint then)."""
    hash_, dash, rest = base.partition("-")
    if not dash or len(hash_) != 8:
        return None
    if rest.endswith("..."):
        service, sep, _ = rest.partition("__")
        parts = service.split("/")
        if sep and len(parts) == 4 and parts[2]:  # only the endpoint was cut
            return f"{parts[0]}/{parts[1]}" + (f":{parts[3]}" if parts[3] else ""), parts[2].lower(), None
        if len(parts) >= 4 and parts[2]:
            return f"{parts[0]}/{parts[1]}:{'/'.join(parts[3:]).rstrip('.')}...", parts[2].lower(), None
        return rest, "?", None
    service, sep, endpoint = rest.partition("__")
    parts = service.split("/")
    if len(parts) != 4 or not parts[0] or not parts[1] or not parts[2]:
        return None
    namespace, name, protocol, port = parts
    spn = f"{namespace}/{name}" + (f":{port}" if port else "")
    dest = None
    if sep:
        ip, slash, eport = endpoint.rpartition("/")
        if not slash:
            return None
        if ip.count(".") > 3:  # IPv6 with ':' written as '.'
            ip = ip.replace(".", ":")
        dest = hostport(ip, eport)
    return spn, protocol.lower(), dest


def chain_kind(name: str) -> tuple[str, str] | None:
    """(role, BASE) for a per-Service-port chain (``service-``, ``local-``, ``external-``,
    ``firewall-``), ``("SEP", BASE)`` for an endpoint chain, else None."""
    if "/" not in name:
        return None
    for prefix, role in SERVICE_PREFIXES.items():
        if name.startswith(prefix):
            return role, name[len(prefix):]
    if name.startswith("endpoint-"):
        return "SEP", name[len("endpoint-"):]
    return None


def kube_proxy_families(listing: NftRuleset) -> list[str]:
    """The address families (``ipv4``, ``ipv6``) whose kube-proxy table the listing holds."""
    return [fam for fam, nft in FAMILIES.items() if (nft, TABLE) in listing.tables]


# -- expressions ----------------------------------------------------------------------------

def _match(stmt: Any) -> dict[str, Any] | None:
    inner = stmt.get("match") if isinstance(stmt, dict) else None
    return inner if isinstance(inner, dict) else None


def _is_field(expr: Any, protocol: str | None, field: str) -> bool:
    payload = expr.get("payload") if isinstance(expr, dict) else None
    return isinstance(payload, dict) and payload.get("field") == field and (
        protocol is None or payload.get("protocol") == protocol)


def _set_ref(value: Any) -> str | None:
    return value[1:] if isinstance(value, str) and value.startswith("@") else None


def _sets_used(value: Any) -> Iterator[str]:
    """Every ``@set`` a statement refers to (flowtables of ``flow add`` aside)."""
    return (name for kind, name in references(value) if kind == "set")


def _verdicts(value: Any) -> Iterator[str]:
    """Every chain a statement jumps or goes to, inline vmaps included."""
    return (name for kind, name in references(value) if kind == "chain")


def _prefix_text(value: Any) -> str | None:
    if isinstance(value, str):
        return None if value.startswith("@") else value
    if isinstance(value, dict) and isinstance(value.get("prefix"), dict):
        p = value["prefix"]
        return f"{p.get('addr')}/{p.get('len')}"
    if isinstance(value, dict) and isinstance(value.get("range"), list) and len(value["range"]) == 2:
        lo, hi = value["range"]
        return f"{lo}-{hi}"
    return None


def _mark_bits(stmt: Any) -> int | None:
    """The bits a ``meta mark set meta mark | BITS`` statement sets, else None."""
    mangle = stmt.get("mangle") if isinstance(stmt, dict) else None
    if not isinstance(mangle, dict) or mangle.get("key") != {"meta": {"key": "mark"}}:
        return None
    value = mangle.get("value")
    if isinstance(value, dict) and isinstance(value.get("|"), list):
        for item in value["|"]:
            if isinstance(item, int):
                return item
    return None


def _sets_masq_mark(rule: NftRule) -> bool:
    """Whether the rule marks for masquerading: ``mark set mark | M`` or ``jump
    mark-for-masquerade`` (older layouts)."""
    return any(_mark_bits(s) is not None or verdict_chain(s) == MASQ_CHAIN for s in rule.exprs)


def _element_parts(element: NftElement) -> list[Any]:
    key = element.key
    if isinstance(key, dict) and isinstance(key.get("concat"), list):
        return list(key["concat"])
    return [key]


def nft_element_parts(ref: NftRef) -> list[Any]:
    """The key of the element ``ref`` points at, one item per concatenated part."""
    return _element_parts(ref.element) if ref.element is not None else []


def _dnat(rule: NftRule) -> dict[str, Any] | None:
    for stmt in rule.exprs:
        if isinstance(stmt, dict) and isinstance(stmt.get("dnat"), dict):
            return dict(stmt["dnat"])
    return None


def _l4proto(rule: NftRule) -> str | None:
    for stmt in rule.exprs:
        m = _match(stmt)
        if m is not None and m.get("op") == "==" and m.get("left") == {"meta": {"key": "l4proto"}} \
                and isinstance(m.get("right"), str):
            return str(m["right"]).lower()
    return None


def _dest(value: Any, port: Any = None) -> str | None:
    """``ip:port`` of a DNAT target: ``{"concat": [ip, port]}``, or an address and a port."""
    if isinstance(value, dict) and isinstance(value.get("concat"), list) and len(value["concat"]) == 2:
        value, port = value["concat"]
    if isinstance(value, str) and port is not None:
        return hostport(value, port)
    return None


def _numgen_map(expr: Any) -> tuple[int, list[tuple[Any, Any]]] | None:
    """(modulus, [(key, value), ...]) of ``numgen random mod N map|vmap { ... }``."""
    if not isinstance(expr, dict):
        return None
    key = expr.get("key")
    data = expr.get("data")
    numgen = key.get("numgen") if isinstance(key, dict) else None
    if not isinstance(numgen, dict) or not isinstance(data, dict) or not isinstance(data.get("set"), list):
        return None
    offset = numgen.get("offset") or 0
    pairs = []
    for item in data["set"]:
        if isinstance(item, list) and len(item) == 2:
            k = item[0] - offset if isinstance(item[0], int) else item[0]
            pairs.append((k, item[1]))
    return int(numgen.get("mod") or 0), pairs


# -- the reader -----------------------------------------------------------------------------

class _Reader:
    """Collects one kube-proxy table into Service port views."""

    def __init__(self, table: NftTable) -> None:
        self.table = table
        self.by_key: dict[tuple[str, str], ServicePortView] = {}
        self.by_base: dict[str, ServicePortView] = {}
        self.endpoint_chains: dict[str, EndpointChain] = {}

    # refs
    def rule_ref(self, chain: NftChain, index: int) -> NftRef:
        return NftRef(self.table.family, self.table.name, chain.name, index, rule=chain.rules[index])

    def element_ref(self, set_name: str, index: int, element: NftElement) -> NftRef:
        found = self.table.sets.get(set_name)
        return NftRef(self.table.family, self.table.name, None, index, set=set_name, element=element,
                      set_line=found.line if found is not None else 0)

    def rule_refs(self, chain: NftChain) -> list[NftRef]:
        return [self.rule_ref(chain, i) for i in range(len(chain.rules))]

    def elements(self, set_name: str) -> Iterator[tuple[NftRef, NftElement]]:
        found = self.table.sets.get(set_name)
        if found is None:
            return
        for i, element in enumerate(found.elements):
            yield self.element_ref(set_name, i, element), element

    # views
    def view(self, name: str, protocol: str) -> ServicePortView:
        key = (name, protocol)
        found = self.by_key.get(key)
        if found is None:
            found = self.by_key[key] = ServicePortView(name, protocol, written_name=name)
        return found

    def view_for_chain(self, chain_name: str) -> ServicePortView | None:
        kind = chain_kind(chain_name)
        if kind is None:
            return None
        role, base = kind
        if role == "SEP":
            parsed = parse_base(base)
            return self.view(parsed[0], parsed[1]) if parsed is not None else None
        found = self.by_base.get(base)
        if found is not None:
            return found
        parsed = parse_base(base)
        view = self.view(parsed[0], parsed[1]) if parsed is not None else self.view(f"<unknown {base}>", "?")
        view.hash = base.partition("-")[0]
        self.by_base[base] = view
        return view


def build_nft_view(listing: NftRuleset, family: str | None = None, *,
                   iptables: Ruleset | None = None) -> RulesetView:
    """Recover every Service port of kube-proxy's ``family`` table (``ipv4``/``ipv6``; default:
    the first the listing holds, ip before ip6) in ``listing``. ``iptables``: the node's
    iptables rules read beside the listing (a snapshot), walked with it and searched for
    what kube-proxy's iptables mode left (``other_mode``)."""
    with paused_gc(freeze=True):
        return _build(listing, family, iptables)


def _build(listing: NftRuleset, family: str | None, iptables: Ruleset | None) -> RulesetView:
    families = kube_proxy_families(listing)
    if family is None:
        family = families[0] if families else "ipv4"
    nft_family = FAMILIES.get(family, "ip")
    ruleset = iptables if iptables is not None else Ruleset(family=family, source=listing.source)
    table = listing.tables.get((nft_family, TABLE))
    r = _Reader(table or NftTable(nft_family, TABLE))
    if table is not None:
        _read_chains(r)
        _read_frontends(r)
        _read_no_endpoints(r)
        _read_firewall_ips(r)
    services = dict(sorted(r.by_key.items()))
    view = RulesetView(ruleset, services, r.endpoint_chains, mode="nftables")
    view.nft = listing
    view.nft_table = table
    if table is not None:
        _read_node(r, view)
        _read_hairpins(r, view)
        _read_stale(r, view)
    view.other_mode = _other_mode(listing, nft_family, iptables)
    return view


def _read_chains(r: _Reader) -> None:
    """Per-port chains: balancing (service-/local-), external-, firewall-, endpoint-.

    An empty chain nothing refers to is one kube-proxy flushed because its Service port is
    gone (it deletes it a second later): it is only a stale chain, not a Service port."""
    used = _referenced_chains(r.table)
    chains = [c for c in r.table.chains.values() if c.rules or c.name in used]
    for chain in chains:
        kind = chain_kind(chain.name)
        if kind is None or kind[0] != "SEP":
            continue
        r.endpoint_chains[chain.name] = _endpoint_chain(r, chain)
    for chain in chains:
        kind = chain_kind(chain.name)
        if kind is None or kind[0] == "SEP":
            continue
        role = kind[0]
        view = r.view_for_chain(chain.name)
        assert view is not None
        view.chains[role] = chain.name
        for i, rule in enumerate(chain.rules):
            ref = r.rule_ref(chain, i)
            if role == "EXT":
                view.ext_rules.append(ref)
                if _sets_masq_mark(rule):
                    view.masq_rules.append(ref)
            elif role == "FW":
                view.firewall_rules.append(ref)
                view.source_ranges += _source_ranges(rule)
            else:
                _balancing_rule(r, view, chain, ref, rule)
    for name, sep in r.endpoint_chains.items():
        if sep.spn is None or sep.protocol is None:
            continue
        view = r.view(sep.spn, sep.protocol)
        if name not in view.endpoints:
            view.orphan_endpoints[name] = sep


def _endpoint_chain(r: _Reader, chain: NftChain) -> EndpointChain:
    refs: list[Ref] = list(r.rule_refs(chain))
    dnat: list[tuple[str, Ref]] = []
    masq: list[Ref] = []
    affinity: list[str] = []
    parsed = parse_base(chain.name[len("endpoint-"):])
    protocol = parsed[1] if parsed is not None else None
    for ref in refs:
        assert isinstance(ref, NftRef) and ref.rule is not None
        rule = ref.rule
        found = _dnat(rule)
        if found is not None:
            dnat.append((_dest(found.get("addr"), found.get("port")) or "", ref))
            protocol = protocol or _l4proto(rule)
        elif _sets_masq_mark(rule):
            masq.append(ref)
        for stmt in rule.exprs:
            inner = stmt.get("set") if isinstance(stmt, dict) else None
            if isinstance(inner, dict) and inner.get("op") in ("update", "add"):
                name = _set_ref(inner.get("set"))
                if name is not None:
                    affinity.append(name)
    return EndpointChain(chain.name, refs, dnat, masq, parsed[0] if parsed else None, protocol,
                         affinity_sets=affinity)


def _balancing_rule(r: _Reader, view: ServicePortView, chain: NftChain, ref: NftRef,
                    rule: NftRule) -> None:
    """One rule of a service-/local- chain."""
    found = _dnat(rule)
    if found is not None:
        addr = found.get("addr")
        spread = _numgen_map(addr.get("map")) if isinstance(addr, dict) and "map" in addr else None
        if spread is not None:
            modulus, pairs = spread
            dests = [(_dest(value) or "", key) for key, value in pairs]
            _add_jumps(r, view, chain.name, ref, dests, modulus, direct=True, protocol=_l4proto(rule))
            return
        dest = _dest(addr, found.get("port"))
        if dest is not None:
            _add_jumps(r, view, chain.name, ref, [(dest, 0)], 1, direct=True, protocol=_l4proto(rule))
            return
        view.other_balancing_rules.append(ref)
        return
    for stmt in rule.exprs:
        vmap = stmt.get("vmap") if isinstance(stmt, dict) else None
        spread = _numgen_map(vmap) if isinstance(vmap, dict) else None
        if spread is not None:
            modulus, pairs = spread
            targets = [(verdict_chain(value) or "", key) for key, value in pairs]
            _add_jumps(r, view, chain.name, ref, targets, modulus, direct=False, protocol=None)
            return
    target = ref.jump
    if target is not None and target.startswith("endpoint-") and any(
            _set_ref(m.get("right")) for m in map(_match, rule.exprs) if m is not None):
        view.affinity.append(ref)
    elif _sets_masq_mark(rule):
        view.masq_rules.append(ref)
    else:
        view.other_balancing_rules.append(ref)


def _add_jumps(r: _Reader, view: ServicePortView, chain: str, ref: NftRef,
               targets: list[tuple[str, Any]], modulus: int, *, direct: bool,
               protocol: str | None) -> None:
    """Balancing entries: endpoints DNATed directly (``direct``) or endpoint chains."""
    order: list[str] = []
    keys: dict[str, list[int]] = {}
    for target, key in targets:
        if target not in keys:
            order.append(target)
            keys[target] = []
        if isinstance(key, int):
            keys[target].append(key)
    shares = numgen_shares([keys[t] for t in order], modulus)
    for target, share in zip(order, shares, strict=True):
        if direct:
            sep = view.endpoints.get(target)
            if sep is None:
                sep = EndpointChain(target, [ref], [(target, ref)], [], view.name, protocol)
                view.endpoints[target] = sep
            elif ref not in sep.rules:
                sep.rules.append(ref)
                sep.dnat.append((target, ref))
            view.jumps.append(EndpointJump(chain, target, None, target, ref, share=share))
            continue
        parsed = parse_base(target[len("endpoint-"):]) if target.startswith("endpoint-") else None
        said = parsed[2] if parsed is not None else None
        view.jumps.append(EndpointJump(chain, target, None, said, ref, share=share))
        found = r.endpoint_chains.get(target)
        if found is not None:
            view.endpoints[target] = found
        else:
            view.missing_chains.setdefault("SEP", target)


def _source_ranges(rule: NftRule) -> list[str]:
    out: list[str] = []
    for stmt in rule.exprs:
        m = _match(stmt)
        if m is None or m.get("op") != "!=" or not _is_field(m.get("left"), None, "saddr"):
            continue
        out += _prefix_texts(m.get("right"))
    return out


def _prefix_texts(right: Any) -> list[str]:
    """The addresses and prefixes a match compares with: one, or an anonymous set's."""
    items = right["set"] if isinstance(right, dict) and isinstance(right.get("set"), list) else [right]
    return [t for t in map(_prefix_text, items) if t is not None]


def _read_frontends(r: _Reader) -> None:
    """``service-ips`` and ``service-nodeports`` elements: the ways into each Service port."""
    firewalled = {tuple(_element_parts(e)) for _, e in r.elements("firewall-ips")}
    for set_name in FRONTEND_MAPS:
        for ref, element in r.elements(set_name):
            target = ref.jump
            parts = _element_parts(element)
            view = r.view_for_chain(target) if target is not None else None
            if view is None:
                continue
            if target is not None and target not in r.table.chains:
                view.missing_chains.setdefault((chain_kind(target) or ("?", ""))[0], target)
            if set_name == "service-nodeports":
                port = parts[-1] if isinstance(parts[-1], int) else None
                view.addresses.append(Address("node-port", None, port, target, ref))
                continue
            ip = parts[0] if isinstance(parts[0], str) else None
            port = parts[-1] if isinstance(parts[-1], int) else None
            role = (chain_kind(target or "") or ("", ""))[0]
            if role in BALANCING:
                kind = "cluster-ip"
            else:
                kind = "lb-ip" if tuple(parts) in firewalled else "external-ip"
            view.addresses.append(Address(kind, ip, port, target, ref))


def _read_no_endpoints(r: _Reader) -> None:
    """``no-endpoint-services`` / ``no-endpoint-nodeports``: REJECT (``goto reject-chain``)
    or DROP (no local endpoints) per frontend, the Service port named by the comment."""
    names: dict[tuple[Any, ...], tuple[str, str]] = {}
    for set_name in FRONTEND_MAPS:
        for _, element in r.elements(set_name):
            view = r.view_for_chain(verdict_chain(element.value) or "")
            if view is not None:
                names[tuple(_element_parts(element))] = (view.name, view.protocol)
    for set_name in NO_ENDPOINT_MAPS:
        for ref, element in r.elements(set_name):
            parts = _element_parts(element)
            proto = next((p for p in parts if isinstance(p, str) and p in ("tcp", "udp", "sctp")), "?")
            if element.comment:
                name, protocol = element.comment, proto
                if len(name.encode()) >= COMMENT_MAX:  # kube-proxy cut it: say so
                    name += "..."
            elif tuple(parts) in names:
                name, protocol = names[tuple(parts)]
            else:
                name, protocol = f"<unknown {' . '.join(map(str, parts))}>", proto
            view = r.view(name, protocol)
            if isinstance(element.value, dict) and "drop" in element.value:
                view.local_drops.append(ref)
            else:
                view.rejects.append(ref)


def _read_firewall_ips(r: _Reader) -> None:
    for ref, _ in r.elements("firewall-ips"):
        target = ref.jump
        view = r.view_for_chain(target) if target is not None else None
        if view is None:
            continue
        view.firewall_rules.insert(0, ref)
        if target is not None and target not in r.table.chains:
            view.missing_chains.setdefault("FW", target)


def _read_hairpins(r: _Reader, view: RulesetView) -> None:
    """``hairpin-connections`` elements to the Service ports whose endpoints they name."""
    owners: dict[tuple[str, str], list[ServicePortView]] = {}
    for svc in view.services.values():
        for sep in svc.endpoints.values():
            if sep.destination:
                owners.setdefault((sep.destination, svc.protocol), []).append(svc)
    for ref, element in r.elements("hairpin-connections"):
        parts = _element_parts(element)
        if len(parts) != 4:
            view.unattached.append(ref)
            continue
        dest = hostport(str(parts[1]), parts[3])
        found = owners.get((dest, str(parts[2])))
        if not found or parts[0] != parts[1]:
            view.unattached.append(ref)
            continue
        for svc in found:
            svc.hairpins.append(ref)


@dataclass(slots=True)
class NodeRules:
    """What kube-proxy's nftables table says about its node, each fact with the rule or
    element that says it (:func:`read_node_rules`)."""

    pod_cidrs: list[tuple[str, NftRef]] = field(default_factory=list)
    """The local-traffic detector's pod CIDRs: ``ip saddr != CIDR`` on a masquerade rule
    (``services``' cluster-IP rule, a ``service-`` chain's), or ``ip saddr CIDR goto``
    (an ``external-`` chain's "short-circuit pod traffic")."""
    pod_interfaces: list[tuple[str, NftRef]] = field(default_factory=list)
    """Interfaces of the bridge / interface-prefix detector (``iifname != NAME`` marks)."""
    nodeport_ips: list[tuple[str, NftRef]] | None = None
    """Elements of ``set nodeport-ips``: the addresses NodePorts answer on, which kube-proxy
    fills with the node's own addresses inside ``--nodeport-addresses``. None when NodePorts
    answer on every local address (``fib daddr type local``, no set) or nothing says."""
    nodeport_rule: NftRef | None = None
    """The ``services`` rule that sends NodePort traffic to ``@service-nodeports``."""
    cluster_ips: list[tuple[str, NftRef]] = field(default_factory=list)
    """Service cluster IPs: ``set cluster-ips`` elements and the ``service-ips`` keys that go
    to a ``service-``/``local-`` chain (never a node's address: nftables mode binds them to
    no interface, unlike IPVS mode's kube-ipvs0)."""
    service_cidrs: list[tuple[str, NftRef]] = field(default_factory=list)
    """The Service CIDRs ``cluster-ips-check`` drops unallocated addresses of."""
    node_ranges: list[tuple[list[str], NftRef]] = field(default_factory=list)
    """A firewall chain's "allow from node": kube-proxy appends the load balancer IPs to
    ``ip saddr != { ranges }`` only when one of the ranges holds the node's address; the
    other ranges of such a rule, one of which holds it."""


def read_node_rules(table: NftTable, *, sample: int | None = None) -> NodeRules:
    """The node-wide facts of kube-proxy's table ``table``. ``sample``: stop looking for pod
    CIDRs after that many per-port chains in a row told nothing new (kube-proxy repeats the
    same CIDR in every ``service-`` chain); None reads them all."""
    r = _Reader(table)
    out = NodeRules()
    quiet = 0
    for chain in table.chains.values():
        role = "services" if chain.name == "services" else (chain_kind(chain.name) or ("",))[0]
        if role not in ("services", "SVC", "EXT"):
            continue
        if sample is not None and role != "services" and quiet >= sample:
            continue
        before = len(out.pod_cidrs)
        for i, rule in enumerate(chain.rules):
            marks = _sets_masq_mark(rule)
            for stmt in rule.exprs:
                m = _match(stmt)
                if m is None:
                    continue
                left, right, op = m.get("left"), m.get("right"), m.get("op")
                text = _prefix_text(right)
                if _is_field(left, None, "saddr") and text and "/" in text \
                        and text not in (c for c, _ in out.pod_cidrs) \
                        and ((op == "!=" and marks) or (op == "==" and verdict_chain(rule.exprs[-1]))):
                    out.pod_cidrs.append((text, r.rule_ref(chain, i)))
                if left == {"meta": {"key": "iifname"}} and isinstance(right, str) and op == "!=" \
                        and marks and right not in (n for n, _ in out.pod_interfaces):
                    out.pod_interfaces.append((right, r.rule_ref(chain, i)))
        if role != "services":
            quiet = 0 if len(out.pod_cidrs) > before else quiet + 1
    services = table.chains.get("services")
    for i, rule in enumerate(services.rules if services is not None else ()):
        sets = set(_sets_used(rule.exprs))
        if services is not None and "service-nodeports" in sets:
            out.nodeport_rule = r.rule_ref(services, i)
            out.nodeport_ips = _address_elements(r, "nodeport-ips") if "nodeport-ips" in sets else None
            break
    if out.nodeport_rule is None and "nodeport-ips" in table.sets:
        out.nodeport_ips = _address_elements(r, "nodeport-ips")
    out.cluster_ips = _address_elements(r, "cluster-ips")
    for ref, element in r.elements("service-ips"):
        parts = _element_parts(element)
        role = (chain_kind(ref.jump or "") or ("", ""))[0]
        if role in BALANCING and isinstance(parts[0], str):
            out.cluster_ips.append((parts[0], ref))
    check = table.chains.get("cluster-ips-check")
    if check is not None:
        for i, rule in enumerate(check.rules):
            if not any(isinstance(s, dict) and "drop" in s for s in rule.exprs):
                continue
            for stmt in rule.exprs:
                m = _match(stmt)
                if m is None or m.get("op") != "==" or not _is_field(m.get("left"), None, "daddr"):
                    continue
                out.service_cidrs += [(t, r.rule_ref(check, i)) for t in _prefix_texts(m.get("right"))]
    for ref, element in r.elements("firewall-ips"):
        vip = _element_parts(element)[0]
        fw = table.chains.get(ref.jump or "")
        if fw is None or not isinstance(vip, str):
            continue
        for i, rule in enumerate(fw.rules):
            ranges = _source_ranges(rule)
            if vip in ranges and len(ranges) > 1:
                out.node_ranges.append(([x for x in ranges if x != vip], r.rule_ref(fw, i)))
    return out


def _address_elements(r: _Reader, set_name: str) -> list[tuple[str, NftRef]]:
    return [(str(_element_parts(e)[0]), ref) for ref, e in r.elements(set_name)]


def _read_node(r: _Reader, view: RulesetView) -> None:
    """Pod CIDRs and interface (the local-traffic detector), the masquerade mark, NodePort
    addresses and affinity sets."""
    node = read_node_rules(r.table)
    view.pod_cidrs = [c for c, _ in node.pod_cidrs]
    view.pod_interface = node.pod_interfaces[0][0].replace("*", "0") if node.pod_interfaces else None
    view.nodeport_ips = None if node.nodeport_ips is None else [a for a, _ in node.nodeport_ips]
    masq = r.table.chains.get("masquerading")
    for rule in masq.rules if masq is not None else []:
        for stmt in rule.exprs:
            m = _match(stmt)
            left = m.get("left") if m is not None else None
            if isinstance(left, dict) and isinstance(left.get("&"), list) \
                    and left["&"][0] == {"meta": {"key": "mark"}} and isinstance(left["&"][1], int):
                view.masquerade_mark = left["&"][1]
                break
            if left == {"meta": {"key": "mark"}} and m is not None:
                view.masquerade_mark = _prefix_mask(m.get("right"))
                if view.masquerade_mark is not None:
                    break
        if view.masquerade_mark is not None:
            break
    for svc in view.services.values():
        timeouts = set()
        for name in dict.fromkeys(n for sep in svc.endpoints.values() for n in sep.affinity_sets):
            found = r.table.sets.get(name)
            if found is None:
                continue
            svc.affinity_sets.append(NftRef(r.table.family, r.table.name, None, -1, set=name,
                                            set_line=found.line))
            timeouts.add(found.timeout)
        if len(timeouts) == 1:
            svc.affinity_timeout = timeouts.pop()


def _prefix_mask(value: Any) -> int | None:
    """The bits of a mark written as a prefix: nft lists ``mark & 0x80000000 != 0`` as
    ``meta mark != 0x00000000/1`` (the top bit)."""
    if not isinstance(value, str) or "/" not in value:
        return None
    _, _, length = value.partition("/")
    if not length.isdigit() or not 0 < int(length) <= 32:
        return None
    n = int(length)
    return ((1 << n) - 1) << (32 - n)


def _referenced_chains(table: NftTable) -> set[str]:
    """Chains some element or rule of the table jumps or goes to."""
    used: set[str] = set()
    for found in table.sets.values():
        for element in found.elements:
            used.update(_verdicts(element.value))
    for chain in table.chains.values():
        for rule in chain.rules:
            for stmt in rule.exprs:
                used.update(_verdicts(stmt))
    return used


def _read_stale(r: _Reader, view: RulesetView) -> None:
    """Per-port chains and affinity sets nothing refers to, and references to nothing."""
    used_chains = _referenced_chains(r.table)
    used_sets: set[str] = set()
    for set_name, found in r.table.sets.items():
        for i, element in enumerate(found.elements):
            for target in _verdicts(element.value):
                if target not in r.table.chains:
                    view.dangling.append((r.element_ref(set_name, i, element), target))
    for chain in r.table.chains.values():
        for i, rule in enumerate(chain.rules):
            for stmt in rule.exprs:
                for kind, name in references(stmt):
                    if kind == "chain" and name not in r.table.chains:
                        view.dangling.append((r.rule_ref(chain, i), name))
                    elif kind == "set":
                        used_sets.add(name)
                        if name not in r.table.sets:
                            view.dangling.append((r.rule_ref(chain, i), f"@{name}"))
    view.stale_chains = [name for name in r.table.chains
                         if chain_kind(name) is not None and name not in used_chains]
    view.stale_sets = [name for name in r.table.sets
                       if name.startswith("affinity-") and name not in used_sets]


_IPTABLES_MARKERS = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING")


def _other_mode(listing: NftRuleset, nft_family: str, iptables: Ruleset | None) -> list[str]:
    """kube-proxy's iptables-mode chains beside its nftables table: in iptables-nft tables of
    the listing, or in the iptables rules read with it."""
    out: list[str] = []
    for (family, name), table in listing.tables.items():
        if name == TABLE or family not in (nft_family, "inet"):
            continue
        fixed = [c for c in _IPTABLES_MARKERS if c in table.chains]
        per_port = sum(1 for c in table.chains if chain_role(c) is not None)
        if fixed or per_port:
            rules = sum(len(table.chains[c].rules) for c in fixed)
            out.append(f"table {family} {name}: " + ", ".join(fixed + ([f"{per_port} KUBE-SVC/SEP/... "
                       "chain(s)"] if per_port else [])) + f" ({rules} rule(s) in the fixed chains)")
    if iptables is not None:
        for ipt in iptables.tables.values():
            fixed = [c for c in _IPTABLES_MARKERS if c in ipt.chains]
            per_port = sum(1 for c in ipt.chains if chain_role(c) is not None)
            if fixed or per_port:
                rules = sum(len(ipt.chains[c].rules) for c in fixed)
                out.append(f"iptables {ipt.name}: " + ", ".join(fixed + ([f"{per_port} "
                           "KUBE-SVC/SEP/... chain(s)"] if per_port else []))
                           + f" ({rules} rule(s) in the fixed chains)")
    return out
