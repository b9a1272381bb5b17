#!/usr/bin/env python3
"""Benchmark ``netproxy apply`` re-applying a large ruleset with 1% of services changed.

    python scripts/bench_apply.py                          # 10,000 services x 10 endpoints
    python scripts/bench_apply.py --services 2000 --variants legacy
    python scripts/bench_apply.py --workdir /tmp/bench     # keep (and reuse) generated files

The rulesets come from ``scripts/synth_cluster.py`` (the second with ``--change-percent``)
compiled by ``netproxy compile --format save``. Per iptables variant, in namespaces made for
the run and deleted afterwards:

1. ``full``: the first ruleset applied to an empty namespace;
2. ``partial``: the changed ruleset applied on top -- the figure the targets are about
   (under 10 s on iptables-nft, under 3 s on legacy);
3. ``restore floor``: one chain created and deleted with iptables-restore in the same
   namespace -- the least any apply into a table that size costs;
4. ``reference``: what a full re-sync costs, measured in the same run: the changed
   ruleset's complete payload sent with ``iptables-restore --noflush`` into a second namespace
   holding the first ruleset (cut off after ``--reference-timeout`` seconds);
5. the partially updated namespace is compared with a third one that got the changed
   ruleset in one full apply; they must hold exactly the same rules.

Times are for the apply step (state, plan, restore, record), not for compiling. The legacy
tools serialise on one host-wide lock file; so that other users of iptables-legacy on the
machine do not show up as waiting time, the benchmark points ``XTABLES_LOCKFILE`` at its
own file (its namespaces are its own, nothing else writes to them).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = {"nft": 10.0, "legacy": 3.0}
sys.path.insert(0, str(HERE.parent))

from netproxy.backend import netns, xtables  # noqa: E402
from netproxy.backend.engine import RestoreBackend, apply_state  # noqa: E402
from netproxy.backend.plan import make_plan  # noqa: E402
from netproxy.backend.savetext import TextState, comparable, split_saved  # noqa: E402


def generate(workdir: Path, services: int, endpoints: int, change: float, seed: int) -> tuple[Path, Path]:
    out = []
    for name, extra in (("before", []), ("after", ["--change-percent", str(change)])):
        rules = workdir / f"{name}-{services}x{endpoints}-{change}-{seed}.rules"
        if not rules.exists():
            cluster = rules.with_suffix(".yaml")
            subprocess.run([sys.executable, str(HERE / "synth_cluster.py"), "--services", str(services),
                            "--endpoints", str(endpoints), "--seed", str(seed), *extra, "-o", str(cluster)],
                           check=True)
            subprocess.run([sys.executable, "-m", "netproxy", "compile", str(cluster), "--format", "save",
                            "-o", str(rules)], check=True)
        out.append(rules)
    return out[0], out[1]


def nft_listing(name: str) -> str:
    """The namespace's iptables-nft tables as ``nft list`` prints them, chains sorted (for
    comparing when iptables-nft-save cannot cope with the size)."""
    out: list[str] = []
    tables = netns.run(name, ["nft", "list", "tables"]).stdout.split("\n")
    for line in sorted(t for t in tables if t.startswith("table ")):
        text = netns.run(name, ["nft", "list", *line.split()], timeout=900).stdout
        blocks: dict[str, list[str]] = {}
        current = ""
        for row in text.splitlines():
            stripped = row.strip()
            if stripped.startswith("chain "):
                current = stripped
                blocks[current] = []
            elif current and stripped and stripped != "}":
                blocks[current].append(stripped)
        out.append(line)
        for chain in sorted(blocks):
            out.append(chain)
            out.extend(blocks[chain])
    return "\n".join(out) + "\n"


def listing(backend: RestoreBackend) -> tuple[str, str]:
    """A comparable dump of the namespace and how it was taken."""
    try:
        return comparable(backend.read()), backend.tools.save_bin
    except Exception as exc:
        if backend.tools.variant != "nft":
            raise
        first = str(exc)
    # iptables-nft-save overflows its stack on a 10,000-service nat table: table by table,
    # with an unlimited stack (minutes), else nft's own listing
    try:
        text = "".join(
            netns.run(backend.netns, ["sh", "-c", f"ulimit -s unlimited; exec {backend.tools.save_bin} -t {t}"],
                      timeout=1800).stdout
            for t in ("mangle", "filter", "nat"))
        return comparable(text), f"{backend.tools.save_bin} -t TABLE (unlimited stack)"
    except Exception as exc:
        print(f"  note: {backend.tools.save_bin} failed ({first}; {exc}); comparing 'nft list' output",
              file=sys.stderr)
        return nft_listing(backend.netns), "nft list table (chains sorted)"


def reference_resync(name: str, tools: xtables.Xtables, desired: TextState, timeout: float) -> float | None:
    """Seconds for a full --noflush re-sync of ``desired`` (None when cut off)."""
    payload = make_plan({}, desired).payload
    t0 = time.perf_counter()
    try:
        netns.run(name, [tools.restore_bin, "--noflush", "-w", "60"], input_text=payload, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return time.perf_counter() - t0


def restore_floor(name: str, tools: xtables.Xtables) -> float:
    """Seconds for the smallest change iptables-restore can commit into this namespace's nat
    table (one chain created and deleted): what any apply pays before sending anything."""
    payload = "*nat\n:KUBE-BENCH-FLOOR - [0:0]\n-X KUBE-BENCH-FLOOR\nCOMMIT\n"
    t0 = time.perf_counter()
    netns.run(name, [tools.restore_bin, "--noflush", "-w", "60"], input_text=payload)
    return time.perf_counter() - t0


def bench_variant(variant: str, before: TextState, after: TextState, ref_timeout: float) -> dict[str, object]:
    tools = xtables.resolve(variant)
    with netns.Namespaces("bench") as spaces:
        target = RestoreBackend(spaces.make(), tools)
        full = apply_state(target, before)
        print(f"  {variant}: full apply {full.seconds['total']:.2f}s", file=sys.stderr)
        partial = apply_state(target, after)
        print(f"  {variant}: partial apply {partial.seconds['total']:.2f}s", file=sys.stderr)
        again = apply_state(target, after)
        floor = restore_floor(target.netns, tools)
        fresh = RestoreBackend(spaces.make(), tools)
        one_shot = apply_state(fresh, after)
        mine, how = listing(target)
        theirs, _ = listing(fresh)
        equal = mine == theirs
        ref_ns = RestoreBackend(spaces.make(), tools)
        apply_state(ref_ns, before)
        reference = reference_resync(ref_ns.netns, tools, after, ref_timeout)
    seconds = partial.seconds["total"]
    return {
        "variant": variant,
        "full_apply_s": round(full.seconds["total"], 3),
        "full_apply_mode": "--noflush" if full.noflush else "whole-table rewrite",
        "partial_apply_s": round(seconds, 3),
        "partial_breakdown_s": {k: round(v, 3) for k, v in partial.seconds.items()},
        "partial_state_from": partial.state_from,
        "partial_counts": partial.counts,
        "unchanged_reapply_s": round(again.seconds["total"], 3),
        "restore_floor_s": round(floor, 3),
        "unchanged_reapply_sent_lines": again.counts["payload_lines"],
        "one_shot_apply_s": round(one_shot.seconds["total"], 3),
        "reference_full_resync_s": None if reference is None else round(reference, 3),
        "reference_cut_off_at_s": ref_timeout if reference is None else None,
        "speedup_vs_reference": (f">{ref_timeout / seconds:.0f}x" if reference is None
                                 else f"{reference / seconds:.1f}x"),
        "equal_to_full_apply": equal,
        "compared_with": how,
        "target_s": TARGETS[variant],
        "meets_target": seconds < TARGETS[variant] and equal,
    }


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(f"stopped by signal {signum}")  # so the namespaces are deleted


def main() -> int:
    signal.signal(signal.SIGTERM, _stop)
    os.environ["XTABLES_LOCKFILE"] = str(netns.STATE_DIR / f"bench-apply-{os.getpid()}.lock")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--services", type=int, default=10_000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--change-percent", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--variants", default="legacy,nft")
    ap.add_argument("--reference-timeout", type=float, default=300.0)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-apply-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        first, second = generate(workdir, args.services, args.endpoints, args.change_percent, args.seed)
        before = split_saved(first.read_text())
        after = split_saved(second.read_text())
        rules = sum(len(c.rules) for t in after.values() for c in t.values())
        chains = sum(len(t) for t in after.values())
        print(f"ruleset: {args.services} services x {args.endpoints} endpoints: {rules} rules, "
              f"{chains} chains; {args.change_percent}% of services changed", file=sys.stderr)
        results = [bench_variant(v, before, after, args.reference_timeout) for v in args.variants.split(",")]
    report = {"services": args.services, "endpoints": args.endpoints, "rules": rules, "chains": chains,
              "change_percent": args.change_percent, "results": results}
    Path(os.environ["XTABLES_LOCKFILE"]).unlink(missing_ok=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for r in results:
            print(f"{r['variant']:>6}: partial re-apply {r['partial_apply_s']:.2f}s "
                  f"(target < {r['target_s']:.0f}s, {'met' if r['meets_target'] else 'MISSED'}; "
                  f"a one-chain iptables-restore into that table alone takes {r['restore_floor_s']:.2f}s); "
                  f"full apply {r['full_apply_s']:.2f}s ({r['full_apply_mode']}); "
                  f"reference full --noflush re-sync "
                  f"{r['reference_full_resync_s'] if r['reference_full_resync_s'] is not None else '>' + str(r['reference_cut_off_at_s'])}s "
                  f"({r['speedup_vs_reference']} slower than partial); "
                  f"equal to a one-shot full apply: {r['equal_to_full_apply']} ({r['compared_with']})")
    return 0 if all(r["meets_target"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
