"""What each node of a fleet should have, computing what the nodes share only once.

kube-proxy writes the same lines for most service ports on every node: only a few things a
service port's rules depend on are the node's own (its local endpoints, under a Local traffic
policy; the endpoints topology hints leave it; whether its primary address is inside a load
balancer's source ranges; its pod CIDR with ``detectLocalMode: NodeCIDR``). So the fleet's
service ports are split once into

* *shared* ports, whose rules are compiled once per distinct set of node settings that the
  rules of a service port read (usually one set for the whole fleet), and
* *per-node* ports, compiled for each node with the fixed rules (whose node-port and masquerade
  rules can depend on the node's addresses).

The two are merged in kube-proxy's order (service ports sorted, each port's lines of the shared
chains ``KUBE-SERVICES``, ``KUBE-NODEPORTS``, ... in its place), which gives, line for line, what
compiling the whole cluster for that node gives (``tests/test_audit_expected.py`` checks it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from netproxy.audit.blocks import Blocks, TableBlocks, split_save
from netproxy.compiler.fixed import (
    declare_fixed_chains,
    write_forward,
    write_head,
    write_nodeports_tail,
)
from netproxy.compiler.saveview import save_view
from netproxy.compiler.services import write_service_port
from netproxy.compiler.writer import PayloadWriter
from netproxy.k8s.loader import Cluster
from netproxy.netfilter.model import BUILTIN_CHAINS
from netproxy.proxy.endpoints import EndpointInfo, endpoints_map
from netproxy.proxy.serviceport import ServicePortInfo, ServicePortName, all_service_ports
from netproxy.proxy.settings import ProxySettings
from netproxy.proxy.topology import categorize
from netproxy.render import render_save

SHARED_CHAINS: dict[str, tuple[str, ...]] = {
    "filter": ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL"),
    "nat": ("KUBE-SERVICES", "KUBE-NODEPORTS"),
}
"""Chains holding lines of many service ports (every other chain a port writes is its own)."""

Offsets = dict[tuple[str, str], list[int]]
"""Per shared chain: the rule count before each written port, then after the last one."""


def node_dependent(svc: ServicePortInfo, endpoints: list[EndpointInfo]) -> bool:
    """Whether a service port's rules can differ between nodes with the same shared settings."""
    if svc.uses_local_endpoints:
        return True  # local endpoints, and DROP rules when a node has none
    if svc.lb_vips and svc.source_ranges:
        return True  # the FW chain allows the node's own address when a range holds it
    return any(ep.zone_hints or ep.node_hints for ep in endpoints)


def shared_key(settings: ProxySettings) -> tuple[Any, ...]:
    """The settings a shared port's rules read (``netproxy.compiler.services``)."""
    return (settings.family, settings.detector, settings.masquerade_all,
            settings.localhost_nodeports_effective, settings.nfacct)


def _write_ports(out: PayloadWriter, ports: list[tuple[int, ServicePortInfo, list[EndpointInfo]]],
                 settings: ProxySettings, large: bool) -> tuple[Offsets, list[int]]:
    """Write ``ports``; record where each one's lines of the shared chains start and end."""
    offsets: Offsets = {}
    tables = {"filter": out.filter_table, "nat": out.nat_table}
    for table, chains in SHARED_CHAINS.items():
        for chain in chains:
            offsets[(table, chain)] = []

    def mark() -> None:
        for (table, chain), marks in offsets.items():
            found = tables[table].chains.get(chain)
            marks.append(len(found.rules) if found is not None else 0)

    for _, svc, eps in ports:
        mark()
        cat = categorize(eps, svc, settings.node_name, settings.zone,
                         prefer_same_node=settings.prefer_same_node)
        write_service_port(out, svc, cat, settings, large)
    mark()
    return offsets, [index for index, _, _ in ports]


@dataclass(slots=True)
class Part:
    """Compiled lines of some service ports, cut up for merging."""

    blocks: Blocks
    offsets: Offsets
    indexes: list[int]
    """The global index (in sorted service-port order) of each port written."""

    def port_lines(self, table: str, chain: str, position: int) -> list[str]:
        lines = self.blocks.tables.get(table, TableBlocks()).rules.get(chain, [])
        marks = self.offsets[(table, chain)]
        return lines[marks[position]:marks[position + 1]]


