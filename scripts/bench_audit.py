#!/usr/bin/env python3
"""Measure ``netproxy audit`` on a generated fleet: the per-node cost against parsing the same
node's dump (in the same run), and nodes per second with 1 and 2 workers.

    python scripts/bench_audit.py --workdir bench-fleet            # 200 x 1,000 x 10
    python scripts/bench_audit.py --nodes 20 --services 100 --workdir small

The fleet (``scripts/fleet_gen.py``, its default faults included) is generated once into the
work directory and reused. The figures: the parse time of each node's dump alone (netproxy's
iptables parser, the node's text already in memory), the audit's own per-node time on the
worker (reading the file included), and wall-clock throughput of whole runs (the shared
compile included) with ``--jobs 1``, ``--jobs 2`` and, with the dask extra, a local Dask
cluster of 2 workers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fleet_gen  # noqa: E402

from netproxy import audit  # noqa: E402
from netproxy.gcpause import paused_gc  # noqa: E402
from netproxy.parser import parse_rules  # noqa: E402


def _parse_seconds(paths: list[Path]) -> dict[str, float]:
    out: dict[str, float] = {}
    for path in paths:
        text = path.read_text(encoding="utf-8")
        with paused_gc():
            t0 = time.perf_counter()
            parse_rules(text, source=str(path))
            out[path.stem] = time.perf_counter() - t0
    return out


def _run(cluster: Path, nodes_dir: Path, engine: str, jobs: int) -> tuple[float, float, Any]:
    params: dict[str, Any] = {"inputs": (str(cluster),), "family": "ipv4",
                              "random_fully": True, "nfacct": True}
    nodes = audit.find_nodes((str(nodes_dir),))
    t0 = time.perf_counter()
    ctx = audit.prepare(params, nodes)
    prepared = time.perf_counter() - t0
    fleet = audit.run(ctx, nodes, engine=engine, jobs=jobs)
    return prepared, time.perf_counter() - t0, fleet


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--no-dask", action="store_true")
    args = ap.parse_args(argv)
    work = Path(args.workdir)
    stamp = work / "fleet.json"
    want = {"nodes": args.nodes, "services": args.services, "endpoints": args.endpoints,
            "seed": args.seed}
    if not stamp.exists() or json.loads(stamp.read_text()) != want:
        t0 = time.perf_counter()
        fleet_gen.generate(work, args.nodes, args.services, args.endpoints, args.seed, True)
        stamp.write_text(json.dumps(want))
        print(f"generated the fleet in {time.perf_counter() - t0:.1f} s")
    cluster, nodes_dir = work / "cluster.json", work / "nodes"
    files = sorted(nodes_dir.iterdir())
    size = sum(f.stat().st_size for f in files)
    print(f"fleet: {args.nodes} nodes x {args.services} Services x {args.endpoints} endpoints "
          f"({size / 1e6:.0f} MB of dumps)")

    prepared, wall1, fleet1 = _run(cluster, nodes_dir, "local", 1)
    parse = _parse_seconds([nodes_dir / f"{r.node}.rules" for r in fleet1.nodes
                            if r.mode == "iptables"])
    per_node = {r.node: r.seconds["total"] for r in fleet1.nodes}
    # equal line for line, among the iptables nodes (an nftables node equal to its table is not parsed)
    lines = [r for r in fleet1.nodes if r.checked == "lines" and r.node in parse]
    semantic = [r for r in fleet1.nodes if r.checked == "semantic"]
    ratios = [per_node[r.node] / parse[r.node] for r in fleet1.nodes if r.node in parse]
    mean_parse = statistics.mean(parse.values())
    mean_audit = statistics.mean(per_node[n] for n in parse)
    print(f"parse one node's dump alone: median {statistics.median(parse.values()):.3f} s, "
          f"mean {mean_parse:.3f} s")
    print(f"audit per node (on the worker): mean {mean_audit:.3f} s = "
          f"{mean_audit / mean_parse:.2f} x parse (target <= 1.5 x)")
    print(f"  {len(lines)} nodes equal line for line: median "
          f"{statistics.median(per_node[r.node] for r in lines):.3f} s "
          f"= {statistics.median(per_node[r.node] / parse[r.node] for r in lines):.2f} x parse")
    for r in semantic:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in r.seconds.items() if k != "total")
        ratio = f" = {per_node[r.node] / parse[r.node]:.1f} x parse" if r.node in parse else ""
        print(f"  {r.node} ({r.status}, diffed): {per_node[r.node]:.2f} s{ratio} [{parts}]")
    print(f"  worst ratio {max(ratios):.2f} x, best {min(ratios):.2f} x")
    cpu = statistics.mean(r.seconds["cpu"] for r in fleet1.nodes)
    print(f"CPU per node (process time on the worker): mean {cpu:.3f} s "
          f"= {1 / cpu:.1f} nodes per CPU-second")
    print(f"shared compile and load (once): {prepared:.2f} s")
    print(f"--jobs 1: {wall1:.1f} s for {args.nodes} nodes = {args.nodes / wall1:.1f} nodes/s "
          f"(whole run)")
    _, wall2, fleet2 = _run(cluster, nodes_dir, "local", 2)
    print(f"--jobs 2: {wall2:.1f} s = {args.nodes / wall2:.1f} nodes/s "
          f"({wall1 / wall2:.2f} x --jobs 1)")
    same = [r.to_json() | {"seconds": None} for r in fleet2.nodes] == \
        [r.to_json() | {"seconds": None} for r in fleet1.nodes]
    print(f"  same results as --jobs 1: {same}")
    if not args.no_dask:
        try:
            import distributed  # noqa: F401
        except ImportError:
            print("dask: not installed (pip install 'netproxy[dask]')")
        else:
            _, walld, fleetd = _run(cluster, nodes_dir, "dask", 2)
            print(f"--engine dask (local cluster, 2 workers): {walld:.1f} s = "
                  f"{args.nodes / walld:.1f} nodes/s, scatter "
                  f"{fleetd.engine.get('scatter_seconds')} s")
    print(f"verdict: {fleet1.counts()}")
    print(f"load average (1, 5, 15 min): {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
