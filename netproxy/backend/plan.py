"""Work out the restore payload that turns the current state into the desired one.

Like kube-proxy's syncs, the payload is for ``iptables-restore --noflush``: it names only
owned chains (a ``:CHAIN`` line flushes and rewrites that chain, nothing else is touched),
deletes stale owned chains with ``-X`` and fixes the jump rules in built-in chains with
``-D``/``-I``. A partial plan sends only chains whose rules differ; the end state is the
same as a full plan's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netproxy.backend.owned import foreign_content, owned_chain, owned_jump
from netproxy.backend.savetext import ChainText, TextState


@dataclass(slots=True)
class TablePlan:
    name: str
    write: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    jumps: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    """built-in chain → (owned jump lines now, owned jump lines wanted)."""
    wanted: int = 0
    """How many owned user chains the desired table has."""

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
    noflush: bool = True
    """False for a whole-table rewrite (only chosen for tables holding nothing but ours)."""

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


def chain_keys(chains: dict[str, ChainText]) -> dict[str, str]:
    """Digest of every owned user chain among ``chains`` (their rules must be there)."""
    return {n: c.key() for n, c in chains.items() if c.policy is None and owned_chain(n)}


def owned_keys(chains: dict[str, ChainText]) -> dict[str, str]:
    """Digest of every owned user chain (a recorded table carries them ready-made)."""
    ready = getattr(chains, "owned_keys", None)
    if ready is not None:
        return dict(ready)
    return chain_keys(chains)


def plan_table(name: str, current: dict[str, ChainText], desired: dict[str, ChainText], *, full: bool) -> TablePlan:
    plan = TablePlan(name)
    have = owned_keys(current)
    want = chain_keys(desired)
    plan.wanted = len(want)
    for cname, key in want.items():
        old = have.pop(cname, None)
        if full or old != key:
            plan.write.append(cname)
    plan.delete = list(have)  # owned chains no longer wanted
    builtins = [n for n, c in desired.items() if c.policy is not None]
    builtins += [n for n, c in current.items() if c.policy is not None and n not in builtins]
    for cname in builtins:
        now, wanted = _jumps(current.get(cname)), _jumps(desired.get(cname))
        if now != wanted:
            plan.jumps[cname] = (now, wanted)
    return plan


def _body(line: str, chain: str) -> str:
    return line[len(f"-A {chain} ") :]


def make_plan(current: TextState, desired: TextState, *, full: bool = False,
              allow_replace: bool = False, foreign: dict[str, bool] | None = None) -> Plan:
    """The plan from ``current`` to ``desired`` (only owned parts of ``desired`` count).

    With ``allow_replace``, when most owned chains must be written anyway and every table
    touched holds nothing but kube-proxy's chains and jumps, the plan rewrites those tables
    whole (``iptables-restore`` without ``--noflush``): the same end state, and far faster
    on iptables-nft, whose ``--noflush`` mode slows down quadratically with the chain count.
    ``foreign`` says which tables hold other software's rules (default: look at ``current``).
    Tables are emitted smallest first, so the biggest one (nat) commits last.
    """
    plan = Plan()
    names = list(desired) + [t for t in current if t not in desired]
    for tname in names:
        dchains = desired.get(tname, {})
        plan.ignored += [f"{tname}/{n}" for n, c in dchains.items()
                         if c.policy is None and not owned_chain(n)]
        plan.tables.append(plan_table(tname, current.get(tname, {}), dchains, full=full))
    if foreign is None:
        foreign = {t: foreign_content(chains) for t, chains in current.items()}
    busy = sorted((t for t in plan.tables if not t.empty()), key=lambda t: _size(current, desired, t.name))
    if allow_replace and busy and _replaceable(busy, foreign):
        plan.noflush = False
        for tplan in busy:
            _emit_whole(plan, tplan, current.get(tplan.name, {}), desired.get(tplan.name, {}))
        return plan
    for tplan in busy:
        _emit(plan, tplan, desired.get(tplan.name, {}))
    return plan


def _size(current: TextState, desired: TextState, table: str) -> int:
    return max(len(current.get(table, {})), len(desired.get(table, {})))


def _replaceable(busy: list[TablePlan], foreign: dict[str, bool]) -> bool:
    if any(foreign.get(t.name, False) for t in busy):
        return False
    return sum(len(t.write) for t in busy) * 2 >= sum(t.wanted for t in busy)


def _emit_whole(plan: Plan, tplan: TablePlan, current: dict[str, ChainText], dchains: dict[str, ChainText]) -> None:
    """The table rewritten whole: built-ins keep their policies, then every owned chain."""
    t = tplan.name
    tplan.write = [n for n, c in dchains.items() if c.policy is None and owned_chain(n)]
    builtins = [n for n, c in current.items() if c.policy is not None]
    builtins += [n for n, c in dchains.items() if c.policy is not None and n not in builtins]
    plan.lines.append(f"*{t}")
    plan.context.append(f"table {t}")
    for cname in builtins:
        policy = current[cname].policy if cname in current else "ACCEPT"
        plan.lines.append(f":{cname} {policy} [0:0]")
        plan.context.append(f"table {t} chain {cname}")
    for cname in tplan.write:
        plan.lines.append(f":{cname} - [0:0]")
        plan.context.append(f"table {t} chain {cname}")
    for cname in builtins + tplan.write:
        chain = dchains.get(cname)
        if chain is None:
            continue
        origins = chain.origins or [""] * len(chain.rules)
        for line, origin in zip(chain.rules, origins, strict=False):
            if chain.policy is not None and not owned_jump(line):
                continue
            plan.lines.append(line)
            plan.context.append(f"table {t} chain {cname}" + (f" from {origin}" if origin else ""))
    plan.lines.append("COMMIT")
    plan.context.append(f"table {t} (commit)")


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
