"""``netproxy migrate``: compile the cluster in iptables and in nftables mode for the node
and compare how every Service frontend behaves, the differences sorted into those kube-proxy
intends and findings."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from netproxy.commands.cluster_options import cluster_options
from netproxy.commands.nftables_options import NftFlags, nft_options
from netproxy.errors import InputError
from netproxy.gcpause import paused_gc
from netproxy.migrate.report import MigrationReport, compare, render_text

_FALLBACK_NODE = {"ipv4": "192.0.2.10", "ipv6": "2001:db8:1::10"}


@click.command("migrate")
@cluster_options
@nft_options
@click.option("--local-ip", "local_ips", multiple=True, metavar="IP",
              help="Another address of the node (repeatable; e.g. docker0's): NodePorts are "
                   "probed on it too.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--all", "show_all", is_flag=True,
              help="Show every expected difference, not two examples per group.")
def command(local_ips: tuple[str, ...], as_json: bool, show_all: bool, **params: Any) -> int:
    """Will the Services behave the same after switching kube-proxy from iptables to
    nftables mode? netproxy migrate INPUTS [compile flags].

    Compiles the cluster in both modes for the node and traces probe packets for every
    frontend of every Service (ClusterIP, NodePort on each node address and on localhost,
    ExternalIP, LoadBalancer IP) from a pod of this node, a pod elsewhere, the node,
    localhost and outside clients (inside and outside loadBalancerSourceRanges), comparing
    verdict, endpoint shares, masquerade and session affinity. Differences kube-proxy's
    migration notes list are named with the Services they affect and the setting that
    avoids them; anything else is a finding.

    Exit code 0: same behaviour or only intended differences, 1: findings, 2: error.
    """
    from netproxy.commands.cluster_options import load_cluster

    flags = NftFlags.pop(params)
    with paused_gc(freeze=True):
        cluster = load_cluster(params)
    family = params.get("family") or "ipv4"
    families = ("ipv4", "ipv6") if family == "dual" else (family,)
    reports = [_family_report({**params, "family": fam}, cluster, flags, list(local_ips))
               for fam in families]
    if as_json:
        body: Any = reports[0].to_json() if len(reports) == 1 else \
            {"families": {fam: r.to_json() for fam, r in zip(families, reports, strict=True)}}
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
    else:
        sys.stdout.write("\n".join(render_text(r, examples=10**9 if show_all else 2)
                                   for r in reports))
    return max(r.exit_code for r in reports)


def _family_report(params: dict[str, Any], cluster: Any, flags: NftFlags,
                   extra_ips: list[str]) -> MigrationReport:
    from netproxy.commands.cluster_options import effective_config
    from netproxy.k8s.ipaddr import family_of, parse_ip
    from netproxy.migrate.compiled import compile_both
    from netproxy.migrate.probes import cluster_probes, sources

    fam = params["family"]
    extra: list[str] = []
    for text in extra_ips:
        addr = parse_ip(text)
        if addr is None:
            raise InputError(f"invalid IP address {text!r}", where="--local-ip")
        if family_of(addr) == fam and str(addr) not in extra:
            extra.append(str(addr))
    both = compile_both(params, cluster, flags)
    model, options = both.model, both.options
    old_settings, new_settings = both.old_settings, both.new_settings
    context: list[str] = [f"node {old_settings.node_name or '(unnamed)'}, {fam}"]
    node_ips = [ip for ip in old_settings.node_ips if ip not in extra] + extra
    if not node_ips:
        node_ips = [_FALLBACK_NODE[fam]]
        context.append(f"no node address known (--node-ip or a Node object): probing "
                       f"{node_ips[0]}")
    local = [old_settings.local_addresses[0], *node_ips]
    cfg = effective_config({**params, "proxy_mode": "iptables"}, cluster)
    node = cluster.node(old_settings.node_name)
    endpoints = {ep.ip for eps in model.endpoints.values() for ep in eps}
    here = frozenset(ep.ip for eps in model.endpoints.values() for ep in eps if ep.is_local)
    srcs = sources(old_settings, cfg.cluster_cidrs, node.pod_cidrs if node is not None else (),
                   node_ips[0], endpoints, here)
    context.append(f"node addresses {', '.join(node_ips)}; pod here {srcs.pod_here}, pod "
                   f"elsewhere {srcs.pod_elsewhere or '(no cluster CIDR known)'}, outside "
                   f"{srcs.external}")
    if srcs.note:
        context.append(srcs.note)
    if not options.service_cidrs:
        context.append("no ServiceCIDRs known (ServiceCIDR objects or --service-cidr): "
                       "unallocated service addresses not probed")
    probes = cluster_probes(model, old_settings, srcs, node_ips, options.service_cidrs)
    old, new = both.tracers(local)
    report = MigrationReport(old="compiled from " + ", ".join(params["inputs"]),
                             new="compiled from " + ", ".join(params["inputs"]), context=context,
                             family=fam)
    compare(report, probes, old, new, old_nodeports=old_settings.nodeports,
            new_nodeports=new_settings.nodeports, local_endpoints=here)
    _notes(report, model, old_settings)
    return report


def _notes(report: MigrationReport, model: Any, settings: Any) -> None:
    nodeports = sorted({sp.spn for sp in model.service_ports if sp.node_port})
    health = sorted({sp.spn for sp in model.service_ports if sp.health_check_node_port})
    if nodeports:
        report.notes["host-firewall"] = nodeports
    if health:
        report.notes["health-check-nodeports"] = health
    if not settings.tcp_be_liberal:
        report.notes["conntrack-invalid"] = []
