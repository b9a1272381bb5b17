"""Rule model to text, through the jinja2 templates in ``templates/``.

Python formats single lines (:func:`rule_text`); the templates lay out tables, chain lines and
rule lines. Two layouts exist: what ``iptables-save`` prints (canonical spelling, built-in
chains first, user chains sorted) and an ``iptables-restore`` payload (rules as written, in the
order they were written, with ``-X`` deletions).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from netproxy.gcpause import paused_gc
from netproxy.netfilter.extensions import BUILTIN_SHORT
from netproxy.netfilter.model import BUILTIN_CHAINS, Chain, Option, Rule, Ruleset, Table
from netproxy.netfilter.saveform import to_saved

_SAVE_STRING_OPTIONS = frozenset({"comment", "log-prefix", "nflog-prefix", "string", "path"})
_NO_QUOTE = frozenset("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_RESTORE_QUOTE = frozenset(" \t\"'\\")


def _save_string(value: str) -> str:
    """libxtables' quoting: bare iff only ``[A-Za-z0-9_-]``, else double quotes with escapes."""
    if value and all(c in _NO_QUOTE for c in value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'")
    return f'"{escaped}"'


def _restore_word(value: str) -> str:
    """Quote a word for iptables-restore only where its tokenizer needs it."""
    if value and not any(c in _RESTORE_QUOTE for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _option_words(opt: Option, saved: bool, out: list[str]) -> None:
    if not opt.module:
        if opt.negated:
            out.append("!")
        out.append("-" + BUILTIN_SHORT.get(opt.name, opt.name))
        out.extend(opt.args)
        return
    if not opt.name:
        out.append("-m")
        out.append(opt.module)
        return
    if opt.negated:
        out.append("!")
    out.append("--" + opt.name)
    if saved and opt.name in _SAVE_STRING_OPTIONS:
        out.extend(_save_string(a) for a in opt.args)
    elif saved and opt.module == "nfacct":
        # libxt_nfacct prints " --nfacct-name " and then the name through
        # xtables_save_string, which adds its own leading space: two spaces in the output.
        out.extend(" " + a for a in opt.args)
    elif saved:
        out.extend(opt.args)
    else:
        out.extend(_restore_word(a) for a in opt.args)


def rule_text(rule: Rule, chain: str, family: str = "ipv4", saved: bool = True,
              iptables_version: tuple[int, ...] = (1, 8, 9)) -> str:
    """One ``-A CHAIN ...`` line; ``saved=True`` gives the ``iptables-save`` spelling."""
    if rule.opaque is not None:
        return rule.opaque
    if saved:
        rule = to_saved(rule, family, iptables_version)
    parts = [_option_text(opt, saved) for opt in rule.matches]
    target = rule.target
    if target is not None:
        parts.append(("-g " if target.goto else "-j ") + target.name)
        parts.extend(_option_text(opt, saved) for opt in target.options)
    return f"-A {chain} {' '.join(parts)}" if parts else f"-A {chain}"


_OPTION_TEXT: tuple[dict[Option, str], dict[Option, str]] = ({}, {})
"""Rendered text of options already seen (restore, save): big rulesets repeat most options."""


def _option_text(opt: Option, saved: bool) -> str:
    """The words of one option joined, cached (what ``iptables-save`` or ``iptables-restore`` spells)."""
    cache = _OPTION_TEXT[saved]
    text = cache.get(opt)
    if text is None:
        words: list[str] = []
        _option_words(opt, saved, words)
        text = cache[opt] = " ".join(words)
        if len(cache) > 300_000:
            cache.clear()
    return text


def _counters(counters: tuple[int, int] | None) -> str:
    pkts, byts = counters or (0, 0)
    return f"[{pkts}:{byts}]"


def _chain_line(chain: Chain) -> str:
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
    users = sorted((c for c in table.chains.values() if c.name not in builtin_names),
                   key=lambda c: c.name.encode())
    return builtins + users


def _save_table(table: Table, family: str, counters: bool,
                version: tuple[int, ...]) -> dict[str, Any]:
    chains = _save_chains(table)

    def rule_lines() -> Iterator[str]:
        for chain in chains:
            for rule in chain.rules:
                line = rule_text(rule, chain.name, family, True, version)
                if counters and rule.opaque is None:
                    line = f"{_counters(rule.counters)} {line}"
                yield line

    return {"name": table.name, "chain_lines": [_chain_line(c) for c in chains],
            "rule_lines": rule_lines()}


def iter_save(ruleset: Ruleset, *, counters: bool = False,
              iptables_version: tuple[int, ...] = (1, 8, 9)) -> Iterator[str]:
    """Stream what ``iptables-save`` (``-c`` with ``counters``) prints for ``ruleset``."""
    tables = [_save_table(t, ruleset.family, counters, iptables_version)
              for t in ruleset.tables.values()]
    yield from environment().get_template("save.j2").generate(tables=tables)


def render_save(ruleset: Ruleset, *, counters: bool = False,
                iptables_version: tuple[int, ...] = (1, 8, 9)) -> str:
    """What ``iptables-save`` prints for ``ruleset`` (no header lines, deterministic)."""
    with paused_gc():
        return "".join(iter_save(ruleset, counters=counters, iptables_version=iptables_version))


def _restore_table(table: Table, family: str) -> dict[str, Any]:
    chain_lines = [_chain_line(c) for c in table.chains.values()]
    chain_lines.extend(f":{name} - [0:0]" for name in table.deleted if name not in table.chains)

    def rule_lines() -> Iterator[str]:
        writes: Iterable[tuple[str, Rule | None]]
        if table.writes is not None:
            writes = table.writes
        else:
            writes = [(c.name, r) for c in table.chains.values() for r in c.rules]
            writes += [(name, None) for name in table.deleted]
        for chain, rule in writes:
            yield f"-X {chain}" if rule is None else rule_text(rule, chain, family, saved=False)

    return {"name": table.name, "chain_lines": chain_lines, "rule_lines": rule_lines()}


def iter_restore(ruleset: Ruleset) -> Iterator[str]:
    tables = [_restore_table(t, ruleset.family) for t in ruleset.tables.values()]
    yield from environment().get_template("restore.j2").generate(tables=tables)


def render_restore(ruleset: Ruleset) -> str:
    """An ``iptables-restore`` payload for ``ruleset``: rules as written, in written order."""
    with paused_gc():
        return "".join(iter_restore(ruleset))
