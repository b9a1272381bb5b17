"""Where the rules of ``trace`` and ``doctor`` come from: ``--rules FILE``, a dump given among
the INPUTS (``netproxy trace node.rules ...``), or the live rules of ``--netns NAME``."""

from __future__ import annotations

from typing import Any

import click

from netproxy.errors import InputError
from netproxy.netfilter.model import Ruleset


def netns_read_options(func: Any) -> Any:
    """``--netns NAME`` and ``--iptables VARIANT`` for commands that only read a namespace."""
    func = click.option("--iptables", "variant", type=click.Choice(["auto", "legacy", "nft"]),
                        default="auto", show_default=True,
                        help="iptables variant whose rules --netns reads.")(func)
    func = click.option("--netns", "netns_name", metavar="NAME",
                        help="Read the live rules of this network namespace (as in 'ip netns "
                             "list'; only read, never changed) instead of a dump.")(func)
    return func


def live_rules(name: str, variant: str, family: str) -> Ruleset:
    """The rules of namespace ``name``, read through the apply backend."""
    from netproxy.backend import select
    from netproxy.parser import parse_rules

    backend = select.open_backend(name, variant=variant, family=family, allow_host=True)
    return parse_rules(backend.read(counters=False), source=f"netns {name}", family=family)


def rules_given(params: dict[str, Any], rules_path: str | None, netns_name: str | None,
                command: str) -> str | None:
    """The rules file to read: ``--rules``, or the one dump among the INPUTS (taken out of
    ``params['inputs']``). Refuses ``--rules`` with ``--netns``."""
    from netproxy.inputs.read import split_rules_input

    rules_path, rest = split_rules_input(tuple(params.get("inputs") or ()), rules_path, command)
    params["inputs"] = rest
    if rules_path is not None and netns_name is not None:
        raise InputError(f"give either --rules {rules_path} or --netns {netns_name}, not both")
    return rules_path


def read_given(rules_path: str | None, netns_name: str | None, variant: str, *, command: str,
               family: str | None, strict: bool = False) -> Ruleset:
    """Read the rules named by :func:`rules_given` or ``--netns``."""
    if netns_name is not None:
        return live_rules(netns_name, variant, family or "ipv4")
    from netproxy.inputs.read import read_ruleset

    assert rules_path is not None
    return read_ruleset(rules_path, command=command, strict=strict, family=family)



def live_node(name: str) -> Any:
    """Namespace ``name`` as a node snapshot would record it (rules of both iptables
    variants, the nft ruleset, addresses, routes, policy rules, ipsets, sysctls), read now;
    only read, never changed."""
    from netproxy.backend import netns
    from netproxy.node.collect import collect
    from netproxy.node.snapshot import parse_snapshot

    netns.require(name, allow_host=True)
    return parse_snapshot(collect(name), source=f"netns {name}")


def node_rules(node: Any, variant: str, family: str, *, strict: bool = False
               ) -> tuple[Ruleset, list[Any], list[str]]:
    """Everything that acts on packets of ``family`` on a node (a snapshot, or a namespace
    read with :func:`live_node`): the iptables rules and the nftables ruleset, as (iptables
    ruleset, nft listings, notes).

    iptables-nft's tables are nftables tables too, so they are walked once: through
    ``iptables-nft-save`` (exact iptables meaning) when they are the iptables ruleset, and
    left out of the nft listing then; when iptables-legacy holds rules, legacy is the
    iptables ruleset and iptables-nft's tables are walked as nft lists them. ``variant``
    ``legacy`` or ``nft`` picks the iptables ruleset; ``auto`` the one that holds rules
    (legacy when both do)."""
    from netproxy.netfilter.nft import FAMILY_OF
    from netproxy.node.snapshot import IPTABLES_SECTIONS
    from netproxy.parser.nftables import parse_nft_text

    holds = {kind: any(line.startswith("-A ") for line in node.sections[name].lines)
             for (fam, kind), name in IPTABLES_SECTIONS.items()
             if fam == family and name in node.sections}
    notes: list[str] = []
    section = node.sections.get("nft list ruleset")
    if section is None and variant == "auto":
        # no nftables listing: one iptables variant, as the snapshot reader picks it
        return node.ruleset(family, strict=strict), [], notes
    if variant == "auto":
        variant = "legacy" if holds.get("legacy") or not holds.get("nft") else "nft"
    ruleset = node.ruleset(family, strict=strict, backend=variant)
    if variant == "nft" and holds.get("legacy"):
        notes.append(f"{node.source} also holds iptables-legacy rules, not walked (give "
                     "--iptables legacy to walk them with iptables-nft's tables)")
    if section is None:
        if holds.get("nft") and variant == "legacy":
            notes.append(f"{node.source} also holds iptables-nft rules, not walked (no "
                         "'nft list ruleset' section; give --iptables nft to walk them)")
        return ruleset, [], notes
    listing = parse_nft_text(section.numbered(), source=node.source, strict=strict)
    if variant == "nft":
        own = FAMILY_OF[family][0]  # iptables-nft's own tables: walked from its save output
        for table_name in ruleset.tables:
            listing.tables.pop((own, table_name), None)
    return ruleset, [listing] if listing.tables else [], notes
