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
