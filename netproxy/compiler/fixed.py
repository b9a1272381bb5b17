"""The rules kube-proxy writes on every sync regardless of services (spec §2.2, §6.5)."""

from __future__ import annotations

from collections.abc import Iterable

from netproxy.chainnames import OWNED_PREFIXES
from netproxy.compiler.build import addrtype, comment, ctstate, dest, module, nfacct, rule, source
from netproxy.compiler.writer import Sink
from netproxy.netfilter.model import Option, Rule, Target
from netproxy.proxy.settings import ProxySettings

FILTER_CHAINS = ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS",
                 "KUBE-PROXY-FIREWALL")
NAT_CHAINS = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ")
TAIL_COMMENT = "kubernetes service nodeports; NOTE: this must be the last rule in this chain"
CT_INVALID_COUNTER = "ct_state_invalid_dropped_pkts"
LOCALHOST_NP_COUNTER = "localhost_nps_accepted_pkts"


def localnet_rule() -> Rule:
    """The anti-martian rule of ``KUBE-FIREWALL`` (kube-proxy's copy equals kubelet's)."""
    return rule(comment("block incoming localnet connections")
                + (dest("127.0.0.0/8"), source("127.0.0.0/8", True))
                + ctstate("RELATED,ESTABLISHED,DNAT", True), "DROP")


def declare_fixed_chains(out: Sink, settings: ProxySettings) -> None:
    for name in FILTER_CHAINS:
        out.declare_filter(name)
    if settings.localhost_nodeports_effective:
        out.declare_filter("KUBE-FIREWALL")
    for name in NAT_CHAINS:
        out.declare_nat(name)


def write_head(out: Sink, settings: ProxySettings) -> None:
    """KUBE-POSTROUTING, KUBE-MARK-MASQ and the KUBE-FIREWALL rule, written before services."""
    mark = settings.mark
    out.add_nat("KUBE-POSTROUTING", rule(
        (module("mark"), Option("mark", "mark", (f"{mark}/{mark}",), True)), "RETURN"))
    out.add_nat("KUBE-POSTROUTING", rule((), Target("MARK", (Option("MARK", "xor-mark", (mark,)),))))
    masq_opts = (Option("MASQUERADE", "random-fully"),) if settings.random_fully else ()
    out.add_nat("KUBE-POSTROUTING", rule(comment("kubernetes service traffic requiring SNAT"),
                                         Target("MASQUERADE", masq_opts)))
    out.add_nat("KUBE-MARK-MASQ", rule((), Target("MARK", (Option("MARK", "or-mark", (mark,)),))))
    if settings.localhost_nodeports_effective:
        out.add_filter("KUBE-FIREWALL", localnet_rule())


def write_nodeports_tail(out: Sink, settings: ProxySettings) -> None:
    """The last rule(s) of nat KUBE-SERVICES: hand local destinations to KUBE-NODEPORTS."""
    if settings.nodeports.match_all:
        extra: tuple[Option, ...] = ()
        if settings.ipv6:
            extra = (dest("::1/128", True),)
        elif not settings.localhost_nodeports_effective:
            extra = (dest("127.0.0.0/8", True),)
        out.add_nat("KUBE-SERVICES", rule(comment(TAIL_COMMENT) + addrtype("dst-type") + extra,
                                          "KUBE-NODEPORTS"))
        return
    for addr in settings.nodeports.local_addresses(settings.local_addresses):
        loopback = addr == "::1" or addr.startswith("127.")
        if loopback and (settings.ipv6 or not settings.localhost_nodeports_effective):
            continue
        out.add_nat("KUBE-SERVICES", rule(comment(TAIL_COMMENT) + (dest(addr),), "KUBE-NODEPORTS"))


def write_stale_deletions(out: Sink, existing: Iterable[str]) -> None:
    """``:NAME`` + ``-X NAME`` for owned chains on the node that this sync no longer uses.

    kube-proxy writes them after all service rules and before the nodeports tail rule, in Go
    set order (random); we sort them.
    """
    for name in sorted(set(existing)):
        if name.startswith(OWNED_PREFIXES) and not out.has_nat_chain(name):
            out.delete_nat(name)


def write_forward(out: Sink, settings: ProxySettings) -> None:
    """filter KUBE-FORWARD, written after all service filter rules."""
    if not settings.tcp_be_liberal:
        counter = nfacct(CT_INVALID_COUNTER) if settings.nfacct else ()
        out.add_filter("KUBE-FORWARD", rule(ctstate("INVALID") + counter, "DROP"))
    mark = settings.mark
    out.add_filter("KUBE-FORWARD", rule(
        comment("kubernetes forwarding rules")
        + (module("mark"), Option("mark", "mark", (f"{mark}/{mark}",))), "ACCEPT"))
    out.add_filter("KUBE-FORWARD", rule(
        comment("kubernetes forwarding conntrack rule") + ctstate("RELATED,ESTABLISHED"), "ACCEPT"))
