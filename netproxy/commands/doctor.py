"""``netproxy doctor``: the "my Service does not work" checklist over a dump or a namespace."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from netproxy.commands.cluster_options import build_ruleset, cluster_options, node_local_ips
from netproxy.commands.rulesource import live_rules, read_given, rules_given
from netproxy.doctor import diagnose
from netproxy.doctor.report import (
    NoSuchService,
    Report,
    to_failed_only,
    to_json,
    to_json_families,
    to_text,
)
from netproxy.errors import InputError
from netproxy.textsafe import shown

F = TypeVar("F", str, str | None)


def _flag_ips(params: dict[str, Any]) -> list[str]:
    """``--node-ip`` values (comma lists allowed), checked."""
    out: list[str] = []
    for value in params.get("node_ips") or ():
        for text in str(value).split(","):
            text = text.strip()
            if not text:
                continue
            try:
                ipaddress.ip_address(text)
            except ValueError:
                raise InputError(f"invalid IP address {text!r}", where="--node-ip") from None
            out.append(text)
    return out


def _is_snapshot(path: str) -> bool:
    from netproxy.inputs import sniff
    from netproxy.inputs.read import sniff_path

    return sniff_path(path).kind == sniff.SNAPSHOT


def _flag_cidrs(value: str | None, family: str) -> list[str]:
    """``--cluster-cidr`` values of the ruleset's family, checked."""
    out: list[str] = []
    for text in (value or "").split(","):
        text = text.strip()
        if not text:
            continue
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise InputError(f"invalid CIDR {text!r}", where="--cluster-cidr") from None
        if (net.version == 6) == (family == "ipv6"):
            out.append(str(net))
    return out


def _flag_pod_interface(params: dict[str, Any]) -> str | None:
    """``--pod-bridge-interface``, or an interface of ``--pod-interface-name-prefix``."""
    if params.get("bridge_interface"):
        return str(params["bridge_interface"])
    if params.get("interface_name_prefix"):
        return str(params["interface_name_prefix"]) + "0"
    return None


@click.command("doctor")
@click.option("--rules", "rules_path", metavar="DUMP", type=click.Path(allow_dash=True),
              help="iptables-save output of the node, its 'nft list ruleset' listing (nftables "
                   "mode: kube-proxy's table is checked), or a node snapshot ('-' reads stdin; a "
                   "dump given as the first argument is taken as --rules).")
@click.option("--netns", "netns_name", metavar="NAME",
              help="Read the live rules of this network namespace instead of a dump.")
@click.option("--iptables", "variant", type=click.Choice(["auto", "legacy", "nft"]), default="auto",
              show_default=True, help="iptables variant used with --netns.")
@click.option("--service", metavar="NS/NAME[:PORT]",
              help="Check only this Service (PORT: a port name or number).")
@click.option("--walk/--no-walk", default=True, show_default=True,
              help="Also trace connections through the whole ruleset (walk-split, walk-hairpin).")
@click.option("--brief", is_flag=True,
              help="Leave out checks that do not apply; quote rule lines and reasons only for "
                   "failures and warnings.")
