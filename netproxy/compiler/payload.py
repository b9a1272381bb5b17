"""A whole full-sync restore payload: fixed chains, every service port, the tail (spec §2)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from netproxy.compiler.fixed import (
    declare_fixed_chains,
    write_forward,
    write_head,
    write_nodeports_tail,
    write_stale_deletions,
)
from netproxy.compiler.services import write_service_port
from netproxy.compiler.writer import PayloadWriter, Sink, TextWriter
from netproxy.netfilter.model import Ruleset
from netproxy.proxy.model import ProxyModel
from netproxy.proxy.settings import ProxySettings
from netproxy.proxy.topology import categorize


def compile_payload(model: ProxyModel, settings: ProxySettings,
                    existing_nat_chains: Iterable[str] = (),
                    on_port: Callable[[int], None] | None = None) -> Ruleset:
    """The ``iptables-restore`` payload of a full sync, as the rule model.

    ``existing_nat_chains`` are the nat chains already on the node (kube-proxy reads them with
    ``iptables-save -t nat``); kube-proxy-owned ones this sync does not write are deleted.
    """
    out = PayloadWriter(settings.family)
    write_payload(out, model, settings, existing_nat_chains, on_port)
    return out.ruleset


def compile_restore_text(model: ProxyModel, settings: ProxySettings,
                         existing_nat_chains: Iterable[str] = ()) -> str:
    """The same payload as ``iptables-restore`` text, written without the rule model: what
    :func:`netproxy.render.render_restore` gives for :func:`compile_payload`'s result."""
    return "".join(compile_restore_pieces(model, settings, existing_nat_chains))


def compile_restore_pieces(model: ProxyModel, settings: ProxySettings,
                           existing_nat_chains: Iterable[str] = (),
                           on_port: Callable[[int], None] | None = None) -> list[str]:
    """:func:`compile_restore_text` in pieces, for writing out without joining them."""
    out = TextWriter(settings.family)
    write_payload(out, model, settings, existing_nat_chains, on_port)
    return out.pieces()


def write_payload(out: Sink, model: ProxyModel, settings: ProxySettings,
                  existing_nat_chains: Iterable[str] = (),
                  on_port: Callable[[int], None] | None = None) -> None:
    """Every line of a full sync, in kube-proxy's order, into ``out``; ``on_port(n)`` is told
    how many service ports are written so far (for progress)."""
    declare_fixed_chains(out, settings)
    write_head(out, settings)
    large = model.total_endpoints() > settings.large_cluster_endpoints
    for n, svc in enumerate(model.service_ports, 1):
        eps = model.endpoints.get(svc.name, [])
        cat = categorize(eps, svc, settings.node_name, settings.zone,
                         prefer_same_node=settings.prefer_same_node)
        write_service_port(out, svc, cat, settings, large)
        if on_port is not None:
            on_port(n)
    write_stale_deletions(out, existing_nat_chains)
    write_nodeports_tail(out, settings)
    write_forward(out, settings)