@dataclass(slots=True)
class FleetModel:
    """The cluster as every node's kube-proxy sees it (loaded and validated once)."""

    cluster: Cluster
    params: dict[str, Any]
    """The command's flags (kube-proxy settings); the node name is set per node."""
    family: str
    ports: list[ServicePortInfo]
    shared_ports: list[int]
    node_ports: list[int]
    shared_endpoints: dict[ServicePortName, list[EndpointInfo]]
    total_endpoints: int
    node_slices: list[Any]
    """EndpointSlices of the services with per-node ports (their locality is per node)."""
    shared: dict[tuple[Any, ...], Part] = field(default_factory=dict)

    def large(self, settings: ProxySettings) -> bool:
        """Large-cluster mode (no per-endpoint comments), decided on all service ports."""
        return self.total_endpoints > settings.large_cluster_endpoints

    def settings(self, node: str) -> ProxySettings:
        from netproxy.commands.cluster_options import settings_for

        return settings_for({**self.params, "hostname_override": node}, self.cluster)

    def add_shared(self, settings: ProxySettings) -> None:
        """Compile the shared ports for ``settings`` (once per distinct :func:`shared_key`)."""
        key = shared_key(settings)
        if key in self.shared:
            return
        base = replace(settings, node_name="", node_ips=(), zone="")
        out = PayloadWriter(settings.family)
        declare_fixed_chains(out, base)
        ports = [(i, self.ports[i], self.shared_endpoints.get(self.ports[i].name, []))
                 for i in self.shared_ports]
        offsets, indexes = _write_ports(out, ports, base, self.large(base))
        self.shared[key] = Part(split_save(render_save(out.ruleset)), offsets, indexes)

    def expected(self, settings: ProxySettings) -> Blocks:
        """The save view compiled for one node, as blocks."""
        shared = self.shared.get(shared_key(settings))
        if shared is None:
            own = list(range(len(self.ports)))
            endpoints = endpoints_map(self.cluster.slices, self.family, settings.node_name,
                                      node_hints=settings.prefer_same_node)
        else:
            own = self.node_ports
            endpoints = endpoints_map(self.node_slices, self.family, settings.node_name,
                                      node_hints=settings.prefer_same_node)
        out = PayloadWriter(settings.family)
        declare_fixed_chains(out, settings)
        write_head(out, settings)
        offsets, indexes = _write_ports(
            out, [(i, self.ports[i], endpoints.get(self.ports[i].name, [])) for i in own],
            settings, self.large(settings))
        write_nodeports_tail(out, settings)
        write_forward(out, settings)
        mine = Part(split_save(render_save(save_view(out.ruleset))), offsets, indexes)
        return mine.blocks if shared is None else _merge(mine, shared)


def _merge(mine: Part, shared: Part) -> Blocks:
    """The node's blocks with the shared ports' chains and lines put in their places."""
    out = Blocks()
    for tname, table in mine.blocks.tables.items():
        merged = TableBlocks(dict(table.policies), dict(table.rules))
        other = shared.blocks.tables.get(tname)
        if other is not None:
            for chain in other.policies:
                if chain in merged.policies:
                    continue  # the fixed chains (shared ones are merged below)
                merged.policies[chain] = other.policies[chain]
                if chain in other.rules:
                    merged.rules[chain] = other.rules[chain]
            for chain in SHARED_CHAINS.get(tname, ()):
                if chain not in merged.policies:
                    continue
                lines = _merge_chain(mine, shared, tname, chain)
                if lines:
                    merged.rules[chain] = lines
        merged.policies = _save_order(tname, merged.policies)
        out.tables[tname] = merged
    return out


def _merge_chain(mine: Part, shared: Part, table: str, chain: str) -> list[str]:
    lines = mine.blocks.tables[table].rules.get(chain, [])
    marks = mine.offsets[(table, chain)]
    out = list(lines[:marks[0]])
    a = b = 0
    while a < len(mine.indexes) or b < len(shared.indexes):
        if b >= len(shared.indexes) or (a < len(mine.indexes) and mine.indexes[a] < shared.indexes[b]):
            out += mine.port_lines(table, chain, a)
            a += 1
        else:
            out += shared.port_lines(table, chain, b)
            b += 1
    out += lines[marks[-1]:]
    return out


def _save_order(table: str, policies: dict[str, str]) -> dict[str, str]:
    builtins = [n for n in BUILTIN_CHAINS.get(table, ()) if n in policies]
    users = sorted(n for n in policies if n not in builtins)
    return {n: policies[n] for n in builtins + users}


def fleet_model(cluster: Cluster, params: dict[str, Any]) -> FleetModel:
    """Split the cluster's service ports into shared and per-node ones (see the module)."""
    family = params.get("family") or "ipv4"
    ports = all_service_ports(cluster.services, family)
    everywhere = endpoints_map(cluster.slices, family, "")
    shared: list[int] = []
    own: list[int] = []
    for i, svc in enumerate(ports):
        (own if node_dependent(svc, everywhere.get(svc.name, [])) else shared).append(i)
    own_services = {(ports[i].name.namespace, ports[i].name.name) for i in own}
    node_slices = [s for s in cluster.slices if (s.namespace, s.service_name) in own_services]
    total = sum(len(everywhere.get(s.name, ())) for s in ports)
    return FleetModel(cluster=cluster, params=dict(params), family=family, ports=ports,
                      shared_ports=shared, node_ports=own,
                      shared_endpoints={ports[i].name: everywhere.get(ports[i].name, [])
                                        for i in shared},
                      total_endpoints=total,
                      node_slices=node_slices)
