#!/usr/bin/env python3
"""Benchmark ``netproxy apply --proxy-mode nftables`` on a large cluster.

    python scripts/bench_apply_nftables.py                       # 10,000 services x 10 endpoints
    python scripts/bench_apply_nftables.py --services 2000 --workdir /tmp/bench

The clusters come from ``scripts/synth_cluster.py`` (the second with ``--change-percent 1``).
In two namespaces made for the run (and deleted afterwards), all in this process:

1. ``apply (fresh)``: apply of the cluster into an empty namespace (read the table, compile,
   ``nft -f``), next to ``nft -f`` of the same full transaction into the other namespace;
2. ``re-apply (1% changed)``: apply of the changed cluster on top (only the operations that
   change something, then the stale-chain deletions), next to ``nft -f`` of the full-sync
   transaction kube-proxy's first sync would send for it (compiled against the same table);
3. both namespaces must then hold the same table (chains, rules, elements), once the
   reference has also deleted the stale chains its transaction flushed (as kube-proxy's
   next sync does).

Times are wall-clock seconds of one run each (the machine's CPU is shared: run it briefly).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from netproxy.backend import netns  # noqa: E402
from netproxy.backend.nftables import apply_nftables, load, read_table  # noqa: E402
from netproxy.commands.nftables_options import NftFlags, nftables_tables  # noqa: E402
from netproxy.compiler.nftables.partial import delete_chains, stale_chains  # noqa: E402
from netproxy.k8s.loader import load_inputs  # noqa: E402
from netproxy.parser.nftables import parse_nft  # noqa: E402

FLAGS = NftFlags(None, None, None, ())


def _cluster(path: Path) -> Any:
    return load_inputs([str(path)], note=lambda _t: None)


def _tables(cluster: Any, listing: Any = None) -> list[Any]:
    params = {"inputs": ("x",), "family": "ipv4"}
    return nftables_tables(params, cluster, FLAGS, node=listing)


def _content(ns: str) -> Any:
    text = read_table(ns, "ipv4") or ""
    table = parse_nft(text, strict=True).table("ip", "kube-proxy")
    return ({n: [r.exprs for r in c.rules] for n, c in table.chains.items()},
            {n: sorted(json.dumps([e.key, e.value], sort_keys=True) for e in s.elements)
             for n, s in table.sets.items()})


def _timed(fn: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(f"/tmp/np-bench-nft-{args.services}x{args.endpoints}")
    work.mkdir(parents=True, exist_ok=True)
    first, changed = work / "cluster.json", work / "changed.json"
    for path, extra in ((first, []), (changed, ["--change-percent", "1"])):
        if not path.exists():
            subprocess.run([sys.executable, str(HERE / "synth_cluster.py"), "--services",
                            str(args.services), "--endpoints", str(args.endpoints), *extra,
                            "-o", str(path)], check=True)
    c1, c2 = _cluster(first), _cluster(changed)
    rows: list[tuple[str, float, str]] = []
    with netns.Namespaces("migrate") as made:
        ours, ref = made.make(), made.make()

        def apply(cluster: Any) -> Any:
            return apply_nftables(ours, ["ipv4"], lambda listing: _tables(cluster, listing))

        secs, (res, _) = _timed(lambda: apply(c1))
        rows.append(("apply (fresh)", secs, f"{res.operations} operations"))
        full = "".join(t.transaction() for t in _tables(c1))
        secs, _ = _timed(lambda: load(ref, full))
        rows.append(("nft -f, full transaction", secs, f"{full.count(chr(10))} operations"))

        secs, (res, _) = _timed(lambda: apply(c2))
        rows.append(("re-apply (1% changed)", secs,
                     f"{res.operations} of {res.full_operations} operations, "
                     f"{res.stale_chains} stale chains; read {res.seconds['read']:.2f} s, "
                     f"compile {res.seconds['compile']:.2f} s, nft {res.seconds['nft']:.2f} s"))
        listing = parse_nft(read_table(ref, "ipv4") or "", strict=True)
        tables = _tables(c2, listing)
        resync = "".join(t.transaction() for t in tables)
        secs, _ = _timed(lambda: load(ref, resync))
        rows.append(("nft -f, full-sync transaction", secs, f"{resync.count(chr(10))} operations"))
        # kube-proxy deletes the flushed stale chains in a later sync; so does the reference
        load(ref, "".join(delete_chains(t, stale_chains(t)) for t in tables))
        a, b = _content(ours), _content(ref)
        same = a == b
        if not same:
            for kind, x, y in (("chain", a[0], b[0]), ("set", a[1], b[1])):
                names = sorted(n for n in set(x) | set(y) if x.get(n) != y.get(n))
                print(f"  differing {kind}s ({len(names)}): {', '.join(names[:5])}")
    print(f"{args.services} services x {args.endpoints} endpoints, nftables mode")
    for name, secs, what in rows:
        print(f"  {name:<32} {secs:7.2f} s   {what}")
    print(f"  same table in both namespaces: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
