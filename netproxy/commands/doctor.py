"""``netproxy doctor``: the "my Service does not work" checklist over a dump or a namespace."""

from __future__ import annotations

import ipaddress
from typing import Any

import click
from click.core import ParameterSource

from netproxy.commands.cluster_options import build_ruleset, cluster_options, node_local_ips
from netproxy.commands.rulesource import read_given, rules_given
from netproxy.doctor import diagnose
from netproxy.doctor.report import to_failed_only, to_json, to_text
from netproxy.errors import InputError
from netproxy.textsafe import shown


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
              help="iptables-save output of the node ('-' reads stdin; a dump given as the "
                   "first argument is taken as --rules).")
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
    compared with what kube-proxy should have written for them. Findings are pass, FAIL, warn
    (may be wrong, or cannot be checked), info (by design, worth knowing) or n/a. Exit code 1
    when any check fails, 0 otherwise (warnings included), 2 on bad input.
    """
    if failed_only and (as_json or brief):
        raise InputError("--failed-only prints one line per Service port; leave out --json and --brief")
    rules_path = rules_given(params, rules_path, netns_name, "doctor")
    if rules_path is None and netns_name is None:
        raise InputError("give the node's rules: --rules DUMP (or the dump as the first "
                         "argument) or --netns NAME")
    if service is not None and "/" not in service:
        raise InputError(f"expected NS/NAME[:PORT], got {shown(service)}", where="--service")
    ctx = click.get_current_context()
    family_given = ctx.get_parameter_source("family") == ParameterSource.COMMANDLINE
    ruleset = read_given(rules_path, netns_name, variant, command="doctor",
                         family=params["family"] if family_given or netns_name else None)
    if not ruleset.tables:
        raise InputError("no tables in the rules (expected iptables-save output)", where=ruleset.source)
    expected = None
    local_ips = _flag_ips(params)
    if params.get("inputs"):
        params["family"] = ruleset.family
        expected = build_ruleset(params)
        local_ips += [ip for ip in node_local_ips(params) if ip not in local_ips]
    if rules_path is not None and rules_path != "-" and _is_snapshot(rules_path):
        # A node snapshot also knows the node's addresses (for the walks' NodePort checks).
        from netproxy.node.snapshot import read_snapshot

        found = read_snapshot(rules_path).addresses(ruleset.family)
        local_ips += [ip for ip in found if ip not in local_ips]
    report = diagnose(ruleset, service=service, expected=expected, walk=walk, local_ips=local_ips,
                      pod_cidrs=_flag_cidrs(params.get("cluster_cidr"), ruleset.family),
                      pod_interface=_flag_pod_interface(params))
    if as_json:
        text = to_json(report)
    elif failed_only:
        text = to_failed_only(report)
    else:
        text = to_text(report, brief=brief)
    click.echo(text, nl=False)
    return report.exit_code
