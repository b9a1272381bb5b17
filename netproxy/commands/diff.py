"""``netproxy diff``: compare two rulesets by meaning, grouped by Service."""

from __future__ import annotations

import gc
import json
import shlex
import sys
from typing import Any

import click
from click.core import ParameterSource

from netproxy.commands.cluster_options import build_ruleset, cluster_options, node_local_ips
from netproxy.commands.nftables_options import NftFlags, nft_options
from netproxy.diff import diff_rulesets, render_text
from netproxy.diff.identity import analyse
from netproxy.diff.load import Side, load_listing, load_ruleset, open_side
from netproxy.errors import InputError
from netproxy.inputs.sniff import Sniffed
from netproxy.netfilter.model import Ruleset
from netproxy.netfilter.nft import NftRuleset


def _expected_and_actual(params: dict[str, Any], actual_side: Side,
                         strict: bool) -> tuple[Ruleset, Ruleset]:
    """The compiled cluster (iptables mode) and the node's dump."""
    inputs = tuple(params.get("inputs") or ())
    actual = load_ruleset(actual_side, strict=strict)
    expected = build_ruleset({**params, "inputs": inputs[:-1]})
    expected.source = _expected_source(inputs)
    if actual.family != expected.family:
        raise InputError(f"the dump is {actual.family} but the rules were compiled for "
                         f"{expected.family} (use --family)", where=inputs[-1])
    return expected, actual


def _expected_source(inputs: tuple[str, ...]) -> str:
    return "expected (compiled from " + ", ".join(inputs[:-1]) + ")"


def _expected_listing(params: dict[str, Any], actual_side: Side, strict: bool,
                      nft_flags: NftFlags) -> tuple[NftRuleset, NftRuleset, list[str]]:
    """The cluster compiled in nftables mode (``nft list table`` of each family the node's
    listing holds, or of ``--family``), the node's listing, and the node's addresses."""
    from netproxy.commands.cluster_options import load_cluster, settings_for
    from netproxy.commands.nftables_options import nftables_text
    from netproxy.kubeview.nftables import FAMILIES, TABLE, kube_proxy_families
    from netproxy.parser.nftables import parse_nft_text

    inputs = tuple(params.get("inputs") or ())
    actual = load_listing(actual_side, strict=strict)
    present = kube_proxy_families(actual)
    if not present:
        raise InputError(f"no table ip {TABLE} or ip6 {TABLE} in the listing: kube-proxy's "
                         "nftables mode is not on this node", where=inputs[-1])
    ctx = click.get_current_context()
    given = ctx.get_parameter_source("family") == ParameterSource.COMMANDLINE
    families = list(present)
    if given:
        families = ["ipv4", "ipv6"] if params["family"] == "dual" else [params["family"]]
        for fam in families:
            if fam not in present:
                raise InputError(f"the listing has no table {FAMILIES[fam]} {TABLE}",
                                 where="--family")
        for fam in present:
            if fam not in families:  # the other family's table is not compared
                del actual.tables[(FAMILIES[fam], TABLE)]
    compile_params = {**params, "inputs": inputs[:-1],
                      "family": "dual" if len(families) == 2 else families[0]}
    cluster = load_cluster(compile_params)
    text = nftables_text(compile_params, cluster, "list", nft_flags)
    expected = parse_nft_text(text, source=_expected_source(inputs), strict=True)
    local_ips: list[str] = []
    for fam in families:
        settings = settings_for({**compile_params, "family": fam}, cluster, nftables=True)
        local_ips += [ip for ip in settings.local_addresses if ip not in local_ips]
    return expected, actual, local_ips


def _refuse_nft_flags(flags: NftFlags, why: str) -> None:
    """The nftables-mode compile flags apply only to ``--expected`` against a listing."""
    for flag, value in (("--kube-proxy-version", flags.kube_proxy_version),
                        ("--single-endpoint-dnat", flags.single_endpoint_dnat),
                        ("--feature-gates", flags.feature_gates),
                        ("--service-cidr", flags.service_cidrs)):
        if value:
            raise InputError(f"only with --expected against a node's nftables listing ({why})",
                             where=flag)


def _node_rules(found: Sniffed) -> bool:
    """A node's rules: an iptables dump, an nftables listing or a node snapshot."""
    from netproxy.inputs import sniff

    return found.is_rules or found.kind in (sniff.NFT_TEXT, sniff.NFT_JSON, sniff.SNAPSHOT)


def _dump_comes_last(inputs: tuple[str, ...]) -> None:
    """``diff --expected node.rules cluster/`` (the dump first): say what to type."""
    from netproxy.inputs.read import sniff_path

    if _node_rules(sniff_path(inputs[-1])):
        return
    dumps = [name for name in inputs[:-1] if _node_rules(sniff_path(name))]
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
    dumps = [name for name, found in zip(inputs, kinds, strict=True) if _node_rules(found)]
    cluster = [name for name, found in zip(inputs, kinds, strict=True)
               if found.kind in (KUBERNETES, KUBE_PROXY_CONFIG, DIRECTORY)]
    if len(dumps) == 1 and cluster and len(dumps) + len(cluster) == len(inputs):
        raise InputError(f"{shlex.join(cluster)}: cluster objects, not a ruleset; to compare the "
                         "dump with what they should give: "
                         f"netproxy diff --expected {shlex.join(cluster)} {shlex.quote(dumps[0])}")


