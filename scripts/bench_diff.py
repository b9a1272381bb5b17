#!/usr/bin/env python3
"""Benchmark ``netproxy diff`` on two large rulesets that differ in a few services.

    python scripts/bench_diff.py                      # 10,000 services x 10 endpoints, 1% changed
    python scripts/bench_diff.py --services 2000 --endpoints 5 --repeat 5
    python scripts/bench_diff.py --workdir bench-files  # keep (and reuse) the generated files
    python scripts/bench_diff.py --mode nftables       # two nft list listings (nftables mode)

The two rulesets come from ``scripts/synth_cluster.py`` (the second with ``--change-percent``)
compiled by ``netproxy compile``. Each measurement runs in a fresh Python process so that its
peak memory (``ru_maxrss``) is its own. Reported beside the diff time, measured in the same
run: the time to parse both files (the reference the diff is compared to) and GNU ``diff``
on the same files. Targets: full text diff under 5 s, peak memory under 2 GB.

``--mode nftables`` compiles both clusters with ``--proxy-mode nftables`` (what ``nft list
table ip kube-proxy`` shows) and measures ``netproxy diff OLD.nft NEW.nft`` the same way, in
CPU time (the machine is shared: wall time says more about the neighbours than about the
diff): reading kube-proxy's two tables into the Service model, the diff itself, and the
report, each against parsing both listings in the same process; then ``--expected`` (the old
cluster compiled in nftables mode against the new listing) and the CLI end to end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET_SECONDS = 5.0
TARGET_PEAK_MB = 2048.0

_CHILD = r"""
import gc, json, resource, sys, time
from netproxy.diff import diff_rulesets, render_text
from netproxy.diff.load import load_ruleset
gc.disable()  # as `netproxy diff` does
t0 = time.perf_counter()
old = load_ruleset(sys.argv[1])
new = load_ruleset(sys.argv[2])
t1 = time.perf_counter()
rss_parsed = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
report = diff_rulesets(old, new)
t2 = time.perf_counter()
text = render_text(report)
t3 = time.perf_counter()
print(json.dumps({
    "parse": t1 - t0, "diff": t2 - t1, "render": t3 - t2,
    "rules": old.rule_count() + new.rule_count(),
    "peak_mb_after_parse": rss_parsed / 1024,
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "summary": text.splitlines()[-2], "verdict": text.splitlines()[-1],
}))
"""


_EXPECTED_CHILD = r"""
import gc, json, resource, sys, time
from netproxy.commands.cluster_options import build_ruleset
from netproxy.diff import diff_rulesets, render_text
from netproxy.diff.load import load_ruleset
gc.disable()
t0 = time.perf_counter()
expected = build_ruleset({"inputs": (sys.argv[1],), "family": "ipv4", "random_fully": True,
                          "nfacct": True})
