"""Rule kinds: the shapes of the rules kube-proxy writes per service port and endpoint.

A :class:`RuleKind` wraps a function from string values (addresses, ports, comments, chain
names) to a :class:`~netproxy.netfilter.model.Rule`. That function is the only description of
the rule: :meth:`RuleKind.build` gives the model, and :meth:`RuleKind.line` gives the same
rule's ``iptables-restore`` line without building it. The line function is derived once per
kind: the rule is built with placeholder values, rendered by :mod:`netproxy.render`, and the
text around the placeholders becomes string concatenation. Values that land in a match
module's argument (a comment, an interface) are quoted at run time by the renderer's own
:func:`~netproxy.render.restore_word`, exactly as the renderer would quote them; everything
else iptables-restore reads as it is. So the payload of 10,000 services can be written as
text directly, and that text cannot drift from the model. For many rules of one kind at
once (the endpoints of a service port), :meth:`RuleKind.lines` and :meth:`RuleKind.builds`
are derived the same way and run as one list comprehension over columns of values.

A build function must use its values only as parts of option arguments and target names
(not as module or option names, no arithmetic, no tests on them): anything else is caught
when the line function is derived.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from netproxy.netfilter.model import Option, Rule, Target
from netproxy.render import RESTORE_SPECIAL, restore_word, rule_text

_SLOT = "\x01{}\x01"
_QUOTED = "\x02{}\x02"
_CHAIN = "\x03"
_TOKENS = re.compile("(\x01[0-9]+\x01|\x02[0-9]+\x02|\x03)")
_SLOTS = re.compile("(\x01[0-9]+\x01)")


class KindError(Exception):
    """A build function that does not fit the rules above (a programming error)."""


class RuleKind:
    """One shape of rule: ``build(*values) -> Rule`` and its restore line ``line(family)``."""

    __slots__ = ("build", "name", "arity", "_lines", "_batches", "_builds")

    def __init__(self, build: Callable[..., Rule]) -> None:
        self.build = build
        self.name = build.__name__
        self.arity = build.__code__.co_argcount
        self._lines: dict[str, Callable[..., str]] = {}
        self._batches: dict[tuple[str, tuple[bool, ...]], Callable[..., list[str]]] = {}
        self._builds: dict[tuple[bool, ...], Callable[..., list[Rule]]] = {}

    def __repr__(self) -> str:
        return f"RuleKind({self.name})"

    def line(self, family: str) -> Callable[..., str]:
        """``fn(chain, *values)``: the ``-A chain ...`` line of ``build(*values)``."""
        fn = self._lines.get(family)
        if fn is None:
            fn = self._lines[family] = _derive_line(self, family)
        return fn

    def builds(self, varying: tuple[bool, ...]) -> Callable[..., list[Rule]]:
        """``fn(count, *columns)``: ``build`` for each of ``count`` rows of ``columns`` (as in
        :meth:`lines`), as one list comprehension; the options and targets that only hold
        values shared by every row are built once and shared by the rules."""
        fn = self._builds.get(varying)
        if fn is None:
            fn = self._builds[varying] = _derive_builds(self, varying)
        return fn

    def lines(self, family: str, varying: tuple[bool, ...]) -> Callable[..., list[str]]:
        """``fn(chains, *columns)``: the lines of many rules of this kind at once. Column ``i``
        is one value for every rule, or (``varying[i]``) a sequence with one per rule."""
        key = (family, varying)
        fn = self._batches.get(key)
        if fn is None:
            fn = self._batches[key] = _derive_lines(self, family, varying)
        return fn


def kind(build: Callable[..., Rule]) -> RuleKind:
    """Decorator: the function becomes a :class:`RuleKind`."""
    return RuleKind(build)


def _check_names(rule_kind: RuleKind, opt: Option) -> None:
    if "\x01" in opt.module or "\x01" in opt.name:
        raise KindError(f"{rule_kind.name}: a value names a module or an option")


def _check_placed(rule_kind: RuleKind, literal: str) -> None:
    """``literal`` is text between placeholders: a stray marker means a value was cut up."""
    if any(c in literal for c in "\x01\x02\x03"):
        raise KindError(f"{rule_kind.name}: a value was changed, not placed: {literal!r}")


def _row_loop(slots: list[int]) -> str:
    """The ``for`` clause reading the per-row columns ``slots`` (``b{i}`` from ``v{i}``)."""
    if len(slots) == 1:
        return f"for b{slots[0]} in v{slots[0]}"
    return f"for {', '.join(f'b{i}' for i in slots)} in zip({', '.join(f'v{i}' for i in slots)})"


def _concat(arg: str, name: Callable[[int], str]) -> str:
    """Python source joining the literal text and the slots of one argument."""
    parts = [name(int(piece[1:-1])) if piece.startswith("\x01") else repr(piece)
             for piece in _SLOTS.split(arg) if piece]
    return " + ".join(parts) if parts else "''"


def _quoting(literal: str, x: str) -> str:
    """An expression for ``restore_word(x)`` without the call in the usual case: an argument
    whose literal text needs quotes is always quoted (and only needs escapes if a value holds
    a backslash or a double quote); one without them usually stays bare."""
    if '"' in literal or "\\" in literal:
        return f"W({x})"
    if RESTORE_SPECIAL(literal):
        return f"(W({x}) if '\"' in {x} or '\\\\' in {x} else '\"' + {x} + '\"')"
    return f"({x} if {x} and not Q({x}) else W({x}))"


@dataclass(slots=True)
class _Layout:
    """A kind's restore line as pieces: literal text, the chain, raw slots and quoted arguments."""

    pieces: list[tuple[str, str | int]]
    """("text", literal) / ("chain", "") / ("slot", i) / ("quoted", k), in line order."""
    quoted: list[tuple[str, str, list[int]]]
    """Per quoted argument: its literal text, its text with slots (``\x01i\x01``), the slots."""


