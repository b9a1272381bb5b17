"""``netproxy compile --proxy-mode nftables``: the flags only nftables mode has, and the
command's nftables branch (one or both families)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

from netproxy.errors import InputError
from netproxy.gcpause import paused_gc
from netproxy.netfilter.nft import NFT_FAMILY

if TYPE_CHECKING:
    from netproxy.compiler.nftables import NftOptions, Table
    from netproxy.k8s.loader import Cluster

F = TypeVar("F", bound=Callable[..., Any])

LOCALHOST_GATE = "KubeProxyNFTablesLocalhostNodePorts"

_OPTIONS: list[Callable[[F], F]] = [
    click.option("--kube-proxy-version", "kube_proxy_version", type=click.Choice(["1.36", "1.37"]),
                 default=None, help="nftables mode: the kube-proxy release whose layout to write "
                                    "(default 1.37)."),
    click.option("--single-endpoint-dnat", "single_endpoint_dnat",
                 type=click.Choice(["hostport", "addrport"]), default=None,
                 help="nftables mode, 1.37: DNAT of a one-endpoint chain as 'dnat to IP:PORT' "
                      "(hostport, kube-proxy's proxier.go; default) or 'dnat ip addr . port to "
                      "IP . PORT' (addrport, upstream's unit tests)."),
    click.option("--feature-gates", "feature_gates", metavar="NAME=BOOL,...", default=None,
                 help=f"kube-proxy feature gates ({LOCALHOST_GATE} in nftables mode)."),
    click.option("--service-cidr", "service_cidrs", metavar="CIDRS", multiple=True,
                 help="nftables mode: the ServiceCIDRs (comma-separated or repeated; default: "
                      "the ServiceCIDR objects among the inputs)."),
]


def nft_options(f: F) -> F:
    for option in reversed(_OPTIONS):
        f = option(f)
    return f


@dataclass(frozen=True, slots=True)
class NftFlags:
    """The nftables-only flags as given (None = not given)."""

    kube_proxy_version: str | None
    single_endpoint_dnat: str | None
    feature_gates: str | None
    service_cidrs: tuple[str, ...]

    @classmethod
    def pop(cls, params: dict[str, Any]) -> NftFlags:
        """Take the flags out of the command's parameters."""
        return cls(params.pop("kube_proxy_version"), params.pop("single_endpoint_dnat"),
                   params.pop("feature_gates"), tuple(params.pop("service_cidrs") or ()))

    def refuse_in_iptables_mode(self) -> None:
        for flag, value in (("--kube-proxy-version", self.kube_proxy_version),
                            ("--single-endpoint-dnat", self.single_endpoint_dnat),
                            ("--service-cidr", self.service_cidrs)):
            if value:
                raise InputError("only in nftables mode (add --proxy-mode nftables)", where=flag)


def options_for(flags: NftFlags, params: dict[str, Any], cluster: Cluster, family: str) -> NftOptions:
    """The nftables options of one family's proxier."""
    from netproxy.commands.cluster_options import effective_config
    from netproxy.compiler.nftables import NftOptions
    from netproxy.k8s.config import parse_feature_gates
    from netproxy.k8s.ipaddr import family_of, parse_cidr

    gates = dict(effective_config(params, cluster).feature_gates)
    if flags.feature_gates is not None:
        gates.update(parse_feature_gates(flags.feature_gates))
    version = flags.kube_proxy_version or "1.37"
    if version == "1.36" and flags.single_endpoint_dnat:
        raise InputError("1.36 writes one-endpoint services as a numgen map; the flag is for 1.37",
                         where="--single-endpoint-dnat")
    cidrs: list[str] = []
    texts = [p.strip() for v in flags.service_cidrs for p in v.split(",") if p.strip()]
    for text in texts or cluster.service_cidrs:
        net = parse_cidr(text)
        if net is None:
            raise InputError(f"invalid CIDR {text!r}", where="--service-cidr")
        if family_of(net) == family and str(net) not in cidrs:
            cidrs.append(str(net))
    return NftOptions(kube_proxy_version=version,
                      single_endpoint_dnat=flags.single_endpoint_dnat or "hostport",
                      localhost_nodeports_gate=gates.get(LOCALHOST_GATE, False),
                      service_cidrs=tuple(cidrs))


def nftables_text(params: dict[str, Any], cluster: Cluster, fmt: str, flags: NftFlags,
                  existing_rules: str | None = None,
                  on_port: Callable[[int], None] | None = None) -> str:
    """The node's kube-proxy table(s) after a full sync: ``list`` (``nft list table``) or
    ``transaction`` (the ``nft -f`` input); ``--family dual`` gives the ip table, then ip6."""
    with paused_gc(freeze=True):
        tables = nftables_tables(params, cluster, flags, existing_rules, on_port=on_port)
        if fmt == "transaction":
            return "".join(t.transaction() for t in tables)
        from netproxy.compiler.nftables import list_table

        return "".join(list_table(t) for t in tables)


def nftables_tables(params: dict[str, Any], cluster: Cluster, flags: NftFlags,
                    existing_rules: str | None = None, node: Any = None,
                    on_port: Callable[[int], None] | None = None) -> list[Table]:
    """One table per family of ``params['family']`` (both for ``dual``). ``existing_rules``:
    the node's current ``nft list table``/``ruleset`` output (kube-proxy's first sync on a
    node that holds its table); ``node``: the same, already parsed."""
    from netproxy.commands.cluster_options import settings_for
    from netproxy.compiler.nftables import compile_table
    from netproxy.proxy.model import proxy_model

    family = params.get("family") or "ipv4"
    families = ("ipv4", "ipv6") if family == "dual" else (family,)
    if existing_rules:
        from netproxy.parser.nftables import is_nft, parse_nft
        from netproxy.parser.nftables.read import read_text

        text, source = read_text(existing_rules)
        if not is_nft(text):
            raise InputError("not an nft listing; in nftables mode give the node's "
                             "'nft list table ip kube-proxy' (or 'nft list ruleset') output",
                             where=source)
        node = parse_nft(text, source=source, strict=True)
    tables = []
    for fam in families:
        settings = settings_for({**params, "family": fam}, cluster, nftables=True)
        present = None
        nft_family = NFT_FAMILY[fam]
        if node is not None and (nft_family, "kube-proxy") in node.tables:
            present = node.table(nft_family, "kube-proxy")
        tables.append(compile_table(proxy_model(cluster, settings), settings,
                                    options_for(flags, params, cluster, fam), present,
                                    on_port))
    return tables
