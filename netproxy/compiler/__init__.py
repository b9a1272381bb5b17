"""The compiler: kube-proxy's model of the cluster plus node settings -> the rule model.

:func:`compile_cluster` gives both the restore payload kube-proxy writes on a full sync and
the save view (what ``iptables-save`` shows on the node afterwards) as the rule model;
:func:`compile_restore_text` writes the same payload straight as text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from netproxy.compiler.payload import (
    compile_payload,
    compile_restore_pieces,
    compile_restore_text,
)
from netproxy.compiler.saveview import save_view
from netproxy.k8s.loader import Cluster
from netproxy.netfilter.model import Ruleset
from netproxy.proxy.model import ProxyModel, proxy_model
from netproxy.proxy.settings import ProxySettings


@dataclass(slots=True)
class Compiled:
    """A compiled node: the restore payload, and the save view built from it on first use."""

    payload: Ruleset
    model: ProxyModel
    _save: Ruleset | None = None

    @property
    def save(self) -> Ruleset:
        if self._save is None:
            self._save = save_view(self.payload)
        return self._save


def compile_cluster(cluster: Cluster, settings: ProxySettings,
                    existing_nat_chains: Iterable[str] = (),
                    on_port: Callable[[int], None] | None = None) -> Compiled:
    """Compile ``cluster`` for one node and one IP family (see :func:`compile_payload`)."""
    model = proxy_model(cluster, settings)
    payload = compile_payload(model, settings, existing_nat_chains, on_port)
    return Compiled(payload=payload, model=model)


__all__ = ["Compiled", "ProxyModel", "compile_cluster", "compile_payload", "compile_restore_pieces",
           "compile_restore_text", "proxy_model", "save_view"]
