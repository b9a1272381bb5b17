"""``netproxy audit``: every node of a fleet against the API state, rolled up per Service."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from netproxy.commands.cluster_options import cluster_options
from netproxy.errors import InputError


class _Progress:
    """Nodes done / total, rate and time left (:mod:`netproxy.progress`: only on a terminal)."""

    def __init__(self, total: int) -> None:
        from netproxy.progress import progress

        self.bar = progress("audit", total, unit="nodes")  # a total: no ticker thread
        self.start = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        self.bar.update(done, what=f"audit, {rate:,.1f} nodes/s")

    def close(self) -> None:
        self.bar.close()


@click.command("audit")
@cluster_options
@click.option("--nodes", "node_specs", multiple=True, required=True, metavar="DIR|GLOB|URL",
              help="The nodes' iptables-save dumps (or nftables rulesets, node snapshots): a "
                   "directory, a glob, a file, or an fsspec URL; each file is named after its "
                   "node (repeatable).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one record per node and the fleet roll-up as JSON (docs/audit.md).")
@click.option("--html", "html_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="Also write a self-contained HTML report.")
@click.option("--jobs", "-j", type=click.IntRange(1, 4096), default=None,
              help="Worker processes (default: the CPU count; with --engine dask and no "
                   "--scheduler, the local Dask cluster's workers).")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="local: a process pool; dask: a Dask distributed cluster.")
@click.option("--scheduler", metavar="tcp://HOST:PORT",
              help="With --engine dask: the scheduler of an existing cluster (default: start a "
                   "local one).")
@click.option("--stuck-services", "stuck", type=click.IntRange(1), default=3, show_default=True,
              help="A node with this many Service ports differing at once looks stuck.")
@click.option("--doctor/--no-doctor", default=True, show_default=True,
              help="Run the doctor's checks on nodes that differ (checks only the node fails).")
@click.option("--walk", is_flag=True,
              help="With the doctor: also the traced checks (slower).")
@click.option("--proxy-mode", "proxy_mode", type=click.Choice(["iptables", "nftables"]),
              default=None,
              help="The mode the fleet should run in (default: the KubeProxyConfiguration's, "
                   "else iptables); each node is judged in the mode its rules show, and a node "
                   "in the other one is a finding.")
@click.option("--brief", is_flag=True, help="Text: the fleet roll-up without the per-node list.")
def command(node_specs: tuple[str, ...], as_json: bool, html_path: str | None, jobs: int | None,
            engine: str, scheduler: str | None, stuck: int, doctor: bool, walk: bool,
            proxy_mode: str | None, brief: bool, **params: Any) -> int:
    """Audit a fleet: each node's rules against what the cluster objects compile to for it.

    netproxy audit CLUSTER_INPUTS... [kube-proxy flags] --nodes DIR|GLOB

    Node objects among the inputs give each node's addresses and pod CIDR; kube-proxy's
    settings come from the flags or a KubeProxyConfiguration. Every node is equal, different
    (with the findings of `netproxy diff --expected` and the doctor) or an error (a file that
    cannot be read is a finding for its node). Exit code 0: all nodes equal, 1: findings,
    2: bad input.
    """
    from netproxy import audit
    from netproxy.audit.fleet import to_json

    if params.get("hostname_override"):
        raise InputError("each node is named by its file; --hostname-override does not apply",
                         where="--hostname-override")
    if params.get("node_ips"):
        raise InputError("node addresses come from the Node objects; --node-ip does not apply",
                         where="--node-ip")
    if scheduler and engine != "dask":
        raise InputError("--scheduler needs --engine dask", where="--scheduler")
    if not params.get("inputs"):
        raise InputError("no cluster INPUTS: give the Services, EndpointSlices and Nodes "
                         "(files, directories or -)")
    params["proxy_mode"] = proxy_mode
    nodes = audit.find_nodes(node_specs)
    ctx = audit.prepare(params, nodes, doctor=doctor, walk=walk)
    shown = _Progress(len(nodes))
    try:
        fleet = audit.run(ctx, nodes, engine=engine, jobs=jobs, scheduler=scheduler,
                          stuck_threshold=stuck, progress=shown)
    finally:
        shown.close()
    if html_path:
        from netproxy.audit.html import render_html
        from netproxy.fileio import write_atomic

        write_atomic(html_path, render_html(fleet))
    if as_json:
        sys.stdout.write(json.dumps(to_json(fleet), indent=2) + "\n")
    else:
        from netproxy.audit.text import render_text

        sys.stdout.write(render_text(fleet, details=not brief))
    return fleet.exit_code
