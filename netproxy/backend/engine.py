"""Apply, clean up and read back: plan, send, verify, and roll back on failure.

``iptables-restore`` commits table by table, so a payload whose second table is rejected
has already changed the first. When a restore fails the engine reads the namespace again
and restores the owned parts it had before, so the namespace keeps its previous rules.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Protocol

from netproxy.backend import xtables
from netproxy.backend.plan import Plan, make_plan
from netproxy.backend.savetext import TextState, split_saved
from netproxy.errors import BackendError
from netproxy.netfilter.model import Ruleset


class Backend(Protocol):
    """How rules get into and out of one namespace."""

    netns: str

    @property
    def label(self) -> str: ...

    def read(self, *, counters: bool = False) -> str: ...

    def send(self, plan: Plan, desired: Ruleset | None) -> xtables.RestoreFailure | None: ...


@dataclass(slots=True)
class RestoreBackend:
    """``iptables-restore --noflush`` / ``iptables-save`` of one variant, in a namespace."""

    netns: str
    tools: xtables.Xtables

    @property
    def label(self) -> str:
        return self.tools.restore_bin

    def read(self, *, counters: bool = False) -> str:
        return xtables.save(self.netns, self.tools, counters=counters)

    def send(self, plan: Plan, desired: Ruleset | None) -> xtables.RestoreFailure | None:
        return xtables.restore(self.netns, self.tools, plan.payload)


@dataclass(slots=True)
class ApplyResult:
    netns: str
    backend: str
    mode: str
    counts: dict[str, int] = field(default_factory=dict)
    changed: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)

    def summary(self) -> str:
        c = self.counts
        if not self.changed:
            return f"netns {self.netns}: already up to date ({self.backend}, nothing sent)"
        return (
            f"netns {self.netns}: {self.mode} apply with {self.backend}: "
            f"{c.get('chains_written', 0)} chains written, {c.get('chains_deleted', 0)} deleted, "
            f"{c.get('builtin_chains_fixed', 0)} built-in chains' jumps fixed "
            f"({c.get('payload_lines', 0)} payload lines, {self.seconds.get('total', 0):.2f}s)"
        )


def current_state(backend: Backend) -> TextState:
    return split_saved(backend.read(), source=f"{backend.label.replace('restore', 'save')} in {backend.netns}")


def apply_state(
    backend: Backend,
    desired: TextState,
    *,
    model: Ruleset | None = None,
    full: bool = False,
    mode: str | None = None,
) -> ApplyResult:
    """Bring the owned part of the namespace to ``desired``; partial unless ``full``."""
    t0 = time.perf_counter()
    before = current_state(backend)
    t1 = time.perf_counter()
    plan = make_plan(before, desired, full=full)
    result = ApplyResult(backend.netns, backend.label, mode or ("full" if full else "partial"))
    result.counts = plan.counts()
    result.ignored = plan.ignored
    if not plan.empty():
        failure = backend.send(plan, model)
        if failure is not None:
            rolled = _roll_back(backend, before)
            raise BackendError(describe_failure(backend, plan, failure, rolled))
        result.changed = True
    t2 = time.perf_counter()
    result.seconds = {"read": t1 - t0, "plan": 0.0, "send": t2 - t1, "total": t2 - t0}
    return result


def cleanup(backend: Backend) -> ApplyResult:
    """Remove every owned chain and the built-in jumps to them; leave everything else."""
    return apply_state(backend, {}, mode="cleanup")


def _roll_back(backend: Backend, before: TextState) -> bool:
    """Put the owned parts back the way they were; True when that worked (or was not needed)."""
    try:
        after = current_state(backend)
        undo = make_plan(after, before)
        if undo.empty():
            return True
        return backend.send(undo, None) is None
    except BackendError:
        return False


_QUOTED = re.compile(r"['`]([^'`]+)['`]")


def describe_failure(backend: Backend, plan: Plan, failure: xtables.RestoreFailure, rolled_back: bool) -> str:
    """One line: who rejected what, the failing payload line with its context, the reason."""
    state = "namespace unchanged" if rolled_back else "ROLLBACK FAILED, namespace may be half-applied"
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
