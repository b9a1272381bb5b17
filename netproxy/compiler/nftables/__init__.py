"""kube-proxy's nftables mode: the ``nft -f`` transaction of a full sync and the table
``nft list table`` shows afterwards, from the same model of Services and endpoints as
iptables mode (:mod:`netproxy.proxy`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from netproxy.compiler.nftables.existing import finish, preload
from netproxy.compiler.nftables.fixed import write_setup
from netproxy.compiler.nftables.listing import list_table
from netproxy.compiler.nftables.options import (
    KUBE_PROXY_VERSIONS,
    SINGLE_ENDPOINT_FORMS,
    NftOptions,
)
from netproxy.compiler.nftables.services import PortWriter
from netproxy.compiler.nftables.table import Table
from netproxy.netfilter.nft import NFT_FAMILY
from netproxy.proxy.model import ProxyModel
from netproxy.proxy.settings import ProxySettings
from netproxy.proxy.topology import categorize


def compile_table(model: ProxyModel, settings: ProxySettings, options: NftOptions,
                  existing: Any = None, on_port: Callable[[int], None] | None = None) -> Table:
    """One family's ``kube-proxy`` table after kube-proxy's first full sync: on a fresh node,
    or on one holding ``existing`` (the node's parsed ``kube-proxy`` table of this family).
    ``on_port(n)`` is told how many service ports are written so far (for progress)."""
    t = Table(NFT_FAMILY[settings.family])
    if existing is not None:
        preload(t, existing)
    write_setup(t, settings, options)
    writer = PortWriter(t, settings, options)
    for n, svc in enumerate(model.service_ports, 1):
        eps = model.endpoints.get(svc.name, [])
        cat = categorize(eps, svc, settings.node_name, settings.zone,
                         prefer_same_node=settings.prefer_same_node)
        writer.write(svc, cat)
        if on_port is not None:
            on_port(n)
    if existing is not None:
        finish(t)
    return t


__all__ = ["KUBE_PROXY_VERSIONS", "SINGLE_ENDPOINT_FORMS", "NftOptions", "Table", "compile_table",
           "list_table"]
