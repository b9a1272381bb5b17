"""What kube-proxy (and so netproxy) owns in a namespace, and what it must leave alone.

Owned: every user chain whose name starts with ``KUBE-`` (kube-proxy's and kubelet's chains,
canaries included) and, in built-in chains, the rules that jump or go to an owned chain.
Everything else -- other software's chains, their rules, built-in policies -- is never
written, flushed or deleted.
"""

from __future__ import annotations

import shlex

from netproxy.backend.savetext import ChainText

OWNED_PREFIX = "KUBE-"


def owned_chain(name: str) -> bool:
    return name.startswith(OWNED_PREFIX)


def rule_target(line: str) -> str | None:
    """The ``-j``/``-g`` target of a saved ``-A`` line (quoted comments handled)."""
    if " -j " not in line and " -g " not in line:
        return None
    try:
        words = shlex.split(line)
    except ValueError:
        return None
    for i in range(len(words) - 1):
        if words[i] in ("-j", "-g", "--jump", "--goto"):
            return words[i + 1]
    return None


def owned_jump(line: str) -> bool:
    """A rule (in a built-in chain) that hands packets to an owned chain."""
    target = rule_target(line)
    return target is not None and owned_chain(target)


def foreign_content(chains: dict[str, ChainText]) -> bool:
    """Whether a table holds anything not owned: other chains, other rules, a non-ACCEPT policy."""
    for name, chain in chains.items():
        if chain.policy is None:
            if not owned_chain(name):
                return True
        elif chain.policy != "ACCEPT" or any(not owned_jump(r) for r in chain.rules):
            return True
    return False
