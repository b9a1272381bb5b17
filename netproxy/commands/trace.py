"""``netproxy trace``: where does this packet go, and why -- every branch with its weight."""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Iterable
from typing import Any

import click
from click.core import ParameterSource

from netproxy.commands.cluster_options import cluster_options
from netproxy.commands.nftables_options import NftFlags, nft_options
from netproxy.commands.rulesource import netns_read_options, read_given, rules_given
from netproxy.errors import InputError, NetproxyError, TraceError
from netproxy.inputs.read import check_input

_PACKET_FLAGS = ("src", "dst", "dport", "sport", "proto", "in_interface", "out_interface",
                 "ct_state", "mark", "origin")


@click.command("trace")
@click.option("--rules", "rules_paths", metavar="FILE", multiple=True,
              help="Trace an iptables-save/-restore dump, an 'nft list ruleset' listing (text "
                   "or -j JSON) or a node snapshot ('-' for stdin) instead of INPUTS; repeat it "
                   "to walk nft listings together with one iptables dump. A dump given as an "
                   "INPUT is taken as --rules.")
@click.option("--snapshot", "snapshot_path", metavar="FILE",
              help="The node's context from a snapshot (netproxy snapshot): its addresses, "
                   "routes, policy rules and ipsets; its rules too unless --rules, --netns or "
                   "INPUTS.")
@netns_read_options
@cluster_options
@click.option("--proxy-mode", "proxy_mode", type=click.Choice(["iptables", "nftables"]),
              default=None, help="With cluster INPUTS: trace the rules kube-proxy writes in this "
                                 "mode (default: the configuration's, else iptables).")
@nft_options
@click.option("--src", "-s", metavar="IP", help="Source address (default: a node address for --from node).")
@click.option("--dst", "-d", metavar="IP", help="Destination address.")
@click.option("--dport", type=click.IntRange(0, 65535), metavar="PORT", help="Destination port.")
@click.option("--sport", type=click.IntRange(0, 65535), metavar="PORT", help="Source port.")
@click.option("--proto", "--protocol", "-p", default="tcp", show_default=True, metavar="PROTO",
              help="tcp, udp, sctp, icmp, icmpv6 or a number.")
@click.option("--in-interface", "-i", "in_interface", metavar="IFACE",
              help="Interface the packet arrives on.")
@click.option("--out-interface", "-o", "out_interface", metavar="IFACE",
              help="Egress interface (default: the node's route with a snapshot; without one "
                   "routing is modelled only as local versus forwarded).")
@click.option("--physdev-in", metavar="PORT", help="Bridge port the packet arrived on (physdev).")
@click.option("--physdev-out", metavar="PORT", help="Bridge port it is bridged out of (physdev).")
@click.option("--not-bridged", is_flag=True, help="No Linux bridge is involved (physdev never matches).")
@click.option("--tos", metavar="BYTE", help="The packet's DS field (TOS byte / traffic class, "
              "0x00-0xff); not given: tests of it fork into both cases.")
@click.option("--dscp", metavar="DSCP", help="The packet's DSCP (0-63 or a class: EF, AF41, CS1, "
              "...), ECN bits 0; instead of --tos.")
@click.option("--uid", type=click.IntRange(0, 2**32 - 1), metavar="UID",
              help="The sending socket's uid, for a packet of the node's (-m owner, uidrange "
                   "policy rules); not given: such tests fork into both cases.")
@click.option("--ct-state", default="NEW", show_default=True, metavar="STATE",
              help="Conntrack state: NEW, ESTABLISHED, RELATED, INVALID (comma list).")
@click.option("--mark", default="0", show_default=True, metavar="MARK", help="Packet fwmark.")
@click.option("--ctmark", default="0", show_default=True, metavar="MARK",
              help="Connection mark (0 for a new connection; give it for later packets).")
@click.option("--from", "origin", type=click.Choice(["pod", "external", "node", "localhost"]),
              help="Where the packet comes from (default: inferred from --src).")
@click.option("--local-ip", "local_ip", multiple=True, metavar="IP",
              help="A node address (repeatable); loopback is always local.")
@click.option("--ipsets", "ipsets_path", metavar="FILE", help="ipset save output for -m set matches.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "dot"]), default="text",
              show_default=True)
