"""``netproxy diff``: compare two rulesets by meaning, grouped by Service."""

from __future__ import annotations

import gc
import json
import shlex
import sys
from typing import Any

import click

from netproxy.commands.cluster_options import build_ruleset, cluster_options, node_local_ips
from netproxy.diff import diff_rulesets, render_text
from netproxy.diff.load import is_listing, load_listing, load_ruleset
from netproxy.errors import InputError
from netproxy.netfilter.model import Ruleset


def _expected_and_actual(params: dict[str, Any], strict: bool) -> tuple[Ruleset, Ruleset]:
    inputs = tuple(params.get("inputs") or ())
    if len(inputs) < 2:
        raise InputError("--expected needs cluster INPUTS... followed by the node's dump")
    _dump_comes_last(inputs)
    if is_listing(inputs[-1]):
        raise InputError("--expected compiles kube-proxy's iptables mode; check an nftables "
                         f"listing against the cluster with netproxy doctor {shlex.join(inputs)}, "
                         "or compare two listings with netproxy diff OLD NEW", where=inputs[-1])
    actual = load_ruleset(inputs[-1], strict=strict)
    expected = build_ruleset({**params, "inputs": inputs[:-1]})
    expected.source = "expected (compiled from " + ", ".join(inputs[:-1]) + ")"
    if actual.family != expected.family:
        raise InputError(f"the dump is {actual.family} but the rules were compiled for "
                         f"{expected.family} (use --family)", where=inputs[-1])
    return expected, actual


def _dump_comes_last(inputs: tuple[str, ...]) -> None:
    """``diff --expected node.rules cluster/`` (the dump first): say what to type."""
    from netproxy.inputs.read import sniff_path

    if sniff_path(inputs[-1]).is_rules:
        return
    dumps = [name for name in inputs[:-1] if sniff_path(name).is_rules]
    if len(dumps) == 1:
        rest = [name for name in inputs if name != dumps[0]]
        raise InputError("the node's dump comes last, after the cluster INPUTS: "
                         f"netproxy diff --expected {shlex.join(rest)} {shlex.quote(dumps[0])}",
                         where=dumps[0])


def _cluster_and_dump(inputs: tuple[str, ...]) -> None:
    """``diff cluster.yaml node.rules`` without --expected: say what to type."""
    from netproxy.inputs.read import sniff_path
    from netproxy.inputs.sniff import DIRECTORY, KUBE_PROXY_CONFIG, KUBERNETES

    kinds = [sniff_path(name) for name in inputs]
    dumps = [name for name, found in zip(inputs, kinds, strict=True) if found.is_rules]
    cluster = [name for name, found in zip(inputs, kinds, strict=True)
               if found.kind in (KUBERNETES, KUBE_PROXY_CONFIG, DIRECTORY)]
    if len(dumps) == 1 and cluster and len(dumps) + len(cluster) == len(inputs):
        raise InputError(f"{shlex.join(cluster)}: cluster objects, not a ruleset; to compare the "
                         "dump with what they should give: "
                         f"netproxy diff --expected {shlex.join(cluster)} {shlex.quote(dumps[0])}")


@click.command("diff")
@cluster_options
@click.option("--expected", is_flag=True,
              help="Compile the cluster INPUTS (with the compile flags) and compare the result "
                   "with the dump given last.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--behaviour", "--behavior", "behaviour", is_flag=True,
              help="Also trace probe packets for every service frontend through both rulesets; "
                   "the exit code then follows the outcomes.")
@click.option("--probes", "probe_scope", type=click.Choice(["all", "changed"]), default="all",
              show_default=True,
              help="With --behaviour: probe every frontend, or only those of the services the "
                   "text diff found changed (every frontend when rules outside services changed).")
@click.option("--scope", type=click.Choice(["all", "kube"]), default=None,
              help="all: every chain (default for two dumps); kube: only kube-proxy's chains "
                   "and the jumps into them (default with --expected).")
@click.option("--brief", is_flag=True, help="Service facts only, without the rule lines.")
@click.option("--strict-names", is_flag=True,
              help="Count chains that differ only by name as differences.")
@click.option("--strict", is_flag=True, help="Reject dumps with rules the parser does not know.")
@click.option("--local-ip", "local_ips", multiple=True, metavar="IP",
              help="The node's own addresses for --behaviour (repeatable; default: guessed).")
