"""Where the per-node work runs: this process, a local process pool, or a Dask cluster.

The :class:`~netproxy.audit.node.AuditContext` goes to each worker once (a pool initializer;
``Client.scatter(..., broadcast=True)`` on Dask), then only node inputs and results travel.
Results come back as JSON-able dicts, so a Dask worker's result is the local pool's.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from netproxy.audit.node import AuditContext, NodeResult, audit_node
from netproxy.audit.nodes import NodeInput
from netproxy.errors import InputError

Progress = Callable[[int, int], None]

_CONTEXT: AuditContext | None = None


def _init_worker(ctx: AuditContext) -> None:
    global _CONTEXT
    _CONTEXT = ctx


def _pool_task(node: NodeInput) -> dict[str, Any]:
    assert _CONTEXT is not None
    return audit_node(_CONTEXT, node).to_json()


def dask_task(node: NodeInput, ctx: AuditContext) -> dict[str, Any]:
    """The per-node task on a Dask worker (``ctx`` is the scattered context)."""
    return audit_node(ctx, node).to_json()


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run_local(ctx: AuditContext, nodes: list[NodeInput], jobs: int,
              progress: Progress | None = None) -> Iterator[NodeResult]:
    """In this process (``jobs`` 1) or a process pool of ``jobs`` workers."""
    if jobs <= 1 or len(nodes) <= 1:
        for i, node in enumerate(nodes):
            yield audit_node(ctx, node)
            if progress:
                progress(i + 1, len(nodes))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    method = "fork" if sys.platform == "linux" else "spawn"
    with ProcessPoolExecutor(max_workers=min(jobs, len(nodes)),
                             mp_context=multiprocessing.get_context(method),
                             initializer=_init_worker, initargs=(ctx,)) as pool:
        chunk = max(1, min(8, len(nodes) // (jobs * 8)))
        for i, data in enumerate(pool.map(_pool_task, nodes, chunksize=chunk)):
            yield NodeResult.from_json(data)
            if progress:
                progress(i + 1, len(nodes))


def _dask_client(scheduler: str | None, jobs: int) -> Any:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("--engine dask needs the dask extra: pip install 'netproxy[dask]'",
                         where="--engine") from None
    if scheduler:
        try:
            return Client(scheduler, timeout=30)
        except (OSError, TimeoutError) as err:
            raise InputError(f"cannot reach the Dask scheduler: {err}", where=scheduler) from None
    cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                           dashboard_address=":0")  # any free port: 8787 may be taken
    return Client(cluster)


def run_dask(ctx: AuditContext, nodes: list[NodeInput], scheduler: str | None, jobs: int,
             progress: Progress | None = None, info: dict[str, Any] | None = None
             ) -> Iterator[NodeResult]:
    """On the Dask cluster at ``scheduler``, or on a local one with ``jobs`` workers."""
    from distributed import as_completed

    client = _dask_client(scheduler, jobs)
    own_cluster = scheduler is None
    try:
        if info is not None:
            info["workers"] = len(client.scheduler_info().get("workers", {}))
            info["scheduler"] = scheduler or "local"
        t0 = time.perf_counter()
        shared = client.scatter(ctx, broadcast=True, hash=False)
        if info is not None:
            info["scatter_seconds"] = round(time.perf_counter() - t0, 3)
        futures = client.map(dask_task, nodes, ctx=shared, pure=False)
        for i, future in enumerate(as_completed(futures)):
            yield NodeResult.from_json(future.result())
            if progress:
                progress(i + 1, len(nodes))
    finally:
        if own_cluster:
            cluster = client.cluster
            client.close()
            if cluster is not None:
                cluster.close()
        else:
            client.close()
