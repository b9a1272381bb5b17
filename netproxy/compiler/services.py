"""Per service-port rules (spec §2.3), one small function per chain family.

The order of calls in :func:`write_service_port` is the order kube-proxy's ``syncProxyRules``
writes lines, so the payload matches byte for byte. Every rule goes through a sink
(:mod:`netproxy.compiler.writer`) as a rule kind and its values (:mod:`netproxy.compiler.rules`).
"""

from __future__ import annotations

from functools import cache, lru_cache

from netproxy.compiler.build import addrtype, in_iface, source
from netproxy.compiler.plan import Plan, plan
from netproxy.compiler.rules import (
    affinity_check,
    comment_only,
    commented,
    dnat,
    from_source,
    last_pick,
    localhost_node_port,
    node_port,
    node_port_verdict,
    plain_jump,
    random_pick,
    to_service_ip,
)
from netproxy.compiler.writer import Sink
from netproxy.netfilter.model import Option
from netproxy.netfilter.values import kube_probability
from netproxy.proxy.decisions import allow_from_node
from netproxy.proxy.endpoints import EndpointInfo
from netproxy.proxy.localdetect import LocalDetector
from netproxy.proxy.serviceport import ServicePortInfo
from netproxy.proxy.settings import ProxySettings
from netproxy.proxy.topology import Categorized

MARK_MASQ = "KUBE-MARK-MASQ"


def write_cluster_ip(out: Sink, pl: Plan) -> None:
    svc = pl.svc
    if pl.has_internal:
        out.nat("KUBE-SERVICES", to_service_ip(pl.p), f"{pl.spn} cluster IP", svc.cluster_ip,
                pl.port, pl.internal_chain)
    else:
        out.filter("KUBE-SERVICES", to_service_ip(pl.p), pl.int_comment, svc.cluster_ip, pl.port,
                   pl.int_target)


def write_external_ips(out: Sink, pl: Plan) -> None:
    service_ip = to_service_ip(pl.p)
    for addr in pl.svc.external_ips:
        if pl.cat.has_any:
            out.nat("KUBE-SERVICES", service_ip, f"{pl.spn} external IP", addr, pl.port,
                    pl.ext_chain)
        if not pl.has_external:
            out.filter("KUBE-EXTERNAL-SERVICES", service_ip, pl.ext_comment, addr, pl.port,
                       pl.ext_target)


def write_load_balancer_ips(out: Sink, pl: Plan) -> None:
    svc, port = pl.svc, pl.port
    service_ip = to_service_ip(pl.p)
    for addr in svc.lb_vips:
        if pl.cat.has_any:
            out.nat("KUBE-SERVICES", service_ip, f"{pl.spn} loadbalancer IP", addr, port,
                    pl.lb_target)
        if pl.uses_fw_chain:
            out.filter("KUBE-PROXY-FIREWALL", service_ip,
                       f"{pl.spn} traffic not accepted by {pl.fw_chain}", addr, port, "DROP")
    if not pl.has_external:
        for addr in svc.lb_vips:
            out.filter("KUBE-EXTERNAL-SERVICES", service_ip, pl.ext_comment, addr, port,
                       pl.ext_target)


def write_node_port(out: Sink, pl: Plan, settings: ProxySettings) -> None:
    svc = pl.svc
    if not svc.node_port:
        return
    port = str(svc.node_port)
    if pl.cat.has_any:
        if settings.localhost_nodeports_effective and settings.nfacct:
            out.nat("KUBE-NODEPORTS", localhost_node_port(pl.p), pl.spn, port, pl.ext_chain)
        out.nat("KUBE-NODEPORTS", node_port(pl.p), pl.spn, port, pl.ext_chain)
    if not pl.has_external:
        out.filter("KUBE-EXTERNAL-SERVICES", node_port_verdict(pl.p), pl.ext_comment, port,
                   pl.ext_target)


def write_health_check(out: Sink, pl: Plan) -> None:
    hc = pl.svc.health_check_node_port
    if hc:
        out.filter("KUBE-NODEPORTS", node_port("tcp"), f"{pl.spn} health check node port", str(hc),
                   "ACCEPT")


def detector_matches(settings: ProxySettings, local: bool) -> tuple[Option, ...]:
    """``-s CIDR`` / ``-i IFACE`` (local) or their negations (not local); empty when no-op."""
    return _detector_matches(settings.detector, local)


@cache
def _detector_matches(det: LocalDetector, local: bool) -> tuple[Option, ...]:
    """The same items for every service port (shared, like the other common items)."""
    if det.kind == "source":
        return (source(det.value, not local),)
    if det.kind == "interface":
        return (in_iface(det.value, not local),)
    return ()


def write_internal_masquerade(out: Sink, pl: Plan, settings: ProxySettings) -> None:
    if not pl.has_internal:
        return
    if settings.masquerade_all:
        masq = to_service_ip(pl.p)
    elif settings.detector.implemented:
        masq = to_service_ip(pl.p, detector_matches(settings, False))
    else:
        return
    out.nat(pl.internal_chain, masq, f"{pl.spn} cluster IP", pl.svc.cluster_ip, pl.port,
            MARK_MASQ)


