"""Which service port and endpoint a kube-proxy chain or shared rule belongs to, on demand.

Read from the names and comments kube-proxy writes and from the chain structure: a
``KUBE-SVC-<h>`` chain and its ``KUBE-SVL/EXT/FW/XLB-<h>`` siblings share the hash ``<h>``;
which service port a hash stands for is kubeview's reading
(:func:`netproxy.kubeview.iptables.hash_ports`, the one the doctor's model uses), asked of
only the part of the table those chains, the frontend rules jumping to them (only those keep
comments in large-cluster mode) and their endpoint chains make up; an endpoint chain's
service comes from its comment or from the service chain that jumps to it, its endpoint from
its DNAT rule.

Each analysed chain gets an *identity*: ``SVC<ns/name:port|tcp>``,
``SEP<ns/name:port|tcp|ip:port>``, or its own name for chains that are not per-service (or
cannot be told apart). Rules are compared with chain names replaced by identities, so a
ruleset whose chains were merely renamed compares equal to the original.

Analysis is lazy: the differ only asks about chains that differ by name and content, so a
large ruleset with a small change costs little more than one pass over its rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from netproxy.kubeview.comments import comment_endpoint, comment_spn
from netproxy.kubeview.iptables import hash_ports
from netproxy.kubeview.names import (
    ENDPOINT_ROLE,
    FRONTEND_CHAINS,
    SERVICE_ROLES,
    ServiceKey,
    chain_hash,
    chain_role,
)
from netproxy.netfilter.model import Chain, Rule, Ruleset, Table


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


def _endpoint_from_jumps(rules: list[Rule], target: str) -> str | None:
    """``ip:port`` from the ``"ns/name:port -> ip:port"`` comment of a jump to ``target``."""
    for rule in rules:
        if rule.target is not None and rule.target.name == target:
            found = comment_endpoint(rule.comment())
            if found:
                return found
    return None


def _first_spn(rules: list[Rule]) -> str | None:
    for rule in rules:
        spn = comment_spn(rule.comment())
        if spn is not None:
            return spn
    return None


class _TableIndex:
    """Per-table lookups built once: frontend rules by target and by service name."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.by_target: dict[str, list[tuple[str, Rule]]] = {}
        self.by_spn: dict[str, list[tuple[str, Rule]]] = {}
        for cname in FRONTEND_CHAINS:
            chain = table.chains.get(cname)
            if chain is None:
                continue
            for rule in chain.rules:
                t = rule.target
                if t is not None and chain_role(t.name) is not None:
                    self.by_target.setdefault(t.name, []).append((cname, rule))
                spn = comment_spn(rule.comment())
                if spn is not None:
                    self.by_spn.setdefault(spn, []).append((cname, rule))
        self.parents: dict[str, list[str]] | None = None
        """Endpoint chain to the policy chains jumping to it (built only when needed)."""

    def sep_parents(self, name: str) -> list[str]:
        if self.parents is None:
            parents: dict[str, list[str]] = {}
            for cname, chain in self.table.chains.items():
                if chain_role(cname) in ("SVC", "SVL", "XLB"):
                    for rule in chain.rules:
                        t = rule.target
                        if t is not None and t.name.startswith("KUBE-SEP-"):
                            parents.setdefault(t.name, []).append(cname)
            self.parents = parents
        return self.parents.get(name, [])


