#!/usr/bin/env python3
"""Benchmark ``netproxy compile`` against ``iptables-restore --test`` on the same output.

    python scripts/bench_compile.py [--services 10000] [--endpoints 10] [--seed 1]

Generates a synthetic cluster (scripts/synth_cluster.py, JSON), then in the same run:
1. compiles it in a subprocess (``netproxy compile --format restore`` and ``--format save``),
   reporting wall time and peak RSS (from ``wait4``), plus a per-phase breakdown (restore:
   load, proxy model, restore text; save: load, proxy model, rule model, save view);
2. loads the restore payload with ``iptables-nft-restore --test`` and
   ``iptables-legacy-restore --test`` inside a network namespace created for the run (and
   always deleted), timing each;
3. prints the ratios. Target: compile <= 1/4 of the restore test time, peak < 1.5 GB.
Each measurement is repeated (``--repeat``, default 3) and the fastest run is reported, which
keeps the ratio meaningful on a machine shared with other work; the restore compile and the
two ``--test`` runs alternate round by round, and the spread of the per-round CPU ratios is
printed too. Needs root for step 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from netproxy.backend.netns import Namespaces

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from benchlib import (  # noqa: E402
    best_of,
    cluster_args,
    kernel_tools,
    load_note,
    phase_detail,
    run_measured,
    synth,
)


def phases(path: str) -> dict[str, float]:
    """CPU time of each phase in this process (used through ``--phases``), the way
    ``netproxy compile`` does them: load, proxy model, then either the restore payload as
    text or the rule model and its save view (built unsorted: the renderer sorts)."""
    from netproxy.commands.cluster_options import load_cluster, paused_gc, settings_for
    from netproxy.compiler import compile_payload, compile_restore_text, proxy_model, save_view
    from netproxy.render import render_save

    params = {"inputs": (path,), "family": "ipv4", "random_fully": True, "nfacct": True}
    out: dict[str, float] = {}
    with paused_gc():
        t0 = time.process_time()
        cluster = load_cluster(params)
        t1 = time.process_time()
        settings = settings_for(params, cluster)
        model = proxy_model(cluster, settings)
        t2 = time.process_time()
        text = compile_restore_text(model, settings)
        t3 = time.process_time()
        payload = compile_payload(model, settings)
        t4 = time.process_time()
        save = render_save(save_view(payload, sort_chains=False))
        t5 = time.process_time()
    out.update(load=t1 - t0, proxy_model=t2 - t1, restore_text=t3 - t2, rule_model=t4 - t3,
               save_view_and_render=t5 - t4, rules=float(payload.rule_count()),
               restore_lines=float(text.count("\n")), save_lines=float(save.count("\n")))
    return out


def rounds(compile_cmd: list[str], payload: str, repeat: int) -> dict[str, list[tuple[float, int, float]]]:
    """(wall, peak RSS, CPU) of each round: the restore compile (writing ``payload``), then
    ``<tool> --test`` on it in a throwaway namespace. The runs alternate, so a change in the
    machine's speed during the benchmark hits the compile and its references alike."""
    tools = [t for t in ("iptables-nft-restore", "iptables-legacy-restore") if shutil.which(t)]
    if not kernel_tools():
        print("  (not root: iptables-restore --test skipped)")
        tools = []
    out: dict[str, list[tuple[float, int, float]]] = {"compile": [], **{t: [] for t in tools}}
    with Namespaces("bench-compile") as spaces:
        name = spaces.make() if tools else ""
        for _ in range(repeat):
            wall, rss, _, cpu = run_measured(compile_cmd)
            out["compile"].append((wall, rss, cpu))
            for tool in tools:
                wall, _, code, cpu = run_measured(["ip", "netns", "exec", name, tool, "--test"], payload)
                if code == 0:
                    out[tool].append((wall, 0, cpu))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = cluster_args("compile benchmark")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--phases", metavar="FILE", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.phases:
        print(json.dumps(phases(args.phases)))
        return 0
    with tempfile.TemporaryDirectory(prefix="np-bench-") as tmp:
        cluster = synth(args, os.path.join(tmp, "cluster.json"))
        restore = os.path.join(tmp, "out.restore")
        save = os.path.join(tmp, "out.save")
        base = [sys.executable, "-m", "netproxy", "compile", cluster]
        runs = rounds(base + ["--format", "restore", "-o", restore], restore, args.repeat)
        t_save, rss_save, _, c_save = best_of(args.repeat, base + ["--format", "save", "-o", save])
        ph = phase_detail(__file__, cluster)
    compiled = runs.pop("compile")
    t_restore, c_restore = min(r[0] for r in compiled), min(r[2] for r in compiled)
    rss_restore = max(r[1] for r in compiled)
    print(f"cluster: {args.services} services x {args.endpoints} endpoints (seed {args.seed}), "
          f"{int(ph['rules'])} rules, {int(ph['restore_lines'])} payload lines; "
          f"best of {args.repeat}; {load_note()}")
    print(f"compile --format restore: {t_restore:6.2f} s (cpu {c_restore:5.2f} s)  peak {rss_restore / 1024:7.1f} MiB")
    print(f"compile --format save:    {t_save:6.2f} s (cpu {c_save:5.2f} s)  peak {rss_save / 1024:7.1f} MiB")
    print("phases (in-process, cpu): " + ", ".join(
        f"{k} {ph[k]:.2f} s" for k in ("load", "proxy_model", "restore_text", "rule_model",
                                       "save_view_and_render")))
    for tool, tested in runs.items():
        if len(tested) != len(compiled):
            continue
        secs, cpu = min(r[0] for r in tested), min(r[2] for r in tested)
        per_round = sorted(c[2] / t[2] for c, t in zip(compiled, tested, strict=True))
        print(f"{tool} --test: {secs:6.2f} s (cpu {cpu:5.2f} s)   compile/restore-test = "
              f"{t_restore / secs:.2f} wall, {c_restore / cpu:.2f} cpu (target <= 0.25); "
              f"cpu per round {per_round[0]:.2f}-{per_round[-1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
