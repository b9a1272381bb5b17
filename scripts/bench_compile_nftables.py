#!/usr/bin/env python3
"""Benchmark ``netproxy compile --proxy-mode nftables`` against ``nft -c -f`` on the same
transaction.

    python scripts/bench_compile_nftables.py [--services 10000] [--endpoints 10] [--repeat 1]

Generates a synthetic cluster (scripts/synth_cluster.py, JSON), then in the same run:
1. compiles it in a subprocess (``--format transaction`` and the default ``list`` view),
   reporting wall time, CPU time and peak RSS (from ``wait4``), plus a per-phase breakdown
   (load, proxy model, table, transaction text, list text);
2. checks the transaction with ``nft -c -f`` inside a network namespace created for the run
   (``np-nftc-bench-*``, always deleted), timing it;
3. prints the ratios. Target: compile <= 1/4 of the ``nft -c -f`` time, peak < 1.5 GB.
The compile and the check alternate round by round (``--repeat``, default 1: the check of
10,000 services costs the kernel about two minutes of CPU); the fastest of each is reported.
Needs root for step 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from netproxy.backend.netns import Namespaces

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from benchlib import (  # noqa: E402
    cluster_args,
    kernel_tools,
    load_note,
    nft_version,
    phase_detail,
    run_measured,
    synth,
)


def phases(path: str) -> dict[str, float]:
    """CPU time of each phase in this process, the way ``netproxy compile`` does them."""
    from netproxy.commands.cluster_options import load_cluster, paused_gc, settings_for
    from netproxy.compiler.nftables import NftOptions, compile_table, list_table
    from netproxy.proxy.model import proxy_model

    params = {"inputs": (path,), "family": "ipv4", "proxy_mode": "nftables"}
    with paused_gc():
        t0 = time.process_time()
        cluster = load_cluster(params)
        t1 = time.process_time()
        settings = settings_for(params, cluster, nftables=True)
        model = proxy_model(cluster, settings)
        t2 = time.process_time()
        table = compile_table(model, settings, NftOptions())
        t3 = time.process_time()
        text = table.transaction()
        t4 = time.process_time()
        listed = list_table(table)
        t5 = time.process_time()
    return {"load": t1 - t0, "proxy_model": t2 - t1, "table": t3 - t2, "transaction_text": t4 - t3,
            "list_text": t5 - t4, "transaction_lines": float(text.count("\n")),
            "list_lines": float(listed.count("\n"))}


def main(argv: list[str] | None = None) -> int:
    ap = cluster_args("nftables-mode compile benchmark")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--phases", metavar="FILE", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.phases:
        print(json.dumps(phases(args.phases)))
        return 0
    check = kernel_tools("nft")
    if not check:
        print("  (not root or no nft: nft -c -f skipped)")
    compiled: list[tuple[float, int, float]] = []
    listed: list[tuple[float, int, float]] = []
    checked: list[tuple[float, int, float]] = []
    with tempfile.TemporaryDirectory(prefix="np-bench-") as tmp, Namespaces("nftc-bench") as spaces:
        cluster = synth(args, os.path.join(tmp, "cluster.json"))
        transaction = os.path.join(tmp, "out.nft")
        base = [sys.executable, "-m", "netproxy", "compile", cluster, "--proxy-mode", "nftables"]
        name = spaces.make() if check else ""
        for _ in range(args.repeat):
            wall, rss, _, cpu = run_measured(base + ["--format", "transaction", "-o", transaction])
            compiled.append((wall, rss, cpu))
            wall, rss, _, cpu = run_measured(base + ["-o", os.path.join(tmp, "out.list")])
            listed.append((wall, rss, cpu))
            if check:
                wall, rss, code, cpu = run_measured(["ip", "netns", "exec", name, "nft", "-c", "-f",
                                                     transaction])
                if code == 0:
                    checked.append((wall, rss, cpu))
        ph = phase_detail(__file__, cluster)
    print(f"cluster: {args.services} services x {args.endpoints} endpoints (seed {args.seed}), "
          f"{int(ph['transaction_lines'])} transaction lines, {int(ph['list_lines'])} list lines; "
          f"best of {args.repeat}; {nft_version()}; {load_note()}")
    for label, runs in (("compile --format transaction", compiled), ("compile (list view)", listed)):
        print(f"{label:29s} {min(r[0] for r in runs):6.2f} s (cpu {min(r[2] for r in runs):5.2f} s)  "
              f"peak {max(r[1] for r in runs) / 1024:7.1f} MiB")
    print("phases (in-process, cpu): " + ", ".join(
        f"{k} {ph[k]:.2f} s" for k in ("load", "proxy_model", "table", "transaction_text", "list_text")))
    if checked:
        secs, cpu = min(r[0] for r in checked), min(r[2] for r in checked)
        t_tx, c_tx = min(r[0] for r in compiled), min(r[2] for r in compiled)
        print(f"nft -c -f (namespace):        {secs:6.2f} s (cpu {cpu:5.2f} s)  peak "
              f"{max(r[1] for r in checked) / 1024:7.1f} MiB   compile/check = {t_tx / secs:.3f} wall, "
              f"{c_tx / cpu:.3f} cpu (target <= 0.25)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
