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


def live_node(name: str, variant: str, family: str, *, strict: bool = False
              ) -> tuple[Ruleset, list[Any], list[str]]:
    """Everything that acts on packets in namespace ``name``, for ``trace --netns``: the
    iptables rules (legacy and iptables-nft) and the nftables ruleset (``nft list ruleset``),
    as (iptables ruleset, nft listings, notes).

    iptables-nft's tables are nftables tables too, so they are read once: through
    ``iptables-nft-save`` (exact iptables meaning) when they are the iptables ruleset walked,
    and left out of the nft listing then; when iptables-legacy also holds rules, legacy is
    the iptables ruleset and iptables-nft's tables are walked as nft lists them. ``variant``
    ``legacy`` or ``nft`` picks the iptables ruleset; ``auto`` the one that holds rules."""
    import shutil

    from netproxy.backend import netns, xtables
    from netproxy.netfilter.nft import FAMILY_OF
    from netproxy.parser import parse_rules
    from netproxy.parser.nftables import parse_nft_text

    netns.require(name, allow_host=True)
    notes: list[str] = []
    saved: dict[str, str] = {}
    for kind in ("legacy", "nft"):
        tools = xtables.Xtables(kind, family)
        if shutil.which(tools.save_bin) is None:
            continue
        proc = netns.run(name, [tools.save_bin], check=False)
        if proc.returncode == 0:
            saved[kind] = proc.stdout
    if not saved:
        xtables.resolve(variant, family)  # says which tool is missing
    holds = {kind: any(line.startswith("-A ") for line in text.splitlines())
             for kind, text in saved.items()}
    if variant == "auto":
        variant = ("legacy" if holds.get("legacy") else "nft" if "nft" in saved
                   else "legacy")
    if variant not in saved:
        raise InputError(f"netns {name}: {xtables.Xtables(variant, family).save_bin} is "
                         "not installed (give --iptables with the other variant)")
    ruleset = parse_rules(saved[variant], source=f"netns {name}", family=family,
                          strict=strict)
    if variant == "nft" and holds.get("legacy"):
        notes.append(f"netns {name} also holds iptables-legacy rules, not walked (give "
                     "--iptables legacy to walk them with iptables-nft's tables)")
    listings: list[Any] = []
    nft = shutil.which("nft")
    if nft is None:
        notes.append("nft is not installed: the namespace's nftables tables are not read")
        return ruleset, listings, notes
    text = netns.run(name, [nft, "list", "ruleset"]).stdout
    listing = parse_nft_text(text, source=f"netns {name} (nft list ruleset)", strict=strict)
    if variant == "nft":
        # iptables-nft's own tables: walked from iptables-nft-save, not twice
        own = FAMILY_OF[family][0]
        for table_name in ruleset.tables:
            listing.tables.pop((own, table_name), None)
    if listing.tables:
        listings.append(listing)
    return ruleset, listings, notes
