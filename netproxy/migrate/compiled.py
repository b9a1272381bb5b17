"""The cluster compiled in both modes for one family, as `netproxy migrate` compares it and
`lab check --proxy-mode both` predicts with it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netproxy.gcpause import paused_gc

if TYPE_CHECKING:
    from netproxy.commands.nftables_options import NftFlags
    from netproxy.compiler.nftables import NftOptions, Table
    from netproxy.k8s.loader import Cluster
    from netproxy.netfilter.model import Ruleset
    from netproxy.netfilter.nft import NftRuleset
    from netproxy.proxy.model import ProxyModel
    from netproxy.proxy.settings import ProxySettings
    from netproxy.trace import Tracer


@dataclass(slots=True)
class BothModes:
    family: str
    model: ProxyModel
    """kube-proxy's view of the cluster (iptables-mode settings)."""
    old_settings: ProxySettings
    new_settings: ProxySettings
    options: NftOptions
    iptables: Ruleset
    nftables: NftRuleset
    """The nftables table as ``nft list table`` shows it, parsed."""
    table: Table
    """The nftables table as compiled (for a node that holds none yet)."""
    cluster: Cluster

    def tracers(self, local_ips: list[str]) -> tuple[Tracer, Tracer]:
        """A tracer of each mode's rules, on a node holding ``local_ips``."""
        from netproxy.netfilter.model import Ruleset
        from netproxy.trace import Tracer

        return (Tracer(self.iptables, local_ips=local_ips),
                Tracer(Ruleset(family=self.family, source=self.nftables.source),
                       local_ips=local_ips, nft=[self.nftables]))


def compile_both(params: dict[str, Any], cluster: Cluster, flags: NftFlags) -> BothModes:
    """Compile ``cluster`` for ``params['family']`` in iptables mode (the restore payload as
    ``iptables-save`` shows it) and in nftables mode (``nft list table``)."""
    from netproxy.commands.cluster_options import settings_for
    from netproxy.commands.nftables_options import options_for
    from netproxy.compiler import compile_cluster
    from netproxy.compiler.nftables import compile_table, list_table
    from netproxy.parser.nftables import parse_nft
    from netproxy.proxy.model import proxy_model

    fam = params["family"]
    old_settings = settings_for({**params, "proxy_mode": "iptables"}, cluster)
    new_settings = settings_for({**params, "proxy_mode": "nftables"}, cluster, nftables=True)
    options = options_for(flags, params, cluster, fam)
    with paused_gc(freeze=True):
        compiled = compile_cluster(cluster, old_settings)
        model, ipt = compiled.model, compiled.save
        table = compile_table(proxy_model(cluster, new_settings), new_settings, options)
        listing = parse_nft(list_table(table), source="<compiled nftables>", strict=True)
    return BothModes(fam, model, old_settings, new_settings, options, ipt, listing, table,
                     cluster)
