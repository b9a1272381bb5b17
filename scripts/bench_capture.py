#!/usr/bin/env python3
"""Benchmark `netproxy trace --pcap` on a big node: streaming, linear time, flat memory.

The node is the 10,000 Services x 10 endpoints ruleset (scripts/synth_cluster.py, compiled
with `netproxy compile`, as scripts/bench_trace.py makes it). The captures hold distinct
flows -- every packet a first visit -- to random ClusterIPs and NodePorts, half from pod
addresses and half from outside. Each capture is traced by the real CLI in a fresh process;
start-up (parse and index) is measured with a one-packet capture and taken off, so the rate
is packets per CPU-second after start-up. Peak memory is the process's maximum RSS,
the parsed dump included.

    python scripts/bench_capture.py                          # 20,000 and 200,000 packets
    python scripts/bench_capture.py --rules big.rules --packets 20000 --long 0
"""

from __future__ import annotations

import argparse
import random
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from netproxy.parser import read_rules  # noqa: E402

NODE_IP = "192.168.0.10"


def targets(rules: Path) -> tuple[list[tuple[str, int, str]], list[tuple[int, str]]]:
    """(ClusterIP, port, protocol) of every Service port, (NodePort, protocol) of every
    NodePort, read from the dump."""
    nat = read_rules(rules).tables["nat"]
    cluster = []
    for rule in nat.chains["KUBE-SERVICES"].rules:
        d, proto = rule.builtin("destination"), rule.builtin("protocol")
        port = next((o for o in rule.matches if o.name == "dport"), None)
        comment = next((o.value for o in rule.matches if o.module == "comment" and o.name), "")
        if d is not None and proto is not None and port is not None and not d.negated \
                and comment.endswith("cluster IP"):
            cluster.append((d.value.split("/")[0], int(port.value), proto.value))
    nodeports = []
    for rule in nat.chains["KUBE-NODEPORTS"].rules:
        proto = rule.builtin("protocol")
        port = next((o for o in rule.matches if o.name == "dport"), None)
        if proto is not None and port is not None:
            nodeports.append((int(port.value), proto.value))
    return cluster, nodeports


def write_capture(path: Path, count: int, cluster: list, nodeports: list, seed: int) -> None:
    """A classic pcap (Ethernet) of ``count`` first packets of distinct flows."""
    rnd = random.Random(seed)
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(count):
            if i % 2:
                src = bytes((10, 128 + rnd.randrange(128), rnd.randrange(256),
                             rnd.randrange(1, 255)))
            else:
                src = bytes((172, 16 + rnd.randrange(16), rnd.randrange(256),
                             rnd.randrange(1, 255)))
            if rnd.random() < 0.3:
                port, proto = rnd.choice(nodeports)
                dst = bytes(int(x) for x in NODE_IP.split("."))
            else:
                ip, port, proto = rnd.choice(cluster)
                dst = bytes(int(x) for x in ip.split("."))
            sport = 1024 + rnd.randrange(64000)
            if proto == "udp":
                l4 = struct.pack(">HHHH", sport, port, 8, 0)
                number = 17
            else:
                l4 = struct.pack(">HHIIBBHHH", sport, port, i, 0, 0x50, 0x02, 65535, 0, 0)
                number = 6
            ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), i & 0xFFFF, 0, 64,
                             number, 0, src, dst)
            frame = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + l4
            out.write(struct.pack("<IIII", i // 1000, (i % 1000) * 1000, len(frame),
                                  len(frame)))
            out.write(frame)


def run(rules: Path, capture: Path) -> tuple[float, float, float]:
    """CPU seconds, wall seconds and peak RSS (MB) of one `netproxy trace --pcap`."""
    cmd = [sys.executable, "-m", "netproxy", "trace", "--rules", str(rules), "--local-ip",
           NODE_IP, "--pcap", str(capture)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    w0 = time.perf_counter()
    with subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        lines = sum(1 for _ in proc.stdout)  # type: ignore[union-attr]
        err = proc.stderr.read().decode()  # type: ignore[union-attr]
    wall = time.perf_counter() - w0
    if proc.returncode not in (0, 3):
        raise SystemExit(f"netproxy trace failed ({proc.returncode}): {err}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    del lines
    return cpu, wall, after.ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=Path, help="an existing dump (default: generate one)")
    ap.add_argument("--packets", type=int, default=20_000)
    ap.add_argument("--long", type=int, default=200_000,
                    help="packets of the long capture (0: skip it)")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="np-bench-capture-") as tmp:
        work = Path(tmp)
        rules = args.rules
        if rules is None:
            from bench_trace import generate  # scripts/ is on the path when run as a script

            rules = generate(10_000, 10, work)
        cluster, nodeports = targets(rules)
        one, cap, long = work / "one.pcap", work / "cap.pcap", work / "long.pcap"
        write_capture(one, 1, cluster, nodeports, args.seed)
        write_capture(cap, args.packets, cluster, nodeports, args.seed)
        start_cpu, start_wall, start_peak = run(rules, one)
        print(f"ruleset: {rules.name}, {rules.stat().st_size / 1e6:.1f} MB, {len(cluster):,} "
              f"ClusterIP ports, {len(nodeports):,} NodePorts")
        print(f"start-up (parse, index, one packet): {start_cpu:.2f} s CPU, peak "
              f"{start_peak:.0f} MB")
        cpu, wall, peak = run(rules, cap)
        rate = args.packets / max(cpu - start_cpu, 1e-9)
        print(f"{args.packets:,} packets: {cpu:.2f} s CPU ({wall:.1f} s wall), "
              f"{rate:,.0f} packets per CPU-second after start-up (target >= 5,000; ratio "
              f"{rate / 5000:.2f}), peak {peak:.0f} MB (target <= 1,500)")
        if args.long:
            write_capture(long, args.long, cluster, nodeports, args.seed + 1)
            cpu2, wall2, peak2 = run(rules, long)
            rate2 = args.long / max(cpu2 - start_cpu, 1e-9)
            print(f"{args.long:,} packets: {cpu2:.2f} s CPU ({wall2:.1f} s wall), {rate2:,.0f} "
                  f"packets per CPU-second after start-up, peak {peak2:.0f} MB "
                  f"(target <= 1,500); per-packet time long/short: {rate / rate2:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
