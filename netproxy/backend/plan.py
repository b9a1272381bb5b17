"""Work out the restore payload that turns the current state into the desired one.

Like kube-proxy's syncs, the payload is for ``iptables-restore --noflush``: it names only
owned chains (a ``:CHAIN`` line flushes and rewrites that chain, nothing else is touched),
deletes stale owned chains with ``-X`` and fixes the jump rules in built-in chains with
``-D``/``-I``. A partial plan sends only chains whose rules differ; the end state is the
same as a full plan's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netproxy.backend.owned import owned_chain, owned_jump
from netproxy.backend.savetext import ChainText, TextState


@dataclass(slots=True)
class TablePlan:
    name: str
    write: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    jumps: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    """built-in chain → (owned jump lines now, owned jump lines wanted)."""

    def empty(self) -> bool:
        return not (self.write or self.delete or self.jumps)


@dataclass(slots=True)
class Plan:
    tables: list[TablePlan] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    """The payload, one entry per line (no newline)."""
    context: list[str] = field(default_factory=list)
    """Per payload line: ``table T chain C`` plus the rule's origin, for error messages."""
    ignored: list[str] = field(default_factory=list)
    """Desired chains left out because kube-proxy does not own them (``table/chain``)."""

    @property
    def payload(self) -> str:
        return "".join(line + "\n" for line in self.lines)

    def empty(self) -> bool:
        return all(t.empty() for t in self.tables)

    def counts(self) -> dict[str, int]:
        return {
            "chains_written": sum(len(t.write) for t in self.tables),
            "chains_deleted": sum(len(t.delete) for t in self.tables),
            "builtin_chains_fixed": sum(len(t.jumps) for t in self.tables),
            "payload_lines": len(self.lines),
        }


def _jumps(chain: ChainText | None) -> list[str]:
    return [r for r in chain.rules if owned_jump(r)] if chain is not None else []


def plan_table(name: str, current: dict[str, ChainText], desired: dict[str, ChainText], *, full: bool) -> TablePlan:
    plan = TablePlan(name)
    want = {n: c for n, c in desired.items() if c.policy is None and owned_chain(n)}
    have = {n: c for n, c in current.items() if c.policy is None and owned_chain(n)}
    for cname, chain in want.items():
        old = have.get(cname)
        if full or old is None or old.rules != chain.rules:
            plan.write.append(cname)
    plan.delete = [n for n in have if n not in want]
    builtins = [n for n, c in desired.items() if c.policy is not None]
    builtins += [n for n, c in current.items() if c.policy is not None and n not in builtins]
    for cname in builtins:
        now, wanted = _jumps(current.get(cname)), _jumps(desired.get(cname))
        if now != wanted:
            plan.jumps[cname] = (now, wanted)
    return plan


def _body(line: str, chain: str) -> str:
    return line[len(f"-A {chain} ") :]


def make_plan(current: TextState, desired: TextState, *, full: bool = False) -> Plan:
    """The plan from ``current`` to ``desired`` (only owned parts of ``desired`` count)."""
    plan = Plan()
    names = list(desired) + [t for t in current if t not in desired]
    for tname in names:
        dchains = desired.get(tname, {})
        plan.ignored += [f"{tname}/{n}" for n, c in dchains.items() if c.policy is None and not owned_chain(n)]
        tplan = plan_table(tname, current.get(tname, {}), dchains, full=full)
        plan.tables.append(tplan)
        if tplan.empty():
            continue
        _emit(plan, tplan, dchains)
    return plan


def _emit(plan: Plan, tplan: TablePlan, dchains: dict[str, ChainText]) -> None:
    t = tplan.name

    def add(line: str, where: str) -> None:
        plan.lines.append(line)
        plan.context.append(where)

    add(f"*{t}", f"table {t}")
    for cname in tplan.write + tplan.delete:
        add(f":{cname} - [0:0]", f"table {t} chain {cname}")
    for cname, (now, _) in tplan.jumps.items():
        for line in now:
            add(f"-D {cname} {_body(line, cname)}", f"table {t} chain {cname} (removing an old jump)")
    for cname in tplan.write:
        chain = dchains[cname]
        for line, origin in zip(chain.rules, chain.origins or [""] * len(chain.rules), strict=False):
            add(line, f"table {t} chain {cname}" + (f" from {origin}" if origin else ""))
    for cname, (_, wanted) in tplan.jumps.items():
        found = dchains.get(cname)
        origins = dict(zip(found.rules, found.origins, strict=False)) if found else {}
        for pos, line in enumerate(wanted, 1):
            origin = origins.get(line, "")
            add(f"-I {cname} {pos} {_body(line, cname)}", f"table {t} chain {cname}" + (f" from {origin}" if origin else ""))
    for cname in tplan.delete:
        add(f"-X {cname}", f"table {t} chain {cname} (deleting a stale chain)")
    add("COMMIT", f"table {t} (commit)")