class KubeView:
    """Chain identities and service indexes of one ruleset, computed on demand."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self.chains: dict[tuple[str, str], ChainInfo] = {}
        self.identities: dict[str, dict[str, str]] = {}
        """Table to (chain name to identity) for analysed chains whose identity is not their name."""
        self._tables: dict[str, _TableIndex] = {}
        self._groups: dict[tuple[str, str], tuple[str | None, str]] = {}
        self._services: dict[ServiceKey, ServiceIndex] = {}
        self._hints: dict[str, dict[str, list[str]]] = {}
        self._by_service: dict[ServiceKey, list[ChainInfo]] = {}

    # -- lookups -------------------------------------------------------------------------
    def _index(self, table: str) -> _TableIndex | None:
        found = self._tables.get(table)
        if found is None:
            t = self.ruleset.tables.get(table)
            if t is None:
                return None
            found = self._tables[table] = _TableIndex(t)
        return found

    def rename(self, table: str) -> Callable[[str], str]:
        """The name-to-identity mapping of ``table`` (unanalysed names map to themselves)."""
        mapping = self.identities.setdefault(table, {})
        get = mapping.get
        return lambda name: get(name, name)

    def _group(self, table: str, h: str) -> tuple[str | None, str]:
        """Service-port name and protocol of the SVC/SVL/EXT/FW/XLB chains with hash ``h``."""
        found = self._groups.get((table, h))
        if found is None:
            self._name_hashes(table, [h])
            found = self._groups[(table, h)]
        return found

    def _name_hashes(self, table: str, hashes: Iterable[str]) -> None:
        """Name the Service ports of chain hashes ``hashes`` of ``table`` the way kubeview
        names them (:func:`~netproxy.kubeview.iptables.hash_ports`), reading only their
        part of the table: their chains, the frontend rules jumping to them and the endpoint
        chains they jump to."""
        hashes = [h for h in dict.fromkeys(hashes) if (table, h) not in self._groups]
        index = self._index(table)
        if not hashes:
            return
        if index is None:
            self._groups.update({(table, h): (None, "") for h in hashes})
            return
        named = hash_ports(self._part(index, hashes, endpoints=False))
        # the protocol of a port no commented rule gives comes from its endpoint chains' DNAT
        unsure = [h for h in hashes if h in named and named[h][1] is None]
        if unsure:
            named.update(hash_ports(self._part(index, unsure, endpoints=True)))
        for h in hashes:
            spn, proto = named.get(h, (None, None))
            self._groups[(table, h)] = (spn, proto or "") if spn is not None else (None, "")

    @staticmethod
    def _part(index: _TableIndex, hashes: list[str], *, endpoints: bool) -> Table:
        """The chains of ``hashes`` and the frontend rules jumping to them (``endpoints``:
        with the endpoint chains they jump to)."""
        chains = index.table.chains
        part = Table(index.table.name)
        for h in hashes:
            for role in SERVICE_ROLES:
                name = f"KUBE-{role}-{h}"
                chain = chains.get(name)
                if chain is None:
                    continue
                part.chains[name] = chain
                for rule in chain.rules if endpoints else ():
                    t = rule.target
                    if t is not None and t.name.startswith("KUBE-SEP-") and t.name in chains:
                        part.chains[t.name] = chains[t.name]
                for cname, rule in index.by_target.get(name, ()):
                    holder = part.chains.get(cname)
                    if holder is None:
                        holder = part.chains[cname] = Chain(cname)
                    holder.rules.append(rule)
        return part

    def info(self, table: str, name: str) -> ChainInfo | None:
        """What chain ``name`` is (None for chains that are not per-service or do not exist)."""
        found = self.chains.get((table, name))
        if found is not None:
            return found
        role = chain_role(name)
        t = self.ruleset.tables.get(table)
        if role is None or t is None or name not in t.chains:
            return None
        info = ChainInfo(table, name, role, identity=name)
        if role == ENDPOINT_ROLE:
            rules = t.chains[name].rules
            endpoint, proto = _dnat_destination(rules)
            spn = _first_spn(rules)
            info.endpoint = endpoint
            if spn is None or not proto or endpoint is None:
                parents = self._hints.get(table, {}).get(name)
                if not parents:
                    index = self._index(table)
                    parents = index.sep_parents(name) if index is not None else []
                for parent in parents:
                    gspn, gproto = self._group(table, chain_hash(parent))
                    spn = spn or gspn
                    proto = proto or gproto
                    if endpoint is None:  # no DNAT rule (an emptied chain): the jump's comment
                        endpoint = _endpoint_from_jumps(t.chains[parent].rules, name) if parent in t.chains else None
                info.endpoint = endpoint
            if spn is not None:
                info.service = ServiceKey(spn, proto)
                if endpoint is not None:
                    info.identity = f"SEP<{spn}|{proto}|{endpoint}>"
        else:
            spn, proto = self._group(table, chain_hash(name))
            if spn is not None:
                info.service = ServiceKey(spn, proto)
                info.identity = f"{role}<{spn}|{proto}>"
        self.chains[(table, name)] = info
        if info.service is not None:
            self._by_service.setdefault(info.service, []).append(info)
        return info

    def analyse_chains(self, table: str, names: Iterable[str]) -> None:
        """Give identities to ``names``; an identity two of them share falls back to names.

        Policy chains among ``names`` also tell which service their endpoint chains belong
        to, which saves a pass over the whole table for endpoint chains without comments.
        """
        names = list(names)
        t = self.ruleset.tables.get(table)
        if t is None:
            return
        hints = self._hints.setdefault(table, {})
        for p in names:
            if chain_role(p) in ("SVC", "SVL", "XLB") and p in t.chains:
                for rule in t.chains[p].rules:
                    target = rule.target
                    if target is not None and target.name.startswith("KUBE-SEP-"):
                        hints.setdefault(target.name, []).append(p)
        # the Service ports of every hash these chains need, read in one part of the table
        self._name_hashes(table, [chain_hash(n) for n in names if chain_role(n) in SERVICE_ROLES]
                          + [chain_hash(p) for n in names for p in hints.get(n, ())])
        infos = [i for i in (self.info(table, n) for n in names) if i is not None]
        counts: dict[str, int] = {}
        for i in infos:
            counts[i.identity] = counts.get(i.identity, 0) + 1
        mapping = self.identities.setdefault(table, {})
        for i in infos:
            if counts[i.identity] > 1:
                i.identity = i.name
            if i.identity != i.name:
                mapping[i.name] = i.identity

    # -- services ------------------------------------------------------------------------
    def service_of_rule(self, table: str, chain: str, rule: Rule) -> ServiceKey | None:
        """The service a rule belongs to: its chain's, else its target's, else its comment's."""
        info = self.info(table, chain)
        if info is not None and info.service is not None:
            return info.service
        target = rule.target
        if target is not None:
            tinfo = self.info(table, target.name)
            if tinfo is not None and tinfo.service is not None:
                return tinfo.service
        spn = comment_spn(rule.comment())
        if spn is None:
            return None
        return self.resolve(spn, _protocol(rule))

    def _protocols_of(self, spn: str) -> set[str]:
        protos: set[str] = set()
        for table in self.ruleset.tables:
            index = self._index(table)
            if index is None:
                continue
            for _c, rule in index.by_spn.get(spn, ()):
                t = rule.target
                if t is not None and chain_role(t.name) is not None:
                    p = _protocol(rule)
                    if p:
                        protos.add(p)
        return protos

    def resolve(self, spn: str, proto: str) -> ServiceKey:
        """The service key for a comment's name and a rule's protocol.

        The health-check rule is always TCP, so a name whose service ports all use one other
        protocol resolves to that one.
        """
        protos = self._protocols_of(spn)
        if proto in protos or not protos:
            return ServiceKey(spn, proto)
        if len(protos) == 1:
            return ServiceKey(spn, next(iter(protos)))
        return ServiceKey(spn, proto)

    def service(self, key: ServiceKey) -> ServiceIndex | None:
        """Where service port ``key`` lives, or None if this ruleset does not have it."""
        if key in self._services:
            return self._services[key]
        out = ServiceIndex(key)
        hashes: set[str] = set()
        for tname in self.ruleset.tables:
            index = self._index(tname)
            if index is None:
                continue
            for cname, rule in index.by_spn.get(key.spn, ()):
                t = rule.target
                if t is not None and chain_role(t.name) in SERVICE_ROLES:
                    info = self.info(tname, t.name)
                    if info is not None and info.service == key:
                        hashes.add(chain_hash(t.name))
                        continue
                if (t is None or chain_role(t.name) is None) \
                        and self.service_of_rule(tname, cname, rule) == key:
                    out.shared.append((tname, cname, rule))
        analysed = self._by_service.get(key, [])
        for info in analysed:
            if info.role in SERVICE_ROLES:
                hashes.add(chain_hash(info.name))
        nat = self.ruleset.tables.get("nat")
        seps: list[str] = []
        if nat is not None:
            index = self._index("nat")
            for h in sorted(hashes):
                for role in SERVICE_ROLES:
                    name = f"KUBE-{role}-{h}"
                    if name not in nat.chains:
                        continue
                    out.chains.setdefault(role, []).append(name)
                    if index is not None:
                        out.shared.extend(("nat", c, r) for c, r in index.by_target.get(name, ()))
                    for rule in nat.chains[name].rules:
                        t = rule.target
                        if t is not None and t.name.startswith("KUBE-SEP-") and t.name in nat.chains \
                                and t.name not in seps:
                            seps.append(t.name)
        for info in analysed:
            if info.table == "nat" and info.role == ENDPOINT_ROLE and info.name not in seps:
                seps.append(info.name)
        if seps:
            out.chains[ENDPOINT_ROLE] = seps
        for tname in self.ruleset.tables:
            if tname == "nat":
                continue
            index = self._index(tname)
            if index is None:
                continue
            for h in hashes:
                for role in SERVICE_ROLES:
                    out.shared.extend((tname, c, r) for c, r in index.by_target.get(f"KUBE-{role}-{h}", ()))
        result = out if (out.chains or out.shared) else None
        if result is not None:
            self._services[key] = result
        return result


def analyse(ruleset: Ruleset) -> KubeView:
    """A lazy view of ``ruleset`` (chains are analysed when first asked about)."""
    return KubeView(ruleset)