@click.option("--failed-only", is_flag=True,
              help="Print one line per Service port (and the node) with a failure or warning.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@cluster_options
def command(rules_path: str | None, netns_name: str | None, variant: str, service: str | None,
            walk: bool, brief: bool, failed_only: bool, as_json: bool, **params: Any) -> int:
    """Run the Service checklist over a node's rules: entry rules, endpoints, even
    probabilities, DNAT, masquerade and hairpin, Local traffic policy, REJECTs.

    With INPUTS (Services, EndpointSlices, ... as for 'netproxy compile') the rules are also
    compared with what kube-proxy should have written for them. An nftables listing (or a
    snapshot holding kube-proxy's nftables table) is checked in nftables mode: its verdict
    maps, numgen shares, masquerading, cluster-ips-check, nodeport-ips, firewall ranges and
    affinity sets. Findings are pass, FAIL, warn
    (may be wrong, or cannot be checked), info (by design, worth knowing) or n/a. Exit code 1
    when any check fails, 0 otherwise (warnings included), 2 on bad input.
    """
    if failed_only and (as_json or brief):
        raise InputError("--failed-only prints one line per Service port; leave out --json and --brief")
    from netproxy.commands.nftrules import is_nft_file

    inputs = tuple(params.get("inputs") or ())
    nft_paths = [p for p in (rules_path, *inputs) if p is not None and is_nft_file(p)]
    if len(nft_paths) > 1:
        raise InputError(f"netproxy doctor reads one ruleset, got {len(nft_paths)}: "
                         f"{', '.join(nft_paths)}")
    if nft_paths:
        params["inputs"] = tuple(p for p in inputs if p != nft_paths[0])
        if netns_name is not None:
            raise InputError(f"give either --rules {nft_paths[0]} or --netns {netns_name}, not both")
        if rules_path is not None and rules_path != nft_paths[0]:
            raise InputError(f"this is a ruleset too, and --rules {rules_path} already names one; "
                             "netproxy doctor reads one ruleset", where=nft_paths[0])
    else:
        rules_path = rules_given(params, rules_path, netns_name, "doctor")
    if rules_path is None and netns_name is None and not nft_paths:
        raise InputError("give the node's rules: --rules DUMP (or the dump as the first "
                         "argument) or --netns NAME")
    if service is not None and "/" not in service:
        raise InputError(f"expected NS/NAME[:PORT], got {shown(service)}", where="--service")
    ctx = click.get_current_context()
    family_given = ctx.get_parameter_source("family") == ParameterSource.COMMANDLINE
    path = nft_paths[0] if nft_paths else rules_path
    node = _snapshot(path)
    nft_reports = _nftables_mode(path, node, params, service, walk, family_given,
                                 netns_name=netns_name, variant=variant)
    if nft_reports is not None:
        return _print(nft_reports, as_json, failed_only, brief)
    if node is not None:
        from netproxy.inputs.read import snapshot_ruleset

        families = _iptables_families(node) if not family_given else (
            ["ipv4", "ipv6"] if params["family"] == "dual" else [params["family"]])
        reports = _each_family(families, lambda fam: _iptables_report(
            snapshot_ruleset(node, fam), params, service, walk, node))
        return _print(reports, as_json, failed_only, brief)
    ruleset = read_given(rules_path, netns_name, variant, command="doctor",
                         family=params["family"] if family_given or netns_name else None)
    return _print([_iptables_report(ruleset, params, service, walk, None)], as_json, failed_only, brief)


def _snapshot(path: str | None) -> Any:
    """The node snapshot at ``path``, read once for everything the doctor takes from it."""
    if path is None or path == "-" or not _is_snapshot(path):
        return None
    from netproxy.inputs.read import read_snapshot_input

    return read_snapshot_input(path)


def _iptables_families(node: Any) -> list[str]:
    """The families whose iptables rules in the snapshot hold kube-proxy's chains (both on a
    dual-stack node), else the family the snapshot's rules are read in by default."""
    found = [fam for fam in ("ipv4", "ipv6") if any(
        name.startswith("KUBE-") for t in node.ruleset(fam).tables.values() for name in t.chains)]
    return found or [node.default_family()]


def _each_family(families: Sequence[F], check: Callable[[F], Report]) -> list[Report]:
    """One report per family; with several, a ``--service`` that one family lacks is left out
    of that family's report (an error only when no family has it)."""
    reports: list[Report] = []
    missing: list[NoSuchService] = []
    for fam in families:
        try:
            reports.append(check(fam))
        except NoSuchService as err:
            if len(families) == 1:
                raise
            missing.append(err)
    if not reports:
        raise missing[0]
    return reports


def _iptables_report(ruleset: Any, params: dict[str, Any], service: str | None, walk: bool,
                     node: Any) -> Report:
    """The checklist over one family's iptables rules (``node``: the snapshot they came
    from, whose addresses the walks use)."""
    if not ruleset.tables:
        raise InputError("no tables in the rules (expected iptables-save output)", where=ruleset.source)
    expected = None
    local_ips = _flag_ips(params)
    params = {**params, "family": ruleset.family}
    if params.get("inputs"):
        expected = build_ruleset(params)
        local_ips += [ip for ip in node_local_ips(params) if ip not in local_ips]
    if node is not None:
        # A node snapshot also knows the node's addresses (for the walks' NodePort checks).
        local_ips += [ip for ip in node.addresses(ruleset.family) if ip not in local_ips]
    return diagnose(ruleset, service=service, expected=expected, walk=walk, local_ips=local_ips,
                    pod_cidrs=_flag_cidrs(params.get("cluster_cidr"), ruleset.family),
                    pod_interface=_flag_pod_interface(params))


def _print(reports: list[Report], as_json: bool, failed_only: bool, brief: bool) -> int:
    """Print the report of each family checked (one: as before; several: each in turn,
    ``--json`` as ``{"families": {...}}``); exit 1 when any check failed."""
    several = len(reports) > 1
    if as_json:
        text = to_json_families(reports) if several else to_json(reports[0])
    elif failed_only:
        text = "".join(to_failed_only(r, prefix=f"{r.family}: " if several else "") for r in reports)
    else:
        text = "\n".join(to_text(r, brief=brief) for r in reports)
    click.echo(text, nl=False)
    return max(r.exit_code for r in reports)


def _netns_listing(name: str) -> Any:
    """``nft list ruleset`` of namespace ``name`` when it holds kube-proxy's table, else None
    (no nft tool, no such table: the namespace is read as iptables rules)."""
    import shutil

    from netproxy.backend import netns
    from netproxy.errors import NetproxyError
    from netproxy.kubeview.nftables import kube_proxy_families
    from netproxy.parser.nftables import parse_nft

    if shutil.which("nft") is None:
        return None
    try:
        proc = netns.run(name, ["nft", "list", "ruleset"], check=False, timeout=120)
    except NetproxyError:
        return None
    if proc.returncode != 0:
        return None
    listing = parse_nft(proc.stdout, source=f"netns {name}", strict=False)
    return listing if kube_proxy_families(listing) else None


def _nftables_mode(path: str | None, node: Any, params: dict[str, Any], service: str | None,
                   walk: bool, family_given: bool, *, netns_name: str | None = None,
                   variant: str = "auto") -> list[Report] | None:
    """The reports on kube-proxy's nftables tables when ``path`` is an nft listing, a
    snapshot (``node``, read) whose nft listing holds them (its iptables rules are then
    walked too), or the namespace ``netns_name`` holds them (its iptables rules too); else
    None. One report per table (``ip``, ``ip6``) unless ``--family`` names one."""
    from netproxy.commands.nftrules import is_nft_file
    from netproxy.doctor.nftables import diagnose_nft
    from netproxy.errors import NetproxyError
    from netproxy.inputs.read import read_listing
    from netproxy.kubeview.nftables import kube_proxy_families
    from netproxy.parser.nftables import parse_nft

    if path is None and netns_name is not None:
        listing = _netns_listing(netns_name)
        if listing is None:
            return None
    elif path is None:
        return None
    elif node is not None:
        if not node.nft_ruleset:
            return None
        listing = parse_nft(node.nft_ruleset, source=path, strict=False)
        if not kube_proxy_families(listing):
            return None
    elif is_nft_file(path):
        listing = read_listing(path, strict=False)
    else:
        return None
    given = params["family"] if family_given else None
    families: list[str | None] = (
        ["ipv4", "ipv6"] if given == "dual" else [given] if given else
        list(kube_proxy_families(listing)) or [None])  # none: diagnose_nft says what is missing

    def check(family: str | None) -> Report:
        fam = family or "ipv4"
        local_ips = _flag_ips(params)
        iptables = ipsets = None
        if netns_name is not None:
            try:
                live = live_rules(netns_name, variant, fam)
                iptables = live if live.tables else None
            except NetproxyError:  # no iptables tool or tables: the nftables table alone
                iptables = None
        elif node is not None:
            ruleset = node.ruleset(fam)
            iptables = ruleset if ruleset.tables else None
            ipsets = node.ipsets()
            local_ips += [ip for ip in node.addresses(fam) if ip not in local_ips]
        expected = None
        if params.get("inputs"):
            compile_params = {**params, "family": fam}
            expected = _compiled_nftables(compile_params)
            local_ips += [ip for ip in node_local_ips(compile_params) if ip not in local_ips]
        return diagnose_nft(listing, family=family, iptables=iptables, service=service,
                            expected=expected, walk=walk, local_ips=local_ips,
                            pod_cidrs=_flag_cidrs(params.get("cluster_cidr"), fam),
                            pod_interface=_flag_pod_interface(params), ipsets=ipsets,
                            alone=len(families) == 1)

    return _each_family(families, check)


def _compiled_nftables(params: dict[str, Any]) -> Any:
    """kube-proxy's table for the cluster INPUTS, as ``nft list table`` shows it, parsed."""
    from netproxy.commands.cluster_options import load_cluster
    from netproxy.commands.nftables_options import NftFlags, nftables_text
    from netproxy.parser.nftables import parse_nft_text

    cluster = load_cluster(params)
    text = nftables_text(params, cluster, "list", NftFlags(None, None, None, ()))
    return parse_nft_text(text, source="<compiled>", strict=True)
