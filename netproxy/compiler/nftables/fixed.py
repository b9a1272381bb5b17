"""What kube-proxy writes on every full sync before the services (``setupNFTables``)."""

from __future__ import annotations

import ipaddress

from netproxy.compiler.nftables.listing import interval_set
from netproxy.compiler.nftables.options import NftOptions
from netproxy.compiler.nftables.table import Table
from netproxy.proxy.settings import ProxySettings

TABLE_COMMENT = "rules for kube-proxy"

BASE_CHAINS = (
    ("filter-prerouting-pre-dnat", "filter", "prerouting", -110),
    ("filter-output-pre-dnat", "filter", "output", -110),
    ("filter-input", "filter", "input", 0),
    ("filter-forward", "filter", "forward", 0),
    ("filter-output", "filter", "output", 0),
    ("nat-prerouting", "nat", "prerouting", -100),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
)

JUMP_CHAINS = (
    ("nodeport-endpoints-check", "filter-input", "ct state new "),
    ("service-endpoints-check", "filter-input", "ct state new "),
    ("service-endpoints-check", "filter-forward", "ct state new "),
    ("service-endpoints-check", "filter-output", "ct state new "),
    ("firewall-check", "filter-prerouting-pre-dnat", "ct state new "),
    ("firewall-check", "filter-output-pre-dnat", "ct state new "),
    ("services", "nat-output", ""),
    ("services", "nat-prerouting", ""),
    ("masquerading", "nat-postrouting", ""),
    ("cluster-ips-check", "filter-forward", "ct state new "),
    ("cluster-ips-check", "filter-output", "ct state new "),
)

LOCALHOST_PROTOCOLS = ("tcp", "udp", "sctp")


def addr_type(settings: ProxySettings) -> str:
    return "ipv6_addr" if settings.ipv6 else "ipv4_addr"


def ip_x(settings: ProxySettings) -> str:
    return "ip6" if settings.ipv6 else "ip"


def listed_mark(mark: str) -> str:
    """A mark as ``nft list`` prints it: eight hex digits."""
    return f"0x{int(mark, 16):08x}"


def marked_test(mark: str) -> str:
    """``mark and M != 0`` as nft lists it; a mask that is a prefix of the 32 bits (only bit 31
    among single bits) is listed as one: ``meta mark != 0x00000000/1``."""
    if int(mark, 16) == 1 << 31:
        return "meta mark != 0x00000000/1"
    return f"meta mark & {listed_mark(mark)} != 0x00000000"


def masquerade_rule(mark: str) -> tuple[str, str]:
    """kube-proxy's ``masqueradeRule``, written and listed."""
    return f"mark set mark or {mark}", f"meta mark set meta mark | {listed_mark(mark)}"


def localhost_reject_protocols(settings: ProxySettings, options: NftOptions) -> tuple[str, ...]:
    """Protocols whose localhost NodePorts kube-proxy rejects and counts (gate on): UDP and
    SCTP when a userspace proxy serves TCP (an explicit loopback CIDR of the family in
    nodePortAddresses), else all three."""
    if options.layout_1_36 or not options.localhost_nodeports_gate:
        return ()
    addr = ipaddress.ip_address("::1" if settings.ipv6 else "127.0.0.1")
    if any(addr in net for net in settings.nodeports.cidrs):
        return ("udp", "sctp")
    return LOCALHOST_PROTOCOLS


