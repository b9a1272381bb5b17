"""Which service port and endpoint every kube-proxy chain and shared rule belongs to.

Read from the names and comments kube-proxy writes and from the chain structure: a
``KUBE-SVC-<h>`` chain and its ``KUBE-SVL/EXT/FW/XLB-<h>`` siblings share the hash ``<h>``;
the service-port name comes from their comments, or from the frontend rules that jump to
them (comments survive large-cluster mode only there); an endpoint chain's service comes
from its comment or the service chain that jumps to it, its endpoint from its DNAT rule.

Each chain gets an *identity*: ``SVC<ns/name:port|tcp>``, ``SEP<ns/name:port|tcp|ip:port>``,
or its own name for chains that are not per-service (or cannot be told apart). Rules are
compared with chain names replaced by identities, so a ruleset whose chains were merely
renamed compares equal to the original.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from netproxy.diff.kubenames import (
    ENDPOINT_ROLE,
    FRONTEND_CHAINS,
    SERVICE_ROLES,
    ServiceKey,
    chain_hash,
    chain_role,
    comment_spn,
)
from netproxy.netfilter.model import Rule, Ruleset, Table


@dataclass(slots=True)
class ChainInfo:
    """What a chain is, as far as kube-proxy's naming tells."""

    table: str
    name: str
    role: str | None
    service: ServiceKey | None = None
    endpoint: str | None = None
    identity: str = ""


@dataclass(slots=True)
class ServiceIndex:
    """Where one service port lives in a ruleset."""

    key: ServiceKey
    chains: dict[str, list[str]] = field(default_factory=dict)
    """Role (``SVC``, ``SEP``, ...) to chain names (nat table)."""
    shared: list[tuple[str, str, Rule]] = field(default_factory=list)
    """``(table, chain, rule)`` of its rules in shared chains (KUBE-SERVICES, ...)."""


@dataclass(slots=True)
class KubeView:
    """Per-chain identities and per-service indexes of one ruleset."""

    ruleset: Ruleset
    chains: dict[tuple[str, str], ChainInfo]
    services: dict[ServiceKey, ServiceIndex]
    identities: dict[str, dict[str, str]]
    """Table to (chain name to identity); only for chains whose identity is not their name."""
    spn_index: dict[str, list[ServiceKey]] = field(default_factory=dict)

    def rename(self, table: str) -> Callable[[str], str]:
        """The name-to-identity mapping of ``table`` (names without identity map to themselves)."""
        mapping = self.identities.get(table, {})
        get = mapping.get
        return lambda name: get(name, name)

    def service_of_rule(self, table: str, chain: str, rule: Rule) -> ServiceKey | None:
        """The service a rule belongs to: its chain's, else its target's, else its comment's."""
        info = self.chains.get((table, chain))
        if info is not None and info.service is not None:
            return info.service
        target = rule.target
        if target is not None:
            tinfo = self.chains.get((table, target.name))
            if tinfo is not None and tinfo.service is not None:
                return tinfo.service
        spn = comment_spn(rule.comment())
        if spn is None:
            return None
        return self._resolve(spn, _protocol(rule))

    def _resolve(self, spn: str, proto: str) -> ServiceKey:
        key = ServiceKey(spn, proto)
        if key in self.services:
            return key
        same = self.spn_index.get(spn, [])
        return same[0] if len(same) == 1 else key

    def index_for(self, key: ServiceKey) -> ServiceIndex:
        """The index of ``key``, created when missing."""
        index = self.services.get(key)
        if index is None:
            index = self.services[key] = ServiceIndex(key)
            self.spn_index.setdefault(key.spn, []).append(key)
        return index


def _protocol(rule: Rule) -> str:
    opt = rule.builtin("protocol")
    return opt.args[0].lower() if opt is not None and opt.args and not opt.negated else ""


def _dnat_destination(rules: list[Rule]) -> tuple[str | None, str]:
    """The DNAT destination and protocol of an endpoint chain."""
    for rule in rules:
        target = rule.target
        if target is not None and target.name == "DNAT":
            opt = target.get("to-destination")
            if opt is not None and opt.args and opt.args[0]:
                return opt.args[0], _protocol(rule)
    return None, ""


def _first_spn(rules: list[Rule]) -> str | None:
    for rule in rules:
        spn = comment_spn(rule.comment())
        if spn is not None:
            return spn
    return None


def _first_protocol(rules: list[Rule]) -> str:
    for rule in rules:
        proto = _protocol(rule)
        if proto:
            return proto
    return ""