@click.option("--repeat", type=click.IntRange(1, 10_000), default=1, show_default=True,
              help="Send the packet N times in a row (recent lists persist: session affinity).")
@click.option("--packets", "packets_path", metavar="FILE",
              help="A packet sequence: one 'key=value ...' or JSON object per line.")
@click.option("--pcap", "pcap_path", metavar="FILE", help="Trace every packet of a capture.")
@click.option("--strict", is_flag=True, help="Fail on anything the parser or tracer does not know.")
@click.option("--brief", is_flag=True, help="Only the summary line of each packet.")
@click.option("--expect", metavar="accept|drop|reject|ENDPOINT[,...]",
              help="Exit 1 (saying which) when any outcome is not one of these: a verdict, or "
                   "a DNAT endpoint IP[:PORT] the packet must be sent to.")
@click.option("--expect-masquerade", type=click.Choice(["yes", "no"]),
              help="Exit 1 when any outcome is (no) or is not (yes) an accepted, masqueraded packet.")
def command(rules_paths: tuple[str, ...], snapshot_path: str | None, netns_name: str | None, variant: str, src: str | None, dst: str | None, dport: int | None,
            sport: int | None, proto: str, in_interface: str | None, out_interface: str | None,
            physdev_in: str | None, physdev_out: str | None, not_bridged: bool,
            tos: str | None, dscp: str | None, uid: int | None, ct_state: str,
            mark: str, ctmark: str, origin: str | None, local_ip: tuple[str, ...],
            ipsets_path: str | None, as_json: bool, fmt: str, repeat: int,
            packets_path: str | None, pcap_path: str | None, strict: bool, brief: bool,
            expect: str | None, expect_masquerade: str | None, **params: Any) -> int:
    """Walk a packet through a ruleset the way netfilter does.

    Trace a dump with --rules FILE, the live rules of a namespace with --netns NAME, or the
    rules compiled from cluster objects (INPUTS and compile flags, as for `netproxy compile`).
    Every statistic branch is followed with the probability the kernel really uses; outcomes
    sum to 1.

    Exit status: 0 every outcome is definite (and agrees with --expect); 1 some outcome
    disagrees with --expect/--expect-masquerade (each one is named on stderr); 2 bad input;
    3 some outcome is UNKNOWN and none disagrees.
    """
    from netproxy.trace import Packet, Tracer
    from netproxy.trace.expect import check, parse_expectation

    expectation = parse_expectation(expect, expect_masquerade)

    if params.get("family") == "dual":  # whatever the rules are: one packet, one family
        raise InputError("trace follows one packet: give --family ipv4 or ipv6", where="--family")
    if as_json:
        fmt = "json"
    try:
        mark_value = int(mark, 0)
        ctmark_value = int(ctmark, 0)
    except ValueError:
        raise TraceError(f"bad --mark/--ctmark {mark!r}/{ctmark!r}") from None
    locals_: list[str] = list(local_ip)
    pod_cidrs: tuple[str, ...] = ()
    from netproxy.commands.nftrules import is_nft_file, read_nft_listings

    nft_flags = NftFlags.pop(params)

    inputs = tuple(params.get("inputs") or ())
    nft_paths = [p for p in (*rules_paths, *inputs) if is_nft_file(p)]
    params["inputs"] = tuple(p for p in inputs if p not in nft_paths)
    ipt_paths = [p for p in rules_paths if p not in nft_paths]
    if len(ipt_paths) > 1:
        raise InputError(f"netproxy trace walks one iptables dump with any number of nft "
                         f"listings, got {len(ipt_paths)} iptables dumps: {', '.join(ipt_paths)}")
    rules_path = rules_given(params, ipt_paths[0] if ipt_paths else None, netns_name, "trace")
    listings = read_nft_listings(nft_paths, strict=strict)
    node = None
    if rules_path is not None and snapshot_path is None and _is_snapshot(rules_path):
        snapshot_path = rules_path
    if snapshot_path is not None:
        from netproxy.node.snapshot import read_snapshot

        node = read_snapshot(snapshot_path)
        if rules_path is None and netns_name is None and not params.get("inputs"):
            rules_path = snapshot_path
    if listings and rules_path is None and netns_name is None:
        # nftables listings alone: the packet's family picks the ip/ip6 (and inet) tables.
        if params.get("inputs"):
            raise InputError("give either rules (--rules) or cluster INPUTS, not both")
        from netproxy.netfilter.model import Ruleset
        from netproxy.trace.addr import family_of

        family_given = click.get_current_context().get_parameter_source("family") \
            == ParameterSource.COMMANDLINE
        ruleset = Ruleset(family=params["family"] if family_given else family_of(dst or "0.0.0.0"),
                          source=listings[0].source)
        if params.get("cluster_cidr") or params.get("config_path"):
            from netproxy.commands.cluster_options import effective_config

            pod_cidrs = effective_config(params).cluster_cidrs
    elif rules_path is not None or netns_name is not None:
        if params.get("inputs"):
            raise InputError(f"give either --{'rules' if rules_path else 'netns'} or cluster "
                             "INPUTS, not both")
        family_given = click.get_current_context().get_parameter_source("family") \
            == ParameterSource.COMMANDLINE
        if netns_name is not None or node is not None and rules_path == snapshot_path:
            # a node (a snapshot, or the namespace read now as a snapshot records it): its
            # iptables (legacy, iptables-nft) and nftables rules walked together
            from netproxy.commands.rulesource import live_node, node_rules

            whole = live_node(netns_name) if netns_name is not None else node
            node = node or whole
            family = params["family"] if family_given else _family(dst, whole)
            ruleset, more, read_notes = node_rules(whole, variant, family, strict=strict)
            listings += more
            for text in read_notes:
                click.echo(f"netproxy: note: {text}", err=True)
        else:
            ruleset = read_given(rules_path, netns_name, variant, command="trace",
                                 strict=strict, family=params.get("family")
                                 if family_given or netns_name else None)
        from netproxy.netfilter.reach import unreached_note

        unreached = unreached_note(ruleset)
        if unreached:
            click.echo(f"netproxy: note: {unreached}", err=True)
        if params.get("cluster_cidr") or params.get("config_path"):
            # The pod CIDRs let a dump's pod sources be told from external ones.
            from netproxy.commands.cluster_options import effective_config

            pod_cidrs = effective_config(params).cluster_cidrs
    else:
        if not params.get("inputs"):
            raise InputError("nothing to trace: give --rules FILE, --netns NAME or cluster INPUTS")
        from netproxy.commands.cluster_options import (
            effective_config,
            load_cluster,
            proxy_mode,
            settings_for,
        )
        from netproxy.compiler import compile_cluster
        from netproxy.parser import parse_rules
        from netproxy.render import render_save

        cluster = load_cluster(params)  # once: both the rules and the node addresses
        if proxy_mode(params, cluster) == "nftables":
            # kube-proxy's table as `nft list table` shows it (hop lines are those of
            # `netproxy compile --proxy-mode nftables`), walked like a node's listing.
            from netproxy.commands.nftables_options import nftables_text
            from netproxy.netfilter.model import Ruleset
            from netproxy.parser.nftables import parse_nft_text

            text = nftables_text(params, cluster, "list", nft_flags)
            listings = [parse_nft_text(text, source="<compiled>", strict=True)]
            settings = settings_for(params, cluster, nftables=True)
            ruleset = Ruleset(family=settings.family, source="<compiled>")
        else:
            nft_flags.refuse_in_iptables_mode()
            settings = settings_for(params, cluster)
            compiled = compile_cluster(cluster, settings)
            # Through the save text, so hop line numbers are those of `netproxy compile`.
            ruleset = parse_rules(render_save(compiled.save), source="<compiled>",
                                  family=settings.family)
        locals_ += [ip for ip in settings.local_addresses if ip not in locals_]
        pod_cidrs = effective_config(params, cluster).cluster_cidrs
    if ruleset.problems:  # a lenient parse says what it tolerated, once per kind
        from netproxy.parser.tolerated import tolerated

        for line in tolerated(ruleset.problems):
            click.echo(f"netproxy: note: {ruleset.source}: {line}", err=True)
    for path, role in ((ipsets_path, "ipsets"), (pcap_path, "pcap"), (packets_path, "packets")):
        if path and path != "-":
            check_input(path, role, "trace")
    ipsets = None
    router = None
    ipvs_device = None
    node_notes: list[str] = []
    if node is not None:
        from netproxy.trace.ipvs import KUBE_IPVS0

        ipvs_device = node.addresses(ruleset.family, KUBE_IPVS0)
        family = ruleset.family
        if not ruleset.tables and not listings:
            node_notes.append(f"the snapshot holds no {family} iptables rules: only the "
                              "routing decision acts")
        locals_ += [ip for ip in node.addresses(family) if ip not in locals_]
        ipsets = node.ipsets()
        node_notes += node.ruleset_notes.get(family, []) + node.ipset_notes
        if node.has_routes(family):
            router = node.router(family)
        else:
            node_notes.append(f"the snapshot has no {family} routes: routing is modelled only "
                              "as local versus forwarded")
    if ipsets_path:
        from netproxy.trace.ipsets import read_ipsets

        ipsets = read_ipsets(ipsets_path)
    # The parsed ruleset lives until exit: keep the collector from walking it again and again.
    gc.freeze()
    # Without --local-ip a dump's node addresses are those its rules reveal (stated), and
    # unknowable facts fork into cases; --strict makes them UNKNOWN instead. A namespace's
    # live rules are read like a dump; compiled cluster objects and a snapshot know them all.
    complete = (bool(locals_) or (rules_path is None and netns_name is None and not nft_paths)
                or node is not None)
    tracer = Tracer(ruleset, local_ips=locals_ if complete else None, ipsets=ipsets,
                    strict=strict, pod_cidrs=pod_cidrs, assume=not strict, router=router,
                    nft=listings, ipvs_device=ipvs_device)
    tracer.notes.extend(node_notes)
    defaults: dict[str, Any] = {"src": src, "dst": dst, "dport": dport, "sport": sport,
                                "proto": proto, "in_interface": in_interface,
                                "out_interface": out_interface, "ct_state": ct_state,
                                "mark": mark_value, "ctmark": ctmark_value, "origin": origin,
                                "physdev_in": physdev_in,
                                "physdev_out": physdev_out,
                                "tos": _ds_option(tos, dscp), "uid": uid,
                                "bridged": False if not_bridged else None}
    packets: Iterable[Any]
    if pcap_path:
        from netproxy.trace.pcap import read_pcap

        packets = read_pcap(pcap_path, {k: v for k, v in defaults.items()
                                        if k in ("in_interface", "out_interface", "origin")})
        brief = True
    elif packets_path:
        from netproxy.trace.packets import read_packets

        packets = read_packets(packets_path, defaults)
    else:
        if dst is None:
            raise TraceError("--dst is required (or --packets FILE / --pcap FILE)")
        packets = [Packet(**{k: v for k, v in defaults.items()})] * repeat
    if not pcap_path and not packets_path and repeat == 1:
        result = tracer.trace(packets[0])  # type: ignore[index]
        _emit_one(result, fmt, brief)
        status, problems = check([result], expectation)
        for line in problems:
            click.echo(f"netproxy: not as expected: {line}", err=True)
        return status
    from netproxy.trace.sequence import trace_stream

    # Read, trace, print: one packet at a time, so a capture of any length runs in flat
    # memory. A packet of another family than the rules is skipped and counted.
    skipped: dict[str, int] = {}
    statuses: list[int] = []
    problems_all: list[str] = []

    def checked(results: Iterable[Any]) -> Iterable[Any]:
        for n, result in enumerate(results, 1):
            status, problems = check([result], expectation)
            statuses.append(status)
            problems_all.extend(f"packet {n}, {line}" for line in problems)
            yield result

    tracers = {tracer.family: tracer}
    if pcap_path and node is not None and rules_path == snapshot_path:
        # A capture holds both families: the snapshot's rules of the other one trace the
        # packets of that family.
        other = "ipv6" if tracer.family == "ipv4" else "ipv4"
        other_rules = node.ruleset(other, strict=strict)
        if other_rules.tables:
            tracers[other] = Tracer(
                other_rules, local_ips=node.addresses(other), ipsets=ipsets, strict=strict,
                assume=not strict, ipvs_device=node.addresses(other, KUBE_IPVS0),
                router=node.router(other) if node.has_routes(other) else None)
    _emit_stream(checked(trace_stream(tracers, packets, skipped if pcap_path else None)),
                 fmt, brief)
    for fam, n in skipped.items():
        sys.stderr.write(f"netproxy: skipped {n:,} {fam} packet{'s' if n != 1 else ''} of the "
                         f"capture: the rules are {tracer.family} (a node snapshot holding "
                         f"{fam} rules traces them too)\n")
    for line in problems_all:
        click.echo(f"netproxy: not as expected: {line}", err=True)
    from netproxy.trace.expect import EXIT_DISAGREES, EXIT_OK, EXIT_UNKNOWN

    if EXIT_DISAGREES in statuses:
        return EXIT_DISAGREES
    return EXIT_UNKNOWN if EXIT_UNKNOWN in statuses else EXIT_OK


