#!/usr/bin/env python3
"""Benchmark: parsing a large dump, next to ``iptables-restore --test`` on the same file.

    python scripts/bench_parse.py [--services 10000] [--endpoints 10] [--rules FILE] [--repeat 3]

Without ``--rules`` it generates the synthetic cluster (scripts/synth_cluster.py) and compiles
it with ``netproxy compile``. The references run inside a network namespace this script
creates and always deletes, so the host's firewall is never touched. Reports the best of
``--repeat`` runs for each, as CPU seconds, and the ratio (target: parse <= 0.25 x restore).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from netproxy.backend.netns import Namespaces

REPO = Path(__file__).resolve().parents[1]


def child_cpu(cmd: list[str], stdin: Path | None = None) -> float:
    """CPU seconds (user + system) that ``cmd`` used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(stdin, "rb") if stdin else open(os.devnull, "rb") as fh:
        subprocess.run(cmd, stdin=fh, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def parse_cpu(path: Path) -> tuple[float, int, float]:
    """CPU seconds and rule count of one parse in a fresh interpreter, and its peak RSS in MB."""
    code = (
        "import resource, sys, time\n"
        "from netproxy.parser import read_rules\n"
        "t = time.process_time(); rs = read_rules(sys.argv[1]); t = time.process_time() - t\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(t, rs.rule_count(), peak)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1]), float(out[2])


def make_dump(services: int, endpoints: int, workdir: Path) -> Path:
    cluster = workdir / "cluster.json"
    rules = workdir / "rules.save"
    subprocess.run([sys.executable, str(REPO / "scripts" / "synth_cluster.py"), "--services",
                    str(services), "--endpoints", str(endpoints), "--seed", "1", "-o", str(cluster)],
                   check=True)
    subprocess.run([sys.executable, "-m", "netproxy", "compile", str(cluster), "-o", str(rules)],
                   check=True)
    return rules


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--services", type=int, default=10_000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--rules", type=Path, help="an existing dump instead of a generated one")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("needs root and iproute2 for the iptables-restore reference", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="np-bench-parse-") as tmp:
        path = args.rules or make_dump(args.services, args.endpoints, Path(tmp))
        size = path.stat().st_size / 1e6
        with Namespaces("bench-parse") as spaces:
            ns = spaces.make()
            refs: dict[str, float] = {}
            for variant in ("iptables-nft-restore", "iptables-legacy-restore"):
                if shutil.which(variant):
                    refs[variant] = min(child_cpu(["ip", "netns", "exec", ns, variant, "--test"], path)
                                        for _ in range(args.repeat))
            runs = [parse_cpu(path) for _ in range(args.repeat)]
    best = min(r[0] for r in runs)
    rules, peak = runs[0][1], max(r[2] for r in runs)
    print(f"dump: {rules} rules, {size:.1f} MB; load average {os.getloadavg()[0]:.1f}")
    print(f"netproxy parse: {best:.2f} s CPU (best of {args.repeat}), peak RSS {peak:.0f} MB")
    for name, secs in refs.items():
        print(f"{name} --test: {secs:.2f} s CPU; ratio parse/restore = {best / secs:.2f} (target <= 0.25)")
    return 0


if __name__ == "__main__":
    t0 = time.time()
    rc = main()
    print(f"(benchmark took {time.time() - t0:.0f} s)")
    sys.exit(rc)