def command(expected: bool, as_json: bool, behaviour: bool, probe_scope: str, scope: str | None,
            brief: bool,
            strict_names: bool, strict: bool, local_ips: tuple[str, ...], **params: Any) -> int:
    """Compare two rulesets by meaning: netproxy diff OLD NEW.

    OLD and NEW are iptables-save dumps or restore payloads (files or -), or two nftables
    listings (nft list ruleset, text or -j JSON, or node snapshots holding one). With --expected, the
    INPUTS are cluster objects compiled the way `netproxy compile` does, and the last INPUT is
    the node's dump: netproxy diff --expected cluster.yaml [compile flags] node.rules.

    Counters, header comments, chain order, the order of rules that never match the same
    packet, equivalent spellings and chain names are ignored. Exit code 0: equivalent,
    1: different, 2: error.
    """
    # A short-lived process holding millions of parsed rules: the cyclic collector would only
    # rescan them (nothing here makes reference cycles worth collecting).
    gc.disable()
    inputs = tuple(params.get("inputs") or ())
    if not expected:
        from netproxy.commands.migrate_states import is_across_modes

        if is_across_modes(inputs):
            return _across_modes(inputs, params, list(local_ips), strict, as_json)
        if len(inputs) == 2 and inputs != ("-", "-") and all(map(is_listing, inputs)):
            return _listings(inputs, list(local_ips), strict, as_json, behaviour, probe_scope,
                             scope or "all", brief)
    if expected:
        old, new = _expected_and_actual(params, strict)
        scope = scope or "kube"
    else:
        _cluster_and_dump(inputs)
        if len(inputs) != 2:
            raise InputError(f"diff needs two rulesets (OLD NEW), got {len(inputs)}; "
                             "for expected-versus-actual use --expected")
        if inputs[0] == "-" and inputs[1] == "-":
            raise InputError("only one of OLD and NEW can be read from stdin")
        old = load_ruleset(inputs[0], strict=strict)
        new = load_ruleset(inputs[1], strict=strict)
        if old.family != new.family:
            raise InputError(f"cannot compare an {old.family} ruleset with an {new.family} one",
                             where=inputs[1])
        scope = scope or "all"
    report = diff_rulesets(old, new, scope=scope, strict_names=strict_names)
    if behaviour:
        from netproxy.diff.behaviour import compare_behaviour

        ips = list(local_ips)
        if expected and not ips:
            ips = node_local_ips({**params, "inputs": tuple(params["inputs"])[:-1]})
        try:
            compare_behaviour(report, old, new, local_ips=ips, scope=probe_scope)
        except ValueError as err:
            raise InputError(f"bad address: {err}", where="--local-ip") from None
    return _print(report, as_json, brief)


def _print(report: Any, as_json: bool, brief: bool) -> int:
    """Print a diff report (JSON or text) and give diff's exit code: 0 equivalent, 1 not."""
    if as_json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(render_text(report, rules=not brief))
    return 0 if report.equivalent else 1


def _across_modes(inputs: tuple[str, ...], params: dict[str, Any], local_ips: list[str],
                  strict: bool, as_json: bool) -> int:
    """An iptables-mode state against an nftables-mode one: behaviour only (the rules of
    the two modes have nothing in common to diff), grouped as ``netproxy migrate`` does."""
    from click.core import ParameterSource

    from netproxy.commands.migrate_states import across_modes
    from netproxy.migrate.report import render_text as migrate_text

    ctx = click.get_current_context()
    family = params.get("family") if ctx.get_parameter_source("family") == \
        ParameterSource.COMMANDLINE else None
    reports = across_modes(inputs, family=family, local_ips=local_ips, strict=strict)
    if as_json:
        body: Any = reports[0].to_json() if len(reports) == 1 else \
            {"families": {r.family: r.to_json() for r in reports}}
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
    else:
        sys.stdout.write("\n".join(migrate_text(r) for r in reports))
    return max(r.exit_code for r in reports)


def _listings(inputs: tuple[str, ...], local_ips: list[str], strict: bool, as_json: bool,
              behaviour: bool, probe_scope: str, scope: str, brief: bool) -> int:
    """Two nftables listings: kube-proxy's table by Service, other tables rule by rule."""
    from netproxy.diff.nftdiff import diff_listings

    old = load_listing(inputs[0], strict=strict)
    new = load_listing(inputs[1], strict=strict)
    report = diff_listings(old, new, scope=scope)
    if behaviour:
        from netproxy.diff.behaviour import compare_listings

        try:
            compare_listings(report, old, new, local_ips=local_ips, scope=probe_scope)
        except ValueError as err:
            raise InputError(f"bad address: {err}", where="--local-ip") from None
    return _print(report, as_json, brief)