def _analyse_table(table: Table, view: KubeView) -> None:
    chains = table.chains
    roles = {name: chain_role(name) for name in chains}
    # Who jumps to each per-service chain, and what the jumping rules say.
    jumpers: dict[str, list[tuple[str, Rule]]] = {}
    for name, chain in chains.items():
        for rule in chain.rules:
            target = rule.target
            if target is None:
                continue
            tname = target.name
            if roles.get(tname) is not None:
                jumpers.setdefault(tname, []).append((name, rule))

    # Service-port chains, grouped by hash.
    groups: dict[str, list[str]] = {}
    for name, role in roles.items():
        if role in SERVICE_ROLES:
            groups.setdefault(chain_hash(name), []).append(name)
    group_key: dict[str, tuple[str | None, str]] = {}
    for h, names in groups.items():
        names.sort(key=lambda n: SERVICE_ROLES.index(roles[n] or ""))
        spn: str | None = None
        proto = ""
        for n in names:
            spn = spn or _first_spn(chains[n].rules)
            proto = proto or _first_protocol(chains[n].rules)
        for n in names:
            for src, rule in jumpers.get(n, ()):
                if src in FRONTEND_CHAINS:
                    spn = spn or comment_spn(rule.comment())
                    proto = proto or _protocol(rule)
        group_key[h] = (spn, proto)

    # Endpoint chains.
    sep_info: dict[str, tuple[str | None, str, str | None]] = {}
    for name, role in roles.items():
        if role != ENDPOINT_ROLE:
            continue
        rules = chains[name].rules
        endpoint, proto = _dnat_destination(rules)
        spn = _first_spn(rules)
        if spn is None or not proto:
            for src, _rule in jumpers.get(name, ()):
                if roles.get(src) in SERVICE_ROLES:
                    gspn, gproto = group_key.get(chain_hash(src), (None, ""))
                    spn = spn or gspn
                    proto = proto or gproto
        sep_info[name] = (spn, proto, endpoint)
    # A service group without a protocol of its own takes its endpoints'.
    for h, names in groups.items():
        spn, proto = group_key[h]
        if spn is not None and not proto:
            for n in names:
                for rule in chains[n].rules:
                    t = rule.target
                    if t is not None and t.name in sep_info and sep_info[t.name][1]:
                        proto = sep_info[t.name][1]
                        break
                if proto:
                    break
            group_key[h] = (spn, proto)

    # Identities; a collision falls back to names for every chain involved.
    wanted: dict[str, str] = {}
    for name, role in roles.items():
        if role is None:
            continue
        info = ChainInfo(table.name, name, role)
        if role == ENDPOINT_ROLE:
            spn, proto, endpoint = sep_info[name]
            info.endpoint = endpoint
            if spn is not None:
                info.service = ServiceKey(spn, proto)
                if endpoint is not None:
                    wanted[name] = f"SEP<{spn}|{proto}|{endpoint}>"
        else:
            spn, proto = group_key[chain_hash(name)]
            if spn is not None:
                info.service = ServiceKey(spn, proto)
                wanted[name] = f"{role}<{spn}|{proto}>"
        view.chains[(table.name, name)] = info
    counts: dict[str, int] = {}
    for wanted_ident in wanted.values():
        counts[wanted_ident] = counts.get(wanted_ident, 0) + 1
    mapping = view.identities.setdefault(table.name, {})
    for name, role in roles.items():
        if role is None:
            continue
        info = view.chains[(table.name, name)]
        ident = wanted.get(name)
        if ident is not None and counts[ident] == 1:
            info.identity = ident
            mapping[name] = ident
        else:
            info.identity = name
        if info.service is not None:
            view.index_for(info.service).chains.setdefault(role, []).append(name)


def _attribute_shared(view: KubeView) -> None:
    """Hang every rule of the shared frontend chains on its service."""
    pending: list[tuple[str, str, Rule, str, str]] = []
    for tname, table in view.ruleset.tables.items():
        for cname in FRONTEND_CHAINS:
            chain = table.chains.get(cname)
            if chain is None:
                continue
            for rule in chain.rules:
                target = rule.target
                if target is not None:
                    info = view.chains.get((tname, target.name))
                    if info is not None and info.service is not None:
                        view.services[info.service].shared.append((tname, cname, rule))
                        continue
                spn = comment_spn(rule.comment())
                if spn is not None:
                    pending.append((tname, cname, rule, spn, _protocol(rule)))
    for tname, cname, rule, spn, proto in pending:
        view.index_for(view._resolve(spn, proto)).shared.append((tname, cname, rule))


def analyse(ruleset: Ruleset) -> KubeView:
    """Identities of every chain and the per-service indexes of ``ruleset``."""
    view = KubeView(ruleset, {}, {}, {})
    for table in ruleset.tables.values():
        _analyse_table(table, view)
    _attribute_shared(view)
    return view
