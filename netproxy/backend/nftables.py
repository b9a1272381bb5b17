"""kube-proxy's nftables tables in a network namespace: read them, load a transaction with
``nft -f`` (atomic: all of it or nothing), delete them. Only ``table ip kube-proxy`` and
``table ip6 kube-proxy`` are ever named; every other table stays as it is."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netproxy.backend import netns
from netproxy.errors import BackendError

NFT_FAMILY = {"ipv4": "ip", "ipv6": "ip6"}
TABLE = "kube-proxy"


def nft_tool() -> str:
    found = shutil.which("nft")
    if found is None:
        raise BackendError("the 'nft' tool is not installed (apt-get install nftables)")
    return found


def read_table(name: str, family: str) -> str | None:
    """``nft list table ip|ip6 kube-proxy`` in namespace ``name``; None when absent."""
    proc = netns.run(name, [nft_tool(), "list", "table", NFT_FAMILY[family], TABLE], check=False)
    if proc.returncode == 0:
        return proc.stdout
    err = (proc.stderr or "").strip()
    if "No such file or directory" in err:
        return None
    raise BackendError(f"nft list table {NFT_FAMILY[family]} {TABLE}: "
                       f"{err.splitlines()[-1] if err else f'exit {proc.returncode}'}",
                       where=f"netns {name}")


def load(name: str, transaction: str) -> None:
    """Run ``transaction`` with ``nft -f -`` inside the namespace (atomic)."""
    if not transaction:
        return
    proc = netns.run(name, [nft_tool(), "-f", "-"], input_text=transaction, check=False)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise BackendError(f"nft -f refused the transaction (nothing was changed): "
                           f"{msg[0] if msg else f'exit {proc.returncode}'}",
                           where=f"netns {name}")


@dataclass(slots=True)
class NftResult:
    netns: str
    families: list[str]
    operations: int = 0
    """Lines of the transaction sent (0: the namespace already held the result)."""
    full_operations: int = 0
    """What a full sync's transaction would have held."""
    stale_chains: int = 0
    """Stale service chains deleted (with a dry run: to delete) after the transaction."""
    fresh: bool = False
    """No kube-proxy table was there before."""
    full: bool = False
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.operations > 0 or self.stale_chains > 0

    def to_json(self) -> dict[str, Any]:
        return {"netns": self.netns, "mode": "nftables", "families": self.families,
                "changed": self.changed, "operations": self.operations,
                "full_sync_operations": self.full_operations,
                "stale_chains": self.stale_chains, "fresh": self.fresh,
                "full": self.full, "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}

    def summary(self) -> str:
        tables = " and ".join(f"table {NFT_FAMILY[f]} {TABLE}" for f in self.families)
        if not self.changed:
            return f"netns {self.netns}: {tables} already as compiled; nothing sent"
        how = "full sync" if self.full or self.fresh else "changes only"
        stale = f", then deleted {self.stale_chains} stale chains" if self.stale_chains else ""
        return (f"netns {self.netns}: {tables} loaded with nft -f ({how}: {self.operations} of "
                f"{self.full_operations} operations{stale}) in "
                f"{sum(self.seconds.values()):.2f} s")


def apply_nftables(name: str, families: list[str], compile_for: Callable[[Any], list[Any]],
                   *, full: bool = False, dry_run: bool = False) -> tuple[NftResult, str]:
    """Read the namespace's kube-proxy tables, compile against them (``compile_for(listing)``
    gives one :class:`~netproxy.compiler.nftables.Table` per family, as kube-proxy's first
    sync on a node holding them), and send what changed (``full``: the whole full-sync
    transaction) in one ``nft -f``; then delete stale service chains in a second one.
    Returns the result and the transaction text (sent, or with ``dry_run`` only shown)."""
    from netproxy.compiler.nftables.partial import changed_lines, delete_chains, stale_chains
    from netproxy.parser.nftables import parse_nft

    result = NftResult(name, families, full=full)
    t0 = time.perf_counter()
    texts = [read_table(name, f) for f in families]
    present = "".join(t for t in texts if t)
    listing = parse_nft(present, source=f"netns {name}", strict=True) if present else None
    result.fresh = listing is None
    t1 = time.perf_counter()
    tables = compile_for(listing)
    lines: list[str] = []
    stale = ""
    for table in tables:
        lines += table.lines if full else changed_lines(table)
        result.full_operations += len(table.lines)
        stale += delete_chains(table, stale_chains(table))
    transaction = "".join(f"{line}\n" for line in lines)
    result.operations = len(lines)
    result.stale_chains = stale.count("\n")
    t2 = time.perf_counter()
    result.seconds = {"read": t1 - t0, "compile": t2 - t1}
    if dry_run:
        return result, transaction + stale
    load(name, transaction)
    load(name, stale)
    result.seconds["nft"] = time.perf_counter() - t2
    return result, transaction + stale


def cleanup(name: str) -> list[str]:
    """Delete kube-proxy's tables (both families) from the namespace, as kube-proxy does when
    it starts in another mode; returns the tables deleted."""
    gone = []
    for family, nft_family in NFT_FAMILY.items():
        if read_table(name, family) is not None:
            load(name, f"delete table {nft_family} {TABLE}\n")
            gone.append(f"{nft_family} {TABLE}")
    return gone
