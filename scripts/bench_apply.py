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
   (under 10 s on iptables-nft, under 3 s on legacy); best of ``--repeat`` runs, going
   back to the first ruleset (another partial apply) between them;
3. ``restore floor``: one chain created and deleted with iptables-restore in the same
   namespace -- the least any apply into a table that size costs -- with the tool's user and
   system CPU time, and, legacy only, the ``kernel floor``: the nat table read
   (``IPT_SO_GET_ENTRIES``) and replaced by the very same entries (``IPT_SO_SET_REPLACE``,
   counters put back with ``IPT_SO_SET_ADD_COUNTERS``) from this process, without libiptc --
   what any user-space tool pays per commit (each best of ``--repeat``);
4. ``reference``: what a full re-sync costs, measured in the same run: the changed
   ruleset's complete payload sent with ``iptables-restore --noflush`` into a second namespace
   holding the first ruleset (cut off after ``--reference-timeout`` seconds);
5. ``first load``: the restore tool alone loading the payload of step 1 into an empty
   namespace, next to apply's first load (``--first-load-only`` measures just this);
6. the partially updated namespace is compared with a third one that got the changed
   ruleset in one full apply; they must hold exactly the same rules.

Times are for the apply step (state, plan, restore, record), not for compiling. The legacy
tools serialise on one host-wide lock file; so that other users of iptables-legacy on the
machine do not show up as waiting time, the benchmark points ``XTABLES_LOCKFILE`` at its
own file (its namespaces are its own, nothing else writes to them).
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = {"nft": 10.0, "legacy": 3.0}
sys.path.insert(0, str(HERE.parent))

from netproxy.backend import netns, nfacct, xtables  # noqa: E402
from netproxy.backend.engine import RestoreBackend, apply_state  # noqa: E402
from netproxy.backend.nsthread import run_in_netns  # noqa: E402
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


def first_load_reference(name: str, tools: xtables.Xtables, desired: TextState) -> float:
    """Seconds ``iptables-restore`` alone takes to load the payload apply's first load sends
    (the same plan: into an empty namespace), for comparing apply's overhead with."""
    plan = make_plan({}, desired, allow_replace=True)
    argv = [tools.restore_bin, "-w", "60"] + (["--noflush"] if plan.noflush else [])
    nfacct.ensure(name, nfacct.names_in(plan.lines))  # as apply does; the rules use them
    t0 = time.perf_counter()
    netns.run(name, argv, input_text=plan.payload, timeout=1800)
    return time.perf_counter() - t0


def bench_first_load(variant: str, before: TextState) -> dict[str, object]:
    """apply's first load into an empty namespace next to the restore tool loading the same
    payload into another empty one."""
    tools = xtables.resolve(variant)
    with netns.Namespaces("bench") as spaces:
        full = apply_state(RestoreBackend(spaces.make(), tools), before)
        print(f"  {variant}: first load by apply {full.seconds['total']:.2f}s", file=sys.stderr)
        reference = first_load_reference(spaces.make(), tools, before)
        print(f"  {variant}: {tools.restore_bin} of the same payload {reference:.2f}s", file=sys.stderr)
    return {"variant": variant, "first_load_apply_s": round(full.seconds["total"], 3),
            "first_load_breakdown_s": {k: round(v, 3) for k, v in full.seconds.items()},
            "first_load_mode": "--noflush" if full.noflush else "whole-table rewrite",
            "restore_same_payload_s": round(reference, 3),
            "apply_overhead_s": round(full.seconds["total"] - reference, 3)}


FLOOR_PAYLOAD = "*nat\n:KUBE-BENCH-FLOOR - [0:0]\n-X KUBE-BENCH-FLOOR\nCOMMIT\n"


def restore_floor(name: str, tools: xtables.Xtables) -> dict[str, float]:
    """The smallest change iptables-restore can commit into this namespace's nat table (one
    chain created and deleted): what any apply pays before sending anything. Wall time and
    the tool's user and system CPU time (``ip netns exec`` execs the tool in place)."""
    with tempfile.TemporaryFile("w+") as payload:
        payload.write(FLOOR_PAYLOAD)
        payload.flush()
        payload.seek(0)
        t0 = time.perf_counter()
        proc = subprocess.Popen(netns.exec_argv(name, [tools.restore_bin, "--noflush", "-w", "60"]),
                                stdin=payload, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"restore floor payload rejected: {err.decode(errors='replace').strip()}")
    return {"wall": wall, "user": usage.ru_utime, "system": usage.ru_stime}


IPT_SO_GET_INFO = IPT_SO_SET_REPLACE = 64
IPT_SO_GET_ENTRIES = IPT_SO_SET_ADD_COUNTERS = 65
_INFO = struct.Struct("=32sI5I5III")  # struct ipt_getinfo
_REPLACE = struct.Struct("=32sIII5I5IIQ")  # struct ipt_replace (x86-64: 96 bytes)
_COUNTERS_HEAD = 40  # struct xt_counters_info: name[32], num_counters, padding to 8


