"""Re-apply only what changed, as kube-proxy's partial syncs do.

A full sync on a node that holds the table (``existing.py``) already writes elements as
diffs. What it still rewrites whole is every chain (``add`` + ``flush`` + rules) and the
fixed objects. A partial sync writes a chain only when its Service changed; here a chain
(or set, map, counter) is left out of the transaction when the kernel's copy already equals
what the full sync would leave -- the same result, fewer operations. Stale service chains,
flushed by the transaction, are deleted by a second one (kube-proxy waits a second, for
kernels before 6.2, where a chain cannot be deleted in the transaction that drops the last
map element pointing to it).
"""

from __future__ import annotations

from netproxy.compiler.nftables.existing import state_of
from netproxy.compiler.nftables.table import Table

_CHAIN_VERBS = {("add", "chain"), ("flush", "chain"), ("delete", "chain"), ("add", "rule")}
_SET_VERBS = {("add", "set"), ("add", "map"), ("flush", "set"), ("flush", "map"),
              ("delete", "set"), ("delete", "map"), ("add", "element"), ("delete", "element"),
              ("add", "counter"), ("delete", "counter")}


def changed_lines(t: Table) -> list[str]:
    """The lines of ``t``'s transaction that change the kernel (all of them on a fresh node)."""
    if t.before is None:
        return list(t.lines)
    before, after = t.before, state_of(t)
    out: list[str] = []
    for line in t.lines:
        words = line.split(" ", 5)
        verbs = (words[0], words[1])
        if verbs == ("add", "table"):
            continue  # the table exists; its comment is kube-proxy's own
        if len(words) < 5:
            out.append(line)
            continue
        name = words[4]
        key = ("chain", name) if verbs in _CHAIN_VERBS else (
            ("set", name) if verbs in _SET_VERBS else None)
        if key is not None and before.get(key) == after.get(key):
            continue
        out.append(line)
    return out


def stale_chains(t: Table) -> list[str]:
    """Service chains the transaction flushed because no Service uses them any more."""
    return [name for name in sorted(t.existing_chains)
            if "/" in name and name not in t.ensured and name in t.chains]


def delete_chains(t: Table, names: list[str]) -> str:
    """The second transaction: delete the flushed stale chains."""
    return "".join(f"delete chain {t.prefix} {name}\n" for name in names)