def _layout(rule_kind: RuleKind, family: str) -> _Layout:
    values = [_SLOT.format(i) for i in range(rule_kind.arity)]
    rule = rule_kind.build(*values)
    quoted: list[tuple[str, str, list[int]]] = []

    def lift(opt: Option) -> Option:
        # A module option's argument that holds values is quoted as a whole at run time,
        # so it is rendered here as one placeholder the renderer leaves bare.
        _check_names(rule_kind, opt)
        if not opt.module or not any("\x01" in a for a in opt.args):
            return opt
        args = []
        for arg in opt.args:
            if "\x01" in arg:
                args.append(_QUOTED.format(len(quoted)))
                split = _SLOTS.split(arg)
                quoted.append(("".join(split[::2]), arg, [int(p[1:-1]) for p in split[1::2]]))
            else:
                args.append(arg)
        return opt._replace(args=tuple(args))

    target = rule.target
    if target is not None:
        target = Target(target.name, tuple(map(lift, target.options)), target.goto)
    text = rule_text(Rule(tuple(map(lift, rule.matches)), target), _CHAIN, family, saved=False)
    pieces: list[tuple[str, str | int]] = []
    for piece in _TOKENS.split(text):
        if not piece:
            continue
        if piece == _CHAIN:
            pieces.append(("chain", ""))
        elif piece.startswith("\x01"):
            pieces.append(("slot", int(piece[1:-1])))
        elif piece.startswith("\x02"):
            pieces.append(("quoted", int(piece[1:-1])))
        else:
            _check_placed(rule_kind, piece)
            pieces.append(("text", piece))
    if [p for p in pieces if p[0] == "chain"] != [("chain", "")] or sorted(
            k for what, k in pieces if what == "quoted") != list(range(len(quoted))):
        raise KindError(f"{rule_kind.name}: the rendered line does not hold every value once")
    return _Layout(pieces, quoted)


def _fstring(layout: _Layout, slot: Callable[[int], str]) -> str:
    """The line as one f-string (a single BUILD_STRING), quoted arguments named ``q{k}``."""
    fields = []
    for what, value in layout.pieces:
        if what == "chain":
            fields.append("{chain}")
        elif what == "slot":
            fields.append("{" + slot(int(value)) + "}")
        elif what == "quoted":
            fields.append(f"{{q{value}}}")
        else:
            fields.append(str(value).replace("{", "{{").replace("}", "}}"))
    return "f" + repr("".join(fields))


def _exec(rule_kind: RuleKind, source: str, env: dict[str, Any] | None = None) -> Callable[..., Any]:
    """The function ``fn`` that ``source`` defines (the text functions' helpers, or ``env``)."""
    env = {"W": restore_word, "Q": RESTORE_SPECIAL} if env is None else env
    exec(compile(source, f"<rule kind {rule_kind.name}>", "exec"), env)  # noqa: S102 - built above
    return cast(Callable[..., Any], env["fn"])


def _derive_line(rule_kind: RuleKind, family: str) -> Callable[..., str]:
    layout = _layout(rule_kind, family)
    body = []
    for k, (literal, arg, _) in enumerate(layout.quoted):
        body += [f"    x{k} = {_concat(arg, lambda i: f'v{i}')}",
                 f"    q{k} = {_quoting(literal, f'x{k}')}"]
    params = ", ".join(["chain", *(f"v{i}" for i in range(rule_kind.arity))])
    return _exec(rule_kind, "\n".join([f"def fn({params}):", *body,
                                       f"    return {_fstring(layout, lambda i: f'v{i}')}", ""]))


