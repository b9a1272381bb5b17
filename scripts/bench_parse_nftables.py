#!/usr/bin/env python3
"""Benchmark the nftables parser and the tracer on a big kube-proxy nftables-mode listing.

    python scripts/bench_parse_nftables.py [--services 10000] [--endpoints 10] [--rounds 1]
                                           [--packets 5000]

In one run:
1. generates the synthetic cluster (scripts/synth_cluster.py) and compiles it with
   ``netproxy compile --proxy-mode nftables`` (the list view: what ``nft list table ip
   kube-proxy`` prints on such a node);
2. parses that text in fresh processes, best of 3: the parse's CPU seconds (measured inside the
   process) and the process's CPU and peak RSS;
3. checks the same listing with ``nft -c -f`` in a network namespace made for the run
   (``np-nftbench-*``, always deleted; ``--rounds``, default 1: it costs about two minutes of
   CPU), falling back to the compiled transaction if nft refuses the listing; prints the ratio
   (target: parse <= 1/4 of the check);
4. traces ``--packets`` distinct flows (random ClusterIPs and NodePorts, from pods and from
   outside) on the parsed listing: start-up (Tracer construction), first visit and warm
   packets/s (target >= 5000).
Needs root and nft for step 3 (skipped otherwise).

Last figures (docs/trace.md has the method and the spread; 2 cores shared with other jobs,
load average 10-19, CPU time): parse 0.033-0.039 x ``nft -c -f``; trace 4,935-5,412 packets per
CPU-second on first visits (3,492-3,785 before tails were replayed on nftables tables, in the
same minutes) and 9,173-9,422 warm.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from benchlib import cluster_args, kernel_tools, load_note, nft_version, run_measured, synth  # noqa: E402

from netproxy.backend.netns import Namespaces  # noqa: E402

NODE_IP = "192.168.0.10"          # node-0's InternalIP in synth_cluster.py
POD_CIDR = "10.128.0.0/9"         # synth_cluster.py's CLUSTER_CIDR


def parse_once(path: str) -> dict[str, float]:
    """Read and parse ``path`` the way ``netproxy trace --rules`` does; CPU of the parse alone."""
    from netproxy.parser.nftables import read_nft

    gc.collect()
    c0 = time.process_time()
    listing = read_nft(path)
    cpu = time.process_time() - c0
    return {"parse_cpu": cpu, "tables": float(len(listing.tables))}


def parse_in_fresh_process(path: str) -> tuple[float, float, int]:
    """(parse CPU inside the process, whole process CPU, peak RSS KiB) of one fresh process."""
    proc = subprocess.Popen([sys.executable, __file__, "--parse-once", path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    out = proc.stdout.read() if proc.stdout else b""
    err = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"parse failed: {err.decode().strip()[:300]}")
    return json.loads(out)["parse_cpu"], usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def flows(cluster_json: str, count: int, seed: int) -> list[tuple[str, str, int, str]]:
    """``count`` distinct (src, dst, dport, proto): ClusterIPs from pods, NodePorts from outside."""
    with open(cluster_json) as f:
        doc = json.load(f)
    items = doc["items"] if isinstance(doc, dict) else doc
    cluster_ips: list[tuple[str, int, str]] = []
    node_ports: list[tuple[str, int, str]] = []
    for obj in items:
        if obj.get("kind") != "Service":
            continue
        spec = obj["spec"]
        for port in spec.get("ports", []):
            proto = port.get("protocol", "TCP").lower()
            cluster_ips.append((spec["clusterIP"], port["port"], proto))
            if "nodePort" in port:
                node_ports.append((NODE_IP, port["nodePort"], proto))
    rnd = random.Random(seed)
    seen: set[tuple[str, str, int, str]] = set()
    out: list[tuple[str, str, int, str]] = []
    while len(out) < count:
        if rnd.random() < 0.7 or not node_ports:
            dst, dport, proto = rnd.choice(cluster_ips)
        else:
            dst, dport, proto = rnd.choice(node_ports)
        if rnd.random() < 0.6:   # a pod
            src = f"10.{rnd.randrange(128, 256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
        else:                    # outside the cluster
            src = f"172.16.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
        flow = (src, dst, dport, proto)
        if flow not in seen:
            seen.add(flow)
            out.append(flow)
    return out


def trace_rates(path: str, cluster_json: str, count: int, seed: int) -> dict[str, float]:
    from netproxy.netfilter.model import Ruleset
    from netproxy.parser.nftables import read_nft
    from netproxy.trace import Packet, Tracer

    listing = read_nft(path)
    gc.freeze()
    packets = [Packet(src=s, dst=d, dport=p, proto=pr) for s, d, p, pr in flows(cluster_json, count, seed)]
    w0 = time.perf_counter()
    tracer = Tracer(Ruleset(family="ipv4"), local_ips=[NODE_IP], nft=[listing], pod_cidrs=(POD_CIDR,))
    startup = time.perf_counter() - w0

    def run_all() -> tuple[float, float, int]:
        w, c = time.perf_counter(), time.process_time()
        verdicts = 0
        for p in packets:
            verdicts += len(tracer.trace(p).outcomes)
        return time.perf_counter() - w, time.process_time() - c, verdicts

    wall, cpu, outcomes = run_all()
    first = (len(packets) / wall, len(packets) / cpu)
    warm = max((len(packets) / w, len(packets) / c) for w, c, _ in (run_all() for _ in range(3)))
    unknown = sum(1 for p in packets[:500] for o in tracer.trace(p).outcomes if o.verdict == "UNKNOWN")
    return {"startup": startup, "first_wall": first[0], "first_cpu": first[1], "warm_wall": warm[0],
            "warm_cpu": warm[1], "outcomes": outcomes / len(packets), "unknown_in_500": unknown}


def main(argv: list[str] | None = None) -> int:
    ap = cluster_args("nftables listing parse and trace benchmark")
    ap.add_argument("--rounds", type=int, default=1, help="nft -c -f rounds (best is reported)")
    ap.add_argument("--packets", type=int, default=5000)
    ap.add_argument("--parse-once", metavar="FILE", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.parse_once:
        print(json.dumps(parse_once(args.parse_once)))
        return 0
    check = kernel_tools("nft")
    with tempfile.TemporaryDirectory(prefix="np-bench-") as tmp, Namespaces("nftbench") as spaces:
        cluster = synth(args, os.path.join(tmp, "cluster.json"))
        listed = os.path.join(tmp, "out.list")
        base = [sys.executable, "-m", "netproxy", "compile", cluster, "--proxy-mode", "nftables"]
        subprocess.run(base + ["-o", listed], check=True, cwd=REPO)
        size = os.path.getsize(listed)
        with open(listed) as f:
            lines = sum(1 for _ in f)
        parses = [parse_in_fresh_process(listed) for _ in range(3)]
        checked: list[tuple[float, float, int]] = []
        checked_what = "list view"
        if check:
            name = spaces.make()
            target = listed
            for _ in range(args.rounds):
                wall, rss, code, cpu = run_measured(["ip", "netns", "exec", name, "nft", "-c", "-f", target])
                if code != 0 and target == listed:
                    target = os.path.join(tmp, "out.nft")
                    checked_what = "transaction (nft refused the list view)"
                    subprocess.run(base + ["--format", "transaction", "-o", target], check=True, cwd=REPO)
                    wall, rss, code, cpu = run_measured(["ip", "netns", "exec", name, "nft", "-c", "-f",
                                                         target])
                if code == 0:
                    checked.append((wall, cpu, rss))
        rates = trace_rates(listed, cluster, args.packets, args.seed)
    parse_cpu = min(p[0] for p in parses)
    print(f"listing: {args.services} services x {args.endpoints} endpoints (seed {args.seed}), "
          f"{lines} lines, {size / 1e6:.1f} MB; {nft_version()}; {load_note()}")
    print(f"parse (read_nft, best of 3 fresh processes): {parse_cpu:.2f} s CPU; whole process "
          f"{min(p[1] for p in parses):.2f} s CPU, peak {max(p[2] for p in parses) / 1024:.0f} MiB")
    if checked:
        cpu = min(c[1] for c in checked)
        print(f"nft -c -f {checked_what} (namespace, best of {len(checked)}): "
              f"{min(c[0] for c in checked):.2f} s wall, {cpu:.2f} s CPU, peak "
              f"{max(c[2] for c in checked) / 1024:.0f} MiB")
        print(f"parse/check = {parse_cpu / cpu:.3f} CPU (target <= 0.25)")
    elif check and args.rounds <= 0:
        print("nft -c -f: skipped (--rounds 0)")
    elif check:
        print("nft -c -f: nft refused both the list view and the transaction")
    else:
        print("nft -c -f: skipped (needs root and nft)")
    print(f"trace start-up (Tracer construction): {rates['startup']:.2f} s")
    print(f"trace {args.packets} distinct flows, first visit: {rates['first_wall']:.0f} packets/s wall, "
          f"{rates['first_cpu']:.0f} per CPU-second")
    print(f"trace, warm (best of 3): {rates['warm_wall']:.0f} packets/s wall, {rates['warm_cpu']:.0f} per "
          f"CPU-second (target >= 5000); {rates['outcomes']:.1f} outcomes per packet, "
          f"{int(rates['unknown_in_500'])} UNKNOWN outcomes in the first 500")
    return 0


if __name__ == "__main__":
    sys.exit(main())
