"""``netproxy lab up / check / down``: the kernel as the judge of the tracer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from netproxy.backend import netns, xtables
from netproxy.backend.desired import desired_state
from netproxy.backend.engine import RestoreBackend, apply_state
from netproxy.backend.lab import spec as labspec
from netproxy.backend.lab.topology import Lab, teardown
from netproxy.commands.cluster_options import (
    cluster_options,
    effective_config,
    load_cluster,
    settings_for,
)
from netproxy.errors import BackendError, InputError
from netproxy.gcpause import paused_gc
from netproxy.k8s.ipaddr import parse_ip

DEFAULT_STATE = netns.STATE_DIR / "lab.json"


def state_option(func: Any) -> Any:
    return click.option("--state", "state_path", type=click.Path(dir_okay=False, path_type=Path),
                        default=DEFAULT_STATE, show_default=True,
                        help="Where the lab records what it made.")(func)


@click.group("lab")
def command() -> None:
    """Build a throwaway namespace lab from cluster objects and check the tracer against
    the kernel with real TCP and UDP traffic."""


def frontends_of(cluster: Any, family: str, node_ips: list[str],
                 localhost_nodeports: bool) -> list[labspec.Frontend]:
    """Every address:port the services answer on (ClusterIP, NodePorts, external, LB)."""
    from netproxy.proxy.serviceport import all_service_ports

    out: list[labspec.Frontend] = []
    for spi in all_service_ports(cluster.services, family):
        base = {"service": spi.spn, "port": spi.port, "proto": spi.protocol, "affinity": spi.client_ip_affinity}
        if spi.protocol not in ("tcp", "udp"):
            continue
        out.append(labspec.Frontend(kind="cluster-ip", ip=spi.cluster_ip, **base))  # type: ignore[arg-type]
        if spi.node_port:
            np_base = dict(base, port=spi.node_port)
            for ip in node_ips:
                out.append(labspec.Frontend(kind="node-port", ip=ip, **np_base))  # type: ignore[arg-type]
            if localhost_nodeports:
                out.append(labspec.Frontend(kind="localhost-node-port", ip="127.0.0.1", **np_base))  # type: ignore[arg-type]
        for ip in spi.external_ips:
            out.append(labspec.Frontend(kind="external-ip", ip=ip, **base))  # type: ignore[arg-type]
        for ip in spi.lb_vips:
            out.append(labspec.Frontend(kind="load-balancer", ip=ip, source_ranges=list(spi.source_ranges),
                                        **base))  # type: ignore[arg-type]
    return out


def only_one_mode(frontends: list[labspec.Frontend], service_cidrs: list[str],
                  taken: set[str]) -> tuple[list[labspec.Frontend], list[labspec.Pod]]:
    """Where only one mode answers (§12.5): a TCP and a UDP port the first ClusterIP does not
    serve, and an unallocated address of the first ServiceCIDR (with what the external
    namespace answers for, so that iptables mode's 'sent on unchanged' shows)."""
    import ipaddress

    from netproxy.migrate.probes import free_port, unallocated

    out: list[labspec.Frontend] = []
    beyond: list[labspec.Pod] = []
    first = next((f for f in frontends if f.kind == "cluster-ip"), None)
    if first is not None:
        service = first.service.rsplit(":", 1)[0]
        for proto in ("tcp", "udp"):
            used = {f.port for f in frontends
                    if f.kind == "cluster-ip" and f.ip == first.ip and f.proto == proto}
            out.append(labspec.Frontend(service, "cluster-ip-other-port", first.ip,
                                        free_port(used), proto))
    cluster_ips = {ipaddress.ip_address(f.ip) for f in frontends if f.kind == "cluster-ip"}
    for cidr in service_cidrs[:1]:
        addr = unallocated(ipaddress.ip_network(cidr, strict=False),
                           cluster_ips | {ipaddress.ip_address(t) for t in taken})
        if addr is not None:
            out.append(labspec.Frontend("", "unallocated-service-ip", addr, 80, "tcp"))
            beyond.append(labspec.Pod(addr, tcp=[80]))
    return out, beyond


def hairpin(frontends: list[labspec.Frontend], model: Any) -> list[labspec.Frontend]:
    """The first TCP ClusterIP (without session affinity) whose Service has two endpoints or
    more, one of them on another node: sent to by that endpoint and by one of this node's
    (§12.7: iptables mode masquerades both when they reach themselves, nftables mode only
    this node's). ``model``: kube-proxy's view of the cluster (the compiled one's)."""
    by_spn = {sp.spn: model.endpoints.get(sp.name, []) for sp in model.service_ports}
    for f in frontends:
        eps = [e for e in by_spn.get(f.service, []) if e.ready]
        if f.kind != "cluster-ip" or f.affinity or f.proto != "tcp" or len(eps) < 2:
            continue
        remote = [e for e in eps if not e.is_local]
        if not remote:
            continue
        out = [labspec.Frontend(f.service, "cluster-ip-hairpin", f.ip, f.port, f.proto,
                                client=remote[0].ip)]
        out += [labspec.Frontend(f.service, "cluster-ip-hairpin", f.ip, f.port, f.proto,
                                 client=e.ip, client_local=True) for e in eps if e.is_local][:1]
        return out
    return []


def build_spec(params: dict[str, Any], cluster: Any, local_ips: list[str] | None = None,
               service_cidrs: list[str] | None = None) -> tuple[labspec.LabSpec, Any]:
    """The lab of ``cluster`` (loaded from ``params``) and its iptables-mode rules, compiled
    once; ``local_ips``: more node addresses (NodePorts probed on each); ``service_cidrs``:
    the ServiceCIDRs (default: the ServiceCIDR objects among the inputs)."""
    from netproxy.compiler import compile_cluster

    if (params.get("family") or "ipv4") != "ipv4":
        raise InputError("the lab supports IPv4 only", where="--family")
    settings = settings_for(params, cluster)
    with paused_gc(freeze=True):
        compiled = compile_cluster(cluster, settings)
    ruleset = compiled.save
    cfg = effective_config(params, cluster)
    node_ips = list(settings.node_ips) or [labspec.DEFAULT_NODE_IP]
    for text in local_ips or ():
        addr = parse_ip(text)
        if addr is None or addr.version != 4:
            raise InputError(f"not an IPv4 address: {text!r}", where="--local-ip")
        if str(addr) not in node_ips:
            node_ips.append(str(addr))
    pods = labspec.endpoints_of(ruleset)
    taken = {p.ip for p in pods} | set(node_ips)
    frontends = frontends_of(cluster, "ipv4", node_ips, settings.localhost_nodeports)
    cidrs = _service_cidrs(params, cluster, service_cidrs)
    extra, beyond = only_one_mode(frontends, cidrs, taken)
    frontends += extra + hairpin(frontends, compiled.model)
    sources = [labspec.EXTERNAL_CLIENT]
    for f in frontends:
        for cidr in f.source_ranges:
            found = labspec.source_for_range(cidr, taken)
            if found and found not in sources:
                sources.append(found)
    ranges = [c for f in frontends for c in f.source_ranges]
    if ranges:  # and one source outside every range, to see the firewall drop it
        outside = labspec.source_outside(ranges)
        if outside and outside not in sources:
            sources.append(outside)
    spec = labspec.LabSpec(node_ips=node_ips, pods=pods,
                           pod_client=labspec.pick_client(list(cfg.cluster_cidrs or ()), taken),
                           external_sources=sources, frontends=frontends,
                           localhost_nodeports=settings.localhost_nodeports, beyond=beyond)
    return spec, ruleset


def _service_cidrs(params: dict[str, Any], cluster: Any, given: list[str] | None) -> list[str]:
    from netproxy.commands.nftables_options import options_for

    return list(options_for(_flags(given), params, cluster, "ipv4").service_cidrs)


def _flags(service_cidrs: list[str] | None) -> Any:
    from netproxy.commands.nftables_options import NftFlags

    return NftFlags(None, None, None, tuple(service_cidrs or ()))


def _apply_nftables(node: str, params: dict[str, Any], cluster: Any,
                    service_cidrs: list[str] | None, compiled: Any = None) -> Any:
    """kube-proxy's nftables table on the lab's node (``apply --proxy-mode nftables``);
    ``compiled``: the table as compiled for a node without one (used when the node has none:
    not compiled again)."""
    from netproxy.backend.nftables import apply_nftables
    from netproxy.commands.nftables_options import nftables_tables

    nft = {**params, "proxy_mode": "nftables"}

    def tables(listing: Any) -> Any:
        if compiled is not None and (listing is None or ("ip", "kube-proxy") not in listing.tables):
            return [compiled]
        return nftables_tables(nft, cluster, _flags(service_cidrs), node=listing)

    result, _ = apply_nftables(node, ["ipv4"], tables)
    return result


def _load_state(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise BackendError(f"no lab is up (no state file {path})") from None
    except ValueError as exc:
        raise BackendError(f"{path}: unreadable lab state: {exc}") from None
    return data


@command.command("up")
@state_option
@click.option("--iptables", "variant", type=click.Choice(["auto", "legacy", "nft"]), default="auto",
              show_default=True, help="iptables variant used in the node namespace.")
@click.option("--proxy-mode", "mode", type=click.Choice(["iptables", "nftables"]),
              default="iptables", show_default=True,
              help="kube-proxy's mode on the lab's node: iptables rules, or its nftables table "
                   "loaded with nft -f.")
@click.option("--prefix", metavar="NAME", default=None,
              help="Start of every namespace name the lab makes (default np-lab-<pid>).")
@click.option("--local-ip", "local_ips", multiple=True, metavar="IP",
              help="Another address of the node (repeatable): NodePorts are probed on it too "
                   "(nftables mode's default nodePortAddresses leaves it out).")
@click.option("--service-cidr", "service_cidrs", multiple=True, metavar="CIDRS",
              help="The ServiceCIDRs (default: the ServiceCIDR objects among the inputs): "
                   "nftables mode drops their unallocated addresses; the lab probes one.")
@cluster_options
def up(state_path: Path, variant: str, mode: str, prefix: str | None,
       local_ips: tuple[str, ...], service_cidrs: tuple[str, ...], **params: Any) -> None:
    """Create the node, pod and client namespaces and apply the compiled rules."""
    if not params.get("inputs"):
        raise InputError("lab up needs cluster INPUTS")
    if state_path.exists():
        raise BackendError(f"a lab is already up ({state_path}); run 'netproxy lab down' first")
    cluster = load_cluster(params)
    spec, ruleset = build_spec({**params, "proxy_mode": "iptables"}, cluster, list(local_ips),
                               list(service_cidrs))
    tools = xtables.resolve(variant) if mode == "iptables" else None
    if prefix is not None:
        netns.check_name(f"{prefix}-node")
    lab = Lab(state_path, prefix)
    try:
        lab.build(spec)
        if tools is not None:
            result = apply_state(RestoreBackend(lab.state["node"], tools), desired_state(ruleset))
            what = f"{tools.variant}, {result.counts['chains_written']} chains"
            lab.state.update({"spec": spec.to_dict(), "variant": tools.variant})
        else:
            done = _apply_nftables(lab.state["node"], params, cluster, list(service_cidrs))
            what = f"nftables, {done.operations} operations"
            lab.state.update({"spec": spec.to_dict(), "variant": "nft", "mode": "nftables"})
        lab.state["params"] = {k: list(v) if isinstance(v, tuple) else v
                               for k, v in params.items()}
        lab.state["service_cidrs"] = list(service_cidrs)
        lab.save()
    except BaseException:
        teardown(lab.state)
        state_path.unlink(missing_ok=True)
        raise
    click.echo(f"lab {lab.prefix} is up: node {lab.state['node']} ({what}), {len(spec.pods)} pods, "
               f"{len(spec.frontends)} frontends, clients: pod {spec.pod_client}, "
               f"external {', '.join(spec.external_sources)}, node-local")
    click.echo(f"state: {state_path}")


@command.command("check")
@state_option
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--count", type=click.IntRange(10, 1000), default=40, show_default=True,
              help="Attempts per frontend and source (at least: more where a predicted "
                   "endpoint is rare enough to be missed by chance).")
@click.option("--timeout", type=click.FloatRange(0.05, 5.0), default=0.9, show_default=True,
              help="Seconds before a TCP connection the kernel does not answer counts as timed "
                   "out (DROP). Keep it under TCP's first SYN retransmission (1 s): one attempt "
                   "must stay one packet. Endpoints then get 5 s to answer (UDP: 5 s in all).")
@click.option("--budget", type=click.FloatRange(5, 3600), default=300, show_default=True,
              help="Upper bound on the whole check, in seconds.")
@click.option("--kernel-paths", type=click.IntRange(0, 100), default=12, show_default=True,
              help="Sample packets whose kernel rule path is compared hop by hop.")
@click.option("--proxy-mode", "mode", type=click.Choice(["both"]), default=None,
              help="both: check the lab in iptables mode, then in nftables mode, and set the "
                   "kernel's results beside netproxy migrate's prediction (the lab returns to "
                   "its own mode afterwards).")
def check(state_path: Path, as_json: bool, count: int, timeout: float, budget: float, kernel_paths: int,
          mode: str | None) -> int:
    """Send TCP/UDP traffic to every frontend from pod, external and node-local clients
    and compare with the tracer's predictions for the rules read back from the node."""
    state = _load_state(state_path)
    if "spec" not in state:
        raise BackendError(f"{state_path}: the lab did not finish coming up; run 'netproxy lab down'")
    spec = labspec.LabSpec.from_dict(state["spec"])
    if mode == "both":
        return _check_both(state, spec, as_json, count=count, timeout=timeout, budget=budget,
                           kernel_paths=kernel_paths)
    report = _checker(state, spec, state.get("mode") or "iptables", count=count, timeout=timeout,
                      budget=budget, kernel_paths=kernel_paths).run()
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        _print_report(report)
    return 0 if report["agree"] == report["groups"] else 1


def _checker(state: dict[str, Any], spec: labspec.LabSpec, mode: str, **knobs: Any) -> Any:
    """A checker for the rules the lab's node holds in ``mode`` (read back from it)."""
    from netproxy.backend.lab.check import Checker
    from netproxy.parser import parse_rules

    if mode == "nftables":
        from netproxy.backend.nftables import read_table
        from netproxy.netfilter.model import Ruleset
        from netproxy.parser.nftables import parse_nft

        listed = read_table(state["node"], "ipv4")
        if listed is None:
            raise BackendError(f"netns {state['node']} holds no table ip kube-proxy")
        listing = parse_nft(listed, source=f"netns {state['node']}", strict=True)
        return Checker(state, spec, Ruleset(family="ipv4", source=listing.source),
                       variant="nftables", nft=[listing], **knobs)
    tools = xtables.resolve(state["variant"])
    text = RestoreBackend(state["node"], tools).read()
    ruleset = parse_rules(text, source=f"netns {state['node']}")
    return Checker(state, spec, ruleset, variant=tools.variant, **knobs)


def _switch(state: dict[str, Any], params: dict[str, Any], mode: str, both: Any) -> None:
    """Put the lab's node in ``mode``: the other mode's rules removed, this mode's applied
    (``both``: the cluster compiled in both modes, :class:`~netproxy.migrate.compiled.BothModes`)."""
    from netproxy.backend.engine import cleanup
    from netproxy.backend.nftables import cleanup as nft_cleanup

    node = state["node"]
    tools = xtables.resolve(state["variant"])
    if mode == "nftables":
        cleanup(RestoreBackend(node, tools), reread=True)
        _apply_nftables(node, params, both.cluster, state.get("service_cidrs"), both.table)
    else:
        nft_cleanup(node)
        apply_state(RestoreBackend(node, tools), desired_state(both.iptables), reread=True)


def _check_both(state: dict[str, Any], spec: labspec.LabSpec, as_json: bool, **knobs: Any) -> int:
    from netproxy.backend.lab.both import compare_modes

    params = state.get("params")
    if params is None:
        raise BackendError("this lab was brought up by an older netproxy (no cluster inputs in "
                           "its state); run 'netproxy lab down' and 'netproxy lab up' again")
    from netproxy.migrate.compiled import compile_both

    home = state.get("mode") or "iptables"
    # loaded and compiled once: what each mode applies and what migrate predicts
    both = compile_both({**params, "family": "ipv4"}, load_cluster(params),
                        _flags(state.get("service_cidrs")))
    checkers: dict[str, Any] = {}
    reports: dict[str, dict[str, Any]] = {}
    try:
        for mode in ("iptables", "nftables"):
            _switch(state, params, mode, both)
            checkers[mode] = _checker(state, spec, mode, **knobs)
            reports[mode] = checkers[mode].run()
    finally:
        _switch(state, params, home, both)
    migration = compare_modes(checkers["iptables"], checkers["nftables"],
                              old_nodeports=both.old_settings.nodeports,
                              new_nodeports=both.new_settings.nodeports,
                              predicted=both.tracers(sorted(checkers["iptables"].local_ips)))
    agree = all(r["agree"] == r["groups"] for r in reports.values())
    if as_json:
        click.echo(json.dumps({**reports, "migration": migration}, indent=2))
    else:
        for m, r in reports.items():
            kp = r["kernel_paths"]
            click.echo(f"{m}: {r['agree']}/{r['groups']} frontend/source groups agree with the "
                       f"tracer, kernel paths {kp['agree']}/{kp['sampled']} match")
        for row in migration["changed"]:
            what = f"expected: {row['expected']}" if row["expected"] else (
                "FINDING" if row["finding"] else "not predicted")
            seen = " -> ".join(", ".join(f"{k} x{v}" for k, v in sorted(row["observed"][m].items()))
                               for m in ("iptables", "nftables"))
            mark = "ok  " if row["kernel_agrees"] else "FAIL"
            why = f" <- {'; '.join(row['why'])}" if row["why"] else ""
            click.echo(f"{mark} {row['group']}: {what}; kernel saw {seen}{why}")
        click.echo(f"migration: {len(migration['changed'])} groups change between the modes, "
                   f"{migration['findings']} findings; the kernel confirms the prediction for "
                   f"{migration['confirmed']}/{migration['groups']} groups")
    confirmed = migration["confirmed"] == migration["groups"]
    return 0 if agree and confirmed and migration["findings"] == 0 else 1


def _print_report(report: dict[str, Any]) -> None:
    for name, entry in report["frontends"].items():
        mark = "ok  " if entry["agree"] == entry["groups"] else "FAIL"
        click.echo(f"{mark} {name}: {entry['agree']}/{entry['groups']} sources agree")
        for src in entry["sources"]:
            seen = ", ".join(f"{k} x{v}" for k, v in sorted(src["observed"].items()))
            line = f"       from {src['source']:<8} {src['src'] or '':<15} saw {seen}"
            if src["kernel_path"] is not None:
                line += f"; kernel path {'matches' if src['kernel_path']['ok'] else 'DIFFERS'}"
            if not src["ok"]:
                failed = [k for k, c in src["checks"].items() if not c["ok"]]
                line += f"  <- {', '.join(failed)}; predicted {src['predicted']}"
            click.echo(line)
    kp = report["kernel_paths"]
    click.echo(f"total: {report['agree']}/{report['groups']} frontend/source groups agree "
               f"({report['agreement']:.1%}), {report['attempts']} attempts; kernel paths "
               f"{kp['agree']}/{kp['sampled']} match; test: {report['statistics']}")


@command.command("down")
@state_option
def down(state_path: Path) -> None:
    """Stop the lab's servers and delete every namespace it made."""
    state = _load_state(state_path)
    removed = teardown(state)
    state_path.unlink(missing_ok=True)
    click.echo(f"lab {state.get('prefix', '?')} is down: {len(removed)} namespaces deleted")
