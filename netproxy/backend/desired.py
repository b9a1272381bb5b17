"""A rule model → the chain-by-chain text the planner compares with the kernel's."""

from __future__ import annotations

from netproxy.backend.savetext import ChainText, TextState
from netproxy.netfilter.model import Ruleset


def desired_state(ruleset: Ruleset) -> TextState:
    """Every table and chain of ``ruleset`` as canonical ``iptables-save`` lines."""
    from netproxy.render import rule_text

    state: TextState = {}
    for tname, table in ruleset.tables.items():
        chains: dict[str, ChainText] = {}
        for cname, chain in table.chains.items():
            text = ChainText(cname, chain.policy)
            for rule in chain.rules:
                text.rules.append(rule_text(rule, cname, ruleset.family, saved=True))
                text.origins.append(f"{ruleset.source}:{rule.line}" if rule.line else "")
            chains[cname] = text
        state[tname] = chains
    return state
