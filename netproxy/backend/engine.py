"""Apply, clean up and read back: plan, send, record, and roll back on failure.

``iptables-restore`` commits table by table, so a payload whose second table is rejected
has already changed the first. Tables are sent smallest first; before sending, the engine
holds the full text of every table but the last (read cheaply with ``-t TABLE`` when the
rest of the state came from the record), and on failure it restores the tables that had
already committed, so the namespace keeps its previous rules.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Protocol

from netproxy.backend import netns, nfacct, record, xtables
from netproxy.backend.fingerprint import fingerprint
from netproxy.backend.owned import owned_jump
from netproxy.backend.plan import Plan, make_plan, owned_keys
from netproxy.backend.savetext import ChainText, KeyedChains, TextState, split_saved
from netproxy.errors import BackendError
from netproxy.netfilter.model import Ruleset
from netproxy.progress import Progress, progress


class Backend(Protocol):
    """How rules get into and out of one namespace."""

    netns: str

    @property
    def family(self) -> str: ...

    @property
    def label(self) -> str: ...

    @property
    def variant(self) -> str: ...

    @property
    def supports_replace(self) -> bool: ...

    def read(self, *, counters: bool = False, table: str | None = None) -> str: ...

    def send(self, plan: Plan, desired: Ruleset | None) -> xtables.RestoreFailure | None: ...


@dataclass(slots=True)
class RestoreBackend:
    """``iptables-restore`` / ``iptables-save`` of one variant, in a namespace."""

    netns: str
    tools: xtables.Xtables

    @property
    def family(self) -> str:
        return self.tools.family

    @property
    def label(self) -> str:
        return self.tools.restore_bin

    @property
    def variant(self) -> str:
        return self.tools.variant

    @property
    def supports_replace(self) -> bool:
        return True

    def read(self, *, counters: bool = False, table: str | None = None) -> str:
        try:
            return xtables.save(self.netns, self.tools, counters=counters, table=table)
        except netns.ToolCrashed as crash:
            count = record.chain_count(record.record_path(self.netns, self.variant, self.family))
            what = f"{count:,} chains" if count else "the rules"
            where = f" of table {table}" if table else ""
            raise crash.doing_this(f"reading {what}{where}") from None

    def send(self, plan: Plan, desired: Ruleset | None) -> xtables.RestoreFailure | None:
        return xtables.restore(self.netns, self.tools, plan.payload, noflush=plan.noflush)


@dataclass(slots=True)
class ApplyResult:
    netns: str
    backend: str
    mode: str
    counts: dict[str, int] = field(default_factory=dict)
    changed: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    state_from: str = "read"
    """``read`` (rules read back) or ``record`` (the record of the last apply was valid)."""
    noflush: bool = True

    def summary(self) -> str:
        c = self.counts
        if not self.changed:
            return f"netns {self.netns}: already up to date ({self.backend}, nothing sent)"
        done = {"cleanup": "cleaned up", "full": "rewrote every kube-proxy chain"}.get(
            self.mode, "applied the chains that differ")
        how = ("--noflush, other rules untouched" if self.noflush else
               "rewriting each table it changed whole, as they hold only kube-proxy's rules")
        state = "; state from the last apply's record" if self.state_from == "record" else ""
        return (
            f"netns {self.netns}: {done} with {self.backend} ({how}): "
            f"{c.get('chains_written', 0)} chains written, {c.get('chains_deleted', 0)} deleted, "
            f"{c.get('builtin_chains_fixed', 0)} built-in chains' jumps fixed "
            f"({c.get('payload_lines', 0)} payload lines, {self.seconds.get('total', 0):.2f}s{state})"
        )


def current_state(backend: Backend, table: str | None = None) -> TextState:
    what = backend.label.replace("restore", "save")
    return split_saved(backend.read(table=table), source=f"{what} in {backend.netns}")


def apply_state(
    backend: Backend,
    desired: TextState,
    *,
    model: Ruleset | None = None,
    full: bool = False,
    reread: bool = False,
    mode: str | None = None,
) -> ApplyResult:
    """Bring the owned part of the namespace to ``desired``; partial unless ``full``.

    The current state comes from the record of the last apply when the kernel fingerprint
    still matches it, else from reading the rules (always with ``full`` or ``reread``).
    """
    with progress(f"{mode or 'apply'}: netns {backend.netns}") as bar:
        return _apply_state(bar, backend, desired, model=model, full=full, reread=reread, mode=mode)


def _apply_state(bar: Progress, backend: Backend, desired: TextState, *, model: Ruleset | None,
                 full: bool, reread: bool, mode: str | None) -> ApplyResult:
    t0 = time.perf_counter()
    path = record.record_path(backend.netns, backend.variant, backend.family)
    mark = fingerprint(backend.netns, backend.variant, backend.family)
    loaded = None if (full or reread) else record.load(path, mark)
    if loaded is not None:
        before, foreign = loaded
    else:
        bar.stage(f"reading the rules of netns {backend.netns} "
                  f"({backend.label.replace('restore', 'save')})")
        before = current_state(backend)
        foreign = record.foreign_of(before)
    t1 = time.perf_counter()
    plan = make_plan(before, desired, full=full, allow_replace=backend.supports_replace, foreign=foreign)
    result = ApplyResult(backend.netns, backend.label, mode or ("full" if full else "partial"))
    result.counts = plan.counts()
    result.ignored = plan.ignored
    result.state_from = "record" if loaded is not None else "read"
    result.noflush = plan.noflush
    t2 = time.perf_counter()
    if not plan.empty():
        busy = [t.name for t in plan.tables if not t.empty()]
        busy.sort(key=lambda name: plan.lines.index(f"*{name}"))
        if loaded is not None and mode != "cleanup":
            # full text of the tables that commit before the last one, to roll back with (a
            # cleanup is not rolled back: run it again; it needs nothing read back)
            for name in busy[:-1]:
                before[name] = current_state(backend, name).get(name, {})
        nfacct.ensure(backend.netns, nfacct.names_in(plan.lines))
        bar.stage(f"sending {len(plan.lines):,} payload lines to {backend.label} in netns "
                  f"{backend.netns}")
        try:
            failure = backend.send(plan, model)
        except BackendError:
            record.forget(path)  # the tool died part way: what the kernel holds is unknown
            raise
        if failure is not None:
            record.forget(path)
            rolled = _roll_back(backend, plan, failure, before) if mode != "cleanup" else None
            raise BackendError(describe_failure(backend, plan, failure, rolled))
        result.changed = True
    t3 = time.perf_counter()
    record.store(path, _after(before, desired), foreign,
                 fingerprint(backend.netns, backend.variant, backend.family))
    t4 = time.perf_counter()
    result.seconds = {"state": t1 - t0, "plan": t2 - t1, "send": t3 - t2, "record": t4 - t3, "total": t4 - t0}
    return result


def cleanup(backend: Backend, *, reread: bool = False) -> ApplyResult:
    """Remove every owned chain and the built-in jumps to them; leave everything else.

    While the record of the last apply is valid, nothing is read back: the record names the
    owned chains and jumps (reading a 10,000-Service node back can crash iptables-nft-save).
    """
    return apply_state(backend, {}, mode="cleanup", reread=reread)


def _after(before: TextState, desired: TextState) -> TextState:
    """The owned state once ``desired`` is in place (what the record keeps): per table the
    built-in chains with their policies and owned jumps, and the owned chains' digests."""
    state: TextState = {}
    for tname in list(desired) + [t for t in before if t not in desired]:
        old, new = before.get(tname, {}), desired.get(tname, {})
        builtins: dict[str, ChainText] = {}
        for cname in [n for n, c in old.items() if c.policy is not None] + [
            n for n, c in new.items() if c.policy is not None and n not in old
        ]:
            policy = old[cname].policy if cname in old else new[cname].policy
            jumps = [r for r in new[cname].rules if owned_jump(r)] if cname in new else []
            builtins[cname] = ChainText(cname, policy, jumps)
        state[tname] = KeyedChains(builtins, owned_keys(new))
    return state


