#!/usr/bin/env python3
"""Benchmark the tracer on a big kube-proxy ruleset.

Measures, in one run: the tracer's one-time indexing; trace throughput for packets to random Services, on first visits (rules
compiled on the way) and again (warm); the same packets through a naive linear scan of
KUBE-SERVICES as a reference; peak memory; and the CPU time of one small ``netproxy trace``.
The parse that precedes it is timed too, for information; its target (a quarter of
``iptables-restore --test``) is measured by ``scripts/bench_parse.py``, best of several fresh
processes next to the reference.

    python scripts/bench_trace.py                      # 10,000 services x 10 endpoints
    python scripts/bench_trace.py --rules big.rules    # an existing dump
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from netproxy.parser import read_rules  # noqa: E402
from netproxy.trace import Packet, Tracer  # noqa: E402
from netproxy.trace.addr import parse_net  # noqa: E402


def timed(fn, *args, **kw):  # type: ignore[no-untyped-def]
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    return out, time.perf_counter() - w0, time.process_time() - c0


def generate(services: int, endpoints: int, workdir: Path) -> Path:
    cluster = workdir / "cluster.yaml"
    rules = workdir / "cluster.rules"
    subprocess.run([sys.executable, str(REPO / "scripts" / "synth_cluster.py"), "--services",
                    str(services), "--endpoints", str(endpoints), "--seed", "1", "-o",
                    str(cluster)], check=True)
    subprocess.run([sys.executable, "-m", "netproxy", "compile", str(cluster), "-o", str(rules)],
                   check=True, cwd=REPO)
    return rules


def service_packets(ruleset, count: int, seed: int) -> list[Packet]:  # type: ignore[no-untyped-def]
    chain = ruleset.tables["nat"].chains["KUBE-SERVICES"]
    targets = []
    for rule in chain.rules:
        d, proto = rule.builtin("destination"), rule.builtin("protocol")
        port = next((o for o in rule.matches if o.name == "dport"), None)
        if d is not None and proto is not None and port is not None and not d.negated:
            targets.append((d.value.split("/")[0], int(port.value), proto.value))
    rnd = random.Random(seed)
    picks = rnd.sample(targets, min(count, len(targets)))
    return [Packet(src=f"10.128.{rnd.randrange(256)}.{rnd.randrange(1, 255)}", dst=d, dport=p,
                   proto=pr) for d, p, pr in picks]


def linear_reference(ruleset, packets: list[Packet]) -> float:  # type: ignore[no-untyped-def]
    """CPU seconds for a naive scan of KUBE-SERVICES per packet (first -d/--dport match)."""
    rules = []
    for rule in ruleset.tables["nat"].chains["KUBE-SERVICES"].rules:
        d = rule.builtin("destination")
        port = next((o for o in rule.matches if o.name == "dport"), None)
        net = parse_net(d.value, ruleset.family) if d is not None else None
        rules.append((net, int(port.value) if port is not None else None))
    todo = [(int.from_bytes(bytes(int(x) for x in p.dst.split(".")), "big"), p.dport)
            for p in packets]
    c0 = time.process_time()
    for dst, dport in todo:
        for net, port in rules:
            if net is not None and dst & net[1] == net[0] and (port is None or port == dport):
                break
    return time.process_time() - c0


def small_cli_cpu() -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "netproxy", "trace",
                    str(REPO / "tests" / "data" / "trace" / "cluster.yaml"), "--src",
                    "10.244.1.50", "--dst", "10.96.0.10", "--dport", "80", "--brief"],
                   check=True, capture_output=True, cwd=REPO)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=Path, help="an existing iptables-save dump")
    ap.add_argument("--services", type=int, default=10_000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--packets", type=int, default=5_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="np-bench-") as tmp:
        path = args.rules or generate(args.services, args.endpoints, Path(tmp))
        size = path.stat().st_size
        ruleset, parse_wall, parse_cpu = timed(read_rules, path)
    gc.freeze()
    n_rules = ruleset.rule_count()
    tracer, index_wall, _ = timed(Tracer, ruleset, local_ips=["192.168.0.10"])
    packets = service_packets(ruleset, args.packets, args.seed)
    def run_all() -> None:
        for p in packets:
            tracer.trace(p)  # results dropped, as a CLI or the differ would after use

    _, wall, cpu = timed(run_all)
    rates = [(len(packets) / wall, len(packets) / cpu)]
    warm = []
    for _ in range(3):  # best of three: the machine is shared
        _, wall, cpu = timed(run_all)
        warm.append((len(packets) / wall, len(packets) / cpu))
    rates.append(max(warm))
    outcomes = sum(len(tracer.trace(p).outcomes) for p in packets[:200]) / min(200, len(packets))
    linear = linear_reference(ruleset, packets)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cli = small_cli_cpu()
    print(f"ruleset: {n_rules} rules, {size / 1e6:.1f} MB ({path.name})")
    print(f"parse (one run, for information; the target is bench_parse.py's): {parse_wall:.2f} s wall "
          f"({parse_cpu:.2f} s CPU)")
    print(f"index (Tracer construction): {index_wall:.3f} s (target < 2 s)")
    print(f"trace, first visit of each service: {rates[0][0]:.0f} packets/s wall, "
          f"{rates[0][1]:.0f} per CPU-second")
    print(f"trace, warm (best of 3): {rates[1][0]:.0f} packets/s wall, {rates[1][1]:.0f} per CPU-second "
          f"(target >= 5000); {outcomes:.1f} outcomes per packet")
    print(f"reference, naive KUBE-SERVICES scan alone: {len(packets) / linear:.0f} packets per "
          f"CPU-second (full trace warm is {rates[1][1] / (len(packets) / linear):.2f}x of it)")
    print(f"peak memory: {peak:.0f} MB (target < 1500)")
    print(f"small cluster `netproxy trace`: {cli:.2f} s CPU (target < 0.3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
