"""What each node of a fleet should have, computing what the nodes share only once.

kube-proxy writes the same lines for most service ports on every node. A service port's rules
read only a few things that are the node's own: which endpoints are local (Local traffic
policies), which endpoints topology hints leave it, whether its primary address is inside a
load balancer's source ranges, and, through the settings, its pod CIDR
(``detectLocalMode: NodeCIDR``). So the audit keeps every service port's lines apart
(:class:`PortLines`):

* *shared* ports (none of the above applies) are compiled once, all together, per distinct set
  of the settings their rules read (:func:`shared_key`; usually one set for the whole fleet);
* *per-node* ports are compiled one by one, and remembered under what they depend on (the
  endpoint selection for the node, whether the node's address is in the source ranges): most
  nodes have no local endpoint of a given Service, so most nodes share those lines too;
* the fixed chains (head and tail rules, kubelet's chains, the jumps from built-in chains) are
  compiled once per distinct set of the settings they read.

:meth:`FleetModel.expected` puts the pieces together in kube-proxy's order (service ports
sorted, each port's lines of the shared chains ``KUBE-SERVICES``, ``KUBE-NODEPORTS``, ... in its
place), which gives, line for line, what compiling the whole cluster for that node gives
(``tests/test_audit.py`` checks it for every node of a generated fleet).
"""

from __future__ import annotations

import ipaddress
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
from netproxy.proxy.topology import Categorized, categorize
from netproxy.render import render_save

SHARED_CHAINS: dict[str, tuple[str, ...]] = {
    "filter": ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL"),
    "nat": ("KUBE-SERVICES", "KUBE-NODEPORTS"),
}
"""Chains holding lines of many service ports (every other chain a port writes is its own)."""

Where = tuple[str, str]
"""``(table, chain)``."""


@dataclass(slots=True)
class PortLines:
    """The save-view lines one service port contributes, per chain."""

    chains: list[Where] = field(default_factory=list)
    """The port's own chains, as declared."""
    lines: dict[Where, list[str]] = field(default_factory=dict)
    """Its rule lines per chain (own chains and its part of the shared chains)."""


def node_dependent(svc: ServicePortInfo, endpoints: list[EndpointInfo]) -> bool:
    """Whether a service port's rules can differ between nodes with the same shared settings."""
    if svc.uses_local_endpoints:
        return True  # local endpoints, and DROP rules when a node has none
    if svc.lb_vips and svc.source_ranges:
        return True  # the FW chain allows the node's own address when a range holds it
    return any(ep.zone_hints or ep.node_hints for ep in endpoints)


def shared_key(settings: ProxySettings) -> tuple[Any, ...]:
    """The settings a service port's rules read (``netproxy.compiler.services``)."""
    return (settings.family, settings.detector, settings.masquerade_all,
            settings.localhost_nodeports_effective, settings.nfacct,
            settings.large_cluster_endpoints, settings.prefer_same_node)


def _fixed_key(settings: ProxySettings) -> ProxySettings:
    """The settings the fixed chains read: all but the node's name and zone, and its addresses
    only when NodePorts listen on some addresses rather than all."""
    return replace(settings, node_name="", zone="",
                   node_ips=() if settings.nodeports.match_all else settings.node_ips)


def _in_ranges(svc: ServicePortInfo, settings: ProxySettings) -> tuple[bool, ...]:
    if not (svc.lb_vips and svc.source_ranges) or not settings.primary_ip:
        return ()
    addr = ipaddress.ip_address(settings.primary_ip)
    out = []
    for cidr in svc.source_ranges:
        net = ipaddress.ip_network(cidr, strict=False)
        out.append(addr.version == net.version and addr in net)
    return tuple(out)


def _declared(out: PayloadWriter) -> dict[str, int]:
    return {"filter": len(out.filter_table.chains), "nat": len(out.nat_table.chains)}


def _rule_counts(out: PayloadWriter) -> dict[Where, int]:
    tables = {"filter": out.filter_table, "nat": out.nat_table}
    counts = {}
    for table, chains in SHARED_CHAINS.items():
        for chain in chains:
            found = tables[table].chains.get(chain)
            counts[(table, chain)] = len(found.rules) if found is not None else 0
    return counts


def compile_ports(ports: list[tuple[ServicePortInfo, Categorized]], settings: ProxySettings,
                  large: bool) -> list[PortLines]:
    """The lines of each of ``ports``, compiled together (rendered once) and cut apart."""
    out = PayloadWriter(settings.family)
    declare_fixed_chains(out, settings)
    tables = {"filter": out.filter_table, "nat": out.nat_table}
    chain_marks = [_declared(out)]
    rule_marks = [_rule_counts(out)]
    for svc, cat in ports:
        write_service_port(out, svc, cat, settings, large)
        chain_marks.append(_declared(out))
        rule_marks.append(_rule_counts(out))
    blocks = split_save(render_save(out.ruleset))
    names = {t: list(tables[t].chains) for t in tables}
    result = []
    for k in range(len(ports)):
        port = PortLines()
        for t in ("filter", "nat"):
            rules = blocks.tables[t].rules
            for chain in names[t][chain_marks[k][t]:chain_marks[k + 1][t]]:
                port.chains.append((t, chain))
                if chain in rules:
                    port.lines[(t, chain)] = rules[chain]
        for where, before in rule_marks[k].items():
            after = rule_marks[k + 1][where]
            if after > before:
                port.lines[where] = blocks.tables[where[0]].rules[where[1]][before:after]
        result.append(port)
    return result


@dataclass(slots=True)
class Fixed:
    """The fixed chains of a node: blocks, and per shared chain its lines before the ports."""

    blocks: Blocks
    head: dict[Where, int]