@click.command("diff")
@cluster_options
@nft_options
@click.option("--expected", is_flag=True,
              help="Compile the cluster INPUTS (with the compile flags) and compare the result "
                   "with the node's rules given last: an iptables dump, or an nftables listing "
                   "(then compiled in nftables mode).")
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
    the node's dump: netproxy diff --expected cluster.yaml [compile flags] node.rules; a node's
    nftables listing (or snapshot in nftables mode) is compared with the cluster compiled in
    nftables mode (the families the listing holds, or --family).

    Counters, header comments, chain order, the order of rules that never match the same
    packet, equivalent spellings and chain names are ignored. Exit code 0: equivalent,
    1: different, 2: error.
    """
    # A short-lived process holding millions of parsed rules: the cyclic collector would only
    # rescan them (nothing here makes reference cycles worth collecting).
    gc.disable()
    nft_flags = NftFlags.pop(params)
    inputs = tuple(params.get("inputs") or ())
    if expected:
        if len(inputs) < 2:
            raise InputError("--expected needs cluster INPUTS... followed by the node's dump")
        _dump_comes_last(inputs)
        actual_side = open_side(inputs[-1])
        if actual_side.is_listing:
            return _expected_nftables(params, actual_side, nft_flags, as_json, behaviour,
                                      probe_scope, scope or "kube", brief, strict, list(local_ips))
        _refuse_nft_flags(nft_flags, "the node's rules are an iptables dump")
        old, new = _expected_and_actual(params, actual_side, strict)
        scope = scope or "kube"
    else:
        _refuse_nft_flags(nft_flags, "nothing is compiled without --expected")
        _cluster_and_dump(inputs)
        if len(inputs) != 2:
            raise InputError(f"diff needs two rulesets (OLD NEW), got {len(inputs)}; "
                             "for expected-versus-actual use --expected")
        if inputs[0] == "-" and inputs[1] == "-":
            raise InputError("only one of OLD and NEW can be read from stdin")
        sides = [open_side(name) for name in inputs]
        from netproxy.commands.migrate_states import is_across_modes

        if is_across_modes(sides):
            return _across_modes(sides, params, list(local_ips), strict, as_json)
        if all(side.is_listing for side in sides):
            return _listings(sides, list(local_ips), strict, as_json, behaviour, probe_scope,
                             scope or "all", brief)
        old = load_ruleset(sides[0], strict=strict)
        new = load_ruleset(sides[1], strict=strict)
        if old.family != new.family:
            raise InputError(f"cannot compare an {old.family} ruleset with an {new.family} one",
                             where=inputs[1])
        scope = scope or "all"
    views = (analyse(old), analyse(new))  # read once for the text diff and the probes
    report = diff_rulesets(old, new, scope=scope, strict_names=strict_names, views=views)
    if behaviour:
        from netproxy.diff.behaviour import compare_behaviour

        ips = list(local_ips)
        if expected and not ips:
            ips = node_local_ips({**params, "inputs": tuple(params["inputs"])[:-1]})
        try:
            compare_behaviour(report, old, new, local_ips=ips, scope=probe_scope, views=views)
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


def _across_modes(sides: list[Side], params: dict[str, Any], local_ips: list[str],
                  strict: bool, as_json: bool) -> int:
    """An iptables-mode state against an nftables-mode one: behaviour only (the rules of
    the two modes have nothing in common to diff), grouped as ``netproxy migrate`` does."""
    from netproxy.commands.migrate_states import across_modes
    from netproxy.migrate.report import render_text as migrate_text

    ctx = click.get_current_context()
    family = params.get("family") if ctx.get_parameter_source("family") == \
        ParameterSource.COMMANDLINE else None
    reports = across_modes(sides, family=family, local_ips=local_ips, strict=strict)
    if as_json:
        body: Any = reports[0].to_json() if len(reports) == 1 else \
            {"families": {r.family: r.to_json() for r in reports}}
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
    else:
        sys.stdout.write("\n".join(migrate_text(r) for r in reports))
    return max(r.exit_code for r in reports)


def _listings(sides: list[Side], local_ips: list[str], strict: bool, as_json: bool,
              behaviour: bool, probe_scope: str, scope: str, brief: bool) -> int:
    """Two nftables listings: kube-proxy's table by Service, other tables rule by rule."""
    old = load_listing(sides[0], strict=strict)
    new = load_listing(sides[1], strict=strict)
    return _compare_listings(old, new, local_ips, as_json, behaviour, probe_scope, scope, brief)


def _expected_nftables(params: dict[str, Any], actual_side: Side, nft_flags: NftFlags,
                       as_json: bool, behaviour: bool, probe_scope: str, scope: str, brief: bool,
                       strict: bool, local_ips: list[str]) -> int:
    """``--expected`` against a node in nftables mode: the cluster compiled in nftables
    mode, compared with the node's listing as two listings are."""
    expected, actual, node_ips = _expected_listing(params, actual_side, strict, nft_flags)
    return _compare_listings(expected, actual, local_ips or node_ips, as_json, behaviour,
                             probe_scope, scope, brief)


def _compare_listings(old: NftRuleset, new: NftRuleset, local_ips: list[str], as_json: bool,
                      behaviour: bool, probe_scope: str, scope: str, brief: bool) -> int:
    """Compare two listings by Service (kube-proxy's tables read once for the text diff and
    the probes), print the report."""
    from netproxy.diff.nftdiff import diff_listings, listing_views

    views = listing_views(old, new)
    report = diff_listings(old, new, scope=scope, views=views)
    if behaviour:
        from netproxy.diff.behaviour import compare_listings

        try:
            compare_listings(report, old, new, local_ips=local_ips, scope=probe_scope,
                             views=views)
        except ValueError as err:
            raise InputError(f"bad address: {err}", where="--local-ip") from None
    return _print(report, as_json, brief)
