#!/usr/bin/env python3
"""Benchmark ``netproxy apply --proxy-mode nftables`` on a large cluster, each step next to
``nft -f`` of the same full transaction in the same run.

    python scripts/bench_apply_nftables.py                       # 10,000 services x 10 endpoints
    python scripts/bench_apply_nftables.py --services 2000 --workdir /tmp/bench

The clusters come from ``scripts/synth_cluster.py`` (the second with ``--change-percent``,
default 1). In two namespaces made for the run (``np-nftapply-bench-*``, always deleted):

1. ``apply (fresh)``: apply of the cluster into an empty namespace (compile, ``nft -f``, keep
   the record), next to ``nft -f`` of the same full transaction into the other namespace;
2. ``re-apply (N% changed)``: apply of the changed cluster on top (the table taken from the
   record, only the operations that change something, stale chains deleted), next to ``nft
   -f`` of the full-sync transaction kube-proxy's first sync would send for it on that table;
3. both namespaces must then hold the same table (chains, rules, elements), once the
   reference has also deleted the stale chains its transaction flushed (as kube-proxy's next
   sync does).

Each step runs once (an nft -f of 10,000 services costs minutes of CPU); CPU seconds (this
process and its nft children) are reported beside wall seconds, as the machine is shared.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from benchlib import cluster_args, load_note, nft_version  # noqa: E402

from netproxy.backend import netns, nftrecord  # noqa: E402
from netproxy.backend.nftables import KernelTables, apply_nftables, load, read_table  # noqa: E402
from netproxy.commands.nftables_options import NftFlags, nftables_tables  # noqa: E402
from netproxy.compiler.nftables.partial import delete_chains, stale_chains  # noqa: E402
from netproxy.k8s.loader import load_inputs  # noqa: E402
from netproxy.parser.nftables import parse_nft  # noqa: E402

FLAGS = NftFlags(None, None, None, ())


def _cluster(path: Path) -> Any:
    return load_inputs([str(path)], note=lambda _t: None)


def _tables(cluster: Any, current: Any = None) -> list[Any]:
    params = {"inputs": ("x",), "family": "ipv4"}
    return nftables_tables(params, cluster, FLAGS, node=current)


def _content(ns: str) -> Any:
    text = read_table(ns, "ipv4") or ""
    table = parse_nft(text, strict=True).table("ip", "kube-proxy")
    return ({n: [r.exprs for r in c.rules] for n, c in table.chains.items()},
            {n: sorted(json.dumps([e.key, e.value], sort_keys=True) for e in s.elements)
             for n, s in table.sets.items()})


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _measured(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process and its children, result) of ``fn()``."""
    w, c = time.perf_counter(), _cpu()
    out = fn()
    return time.perf_counter() - w, _cpu() - c, out


def main() -> int:
    ap = cluster_args(__doc__.split("\n\n")[0])
    ap.add_argument("--change-percent", type=float, default=1.0)
    ap.add_argument("--workdir", type=Path, default=None,
                    help="keep the generated clusters here (reused by the next run)")
    args = ap.parse_args()
    work = args.workdir or Path(f"/tmp/np-bench-nft-{args.services}x{args.endpoints}")
    work.mkdir(parents=True, exist_ok=True)
    first, changed = work / "cluster.json", work / f"changed-{args.change_percent:g}.json"
    for path, extra in ((first, []), (changed, ["--change-percent", str(args.change_percent)])):
        if not path.exists():
            subprocess.run([sys.executable, str(HERE / "synth_cluster.py"), "--services",
                            str(args.services), "--endpoints", str(args.endpoints), "--seed",
                            str(args.seed), *extra, "-o", str(path)], check=True)
    c1, c2 = _cluster(first), _cluster(changed)
    print(f"{args.services} services x {args.endpoints} endpoints (seed {args.seed}), nftables "
          f"mode; {nft_version()}; at the start: {load_note()}", flush=True)
    rows: list[tuple[str, float, float, str]] = []
    with netns.Namespaces("nftapply-bench") as made:
        ours, ref = made.make(), made.make()

        def apply(cluster: Any) -> Any:
            return apply_nftables(ours, ["ipv4"], lambda current: _tables(cluster, current))[0]

        wall, cpu, res = _measured(lambda: apply(c1))
        rows.append(("apply (fresh)", wall, cpu, f"{res.operations} operations; compile "
                     f"{res.seconds['compile']:.2f} s, nft {res.seconds['nft']:.2f} s, record "
                     f"{res.seconds['record']:.2f} s"))
        full = "".join(t.transaction() for t in _tables(c1))
        wall, cpu, _ = _measured(lambda: load(ref, full))
        rows.append(("nft -f, full transaction", wall, cpu, f"{full.count(chr(10))} operations"))

        # kube-proxy's full sync of the changed cluster on the table both namespaces hold now
        # (the one apply recorded; step 3 checks the two namespaces agree)
        path = nftrecord.path_of(ours, "ipv4")
        assert path is not None
        held = KernelTables({("ip", "kube-proxy"): nftrecord.parse(path.read_text())[1]})
        tables = _tables(c2, held)
        resync = "".join(t.transaction() for t in tables)

        wall, cpu, res = _measured(lambda: apply(c2))
        rows.append((f"re-apply ({args.change_percent:g}% changed)", wall, cpu,
                     f"{res.operations} of {res.full_operations} operations, "
                     f"{res.stale_chains} stale chains, state from {res.state}; read "
                     f"{res.seconds['read']:.2f} s, compile {res.seconds['compile']:.2f} s, nft "
                     f"{res.seconds['nft']:.2f} s, record {res.seconds['record']:.2f} s"))
        wall, cpu, _ = _measured(lambda: load(ref, resync))
        rows.append(("nft -f, full-sync transaction", wall, cpu,
                     f"{resync.count(chr(10))} operations"))
        # kube-proxy deletes the flushed stale chains in a later sync; so does the reference
        load(ref, "".join(delete_chains(t, stale_chains(t)) for t in tables))
        a, b = _content(ours), _content(ref)
        same = a == b
    for name, wall, cpu, what in rows:
        print(f"  {name:<32} {wall:8.2f} s wall {cpu:8.2f} s CPU   {what}")
    for (name, wall, cpu, _), (ref_name, ref_wall, ref_cpu, _) in zip(rows[::2], rows[1::2],
                                                                    strict=True):
        print(f"  {name} / {ref_name}: {wall / ref_wall:.3f} wall, {cpu / ref_cpu:.3f} CPU")
    print(f"  same table in both namespaces: {'yes' if same else 'NO'}")
    if not same:
        for kind, x, y in (("chain", a[0], b[0]), ("set", a[1], b[1])):
            names = sorted(n for n in set(x) | set(y) if x.get(n) != y.get(n))
            print(f"  differing {kind}s ({len(names)}): {', '.join(names[:5])}")
            for n in names[:2]:
                print(f"    {n}: apply {str(x.get(n))[:300]}\n    {n}: nft -f {str(y.get(n))[:300]}")
    print(f"  at the end: {load_note()}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