t1 = time.perf_counter()
actual = load_ruleset(sys.argv[2])
t2 = time.perf_counter()
text = render_text(diff_rulesets(expected, actual, scope="kube"))
t3 = time.perf_counter()
print(json.dumps({"compile": t1 - t0, "parse": t2 - t1, "diff": t3 - t2,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


_NFT_CHILD = r"""
import gc, json, resource, sys, time
from netproxy.diff import render_text
from netproxy.diff.load import load_listing
from netproxy.diff.nftdiff import diff_listings, listing_views
gc.disable()  # as `netproxy diff` does
cpu = time.process_time
t0 = cpu()
old = load_listing(sys.argv[1])
new = load_listing(sys.argv[2])
t1 = cpu()
rss_parsed = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
views = listing_views(old, new)
t2 = cpu()
report = diff_listings(old, new, views=views)
t3 = cpu()
text = render_text(report)
t4 = cpu()
s_old, s_new = old.summary(), new.summary()
print(json.dumps({
    "parse": t1 - t0, "views": t2 - t1, "diff": t3 - t2, "render": t4 - t3,
    "rules": s_old["rules"] + s_new["rules"], "elements": s_old["elements"] + s_new["elements"],
    "peak_mb_after_parse": rss_parsed / 1024,
    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "summary": text.splitlines()[-2], "verdict": text.splitlines()[-1],
}))
"""


_NFT_EXPECTED_CHILD = r"""
import gc, json, resource, sys, time
from netproxy.commands.cluster_options import load_cluster
from netproxy.commands.nftables_options import NftFlags, nftables_text
from netproxy.diff import render_text
from netproxy.diff.load import load_listing
from netproxy.diff.nftdiff import diff_listings
from netproxy.parser.nftables import parse_nft_text
gc.disable()
cpu = time.process_time
params = {"inputs": (sys.argv[1],), "family": "ipv4", "random_fully": True, "nfacct": True}
t0 = cpu()
text = nftables_text(params, load_cluster(params), "list", NftFlags(None, None, None, ()))
expected = parse_nft_text(text, source="expected", strict=True)
t1 = cpu()
actual = load_listing(sys.argv[2])
t2 = cpu()
render_text(diff_listings(expected, actual, scope="kube"))
t3 = cpu()
print(json.dumps({"compile": t1 - t0, "parse": t2 - t1, "diff": t3 - t2,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _run(cmd: list[str], **kw: object) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if done.returncode != 0:
        sys.exit(f"bench_diff: {' '.join(cmd)} failed:\n{done.stderr}")


def make_rulesets(workdir: Path, services: int, endpoints: int, percent: float, seed: int,
                  mode: str = "iptables") -> tuple[Path, Path]:
    """The old and new rulesets (generated and compiled unless already in ``workdir``);
    ``mode="nftables"``: kube-proxy's nftables table as ``nft list table`` shows it."""
    tag = f"{services}x{endpoints}-s{seed}-p{percent}"
    suffix = ".nft" if mode == "nftables" else ".rules"
    old = workdir / f"old-{tag}{suffix}"
    new = workdir / f"new-{tag}{suffix}"
    for path, extra in ((old, []), (new, ["--change-percent", str(percent)])):
        if path.exists():
            continue
        cluster = workdir / f"{path.stem}.json"
        if not cluster.exists():
            _run([sys.executable, str(HERE / "synth_cluster.py"), "--services", str(services),
                  "--endpoints", str(endpoints), "--seed", str(seed), *extra, "-o", str(cluster)])
        flags = ["--proxy-mode", "nftables"] if mode == "nftables" else []
        _run([sys.executable, "-m", "netproxy", "compile", str(cluster), *flags, "-o", str(path)])
    return old, new


def measure(old: Path, new: Path, child: str = _CHILD) -> dict[str, float | str | int]:
    done = subprocess.run([sys.executable, "-c", child, str(old), str(new)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench_diff: measurement failed:\n{done.stderr}")
    result: dict[str, float | str | int] = json.loads(done.stdout)
    return result


def measure_expected(cluster: Path, actual: Path, child: str = _EXPECTED_CHILD) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", child, str(cluster), str(actual)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench_diff: expected measurement failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout)
    return result


def cli_seconds(old: Path, new: Path) -> tuple[float, float]:
    """Wall time and peak memory (MB) of ``netproxy diff OLD NEW`` as a user runs it."""
    t0 = time.perf_counter()
    with subprocess.Popen([sys.executable, "-m", "netproxy", "diff", str(old), str(new)],
                          stdout=subprocess.DEVNULL) as proc:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - t0, usage.ru_maxrss / 1024


def cli_cpu(args: list[str]) -> tuple[float, float]:
    """CPU seconds (user + system) and peak memory (MB) of ``netproxy ARGS`` as a user runs it."""
    with subprocess.Popen([sys.executable, "-m", "netproxy", *args], stdout=subprocess.DEVNULL) as proc:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def gnu_diff_seconds(old: Path, new: Path) -> float | None:
    if shutil.which("diff") is None:
        return None
    t0 = time.perf_counter()
    subprocess.run(["diff", str(old), str(new)], stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--services", type=int, default=10_000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--change-percent", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", help="keep generated files here (reused when present)")
    ap.add_argument("--mode", choices=["iptables", "nftables"], default="iptables",
                    help="kube-proxy's mode the rulesets are compiled in (default iptables)")
    args = ap.parse_args()
    if args.mode == "nftables":
        return main_nftables(args)
    tmp = None
    if args.workdir:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="bench-diff-")
        workdir = Path(tmp)
    try:
        t0 = time.perf_counter()
        old, new = make_rulesets(workdir, args.services, args.endpoints, args.change_percent, args.seed)
        print(f"rulesets: {args.services} services x {args.endpoints} endpoints, "
              f"{args.change_percent:g}% changed ({old.stat().st_size / 1e6:.1f} MB + "
              f"{new.stat().st_size / 1e6:.1f} MB; prepared in {time.perf_counter() - t0:.1f} s)")
        runs = [measure(old, new) for _ in range(args.repeat)]
        gnu = [gnu_diff_seconds(old, new) for _ in range(args.repeat)]
        cli = [cli_seconds(old, new) for _ in range(args.repeat)]
        cluster = workdir / f"{old.stem}.json"
        exp = [measure_expected(cluster, new) for _ in range(args.repeat)] if cluster.exists() else []
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    def med(key: str) -> float:
        return statistics.median(float(r[key]) for r in runs)

    parse, diff, render, peak = med("parse"), med("diff"), med("render"), max(float(r["peak_mb"]) for r in runs)
    print(f"rules in both files:   {runs[0]['rules']}")
    print(f"parse both files:      {parse:6.2f} s   (reference)")
    print(f"diff (model):          {diff:6.2f} s   = {diff / parse:.2f} x parse")
    print(f"render report:         {render:6.2f} s")
    print(f"full text diff:        {diff + render:6.2f} s   = {(diff + render) / parse:.2f} x parse"
          f"   target < {TARGET_SECONDS:g} s: {'ok' if diff + render < TARGET_SECONDS else 'MISSED'}")
    print(f"parse + diff + render: {parse + diff + render:6.2f} s")
    print(f"peak memory:           {peak:6.0f} MB (after parsing: "
          f"{max(float(r['peak_mb_after_parse']) for r in runs):.0f} MB)"
          f"   target < {TARGET_PEAK_MB:g} MB: {'ok' if peak < TARGET_PEAK_MB else 'MISSED'}")
    print(f"netproxy diff (CLI):   {statistics.median(c[0] for c in cli):6.2f} s end to end, "
          f"peak {max(c[1] for c in cli):.0f} MB")
    if exp:
        e = {k: statistics.median(r[k] for r in exp) for k in ("compile", "parse", "diff")}
        print(f"--expected (compiled old cluster vs new dump): compile {e['compile']:.2f} s, "
              f"parse {e['parse']:.2f} s, diff {e['diff']:.2f} s "
              f"(every chain differs in spelling), peak {max(r['peak_mb'] for r in exp):.0f} MB")
    gnu_ok = [g for g in gnu if g is not None]
    if gnu_ok:
        print(f"GNU diff (same files): {statistics.median(gnu_ok):6.2f} s")
    print(f"report: {runs[0]['summary']}")
    print(f"verdict: {runs[0]['verdict']}  (median of {args.repeat} runs, {os.cpu_count()} CPUs)")
    return 0 if diff + render < TARGET_SECONDS and peak < TARGET_PEAK_MB else 1


def main_nftables(args: argparse.Namespace) -> int:
    """``--mode nftables``: two listings of kube-proxy's nftables table, CPU time."""
    tmp = None
    if args.workdir:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.mkdtemp(prefix="bench-diff-nft-")
        workdir = Path(tmp)
    try:
        t0 = time.perf_counter()
        old, new = make_rulesets(workdir, args.services, args.endpoints, args.change_percent,
                                 args.seed, mode="nftables")
        print(f"listings: {args.services} services x {args.endpoints} endpoints, nftables mode, "
              f"{args.change_percent:g}% changed ({old.stat().st_size / 1e6:.1f} MB + "
              f"{new.stat().st_size / 1e6:.1f} MB; prepared in {time.perf_counter() - t0:.1f} s)")
        runs = [measure(old, new, _NFT_CHILD) for _ in range(args.repeat)]
        cluster = workdir / f"{old.stem}.json"
        exp = [measure_expected(cluster, new, _NFT_EXPECTED_CHILD) for _ in range(args.repeat)] \
            if cluster.exists() else []
        cli = [cli_cpu(["diff", str(old), str(new)]) for _ in range(args.repeat)]
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    def med(key: str) -> float:
        return statistics.median(float(r[key]) for r in runs)

    parse, views, diff, render = med("parse"), med("views"), med("diff"), med("render")
    total = views + diff + render
    peak = max(float(r["peak_mb"]) for r in runs)
    print(f"rules, elements:       {runs[0]['rules']}, {runs[0]['elements']} (both listings)")
    print(f"parse both listings:   {parse:6.2f} s CPU   (reference)")
    print(f"read the two tables:   {views:6.2f} s CPU   = {views / parse:.2f} x parse")
    print(f"diff (model):          {diff:6.2f} s CPU   = {diff / parse:.2f} x parse")
    print(f"render report:         {render:6.2f} s CPU")
    print(f"full text diff:        {total:6.2f} s CPU   = {total / parse:.2f} x parse"
          f"   target < {TARGET_SECONDS:g} s: {'ok' if total < TARGET_SECONDS else 'MISSED'}")
    print(f"peak memory:           {peak:6.0f} MB (after parsing: "
          f"{max(float(r['peak_mb_after_parse']) for r in runs):.0f} MB)"
          f"   target < {TARGET_PEAK_MB:g} MB: {'ok' if peak < TARGET_PEAK_MB else 'MISSED'}")
    print(f"netproxy diff (CLI):   {statistics.median(c[0] for c in cli):6.2f} s CPU end to end, "
          f"peak {max(c[1] for c in cli):.0f} MB")
    if exp:
        e = {k: statistics.median(r[k] for r in exp) for k in ("compile", "parse", "diff")}
        print(f"--expected (old cluster compiled in nftables mode vs new listing): compile "
              f"{e['compile']:.2f} s, parse {e['parse']:.2f} s, diff {e['diff']:.2f} s CPU "
              f"(= {e['diff'] / e['parse']:.2f} x parsing the listing), "
              f"peak {max(r['peak_mb'] for r in exp):.0f} MB")
    print(f"report: {runs[0]['summary']}")
    print(f"verdict: {runs[0]['verdict']}  (median of {args.repeat} runs, CPU time, {os.cpu_count()} CPUs)")
    return 0 if total < TARGET_SECONDS and peak < TARGET_PEAK_MB else 1


if __name__ == "__main__":
    sys.exit(main())