def write_ext_chain(out: Sink, pl: Plan, settings: ProxySettings) -> None:
    if not pl.uses_ext_chain:
        return
    ext, spn = pl.ext_chain, pl.spn
    if not pl.svc.external_policy_local:
        out.nat(ext, commented(), f"masquerade traffic for {spn} external destinations", MARK_MASQ)
    else:
        if settings.detector.implemented:
            out.nat(ext, commented(detector_matches(settings, True)),
                    f"pod traffic for {spn} external destinations", pl.svc_chain)
        local = commented(addrtype("src-type"))
        out.nat(ext, local, f"masquerade LOCAL traffic for {spn} external destinations", MARK_MASQ)
        out.nat(ext, local, f"route LOCAL traffic for {spn} external destinations", pl.svc_chain)
    if pl.has_external:
        out.nat(ext, plain_jump, pl.external_policy_chain)


def write_fw_chain(out: Sink, pl: Plan, settings: ProxySettings) -> None:
    if not pl.uses_fw_chain:
        return
    fw, spn, svc = pl.fw_chain, pl.spn, pl.svc
    allowed = from_source(True)
    lb_comment = f"{spn} loadbalancer IP"
    for cidr in svc.source_ranges:
        out.nat(fw, allowed, lb_comment, cidr, pl.ext_chain)
    if allow_from_node(svc, settings.primary_ip):
        for addr in svc.lb_vips:
            out.nat(fw, allowed, lb_comment, addr, pl.ext_chain)
    out.nat(fw, comment_only, f"other traffic to {spn} will be dropped by KUBE-PROXY-FIREWALL")


def write_endpoint_choice(out: Sink, pl: Plan, chain: str, eps: list[EndpointInfo],
                          large: bool) -> None:
    """SVC/SVL: affinity checks, then one probability rule per endpoint (spec §2.3.12)."""
    spn = pl.spn
    sep_of = pl.sep_names
    commented_rules = not large
    endpoints = [ep.endpoint for ep in eps]
    seps = [sep_of.get(endpoint) or pl.sep(endpoint) for endpoint in endpoints]
    if pl.svc.client_ip_affinity:
        out.nat_rules(chain, affinity_check(commented_rules),
                      (spn, endpoints, seps, str(pl.svc.sticky_seconds)))
    n = len(eps)
    if n:
        out.nat_rules(chain, random_pick(commented_rules),
                      (spn, endpoints[:-1], _probabilities(n), seps[:-1]))
        out.nat(chain, last_pick(commented_rules), spn, endpoints[-1], seps[-1])


@lru_cache(maxsize=1024)
def _probabilities(n: int) -> tuple[str, ...]:
    """1/n, 1/(n-1), ... 1/2 as kube-proxy writes them: the picks before the last of n."""
    return tuple(kube_probability(n - i) for i in range(n - 1))


def write_endpoint_chains(out: Sink, pl: Plan, large: bool) -> None:
    """KUBE-SEP: hairpin masquerade and DNAT for every reachable endpoint (spec §2.3.13)."""
    text = "" if large else pl.spn
    eps = pl.cat.all_reachable
    sep_of = pl.sep_names  # the plan named every reachable endpoint's chain
    seps = [sep_of[ep.endpoint] for ep in eps]
    out.endpoint_chains(seps, from_source(not large), (text, [ep.ip for ep in eps], MARK_MASQ),
                        dnat(pl.p, not large, pl.svc.client_ip_affinity),
                        (text, seps, [ep.endpoint for ep in eps]))


def write_service_port(out: Sink, svc: ServicePortInfo, cat: Categorized,
                       settings: ProxySettings, large: bool) -> None:
    """Every line kube-proxy writes for one service port, in its order."""
    pl = plan(svc, cat)
    write_cluster_ip(out, pl)
    write_external_ips(out, pl)
    write_load_balancer_ips(out, pl)
    write_node_port(out, pl, settings)
    write_health_check(out, pl)
    # Chains are declared where kube-proxy writes their chain lines: EXT, FW, SVC, SVL, SEP.
    if pl.uses_ext_chain:
        out.declare_nat(pl.ext_chain)
    if pl.uses_fw_chain:
        out.declare_nat(pl.fw_chain)
    if pl.uses_cluster_chain:
        out.declare_nat(pl.svc_chain)
    if pl.uses_local_chain:
        out.declare_nat(pl.svl_chain)
    write_internal_masquerade(out, pl, settings)
    write_ext_chain(out, pl, settings)
    write_fw_chain(out, pl, settings)
    if pl.uses_cluster_chain:
        write_endpoint_choice(out, pl, pl.svc_chain, cat.cluster, large)
    if pl.uses_local_chain:
        write_endpoint_choice(out, pl, pl.svl_chain, cat.local, large)
    write_endpoint_chains(out, pl, large)