def _roll_back(backend: Backend, plan: Plan, failure: xtables.RestoreFailure, before: TextState) -> bool:
    """Put back the tables that committed before the failing line; True when that worked."""
    committed = []
    for i, line in enumerate(plan.lines[: max(failure.line - 1, 0)]):
        if line.startswith("*") and "COMMIT" in plan.lines[i: failure.line - 1]:
            end = plan.lines.index("COMMIT", i)
            if end < failure.line - 1:
                committed.append(line[1:])
    try:
        for table in committed:
            now = current_state(backend, table)
            undo = make_plan(now, {table: before.get(table, {})})
            if not undo.empty() and backend.send(undo, None) is not None:
                return False
        return True
    except BackendError:
        return False


_QUOTED = re.compile(r"['`]([^'`]+)['`]")


def describe_failure(backend: Backend, plan: Plan, failure: xtables.RestoreFailure,
                     rolled_back: bool | None) -> str:
    """One line: who rejected what, the failing payload line with its context, the reason
    (``rolled_back`` None: nothing was rolled back, as for a cleanup)."""
    state = ("namespace unchanged" if rolled_back else
             "tables before the failing one are cleaned; run --cleanup again" if rolled_back is None
             else "ROLLBACK FAILED, namespace may be half-applied")
    index = failure.line - 1
    text = plan.lines[index] if 0 <= index < len(plan.lines) else ""
    where = plan.context[index] if 0 <= index < len(plan.lines) else ""
    if text == "COMMIT":
        # commit-time errors (nft) point at COMMIT: find the rule naming the culprit
        names = _QUOTED.findall(failure.message)
        table_start = max(i for i in range(index + 1) if plan.lines[i].startswith("*"))
        for i in range(table_start, index):
            if any(n in plan.lines[i].split() for n in names):
                index, text, where = i, plan.lines[i], plan.context[i]
                break
    shown = f"line {index + 1} ({where}): {text}" if text else f"line {failure.line}"
    return (
        f"{backend.label} in netns {backend.netns} rejected the rules ({state}): "
        f"{shown}: {failure.message}"
    )
