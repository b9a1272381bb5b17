"""Structural findings in one ruleset: stale kube-proxy chains and jumps to missing chains.

A per-service chain is *stale* when no path of jumps leads to it from a built-in chain,
kube-proxy's fixed chains or another program's chains (a restore payload has no built-in
jumps, so the fixed chains count as entry points too). A jump is *dangling* when its target
is neither a chain of the table nor a target extension.
"""

from __future__ import annotations

from dataclasses import dataclass

from netproxy.diff.kubenames import chain_role
from netproxy.diff.kubeview import KubeView
from netproxy.netfilter import extensions as ext
from netproxy.netfilter.model import VERDICTS


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    """``stale`` or ``dangling``."""
    table: str
    chain: str
    detail: str
    line: int = 0


def findings(view: KubeView) -> list[Finding]:
    """Stale per-service chains and dangling jumps of ``view``'s ruleset."""
    out: list[Finding] = []
    for tname, table in view.ruleset.tables.items():
        chains = table.chains
        edges: dict[str, set[str]] = {}
        for name, chain in chains.items():
            targets = edges.setdefault(name, set())
            for rule in chain.rules:
                t = rule.target
                if t is None:
                    continue
                if t.name in chains:
                    targets.add(t.name)
                elif t.name not in VERDICTS and ext.target(t.name) is None:
                    out.append(Finding("dangling", tname, name,
                                       f"jumps to {t.name}, which does not exist", rule.line))
        roots = [n for n in chains if chain_role(n) is None]
        seen = set(roots)
        stack = list(roots)
        while stack:
            for nxt in edges.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        for name in chains:
            if name not in seen:
                info = view.chains.get((tname, name))
                what = ""
                if info is not None and info.service is not None:
                    what = f" ({info.service.label()}"
                    what += f", endpoint {info.endpoint})" if info.endpoint else ")"
                out.append(Finding("stale", tname, name, f"nothing jumps to it{what}",
                                   chains[name].line))
    return out
