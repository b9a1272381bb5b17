"""kube-proxy's nftables tables in a network namespace: read them, load a transaction with
``nft -f`` (atomic: all of it or nothing), delete them. Only ``table ip kube-proxy`` and
``table ip6 kube-proxy`` are ever named; every other table stays as it is."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netproxy.backend import netns
from netproxy.errors import BackendError
from netproxy.netfilter.nft import NFT_FAMILY

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


def load(name: str, transaction: str, *, source: str = "", check_only: bool = False) -> None:
    """Run ``transaction`` with ``nft -f -`` inside the namespace (atomic); ``check_only``:
    ``nft -c``, the kernel checks it and nothing is changed. ``source`` names the text in
    nft's error (instead of ``/dev/stdin``)."""
    if not transaction:
        return
    argv = [nft_tool(), *(["-c"] if check_only else []), "-f", "-"]
    proc = netns.run(name, argv, input_text=transaction, check=False)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        first = msg[0] if msg else f"exit {proc.returncode}"
        if source:
            first = first.replace("/dev/stdin", source, 1)
        raise BackendError(f"nft -f refused the transaction (nothing was changed): {first}",
                           where=f"netns {name}")


def load_file(name: str, text: str, source: str, *, dry_run: bool = False) -> NftResult:
    """``apply --rules FILE``: load an ``nft -f`` file that touches only kube-proxy's tables
    (refused, naming the line and table, otherwise). A transaction (commands) is sent as it
    is; a listing (``table ip kube-proxy { ... }`` blocks, as ``nft list`` or ``save --format
    nft`` print them) replaces those tables whole, in the same atomic transaction. With
    ``dry_run`` the kernel only checks it (``nft -c``)."""
    from netproxy.backend import nftfile, nftrecord

    found = nftfile.check(text, source)
    result = NftResult(name, found.families, operations=found.statements,
                       full_operations=found.statements, state="file", rules_file=source,
                       listing=found.listing)
    if found.listing:  # on line 1, so that nft's line numbers stay the file's
        text = "".join(f"add table {f} {TABLE}; delete table {f} {TABLE}; "
                       for f in found.tables) + text
    t0 = time.perf_counter()
    if not dry_run:
        for family in NFT_FAMILY:
            nftrecord.forget(name, family)
    load(name, text, source=source, check_only=dry_run)
    result.seconds["nft"] = time.perf_counter() - t0
    return result


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
    state: str = "read"
    """Where the kernel's current table came from: ``record`` (the last apply's record, the
    namespace unchanged since), ``read`` (``nft list table``) or ``fresh`` (no table)."""
    reread_reason: str = ""
    """Why the table was read back rather than taken from the record."""
    recorded: bool = False
    """A record of the result was kept for the next apply."""
    rules_file: str = ""
    """``apply --rules FILE``: the file loaded."""
    listing: bool = False
    """That file is a listing (tables replaced whole), not a transaction."""
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.operations > 0 or self.stale_chains > 0

    def to_json(self) -> dict[str, Any]:
        return {"netns": self.netns, "mode": "nftables", "families": self.families,
                "changed": self.changed, "operations": self.operations,
                "full_sync_operations": self.full_operations,
                "stale_chains": self.stale_chains, "fresh": self.fresh,
                "full": self.full, "state": self.state, "reread_reason": self.reread_reason,
                "recorded": self.recorded,
                **({"rules_file": self.rules_file, "listing": self.listing}
                   if self.rules_file else {}),
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}

    def source(self) -> str:
        """Where the current table came from, for the summary line."""
        if self.state == "record":
            return "state from the last apply's record"
        if self.state == "read":
            return f"table read back: {self.reread_reason}" if self.reread_reason else \
                "table read back"
        return ""

    def summary(self) -> str:
        tables = " and ".join(f"table {NFT_FAMILY[f]} {TABLE}" for f in self.families)
        source = f"; {self.source()}" if self.source() else ""
        if self.rules_file:
            how = "replaced by the listing" if self.listing else "changed by the transaction"
            return (f"netns {self.netns}: {tables} {how} {self.rules_file} with nft -f "
                    f"({self.operations} statement{'s' if self.operations != 1 else ''}) in "
                    f"{sum(self.seconds.values()):.2f} s")
        if not self.changed:
            return f"netns {self.netns}: {tables} already as compiled; nothing sent{source}"
        how = "full sync" if self.full or self.fresh else "changes only"
        stale = f", deleting {self.stale_chains} stale chains" if self.stale_chains else ""
        return (f"netns {self.netns}: {tables} loaded with nft -f ({how}: {self.operations} of "
                f"{self.full_operations} operations{stale}) in "
                f"{sum(self.seconds.values()):.2f} s{source}")


@dataclass(slots=True)
class KernelTables:
    """The namespace's kube-proxy tables before the apply, as ``compile --existing-rules``
    takes a node's listing: ``tables[(nft family, "kube-proxy")]`` is a parsed listing's
    table or the last apply's recorded :class:`~netproxy.compiler.nftables.existing.KernelTable`."""

    tables: dict[tuple[str, str], Any] = field(default_factory=dict)

    def table(self, family: str, name: str) -> Any:
        return self.tables[(family, name)]


