"""What the benchmark scripts share: the cluster flags and the synthetic cluster, measured
subprocess runs (wall and CPU time, peak RSS), the per-phase detail run in a child process,
and whether kernel references can run here."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

Run = tuple[float, int, int, float]
"""(wall seconds, peak RSS in KiB, exit code, CPU seconds) of one measured run."""


def cluster_args(description: str) -> argparse.ArgumentParser:
    """An argument parser with the synthetic cluster's flags (--services, --endpoints, --seed)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    return ap


def synth(args: argparse.Namespace, path: str | Path, *extra: str) -> str:
    """Write the synthetic cluster of ``args`` (scripts/synth_cluster.py) to ``path``."""
    import synth_cluster

    synth_cluster.main(["--services", str(args.services), "--endpoints", str(args.endpoints),
                        "--seed", str(args.seed), *extra, "-o", str(path)])
    return str(path)


def run_measured(cmd: list[str], stdin_path: str | None = None) -> Run:
    """Run ``cmd``; return (wall seconds, peak RSS in KiB, exit code, CPU seconds)."""
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.returncode != 0:
            print(f"  ! {' '.join(cmd[:4])}... exited {proc.returncode}: {err.strip()[:300]}")
        return wall, usage.ru_maxrss, proc.returncode, usage.ru_utime + usage.ru_stime
    finally:
        if stdin_path:
            stdin.close()  # type: ignore[union-attr]


def best_of(repeat: int, cmd: list[str], stdin_path: str | None = None) -> Run:
    """``run_measured`` ``repeat`` times: fastest wall and CPU time, largest peak RSS."""
    runs = [run_measured(cmd, stdin_path) for _ in range(repeat)]
    return (min(r[0] for r in runs), max(r[1] for r in runs), max(r[2] for r in runs),
            min(r[3] for r in runs))


def phase_detail(script: str, cluster: str) -> dict[str, float]:
    """The script's ``--phases FILE`` run in a child process (a fresh heap), as JSON."""
    detail = subprocess.run([sys.executable, script, "--phases", cluster],
                            capture_output=True, text=True, check=True)
    out: dict[str, float] = json.loads(detail.stdout)
    return out


def kernel_tools(*tools: str) -> bool:
    """Root, iproute2 and ``tools`` present: the kernel references can run in a namespace."""
    return os.geteuid() == 0 and all(shutil.which(t) for t in ("ip", *tools))


def nft_version() -> str:
    if shutil.which("nft") is None:
        return "no nft"
    return subprocess.run(["nft", "--version"], capture_output=True, text=True).stdout.strip()


def load_note() -> str:
    """The machine's load, for the header line of a result."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (5 min {five:.1f}) on {os.cpu_count()} CPUs"
