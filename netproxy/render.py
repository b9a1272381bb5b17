"""Rule model to text, through the jinja2 templates in ``templates/``.

Python formats single lines (:func:`rule_text`); the templates lay out tables, chain lines and
rule lines. Two layouts exist: what ``iptables-save`` prints (canonical spelling, built-in
chains first, user chains sorted) and an ``iptables-restore`` payload (rules as written, in the
order they were written, with ``-X`` deletions).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from itertools import chain as chain_lines
from operator import itemgetter
from pathlib import Path
from typing import Any, cast

import jinja2

from netproxy.gcpause import paused_gc
from netproxy.netfilter import extensions as ext
from netproxy.netfilter.extensions import BUILTIN_SHORT
from netproxy.netfilter.model import BUILTIN_CHAINS, Chain, Option, Rule, Ruleset, Table, Target
from netproxy.netfilter.saveform import (
    PROTOCOL_NAMES,
    RESPELLED_TARGETS,
    normalized,
    save_layout,
    saved_target,
    to_saved,
)
from netproxy.netfilter.values import is_ipv4_host, saved_address

_SAVE_STRING_OPTIONS = frozenset({"comment", "log-prefix", "nflog-prefix", "string", "path"})
MAX_SHAPE_OPTIONS = 200
"""Longer match parts (no real rule has them) are formatted by the general code."""
_BARE_SAVE = re.compile(r"[A-Za-z0-9_-]+").fullmatch
"""libxtables prints a string bare iff it is only these characters (and not empty)."""
RESTORE_SPECIAL = re.compile(r"[ \t\"'\\]").search
"""Characters iptables-restore's tokenizer needs quoted (:func:`restore_word` quotes a word
holding any of them, or an empty one, and escapes only backslashes and double quotes)."""


def _save_string(value: str) -> str:
    """libxtables' quoting: bare iff only ``[A-Za-z0-9_-]``, else double quotes with escapes."""
    if _BARE_SAVE(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'")
    return f'"{escaped}"'


def restore_word(value: str) -> str:
    """Quote a word for iptables-restore only where its tokenizer needs it."""
    if value and not RESTORE_SPECIAL(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _option_text(opt: Option, saved: bool) -> str:
    """The words of one option, joined (what ``iptables-save`` or ``iptables-restore`` spells)."""
    module, name, args, negated = opt
    if not module:
        head = ("! -" if negated else "-") + BUILTIN_SHORT.get(name, name)
        return " ".join((head, *args)) if args else head
    if not name:
        return "-m " + module
    head = ("! --" if negated else "--") + name
    if not args:
        return head
    if not saved:
        return " ".join((head, *map(restore_word, args)))
    if name in _SAVE_STRING_OPTIONS:
        return " ".join((head, *map(_save_string, args)))
    if module == "nfacct":
        # libxt_nfacct prints " --nfacct-name " and then the name through
        # xtables_save_string, which adds its own leading space: two spaces in the output.
        return " ".join((head, *(" " + a for a in args)))
    return " ".join((head, *args))


_shape_key = itemgetter(0, 1, 3)
"""A rule's items by (module, name, negated): what decides how its match part is laid out."""


class _MatchText:
    """The text of a rule's match part, one generated function per shape of match part.

    A ruleset of 376,000 rules has a few dozen shapes (the same items in the same order, with
    other addresses, ports and comments). For each shape the words around the values and, for
    the save spelling, the canonical order (:func:`~netproxy.netfilter.saveform.save_layout`)
    are worked out once and compiled into one function that only indexes the items and quotes
    or normalizes the values. Match parts that do not fit the generated code (an item with
    other than one argument, the ``recent`` module's save defaults) take the general path.
    """

    def __init__(self, saved: bool, family: str, iptables_version: tuple[int, ...],
                 targets: bool = False) -> None:
        self.saved = saved
        self.targets = targets
        """Formatting a target's options (kept in written order) rather than match parts."""
        self.reorder = saved and not targets
        self.family = family
        self.version = iptables_version
        self.shapes: dict[tuple[tuple[str, str, bool], ...], Callable[[tuple[Option, ...]], str | None]] = {}

    def __call__(self, matches: tuple[Option, ...]) -> str:
        key = tuple(map(_shape_key, matches))
        fn = self.shapes.get(key)
        if fn is None:
            fn = self.shapes[key] = self._compile(key)
        text = fn(matches)
        return self._general(matches) if text is None else text

    def _general(self, matches: tuple[Option, ...]) -> str:
        if self.reorder:
            matches = to_saved(Rule(matches), self.family, self.version).matches
        return " ".join(_option_text(opt, self.saved) for opt in matches)

    def _flag(self, module: str, name: str) -> bool:
        """Whether the extension table says option ``name`` takes no argument."""
        if not module:
            extension: ext.Extension | None = ext.BUILTIN_MATCH
        else:
            extension = ext.target(module) if self.targets else ext.match(module)
        spec = extension.lookup(name) if extension is not None else None
        return spec is not None and spec.nargs == 0

    def _compile(self, key: tuple[tuple[str, str, bool], ...]) -> Callable[[tuple[Option, ...]], str | None]:
        if len(key) > MAX_SHAPE_OPTIONS:
            return lambda matches: None  # one long expression would be too deep to compile
        entries: list[object] = list(range(len(key)))
        if self.reorder:
            layout = save_layout(tuple((module, name) for module, name, _ in key), self.family,
                                 self.version)
            if layout is None:
                return lambda matches: None
            entries = list(layout)
        env: dict[str, object] = {"W": restore_word, "S": _save_string, "B": _BARE_SAVE,
                                  "Q": RESTORE_SPECIAL, "A": saved_address, "H": is_ipv4_host, "N": normalized,
                                  "P": PROTOCOL_NAMES, "F": self.family}
        body: list[str] = []
        guards: list[str] = []
        parts: list[str] = []
        for entry in entries:
            if isinstance(entry, Option):  # inserted by the save layout
                parts.append(repr(_option_text(entry, self.saved)))
                continue
            i = cast(int, entry)
            normalize = i < 0
            i = ~i if normalize else i
            module, name, negated = key[i]
            if module and not name:
                parts.append(repr("-m " + module))  # the -m token: its words are fixed
                continue
            head = ("! " if negated else "") + (
                "--" + name if module else "-" + BUILTIN_SHORT.get(name, name))
            if self._flag(module, name):
                guards.append(f"m[{i}][2]")
                parts.append(repr(head))
                continue
            guards.append(f"len(m[{i}][2]) != 1")
            v = f"v{i}"
            if normalize and name in ("source", "destination"):
                body.append(f"{v} = m[{i}][2][0]")
                if self.family == "ipv4":  # saved_address's own fast path, without the call
                    body += [f"if H({v}):", f"    {v} += '/32'", "else:"]
                else:
                    body.append("if True:")
                body += ["    try:", f"        {v} = A({v}, F)", "    except ValueError:",
                         "        pass"]
            elif normalize and name == "protocol":
                body += [f"{v} = m[{i}][2][0].lower()", f"{v} = P.get({v}, {v})"]
            elif normalize:
                body.append(f"{v} = N(m[{i}], F)[2][0]")
            else:
                body.append(f"{v} = m[{i}][2][0]")
                if module and not self.saved:
                    body.append(f"if not {v} or Q({v}): {v} = W({v})")
                elif module and name in _SAVE_STRING_OPTIONS:
                    body.append(f"if not B({v}): {v} = S({v})")
                elif module == "nfacct":
                    body.append(f"{v} = ' ' + {v}")
            parts.append(f"{head + ' '!r} + {v}")
        lines = ["def text(m):"]
        if guards:
            lines.append(f"    if {' or '.join(guards)}: return None")
        lines += [f"    {line}" for line in body]
        joined = " + ' ' + ".join(parts) if parts else "''"
        lines.append(f"    return {joined}")
        exec("\n".join(lines), env)  # noqa: S102 - generated above from known names
        return cast(Callable[[tuple[Option, ...]], str | None], env["text"])


_MATCH_TEXTS: dict[tuple[bool, str, tuple[int, ...], bool], _MatchText] = {}


def _match_text(saved: bool, family: str, iptables_version: tuple[int, ...],
                targets: bool = False) -> _MatchText:
    """The formatter of match parts (``targets``: of target options, kept in order)."""
    key = (saved, family, iptables_version, targets)
    found = _MATCH_TEXTS.get(key)
    if found is None:
        found = _MATCH_TEXTS[key] = _MatchText(saved, family, iptables_version, targets)
    return found


def rule_text(rule: Rule, chain: str, family: str = "ipv4", saved: bool = True,
              iptables_version: tuple[int, ...] = (1, 8, 9)) -> str:
    """One ``-A CHAIN ...`` line; ``saved=True`` gives the ``iptables-save`` spelling."""
    if saved:
        return _save_lines(((chain, (rule,)),), family, iptables_version)[0][0]
    return _restore_lines(((chain, rule),), family)[0]


class _LineParts:
    """What the lines of one table share: the text of every distinct match part seen so far
    (big rulesets share most of them: the ``-m tcp -p tcp`` of every DNAT rule, the
    probability of every n-th endpoint) and the formatters of match parts and targets."""

    def __init__(self, saved: bool, family: str, iptables_version: tuple[int, ...]) -> None:
        self.saved = saved
        self.family = family
        self.match_text = _match_text(saved, family, iptables_version)
        self.option_text = _match_text(saved, family, iptables_version, targets=True)
        self.respelled = RESPELLED_TARGETS if saved else frozenset()
        self.done: dict[tuple[Option, ...], str] = {}
        """Match part -> its text after a space (``""`` for no matches)."""

    def spaced(self, matches: tuple[Option, ...]) -> str:
        """The text of a match part not seen before, remembered in :attr:`done`."""
        fn = self.match_text.shapes.get(tuple(map(_shape_key, matches)))  # usual case inlined
        text = fn(matches) if fn is not None else None
        if text is None:
            text = self.match_text(matches)
        spaced = self.done[matches] = " " + text if text else ""
        return spaced

    def jump(self, target: Target) -> str:
        """`` -j NAME [options]`` (``-g`` for goto), respelled for the save view."""
        if target.name in self.respelled:
            target = cast(Target, saved_target(target, self.family))
        jump = f" -g {target.name}" if target.goto else f" -j {target.name}"
        options = target.options
        if not options:
            return jump
        fn = self.option_text.shapes.get(tuple(map(_shape_key, options)))
        text = fn(options) if fn is not None else None
        return f"{jump} {self.option_text(options) if text is None else text}"


def _restore_lines(writes: Iterable[tuple[str, Rule | None]], family: str) -> list[str]:
    """The payload lines of ``(chain, rule)`` pairs (``rule`` None: a ``-X chain`` deletion)."""
    line = restore_formatter(family)
    out: list[str] = []
    append = out.append
    for chain, rule in writes:
        if rule is None:
            append("-X " + chain)
        elif rule.opaque is not None:
            append(rule.opaque)
        else:
            append(line(chain, rule))
    return out


def _save_lines(chains: Iterable[tuple[str, Iterable[Rule]]], family: str,
                iptables_version: tuple[int, ...], counters: bool = False) -> list[list[str]]:
    """The ``iptables-save`` lines of the rules of every ``(chain name, rules)``, chain by chain.

    The same as :func:`_restore_lines` but for the spelling, and walked chain by chain (a
    loop over rules inside a loop over chains costs less than one pair per rule).
    """
    parts = _LineParts(True, family, iptables_version)
    done, spaced_text, jump, respelled = parts.done, parts.spaced, parts.jump, parts.respelled
    blocks: list[list[str]] = []
    for chain, rules in chains:
        out: list[str] = []
        append = out.append
        for rule in rules:
            if rule.opaque is not None:
                append(rule.opaque)
                continue
            spaced = done.get(rule.matches)
            if spaced is None:
                spaced = spaced_text(rule.matches)
            target = rule.target
            if target is None:
                line = f"-A {chain}{spaced}"
            elif target.options or target.goto or target.name in respelled:
                line = f"-A {chain}{spaced}{jump(target)}"
            else:
                line = f"-A {chain}{spaced} -j {target.name}"
            append(f"{_counters(rule.counters)} {line}" if counters else line)
        blocks.append(out)
    return blocks


def _counters(counters: tuple[int, int] | None) -> str:
    pkts, byts = counters or (0, 0)
    return f"[{pkts}:{byts}]"


def _chain_line(chain: Chain) -> str:
    if chain.counters is None:
        return f":{chain.name} {chain.policy or '-'} [0:0]"
    return f":{chain.name} {chain.policy or '-'} {_counters(chain.counters)}"


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def templates_dir() -> Path:
    """``templates/`` beside the package (source checkout), or the copy installed with it."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "templates", here / "templates"):
        if (candidate / "save.j2").is_file():
            return candidate
    raise FileNotFoundError("netproxy templates not found")


def _save_chains(table: Table) -> list[Chain]:
    builtin_names = BUILTIN_CHAINS.get(table.name, ())
    builtins = [table.chains[n] for n in builtin_names if n in table.chains]
    missing = [Chain(n, "ACCEPT") for n in builtin_names if n not in table.chains]
    builtins = sorted(builtins + missing, key=lambda c: builtin_names.index(c.name))
    # Code point order is UTF-8 byte order, so plain string sorting is strcmp's order.
    # (kept in table order first: a save view is sorted already, and sorting that is linear)
    users = [table.chains[n] for n in sorted([n for n in table.chains if n not in builtin_names])]
    return builtins + users


def text_block(lines: list[str]) -> str:
    """Lines as one block of text, each ending in a newline. ``lines`` is used up: it gets an
    empty last item for the final newline (adding it afterwards would copy a block of 40 MB
    once more) and is emptied afterwards, so its strings are freed before the next copy."""
    if not lines:
        return ""
    lines.append("")
    block = "\n".join(lines)
    lines.clear()
    return block


def _save_table(table: Table, family: str, counters: bool,
                version: tuple[int, ...]) -> dict[str, Any]:
    chains = _save_chains(table)
    # Rules are formatted in the table's own order and only the lines are put in save order:
    # for a table whose chains are in the order they were built (save_view(sort_chains=False))
    # that reads memory in the order it was allocated, a third faster than a walk by
    # chain name through 100,000 hashed KUBE-SEP names.
    blocks = _save_lines(((c.name, c.rules) for c in table.chains.values()), family, version,
                         counters)
    by_name = dict(zip(table.chains, blocks, strict=True))
    lines = list(chain_lines.from_iterable(by_name.get(c.name, ()) for c in chains))
    return {"name": table.name, "chain_lines": text_block([_chain_line(c) for c in chains]),
            "rule_lines": text_block(lines)}


def render_save(ruleset: Ruleset, *, counters: bool = False,
                iptables_version: tuple[int, ...] = (1, 8, 9)) -> str:
    """What ``iptables-save`` (``-c`` with ``counters``) prints for ``ruleset`` (no header
    lines, deterministic)."""
    with paused_gc():
        tables = [_save_table(t, ruleset.family, counters, iptables_version)
                  for t in ruleset.tables.values()]
        return environment().get_template("save.j2").render(tables=tables)


def _restore_table(table: Table, family: str) -> tuple[str, list[str], list[str]]:
    chain_lines = [_chain_line(c) for c in table.chains.values()]
    chain_lines.extend(f":{name} - [0:0]" for name in table.deleted if name not in table.chains)
    writes: Iterable[tuple[str, Rule | None]]
    if table.writes is not None:
        writes = table.writes
    else:
        writes = [(c.name, r) for c in table.chains.values() for r in c.rules]
        writes += [(name, None) for name in table.deleted]
    return table.name, chain_lines, [text_block(_restore_lines(writes, family))]


def render_restore(ruleset: Ruleset) -> str:
    """An ``iptables-restore`` payload for ``ruleset``: rules as written, in written order."""
    with paused_gc():
        return "".join(render_restore_blocks(
            [_restore_table(t, ruleset.family) for t in ruleset.tables.values()]))


def render_restore_blocks(tables: Iterable[tuple[str, list[str], list[str]]]) -> list[str]:
    """The same layout, in pieces, for tables whose lines are already formatted: ``(name, chain
    lines, rule blocks)`` per table, the chain lines without newlines (the list is consumed),
    each rule block whole lines ending in newlines. Joined, the pieces are the payload; a big
    payload is written piece by piece rather than copied into one string once more."""
    layout = [{"name": name, "chain_lines": text_block(chains), "rule_blocks": blocks}
              for name, chains, blocks in tables]
    return list(environment().get_template("restore.j2").generate(tables=layout))


def restore_formatter(family: str) -> Callable[[str, Rule], str]:
    """A function giving the payload line ``-A CHAIN ...`` of a rule, remembering the text of
    the match parts it has seen (for writing many lines one at a time, as the compiler does)."""
    parts = _LineParts(False, family, (1, 8, 9))
    done, spaced_text, jump = parts.done, parts.spaced, parts.jump

    def line(chain: str, rule: Rule) -> str:
        spaced = done.get(rule.matches)
        if spaced is None:
            spaced = spaced_text(rule.matches)
        target = rule.target
        if target is None:
            return f"-A {chain}{spaced}"
        if target.options or target.goto:
            return f"-A {chain}{spaced}{jump(target)}"
        return f"-A {chain}{spaced} -j {target.name}"

    return line