def write_setup(t: Table, settings: ProxySettings, options: NftOptions) -> None:
    """§4.1: the table, base chains, fixed chains, sets, maps and their rules."""
    ipx, addr = ip_x(settings), addr_type(settings)
    local_host = "ip6 daddr ::1" if settings.ipv6 else "ip daddr 127.0.0.0/8"
    not_local_host = "ip6 daddr != ::1" if settings.ipv6 else "ip daddr != 127.0.0.0/8"
    mark = settings.mark
    shown_mark = listed_mark(mark)
    masq, masq_listed = masquerade_rule(mark)

    t.add_table(TABLE_COMMENT)
    for name, *_ in BASE_CHAINS:  # first sync of the process: re-create the base chains
        t.add_chain(name)
        t.delete_chain(name)
    for name, kind, hook, priority in BASE_CHAINS:
        t.add_chain(name, type=kind, hook=hook, priority=priority)
        t.flush_chain(name)
    for dst, src, extra in JUMP_CHAINS:
        t.ensure_chain(dst)
        t.rule(src, f"{extra}jump {dst}")

    t.add_set("hairpin-connections", f"{addr} . {addr} . inet_proto . inet_service",
              comment="service hairpin connections")
    t.rule("masquerading", f"mark and {mark} != 0 mark set mark xor {mark} masquerade fully-random",
           f"{marked_test(mark)} meta mark set meta mark ^ {shown_mark} masquerade fully-random")
    t.rule("masquerading", f"ct status dnat {ipx} saddr . {ipx} daddr . meta l4proto . th dport "
           "@hairpin-connections masquerade fully-random")

    t.add_set("cluster-ips", addr, comment="Active ClusterIPs")
    t.rule("cluster-ips-check", f"{ipx} daddr @cluster-ips reject",
           comment="Reject traffic to invalid ports of ClusterIPs")
    if options.service_cidrs:
        t.rule("cluster-ips-check", f"{ipx} daddr {{ {','.join(options.service_cidrs)} }} drop",
               f"{ipx} daddr {interval_set(list(options.service_cidrs))} drop",
               comment="Drop traffic to unallocated ClusterIPs")

    match_all = settings.nodeports.match_all
    t.add_set("nodeport-ips", addr, comment="IPs that accept NodePort traffic")
    if match_all:
        t.delete_set("nodeport-ips")
    else:
        t.flush_set("nodeport-ips")
        for ip in settings.nodeports.local_addresses(settings.local_addresses):
            if ip == "::1" or ip.startswith("127."):
                continue
            t.add_element("nodeport-ips", ip)

    t.add_map("no-endpoint-services", f"{addr} . inet_proto . inet_service : verdict",
              "vmap to drop or reject packets to services with no endpoints")
    t.add_map("no-endpoint-nodeports", "inet_proto . inet_service : verdict",
              "vmap to drop or reject packets to service nodeports with no endpoints")
    t.add_chain("reject-chain", comment="helper for @no-endpoint-services / @no-endpoint-nodeports")
    t.flush_chain("reject-chain")
    t.rule("reject-chain", "reject")
    t.rule("service-endpoints-check",
           f"{ipx} daddr . meta l4proto . th dport vmap @no-endpoint-services")
    if match_all:
        t.rule("nodeport-endpoints-check",
               f"{not_local_host} meta l4proto . th dport vmap @no-endpoint-nodeports")
    else:
        t.rule("nodeport-endpoints-check",
               f"{ipx} daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports")

    if not options.layout_1_36:
        write_localhost_nodeports(t, settings, options, local_host)

    t.add_map("firewall-ips", f"{addr} . inet_proto . inet_service : verdict",
              "destinations that are subject to LoadBalancerSourceRanges")
    t.ensure_chain("firewall-check")
    t.rule("firewall-check", f"{ipx} daddr . meta l4proto . th dport vmap @firewall-ips")

    t.add_map("service-ips", f"{addr} . inet_proto . inet_service : verdict",
              "ClusterIP, ExternalIP and LoadBalancer IP traffic")
    t.add_map("service-nodeports", "inet_proto . inet_service : verdict", "NodePort traffic")
    if settings.masquerade_all:
        t.rule("services", f"{ipx} daddr @cluster-ips {masq}", f"{ipx} daddr @cluster-ips {masq_listed}",
               comment="masquerade all clusterIP traffic")
    elif settings.detector.implemented:
        written, listed = detector(settings, local=False)
        t.rule("services", f"{ipx} daddr @cluster-ips {written} {masq}",
               f"{ipx} daddr @cluster-ips {listed} {masq_listed}",
               comment="masquerade clusterIP traffic from outside cluster")
    t.rule("services", f"{ipx} daddr . meta l4proto . th dport vmap @service-ips")
    if match_all:
        t.rule("services", f"fib daddr type local {not_local_host} meta l4proto . th dport "
               "vmap @service-nodeports")
    else:
        t.rule("services", f"{ipx} daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports")


def write_localhost_nodeports(t: Table, settings: ProxySettings, options: NftOptions,
                              local_host: str) -> None:
    """§4.9: the localhost-NodePort reject map, chains and counters (or their removal)."""
    rejected = localhost_reject_protocols(settings, options)
    t.add_map("localhost-nodeport-reject-ports", "inet_proto . inet_service : verdict",
              "localhost NodePorts rejected by kube-proxy")
    if rejected:
        for proto in rejected:
            counter = f"localhost-nodeport-rejected-{proto}"
            chain = f"localhost-nodeport-reject-{proto}"
            t.add_counter(counter)
            t.ensure_chain(chain)
            t.rule(chain, f'counter name "{counter}" reject')
        t.rule("nodeport-endpoints-check",
               f"{local_host} meta l4proto . th dport vmap @localhost-nodeport-reject-ports")
    else:
        t.delete_set("localhost-nodeport-reject-ports", "map")
    for proto in LOCALHOST_PROTOCOLS:
        if proto in rejected:
            continue
        chain = f"localhost-nodeport-reject-{proto}"
        counter = f"localhost-nodeport-rejected-{proto}"
        t.add_chain(chain)
        t.delete_chain(chain)
        t.add_counter(counter)
        t.delete_counter(counter)


def detector(settings: ProxySettings, *, local: bool) -> tuple[str, str]:
    """The local-traffic detector's match (``IfLocalNFT`` / ``IfNotLocalNFT``), written and
    listed: ``ip saddr 10.244.0.0/16``, ``iifname != br0`` (listed ``iifname != "br0"``)."""
    det = settings.detector
    op = "" if local else "!= "
    if det.kind == "source":
        text = f"{ip_x(settings)} saddr {op}{det.value}"
        return text, text
    name = det.value[:-1] + "*" if det.value.endswith("+") else det.value
    return f"iifname {op}{name}", f'iifname {op}"{name}"'
