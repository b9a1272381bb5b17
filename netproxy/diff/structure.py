"""Structural findings in one ruleset: stale kube-proxy chains and jumps to missing chains.

A per-service chain is *stale* when no path of jumps leads to it from a built-in chain,
kube-proxy's fixed chains or another program's chains (a restore payload has no built-in
jumps, so the fixed chains count as entry points too). A jump is *dangling* when its target
is neither a chain of the table nor a target extension.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from netproxy.diff.identity import KubeView
from netproxy.kubeview.names import chain_role
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
        refs = Counter([r.target.name for c in chains.values() for r in c.rules if r.target is not None])
        for name in refs:
            if name in chains or name in VERDICTS or ext.target(name) is not None:
                continue
            for cname, chain in chains.items():
                for rule in chain.rules:
                    if rule.target is not None and rule.target.name == name:
                        out.append(Finding("dangling", tname, cname,
                                           f"jumps to {name}, which does not exist", rule.line))
        # A per-service chain nothing jumps to is stale, and so are the chains only stale
        # chains jump to.
        stale: list[str] = []
        todo = [n for n in chains if n not in refs and chain_role(n) is not None]
        while todo:
            name = todo.pop()
            stale.append(name)
            for rule in chains[name].rules:
                t = rule.target
                if t is not None and t.name in chains and chain_role(t.name) is not None:
                    refs[t.name] -= 1
                    if refs[t.name] == 0:
                        todo.append(t.name)
        for name in sorted(stale):
            info = view.info(tname, name)
            what = ""
            if info is not None and info.service is not None:
                what = f" ({info.service.label()}"
                what += f", endpoint {info.endpoint})" if info.endpoint else ")"
            out.append(Finding("stale", tname, name, f"nothing jumps to it{what}", chains[name].line))
    return out
