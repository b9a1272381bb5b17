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
text directly, and that text cannot drift from the model.

A build function must use its values only as parts of option arguments and target names
(not as module or option names, no arithmetic, no tests on them): anything else is caught
when the line function is derived.
"""

from __future__ import annotations

import re
from collections.abc import Callable
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

    __slots__ = ("build", "name", "arity", "_lines")

    def __init__(self, build: Callable[..., Rule]) -> None:
        self.build = build
        self.name = build.__name__
        self.arity = build.__code__.co_argcount
        self._lines: dict[str, Callable[..., str]] = {}

    def __repr__(self) -> str:
        return f"RuleKind({self.name})"

    def line(self, family: str) -> Callable[..., str]:
        """``fn(chain, *values)``: the ``-A chain ...`` line of ``build(*values)``."""
        fn = self._lines.get(family)
        if fn is None:
            fn = self._lines[family] = _derive_line(self, family)
        return fn


def kind(build: Callable[..., Rule]) -> RuleKind:
    """Decorator: the function becomes a :class:`RuleKind`."""
    return RuleKind(build)


def _concat(arg: str) -> str:
    """Python source joining the literal text and the slots of one argument."""
    parts = [f"v{piece[1:-1]}" if piece.startswith("\x01") else repr(piece)
             for piece in _SLOTS.split(arg) if piece]
    return " + ".join(parts) if parts else "''"


def _quoting(i: int, literal: str, expr: str) -> list[str]:
    """Code setting ``q{i}`` to ``restore_word(expr)``, without the call in the usual case:
    an argument whose literal text needs quotes is always quoted (and only needs escapes if
    a value holds a backslash or a double quote); one without them usually stays bare."""
    lines = [f"    x{i} = {expr}"]
    if '"' in literal or "\\" in literal:
        lines.append(f"    q{i} = W(x{i})")
    elif RESTORE_SPECIAL(literal):
        lines.append(f"    q{i} = W(x{i}) if '\"' in x{i} or '\\\\' in x{i} else '\"' + x{i} + '\"'")
    else:
        lines.append(f"    q{i} = x{i} if x{i} and not Q(x{i}) else W(x{i})")
    return lines


def _derive_line(rule_kind: RuleKind, family: str) -> Callable[..., str]:
    values = [_SLOT.format(i) for i in range(rule_kind.arity)]
    rule = rule_kind.build(*values)
    quoted: list[tuple[str, str]] = []
    """(literal text, Python expression) of each module argument that holds values."""

    def lift(opt: Option) -> Option:
        # A module option's argument that holds values is quoted as a whole at run time,
        # so it is rendered here as one placeholder the renderer leaves bare.
        if "\x01" in opt.module or "\x01" in opt.name:
            raise KindError(f"{rule_kind.name}: a value names a module or an option")
        if not opt.module or not any("\x01" in a for a in opt.args):
            return opt
        args = []
        for arg in opt.args:
            if "\x01" in arg:
                args.append(_QUOTED.format(len(quoted)))
                quoted.append(("".join(_SLOTS.split(arg)[::2]), _concat(arg)))
            else:
                args.append(arg)
        return opt._replace(args=tuple(args))

    target = rule.target
    if target is not None:
        target = Target(target.name, tuple(map(lift, target.options)), target.goto)
    text = rule_text(Rule(tuple(map(lift, rule.matches)), target), _CHAIN, family, saved=False)
    # One f-string (a single BUILD_STRING) whose quoted arguments are computed first.
    body = [line for i, (literal, expr) in enumerate(quoted) for line in _quoting(i, literal, expr)]
    fields: list[str] = []
    seen: list[str] = []
    for piece in _TOKENS.split(text):
        if not piece:
            continue
        if piece == _CHAIN:
            fields.append("{chain}")
        elif piece.startswith("\x01"):
            fields.append(f"{{v{piece[1:-1]}}}")
        elif piece.startswith("\x02"):
            fields.append(f"{{q{piece[1:-1]}}}")
        else:
            if any(c in piece for c in "\x01\x02\x03"):
                raise KindError(f"{rule_kind.name}: a value was changed, not placed: {piece!r}")
            fields.append(piece.replace("{", "{{").replace("}", "}}"))
        seen.append(piece)
    if seen.count(_CHAIN) != 1 or sorted(p for p in seen if p.startswith("\x02")) != sorted(
            _QUOTED.format(i) for i in range(len(quoted))):
        raise KindError(f"{rule_kind.name}: the rendered line does not hold every value once")
    params = ", ".join(["chain", *(f"v{i}" for i in range(rule_kind.arity))])
    source = "\n".join([f"def line({params}):", *body, f"    return f{''.join(fields)!r}", ""])
    env: dict[str, Any] = {"W": restore_word, "Q": RESTORE_SPECIAL}
    exec(compile(source, f"<rule kind {rule_kind.name}>", "exec"), env)  # noqa: S102 - built above
    return cast(Callable[..., str], env["line"])