def _sockopt(call: str, sock: socket.socket, opt: int, buf: object, size: int | ctypes.c_uint32) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    func = libc.getsockopt if call == "get" else libc.setsockopt
    arg = ctypes.byref(size) if isinstance(size, ctypes.c_uint32) else size
    if func(sock.fileno(), socket.SOL_IP, opt, buf, arg) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{'getsockopt' if call == 'get' else 'setsockopt'} {opt}: {os.strerror(err)}")


def _kernel_round_trip(table: str) -> dict[str, float]:
    """In the calling thread's namespace: read ``table``'s entries and replace the table by
    them, then add the old counters back; seconds per step."""
    name = table.encode()
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as sock, \
            open(os.environ.get("XTABLES_LOCKFILE", "/run/xtables.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        info = ctypes.create_string_buffer(name, _INFO.size)
        _sockopt("get", sock, IPT_SO_GET_INFO, info, ctypes.c_uint32(_INFO.size))
        fields = _INFO.unpack(info.raw)
        valid, hooks, underflow, count, size = fields[1], fields[2:7], fields[7:12], fields[12], fields[13]
        blob = ctypes.create_string_buffer(_REPLACE.size + size)  # entries land where ipt_replace wants them
        get_at = _REPLACE.size - 40  # struct ipt_get_entries: name[32], size, padding to 8
        struct.pack_into("=32sI", blob, get_at, name, size)
        t0 = time.perf_counter()
        _sockopt("get", sock, IPT_SO_GET_ENTRIES, ctypes.byref(blob, get_at), ctypes.c_uint32(40 + size))
        t1 = time.perf_counter()
        counters = ctypes.create_string_buffer(_COUNTERS_HEAD + 16 * count)
        _REPLACE.pack_into(blob, 0, name, valid, count, size, *hooks, *underflow, count,
                           ctypes.addressof(counters) + _COUNTERS_HEAD)
        _sockopt("set", sock, IPT_SO_SET_REPLACE, blob, _REPLACE.size + size)
        t2 = time.perf_counter()
        struct.pack_into("=32sI", counters, 0, name, count)
        _sockopt("set", sock, IPT_SO_SET_ADD_COUNTERS, counters, len(counters))
        t3 = time.perf_counter()
    return {"get_entries": t1 - t0, "set_replace": t2 - t1, "add_counters": t3 - t2, "total": t3 - t0}


def kernel_floor(name: str, table: str = "nat") -> dict[str, float]:
    """What the kernel alone spends on one commit into ``table`` of namespace ``name`` (legacy):
    reading it and replacing it by the same entries, with no libiptc or parsing involved."""
    return run_in_netns(name, lambda: _kernel_round_trip(table))


def best_of(runs: int, measure: Callable[[], dict[str, float]]) -> dict[str, float]:
    """The run with the least wall (or total) time out of ``runs``."""
    results = [measure() for _ in range(max(runs, 1))]
    return min(results, key=lambda r: r.get("wall", r.get("total", 0.0)))


def _without_recent(text: str) -> str:
    """Saved rules without the lines that use ``-m recent`` (an experiment, not a cluster:
    the affinity services lose their affinity rules and their endpoints' DNAT rules)."""
    return "".join(line for line in text.splitlines(keepends=True) if " -m recent " not in line)


def _fresh(state: TextState) -> TextState:
    """``state`` with its chain digests forgotten, so every apply computes them as a new
    ``netproxy apply`` process would (they are cached on the chains once computed)."""
    for chains in state.values():
        for chain in chains.values():
            chain.digest = None
    return state


def bench_variant(variant: str, before: TextState, after: TextState, ref_timeout: float,
                  repeat: int = 3) -> dict[str, object]:
    tools = xtables.resolve(variant)
    with netns.Namespaces("bench") as spaces:
        target = RestoreBackend(spaces.make(), tools)
        full = apply_state(target, before)
        print(f"  {variant}: full apply {full.seconds['total']:.2f}s", file=sys.stderr)
        runs = []
        for i in range(max(repeat, 1)):  # back to the first ruleset between runs (itself partial)
            if i:
                apply_state(target, _fresh(before))
            runs.append(apply_state(target, _fresh(after)))
            print(f"  {variant}: partial apply {runs[-1].seconds['total']:.2f}s", file=sys.stderr)
        partial = min(runs, key=lambda r: r.seconds["total"])
        again = apply_state(target, _fresh(after))
        floor = best_of(repeat, lambda: restore_floor(target.netns, tools))
        kernel = best_of(repeat, lambda: kernel_floor(target.netns)) if variant == "legacy" else None
        fresh = RestoreBackend(spaces.make(), tools)
        one_shot = apply_state(fresh, after)
        mine, how = listing(target)
        theirs, _ = listing(fresh)
        equal = mine == theirs
        ref_ns = RestoreBackend(spaces.make(), tools)
        apply_state(ref_ns, before)
        reference = reference_resync(ref_ns.netns, tools, after, ref_timeout)
        first_load_restore = first_load_reference(spaces.make(), tools, before)
    seconds = partial.seconds["total"]
    floor_text = (f"a one-chain iptables-restore into that table alone takes {floor['wall']:.2f}s, "
                  f"{floor['user']:.2f}s user + {floor['system']:.2f}s system CPU")
    if kernel is not None:
        floor_text += (f"; the kernel alone, no libiptc: read {kernel['get_entries']:.2f}s + "
                       f"replace {kernel['set_replace']:.2f}s + counters {kernel['add_counters']:.2f}s")
    return {
        "floor_text": floor_text,
        "variant": variant,
        "full_apply_s": round(full.seconds["total"], 3),
        "full_apply_mode": "--noflush" if full.noflush else "whole-table rewrite",
        "full_apply_breakdown_s": {k: round(v, 3) for k, v in full.seconds.items()},
        "restore_same_first_payload_s": round(first_load_restore, 3),
        "partial_apply_s": round(seconds, 3),
        "partial_runs_s": [round(r.seconds["total"], 3) for r in runs],
        "partial_breakdown_s": {k: round(v, 3) for k, v in partial.seconds.items()},
        "partial_state_from": partial.state_from,
        "partial_counts": partial.counts,
        "unchanged_reapply_s": round(again.seconds["total"], 3),
        "restore_floor_s": round(floor["wall"], 3),
        "restore_floor_cpu_s": {"user": round(floor["user"], 3), "system": round(floor["system"], 3)},
        "kernel_floor_s": None if kernel is None else {k: round(v, 3) for k, v in kernel.items()},
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
    ap.add_argument("--repeat", type=int, default=3, help="runs of the partial apply and of each floor measurement (best kept)")
    ap.add_argument("--drop-recent", action="store_true",
                    help="leave out every rule using -m recent (ClientIP session affinity) from both "
                         "rulesets, to see what the kernel's xt_recent checks cost each commit")
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--first-load-only", action="store_true",
                    help="only apply's first load of the first ruleset next to the restore tool "
                         "loading the same payload (per variant)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-apply-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        first, second = generate(workdir, args.services, args.endpoints, args.change_percent, args.seed)
        before = split_saved(_without_recent(first.read_text()) if args.drop_recent else first.read_text())
        after = split_saved(_without_recent(second.read_text()) if args.drop_recent else second.read_text())
        rules = sum(len(c.rules) for t in after.values() for c in t.values())
        chains = sum(len(t) for t in after.values())
        print(f"ruleset: {args.services} services x {args.endpoints} endpoints: {rules} rules, "
              f"{chains} chains; {args.change_percent}% of services changed"
              + ("; rules using -m recent left out" if args.drop_recent else ""), file=sys.stderr)
        if args.first_load_only:
            loads = [bench_first_load(v, before) for v in args.variants.split(",")]
            Path(os.environ["XTABLES_LOCKFILE"]).unlink(missing_ok=True)
            print(json.dumps({"services": args.services, "endpoints": args.endpoints,
                              "first_load": loads}, indent=2))
            return 0
        results = [bench_variant(v, before, after, args.reference_timeout, args.repeat)
                   for v in args.variants.split(",")]
    report = {"services": args.services, "endpoints": args.endpoints, "rules": rules, "chains": chains,
              "drop_recent": args.drop_recent,
              "change_percent": args.change_percent, "results": results}
    Path(os.environ["XTABLES_LOCKFILE"]).unlink(missing_ok=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for r in results:
            print(f"{r['variant']:>6}: partial re-apply {r['partial_apply_s']:.2f}s "
                  f"(target < {r['target_s']:.0f}s, {'met' if r['meets_target'] else 'MISSED'}; "
                  f"{r['floor_text']}); "
                  f"full apply {r['full_apply_s']:.2f}s ({r['full_apply_mode']}; the restore tool "
                  f"alone loads that payload in {r['restore_same_first_payload_s']:.2f}s); "
                  f"reference full --noflush re-sync "
                  f"{r['reference_full_resync_s'] if r['reference_full_resync_s'] is not None else '>' + str(r['reference_cut_off_at_s'])}s "
                  f"({r['speedup_vs_reference']} slower than partial); "
                  f"equal to a one-shot full apply: {r['equal_to_full_apply']} ({r['compared_with']})")
    return 0 if all(r["meets_target"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