def kernel_tables(name: str, families: list[str], generation_id: int | None, result: NftResult,
                  *, reread: bool) -> KernelTables:
    """The current kube-proxy tables of ``families``: from the last apply's record while the
    namespace's generation id is the recorded one, else read back with ``nft list table``."""
    from netproxy.backend import nftrecord
    from netproxy.parser.nftables import parse_nft

    current = KernelTables()
    missing: list[str] = []
    reasons: list[str] = []
    for family in families:
        if reread or generation_id is None:
            recorded, why = None, ("--reread" if reread else "no nf_tables generation id")
        else:
            recorded, why = nftrecord.load(name, family, generation_id)
        if recorded is None:
            missing.append(family)
            reasons.append(why)
        else:
            current.tables[(NFT_FAMILY[family], TABLE)] = recorded
    if missing:
        present = "".join(t for t in (read_table(name, f) for f in missing) if t)
        if present:
            listing = parse_nft(present, source=f"netns {name}", strict=True)
            current.tables.update(listing.tables)
            result.reread_reason = "; ".join(dict.fromkeys(reasons))
    result.fresh = not current.tables
    result.state = ("fresh" if result.fresh else "read" if result.reread_reason
                    else "record")
    return current


def stale_in_same_transaction() -> bool:
    """Can stale chains be deleted in the transaction that drops the map elements pointing to
    them? Since Linux 6.2; before it kube-proxy (and apply) deletes them in a second one."""
    release = os.uname().release.split(".")
    try:
        return (int(release[0]), int(release[1].split("-")[0])) >= (6, 2)
    except (IndexError, ValueError):
        return False


def apply_nftables(name: str, families: list[str], compile_for: Callable[[Any], list[Any]],
                   *, full: bool = False, dry_run: bool = False,
                   reread: bool = False) -> tuple[NftResult, str]:
    """Take the namespace's kube-proxy tables (the last apply's record while nothing changed
    since, else read back), compile against them (``compile_for(tables)`` gives one
    :class:`~netproxy.compiler.nftables.Table` per family, as kube-proxy's first sync on a
    node holding them; ``tables`` is None on a fresh namespace), and send what changed
    (``full``: the whole full-sync transaction) in one ``nft -f``, stale service chains
    deleted in it (kernels before 6.2: in a second one). Then record the result.
    Returns the result and the transaction text (sent, or with ``dry_run`` only shown)."""
    from netproxy.backend import nftrecord
    from netproxy.compiler.nftables.existing import kernel_after
    from netproxy.compiler.nftables.partial import changed_lines, delete_chains, stale_chains

    result = NftResult(name, families, full=full)
    t0 = time.perf_counter()
    before = _generation(name)
    current = kernel_tables(name, families, before, result, reread=reread)
    t1 = time.perf_counter()
    tables = compile_for(current if current.tables else None)
    lines: list[str] = []
    stale = ""
    gone: list[list[str]] = []
    for table in tables:
        lines += table.lines if full else changed_lines(table)
        result.full_operations += len(table.lines)
        gone.append(stale_chains(table))
        stale += delete_chains(table, gone[-1])
    transaction = "".join(f"{line}\n" for line in lines)
    result.operations = len(lines)
    result.stale_chains = stale.count("\n")
    t2 = time.perf_counter()
    result.seconds = {"read": t1 - t0, "compile": t2 - t1}
    if dry_run:
        return result, transaction + stale
    batches = [transaction + stale] if stale_in_same_transaction() else [transaction, stale]
    batches = [b for b in batches if b]
    try:
        for batch in batches:
            load(name, batch)
    except BaseException:
        for family in families:  # a second transaction failed: the kernel is part way
            nftrecord.forget(name, family)
        raise
    t3 = time.perf_counter()
    result.seconds["nft"] = t3 - t2
    after = _generation(name)
    if before is not None and after is not None and before <= after <= before + len(batches):  # nobody else committed meanwhile
        for family, table, deleted in zip(families, tables, gone, strict=True):
            nftrecord.store(name, family, kernel_after(table, deleted), after)
        for family in NFT_FAMILY:
            if family not in families:
                nftrecord.restamp(name, family, before, after)
        result.recorded = True
    else:
        for family in families:
            nftrecord.forget(name, family)
    result.seconds["record"] = time.perf_counter() - t3
    return result, transaction + stale


def _generation(name: str) -> int | None:
    from netproxy.backend import nftrecord

    try:
        return nftrecord.generation(name)
    except OSError:
        return None


def cleanup(name: str) -> list[str]:
    """Delete kube-proxy's tables (both families) from the namespace, as kube-proxy does when
    it starts in another mode; returns the tables deleted."""
    from netproxy.backend import nftrecord

    gone = []
    for family, nft_family in NFT_FAMILY.items():
        nftrecord.forget(name, family)
        if read_table(name, family) is not None:
            load(name, f"delete table {nft_family} {TABLE}\n")
            gone.append(f"{nft_family} {TABLE}")
    return gone
