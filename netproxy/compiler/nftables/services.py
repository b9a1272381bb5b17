"""What kube-proxy writes for one service port in nftables mode (the service loop of
``syncProxyRules``), in its order. The decisions come from :mod:`netproxy.proxy.decisions`,
shared with iptables mode; this module only names them in nftables terms."""

from __future__ import annotations

from netproxy import nftnames
from netproxy.compiler.nftables.fixed import (
    detector,
    ip_x,
    localhost_reject_protocols,
    masquerade_rule,
)
from netproxy.compiler.nftables.listing import interval_set
from netproxy.compiler.nftables.options import NftOptions
from netproxy.compiler.nftables.table import Table
from netproxy.proxy.decisions import REJECT, allow_from_node, decide
from netproxy.proxy.endpoints import EndpointInfo
from netproxy.proxy.serviceport import ServicePortInfo
from netproxy.proxy.settings import ProxySettings
from netproxy.proxy.topology import Categorized

REJECT_VERDICT = "goto reject-chain"


class PortWriter:
    """Writes the service ports of one table (settings shared by every port)."""

    def __init__(self, t: Table, settings: ProxySettings, options: NftOptions) -> None:
        self.t = t
        self.settings = settings
        self.options = options
        self.ipx = ip_x(settings)
        self.masq, self.masq_listed = masquerade_rule(settings.mark)
        self.localhost_rejected = localhost_reject_protocols(settings, options)
        self.cut_comments = not options.layout_1_36

    def verdict(self, decision: str) -> str:
        return REJECT_VERDICT if decision == REJECT else decision

    def write(self, svc: ServicePortInfo, cat: Categorized) -> None:
        """Every operation for one service port, in kube-proxy's order (spec §4.2)."""
        t, d = self.t, decide(svc, cat)
        name = svc.name
        p = svc.protocol
        base = nftnames.service_base(name.namespace, name.name, p, name.port)
        service_chain, local_chain = "service-" + base, "local-" + base
        external_chain, firewall_chain = "external-" + base, "firewall-" + base
        spn = svc.spn
        comment = nftnames.truncate_comment(spn) if self.cut_comments else spn
        affinity = svc.client_ip_affinity
        endpoint_bases = {ep.endpoint: nftnames.endpoint_base(
            name.namespace, name.name, p, name.port, ep.ip, ep.port) for ep in cat.all_reachable}

        for ep in cat.all_reachable:
            if affinity:
                t.ensure_chain("endpoint-" + endpoint_bases[ep.endpoint])
            if ep.is_local:
                t.ensure_element("hairpin-connections", f"{ep.ip} . {ep.ip} . {p} . {ep.port}")
        if d.uses_cluster:
            t.ensure_chain(service_chain)
        if d.uses_local:
            t.ensure_chain(local_chain)
        if d.uses_external:
            t.ensure_chain(external_chain)
        internal_chain = local_chain if d.internal_local else service_chain
        external_policy_chain = local_chain if d.external_local else service_chain
        int_verdict = self.verdict(d.internal_verdict)
        ext_verdict = self.verdict(d.external_verdict)
        port = svc.port

        t.ensure_element("cluster-ips", svc.cluster_ip)
        key = f"{svc.cluster_ip} . {p} . {port}"
        if d.has_internal:
            t.ensure_element("service-ips", key, f"goto {internal_chain}")
        else:
            t.ensure_element("no-endpoint-services", key, int_verdict, comment)
        for ip in svc.external_ips:
            key = f"{ip} . {p} . {port}"
            if d.has_endpoints:
                t.ensure_element("service-ips", key, f"goto {external_chain}")
            if not d.has_external:
                t.ensure_element("no-endpoint-services", key, ext_verdict, comment)
        if d.uses_source_ranges:
            t.ensure_chain(firewall_chain)
        for ip in svc.lb_vips:
            key = f"{ip} . {p} . {port}"
            if d.has_endpoints:
                t.ensure_element("service-ips", key, f"goto {external_chain}")
            if d.uses_source_ranges:
                t.ensure_element("firewall-ips", key, f"goto {firewall_chain}")
        if not d.has_external:
            for ip in svc.lb_vips:
                t.ensure_element("no-endpoint-services", f"{ip} . {p} . {port}", ext_verdict, comment)
        if svc.node_port:
            key = f"{p} . {svc.node_port}"
            if p in self.localhost_rejected:
                t.ensure_element("localhost-nodeport-reject-ports", key,
                                 f"goto localhost-nodeport-reject-{p}")
            if d.has_endpoints:
                t.ensure_element("service-nodeports", key, f"goto {external_chain}")
            if not d.has_external:
                t.ensure_element("no-endpoint-nodeports", key, ext_verdict, comment)

        if d.uses_external:
            self.external_rules(external_chain, service_chain, external_policy_chain,
                                d.external_local, d.has_external)
        if d.uses_source_ranges:
            self.firewall_rule(firewall_chain, svc)
        if affinity:
            for ep in cat.all_reachable:
                t.add_set("affinity-" + endpoint_bases[ep.endpoint],
                          "ipv6_addr" if self.settings.ipv6 else "ipv4_addr",
                          flags="dynamic,timeout", timeout=svc.sticky_seconds)
            if d.uses_cluster:
                self.endpoint_jumps(service_chain, cat.cluster, endpoint_bases)
            if d.uses_local:
                self.endpoint_jumps(local_chain, cat.local, endpoint_bases)
            for ep in cat.all_reachable:
                epbase = endpoint_bases[ep.endpoint]
                chain = "endpoint-" + epbase
                t.rule(chain, f"update @affinity-{epbase} {{ {self.ipx} saddr }}")
                t.rule(chain, f"meta l4proto {p} dnat to {ep.endpoint}")
        else:
            if d.uses_cluster:
                self.endpoint_dnats(service_chain, p, cat.cluster)
            if d.uses_local:
                self.endpoint_dnats(local_chain, p, cat.local)

    def external_rules(self, chain: str, service_chain: str, policy_chain: str, local: bool,
                       has_external: bool) -> None:
        """§4.3: masquerade (eTP Cluster) or the short-circuits (eTP Local), then the policy."""
        t = self.t
        if not local:
            t.rule(chain, self.masq, self.masq_listed, comment="masquerade")
        else:
            if self.settings.detector.implemented:
                written, listed = detector(self.settings, local=True)
                t.rule(chain, f"{written} goto {service_chain}", f"{listed} goto {service_chain}",
                       comment="short-circuit pod traffic")
            t.rule(chain, f"fib saddr type local {self.masq}", f"fib saddr type local {self.masq_listed}",
                   comment="masquerade local traffic")
            t.rule(chain, f"fib saddr type local goto {service_chain}",
                   comment="short-circuit local traffic")
        if has_external:
            t.rule(chain, f"goto {policy_chain}")

    def firewall_rule(self, chain: str, svc: ServicePortInfo) -> None:
        """§4.4: drop sources outside the ranges (and the node's own VIPs when it is inside)."""
        sources = list(svc.source_ranges)
        if allow_from_node(svc, self.settings.primary_ip):
            sources.extend(svc.lb_vips)
        self.t.rule(chain, f"{self.ipx} saddr != {{ {' , '.join(sources)} }} drop",
                    f"{self.ipx} saddr != {interval_set(sources)} drop")

    def endpoint_jumps(self, chain: str, eps: list[EndpointInfo], bases: dict[str, str]) -> None:
        """§4.6: affinity checks, then the random pick among the endpoint chains."""
        t, ipx = self.t, self.ipx
        for ep in eps:
            epbase = bases[ep.endpoint]
            t.rule(chain, f"{ipx} saddr @affinity-{epbase} goto endpoint-{epbase}")
        picks = [f"{i} : goto endpoint-{bases[ep.endpoint]}" for i, ep in enumerate(eps)]
        t.rule(chain, f"numgen random mod {len(eps)} vmap {{ {' , '.join(picks)} }}",
               f"numgen random mod {len(eps)} vmap {{ {', '.join(picks)} }}")

    def endpoint_dnats(self, chain: str, p: str, eps: list[EndpointInfo]) -> None:
        """§4.7: DNAT straight from the service chain (no endpoint chains)."""
        t, ipx = self.t, self.ipx
        if len(eps) == 1 and not self.options.layout_1_36:
            ep = eps[0]
            listed = f"meta l4proto {p} dnat to {ep.endpoint}"
            if self.options.single_endpoint_dnat == "addrport":
                t.rule(chain, f"meta l4proto {p} dnat {ipx} addr . port to {ep.ip} . {ep.port}", listed)
            else:
                t.rule(chain, listed)
            return
        picks = [f"{i} : {ep.ip} . {ep.port}" for i, ep in enumerate(eps)]
        head = f"meta l4proto {p} dnat {ipx}"
        tail = f"to numgen random mod {len(eps)} map"
        t.rule(chain, f"{head} addr . port {tail} {{ {' , '.join(picks)} }}",
               f"{head} {tail} {{ {', '.join(picks)} }}")
