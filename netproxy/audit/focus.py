"""Cut a ruleset down to what some Service ports and the node as a whole need.

The audit runs the doctor only on Service ports the semantic diff found different; the
doctor's checks of one Service port read its own chains, the frontend rules pointing at them
and the node's fixed chains. :func:`focus` keeps exactly those (the same Chain objects, no
copies), so the doctor's cost follows the number of Service ports that differ rather than the
size of the node's ruleset.
"""

from __future__ import annotations

from netproxy import chainnames
from netproxy.kubeview.names import FRONTEND_CHAINS, chain_role, normalise_spn
from netproxy.netfilter.model import Chain, Rule, Ruleset, Table

ServicePort = tuple[str, str]
"""``(namespace/name:port, protocol)`` as the diff and the doctor name them."""


def _spn_of(rule: Rule) -> str | None:
    """The Service port a kube-proxy comment names (its first word), if it names one."""
    text = rule.comment()
    if not text:
        return None
    first = text.split(" ", 1)[0]
    return normalise_spn(first) if "/" in first else None


def _named_chains(services: set[ServicePort]) -> set[str]:
    out: set[str] = set()
    for spn, protocol in services:
        if not protocol:
            continue
        for name_of in (chainnames.service_chain, chainnames.local_chain,
                        chainnames.external_chain, chainnames.firewall_chain):
            out.add(name_of(spn, protocol))
    return out


def _kept_frontend(rule: Rule, keep: set[str], spns: set[str]) -> bool:
    target = rule.target.name if rule.target is not None else None
    if target is not None and chain_role(target) is not None:
        return target in keep
    spn = _spn_of(rule)
    return spn is None or spn in spns


def focus(ruleset: Ruleset, services: set[ServicePort]) -> Ruleset:
    """The chains of ``services``, the frontend rules leading to them, everything else that
    is not a per-service chain or a frontend rule of another Service port."""
    spns = {spn for spn, _ in services}
    named = _named_chains(services)
    out = Ruleset(family=ruleset.family, source=ruleset.source)
    out.problems = ruleset.problems
    for tname, table in ruleset.tables.items():
        chains = table.chains
        keep: set[str] = set()
        for cname, chain in chains.items():
            if chain_role(cname) is None:
                continue
            if cname in named or any(_spn_of(r) in spns for r in chain.rules[:2]):
                keep.add(cname)
        todo = list(keep)
        while todo:
            for rule in chains[todo.pop()].rules:
                target = rule.target.name if rule.target is not None else ""
                if target in chains and target not in keep and chain_role(target) is not None:
                    keep.add(target)
                    todo.append(target)
        new = Table(tname)
        for cname, chain in chains.items():
            if chain_role(cname) is not None:
                if cname in keep:
                    new.chains[cname] = chain
            elif cname in FRONTEND_CHAINS:
                new.chains[cname] = Chain(cname, chain.policy, chain.counters,
                                          [r for r in chain.rules if _kept_frontend(r, keep, spns)],
                                          chain.line)
            else:
                new.chains[cname] = chain
        out.tables[tname] = new
    return out
