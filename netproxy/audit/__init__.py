"""Audit a fleet: every node's rules against what the API state compiles to for that node.

:func:`prepare` loads and validates the cluster objects once and compiles what the nodes share;
:func:`run` audits the nodes (in this process, a process pool, or on Dask) and rolls the
results up per Service port (:mod:`netproxy.audit.fleet`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from netproxy.audit.engines import default_jobs, run_dask, run_local
from netproxy.audit.expected import fleet_model
from netproxy.audit.fleet import Fleet, roll_up
from netproxy.audit.node import AuditContext, NodeResult
from netproxy.audit.nodes import NodeInput, find_nodes
from netproxy.errors import NetproxyError

MAX_SHARED_VARIANTS = 4
"""Distinct shared-settings sets compiled up front (more: those nodes compile everything)."""

__all__ = ["AuditContext", "Fleet", "NodeInput", "NodeResult", "find_nodes", "prepare", "run"]


def prepare(params: dict[str, Any], nodes: list[NodeInput], *, doctor: bool = True,
            walk: bool = False) -> AuditContext:
    """Load the inputs once; compile the shared service ports for the nodes' settings."""
    from netproxy.commands.cluster_options import load_cluster
    from netproxy.gcpause import paused_gc

    with paused_gc():
        cluster = load_cluster(params)
        model = fleet_model(cluster, params)
        for node in nodes:
            try:
                settings = model.settings(node.name)
            except NetproxyError:
                continue  # that node's audit reports it
            if len(model.shared) >= MAX_SHARED_VARIANTS:
                break
            model.add_shared(settings)
    return AuditContext(model=model, doctor=doctor, walk=walk)


def run(ctx: AuditContext, nodes: list[NodeInput], *, engine: str = "local",
        jobs: int | None = None, scheduler: str | None = None, stuck_threshold: int = 3,
        progress: Callable[[int, int], None] | None = None) -> Fleet:
    """Audit ``nodes`` and roll the results up."""
    jobs = jobs or default_jobs()
    info: dict[str, Any] = {"name": engine, "jobs": jobs}
    start = time.perf_counter()
    if engine == "dask":
        results = list(run_dask(ctx, nodes, scheduler, jobs, progress, info))
        if scheduler:
            info.pop("jobs")  # the cluster's own workers
    else:
        results = list(run_local(ctx, nodes, jobs, progress))
    fleet = roll_up(results, len(ctx.model.ports), stuck_threshold)
    fleet.elapsed = time.perf_counter() - start
    fleet.engine = info
    fleet.inputs = [str(i) for i in ctx.model.params.get("inputs") or ()]
    return fleet