def _is_snapshot(path: str) -> bool:
    """Does the file start like a node snapshot? (stdin is never sniffed.)"""
    if path == "-":
        return False
    from netproxy.node.snapshot import MAGIC

    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(len(MAGIC)) == MAGIC
    except OSError:
        return False  # read_rules reports it


def _family(dst: str | None, node: Any) -> str:
    """The family to trace in a snapshot: the destination's, else the rules'."""
    if dst:
        from netproxy.trace.addr import family_of

        return family_of(dst)
    family: str = node.default_family()
    return family



def _emit_one(result: Any, fmt: str, brief: bool) -> None:
    from netproxy.trace.explain import describe_packet, render_dot, render_text
    from netproxy.trace.result import summary

    out = sys.stdout
    if fmt == "json":
        out.write(json.dumps(result.to_dict(), indent=2) + "\n")
    elif fmt == "dot":
        out.write(render_dot(result))
    elif brief:
        out.write(f"{describe_packet(result)}: {summary(result)}\n")
    else:
        out.write(render_text(result))


def _emit_stream(results: Iterable[Any], fmt: str, brief: bool) -> None:
    """Each packet as it is traced; then, once for the whole sequence, the missing facts
    that mattered (each with the packets it affected and the flag that supplies it), in
    every format: a packet's own output leaves them out, and they are found once per packet
    (by the tally)."""
    from netproxy.trace.explain import describe_packet, render_dot, render_text
    from netproxy.trace.missing import MissingTally
    from netproxy.trace.result import summary

    out = sys.stdout
    tally = MissingTally()
    if fmt == "json":
        # One document, opened with the first packet: a bad packet line or a damaged capture
        # in mid-file closes it with an "error" member beside the packets already traced
        # (the error goes to stderr too, exit 2); an error before the first packet leaves
        # stdout empty.
        n = 0
        try:
            for r in results:
                tally.add(r)
                text = json.dumps(r.to_dict(missing=False), indent=2).replace("\n", "\n  ")
                out.write(("," if n else '{"packets": [') + "\n  " + text)
                n += 1
        except NetproxyError as err:
            if n:
                out.write("\n],\n" + f' "missing": {json.dumps(tally.to_list())},\n'
                          + f' "error": {json.dumps(str(err))}' + "}\n")
            raise
        out.write(("" if n else '{"packets": [') + "\n],\n"
                  + f' "missing": {json.dumps(tally.to_list())}' + "}\n")
        return
    for n, r in enumerate(results, 1):
        tally.add(r)
        if fmt == "dot":
            out.write(render_dot(r))
        elif brief:
            same = (f" [same endpoint as before: {r.same_as_previous * 100:.1f}%]"
                    if r.same_as_previous is not None else "")
            out.write(f"{n}: {describe_packet(r)}: {summary(r)}{same}\n")
        else:
            out.write(f"=== packet {n} ===\n")
            out.write(render_text(r, missing=False))
    # A graph stays a graph: there, the summary goes to stderr.
    (sys.stderr if fmt == "dot" else out).write("".join(f"{line}\n" for line in tally.lines()))


def _ds_option(tos: str | None, dscp: str | None) -> int | None:
    """The DS field of ``--tos`` or ``--dscp`` (one of them)."""
    from netproxy.trace.packet import Packet

    if tos is not None and dscp is not None:
        raise TraceError("give --tos or --dscp, not both")
    if tos is None and dscp is None:
        return None
    data: dict[str, Any] = {"dst": "0.0.0.0"}
    data["tos" if tos is not None else "dscp"] = tos if tos is not None else dscp
    return Packet.from_mapping(data, where="--tos" if tos is not None else "--dscp").tos