def _derive_lines(rule_kind: RuleKind, family: str, varying: tuple[bool, ...]) -> Callable[..., list[str]]:
    """``fn(chains, *columns)``: a column is one value for all rows, or (``varying``) one per row."""
    layout = _layout(rule_kind, family)

    def name(i: int) -> str:
        return f"b{i}" if varying[i] else f"v{i}"

    body = []
    rows = ["chain"]  # per-row names in the final comprehension, and what they iterate
    sources = ["chains"]
    used = sorted({int(v) for what, v in layout.pieces if what == "slot" and varying[int(v)]})
    rows += [f"b{i}" for i in used]
    sources += [f"v{i}" for i in used]
    for k, (literal, arg, slots) in enumerate(layout.quoted):
        expr = _concat(arg, name)
        per_row = [i for i in dict.fromkeys(slots) if varying[i]]
        if not per_row:
            body += [f"    x{k} = {expr}", f"    q{k} = {_quoting(literal, f'x{k}')}"]
            continue
        body.append(f"    qs{k} = [{_quoting(literal, 'x')} {_row_loop(per_row)} for x in ({expr},)]")
        rows.append(f"q{k}")
        sources.append(f"qs{k}")
    params = ", ".join(["chains", *(f"v{i}" for i in range(rule_kind.arity))])
    comprehension = (f"[{_fstring(layout, name)} for {', '.join(rows)} in zip({', '.join(sources)})]"
                     if len(rows) > 1 else f"[{_fstring(layout, name)} for chain in chains]")
    return _exec(rule_kind, "\n".join([f"def fn({params}):", *body, f"    return {comprehension}", ""]))


def _derive_builds(rule_kind: RuleKind, varying: tuple[bool, ...]) -> Callable[..., list[Rule]]:
    """``fn(count, *columns)``: the rules of ``count`` rows, what no row changes built once."""
    rule = rule_kind.build(*(_SLOT.format(i) for i in range(rule_kind.arity)))
    env: dict[str, Any] = {"NT": tuple.__new__, "O": Option, "T": Target, "R": Rule}
    body: list[str] = []
    per_row: set[int] = set()

    def name(i: int) -> str:
        if varying[i]:
            per_row.add(i)
            return f"b{i}"
        return f"v{i}"

    def text(value: str) -> tuple[str, bool]:
        """Source for one string that may hold values, and whether it changes per row."""
        split = _SLOTS.split(value)
        for literal in split[::2]:
            _check_placed(rule_kind, literal)
        slots = [int(p[1:-1]) for p in split[1::2]]
        return _concat(value, name), any(varying[i] for i in slots)

    def shared(source: str) -> str:
        """A per-batch value, computed once before the rows."""
        local = f"s{len(body)}"
        body.append(f"    {local} = {source}")
        return local

    def option(opt: Option, index: int) -> tuple[str, bool]:
        _check_names(rule_kind, opt)
        if not any("\x01" in a for a in opt.args):
            env[f"C{index}"] = opt
            return f"C{index}", False
        args = [text(a) for a in opt.args]
        source = (f"NT(O, ({opt.module!r}, {opt.name!r}, "
                  f"({''.join(a + ', ' for a, _ in args)}), {opt.negated!r}))")
        if any(row for _, row in args):
            return source, True
        return shared(source), False

    def items(options: tuple[Option, ...], first: int) -> tuple[str, bool]:
        built = [option(opt, first + i) for i, opt in enumerate(options)]
        source = f"({''.join(b + ', ' for b, _ in built)})"
        if any(row for _, row in built):
            return source, True
        return (shared(source), False) if built else ("()", False)

    matches, _ = items(rule.matches, 0)
    target = "None"
    if rule.target is not None:
        t = rule.target
        target_name, name_per_row = text(t.name)
        options, options_per_row = items(t.options, len(rule.matches))
        target = f"T({target_name}, {options}, {t.goto!r})"
        if not (name_per_row or options_per_row):
            target = shared(target)
    rows = sorted(per_row)
    loop = _row_loop(rows) if rows else "for _ in range(count)"
    params = ", ".join(["count", *(f"v{i}" for i in range(rule_kind.arity))])
    source = "\n".join([f"def fn({params}):", *body, f"    return [R({matches}, {target}) {loop}]", ""])
    return cast(Callable[..., list[Rule]], _exec(rule_kind, source, env))