def compile_fixed(settings: ProxySettings) -> Fixed:
    out = PayloadWriter(settings.family)
    declare_fixed_chains(out, settings)
    write_head(out, settings)
    head = _rule_counts(out)
    write_nodeports_tail(out, settings)
    write_forward(out, settings)
    return Fixed(split_save(render_save(save_view(out.ruleset))), head)


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
    mode: str = "iptables"
    """The proxy mode the configuration (or ``--proxy-mode``) sets for the fleet."""
    shared: dict[tuple[Any, ...], dict[int, PortLines]] = field(default_factory=dict)
    """Per :func:`shared_key`: the lines of every shared port, by port index."""
    _ports: dict[tuple[Any, ...], PortLines] = field(default_factory=dict)
    _fixed: dict[ProxySettings, Fixed] = field(default_factory=dict)

    def large(self, settings: ProxySettings) -> bool:
        """Large-cluster mode (no per-endpoint comments), decided on all service ports."""
        return self.total_endpoints > settings.large_cluster_endpoints


    def settings(self, node: str, mode: str = "iptables") -> ProxySettings:
        """kube-proxy's settings on ``node`` in ``mode`` (each node is judged in its own)."""
        from netproxy.commands.cluster_options import settings_for

        return settings_for({**self.params, "hostname_override": node, "proxy_mode": mode},
                            self.cluster, nftables=mode == "nftables")

    def nft_text(self, node: str) -> str:
        """What ``nft list table ip kube-proxy`` shows on ``node`` after a full sync in
        nftables mode, compiled for it."""
        from netproxy.commands.nftables_options import NftFlags, options_for
        from netproxy.compiler.nftables import compile_table, list_table
        from netproxy.proxy.model import proxy_model

        settings = self.settings(node, "nftables")
        options = options_for(NftFlags(None, None, None, ()), self.params, self.cluster,
                              self.family)
        return list_table(compile_table(proxy_model(self.cluster, settings), settings, options))

    def add_shared(self, settings: ProxySettings) -> None:
        """Compile the shared ports for ``settings`` (once per distinct :func:`shared_key`)."""
        key = shared_key(settings)
        if key in self.shared:
            return
        base = replace(settings, node_name="", node_ips=(), zone="")
        ports = []
        for i in self.shared_ports:
            svc = self.ports[i]
            eps = self.shared_endpoints.get(svc.name, [])
            ports.append((svc, categorize(eps, svc, "", "", prefer_same_node=base.prefer_same_node)))
        compiled = compile_ports(ports, base, self.large(base))
        self.shared[key] = dict(zip(self.shared_ports, compiled, strict=True))

    def _fixed_for(self, settings: ProxySettings) -> Fixed:
        key = _fixed_key(settings)
        found = self._fixed.get(key)
        if found is None:
            found = self._fixed[key] = compile_fixed(settings)
        return found

    def _port_lines(self, i: int, eps: list[EndpointInfo], settings: ProxySettings,
                    skey: tuple[Any, ...]) -> PortLines:
        svc = self.ports[i]
        cat = categorize(eps, svc, settings.node_name, settings.zone,
                         prefer_same_node=settings.prefer_same_node)
        key = (i, skey, tuple(cat.cluster), tuple(cat.local), tuple(cat.all_reachable),
               cat.has_any, cat.topology_mode, _in_ranges(svc, settings))
        found = self._ports.get(key)
        if found is None:
            found = self._ports[key] = compile_ports([(svc, cat)], settings, self.large(settings))[0]
        return found

    def expected(self, settings: ProxySettings) -> Blocks:
        """The save view compiled for one node, as blocks."""
        skey = shared_key(settings)
        shared = self.shared.get(skey)
        if shared is None:
            shared = {}
            slices = self.cluster.slices
        else:
            slices = self.node_slices
        endpoints = endpoints_map(slices, self.family, settings.node_name,
                                  node_hints=settings.prefer_same_node)
        fixed = self._fixed_for(settings)
        tables = {name: TableBlocks(dict(t.policies), dict(t.rules))
                  for name, t in fixed.blocks.tables.items()}
        gathered: dict[Where, list[str]] = {}
        for where, count in fixed.head.items():
            lines = fixed.blocks.tables[where[0]].rules.get(where[1], [])
            gathered[where] = list(lines[:count])
        for i, svc in enumerate(self.ports):
            port = shared.get(i)
            if port is None:
                port = self._port_lines(i, endpoints.get(svc.name, []), settings, skey)
            for t, chain in port.chains:
                tables[t].policies[chain] = "-"
            for where, lines in port.lines.items():
                if where in gathered:
                    gathered[where] += lines
                else:
                    tables[where[0]].rules[where[1]] = lines
        for where, lines in gathered.items():
            tail = fixed.blocks.tables[where[0]].rules.get(where[1], [])[fixed.head[where]:]
            lines += tail
            if lines:
                tables[where[0]].rules[where[1]] = lines
        out = Blocks()
        for name, table in tables.items():
            table.policies = _save_order(name, table.policies)
            out.tables[name] = table
        return out


def _save_order(table: str, policies: dict[str, str]) -> dict[str, str]:
    builtins = [n for n in BUILTIN_CHAINS.get(table, ()) if n in policies]
    users = sorted(n for n in policies if n not in builtins)
    return {n: policies[n] for n in builtins + users}


def fleet_model(cluster: Cluster, params: dict[str, Any]) -> FleetModel:
    """Split the cluster's service ports into shared and per-node ones (see the module)."""
    from netproxy.commands.cluster_options import proxy_mode

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
                      total_endpoints=total, node_slices=node_slices,
                      mode=proxy_mode(params, cluster))
