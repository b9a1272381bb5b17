"""Turn the words of one rule (after ``-A CHAIN``) into a :class:`Rule`.

Options are resolved the way iptables does: after ``-j TARGET`` an option belongs to the
target if it knows it; otherwise to the most recently loaded match module that knows it;
``-p tcp`` loads the ``tcp`` module implicitly for ``--dport`` and friends. Both negation
positions are accepted (``! --opt value`` and the old ``--opt ! value``).

In lenient mode options nobody knows are kept (owned by the most recent unknown module or
target, taking the following non-option words as arguments) and reported as problems; the
tracer treats them as undecidable. Strict mode rejects them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import MISSING, fields
from typing import NamedTuple, cast

from netproxy.netfilter import extensions as ext
from netproxy.netfilter.model import Option, Rule, Target
from netproxy.parser.shapes import is_structural
from netproxy.textsafe import digits, shown

_BUILTIN_SPELLINGS: dict[str, ext.OptionSpec] = {}
for _o in ext.BUILTIN_MATCH.options:
    _BUILTIN_SPELLINGS["--" + _o.name] = _o
    for _a in _o.aliases:
        _BUILTIN_SPELLINGS[("-" if len(_a) == 1 else "--") + _a] = _o

_PLAUSIBLE_ADDRESS = re.compile(r"^[0-9A-Fa-f:.]+(/\d{1,3})?$")

_INTERN: dict[Option, Option] = {}


def _intern(opt: Option) -> Option:
    """Share identical options between rules (real dumps repeat them by the 100k)."""
    found = _INTERN.get(opt)
    if found is None:
        if len(_INTERN) > 500_000:
            _INTERN.clear()
        _INTERN[opt] = opt
        return opt
    return found


class RuleProblem(NamedTuple):
    word: int
    """0-based index of the word the problem is about."""
    message: str


class Plan(NamedTuple):
    """How to build a rule from the words of any line of the same shape (see :mod:`.shapes`).

    ``matches`` and ``target_options`` hold either a finished :class:`Option` (no arguments)
    or ``(module, name, first, end, negated)``: an option whose arguments are
    ``words[first:end]``.
    """

    matches: tuple[object, ...]
    target: int  # index of the target name, -1 for none
    goto: bool
    target_options: tuple[object, ...]
    counters: int  # index of the first counter word, -1 for none
    addresses: tuple[int, ...]  # words to check as addresses on every line
    problems: tuple[RuleProblem, ...]


class RuleSyntaxError(ValueError):
    def __init__(self, message: str, word: int) -> None:
        super().__init__(message)
        self.word = word


def parse_rule_words(
    words: Sequence[str], start: int = 0, *, strict: bool = False
) -> tuple[Rule, list[RuleProblem], Plan | None]:
    """Parse ``words[start:]`` (everything after ``-A CHAIN``) into a rule.

    Returns the rule, the problems a lenient parse accepted, and the :class:`Plan` that builds
    the same rule from any line of this shape (``None`` when the parse depended on values in a
    way a plan cannot repeat); raises
    :class:`RuleSyntaxError` (with the offending word index) for what cannot be read at all,
    and in strict mode for every problem.
    """
    matches: list[Option] = []
    modules: list[str] = []  # loaded match modules, most recent last
    target: Target | None = None
    target_name = ""
    target_spec: ext.Extension | None = None
    target_opts: list[Option] = []
    goto = False
    counters: tuple[int, int] | None = None
    problems: list[RuleProblem] = []
    protocol = protocol_word = ""
    negate = False
    n = len(words)
    i = start
    match_steps: list[object] = []
    target_steps: list[object] = []
    target_index = -1
    counters_index = -1
    addresses: list[int] = []
    cacheable = True
    structural: list[RuleProblem] = []

    def problem(message: str, at: int, *, structural_: bool = True) -> None:
        if strict:
            raise RuleSyntaxError(message, at)
        problems.append(RuleProblem(at, message))
        if structural_:
            structural.append(RuleProblem(at, message))

    def add(steps: list[object], out: list[Option], module: str, name: str,
            first: int, args: tuple[str, ...], neg: bool) -> None:
        opt = Option(module, name, args, neg)
        if args and not all(is_structural(a) for a in args):
            steps.append((module, name, first, first + len(args), neg))
            out.append(opt)
        else:
            opt = _intern(opt)
            steps.append(opt)
            out.append(opt)

    def take(count: int, at: int, name: str) -> tuple[tuple[str, ...], bool, int]:
        """The next ``count`` words as arguments (an old-style ``!`` among them negates),
        with the index of the first one."""
        nonlocal i, cacheable
        neg = False
        if count > 0 and i < n and words[i] == "!":
            neg = True
            i += 1
        first = i
        args = tuple(words[i:i + count])
        if len(args) < count:
            raise RuleSyntaxError(f"option {name} needs {count} argument(s)", at)
        if count and any(a.startswith("--") and len(a) > 2 for a in args):
            # Malformed dumps print an empty value followed by the next option.
            problem(f"option {name} has no value", at)
            cacheable = False
            args = tuple(a for a in args if not a.startswith("--"))
            i += len(args)
            return args or ("",), neg, first
        i += count
        return args, neg, first

    def take_greedy() -> tuple[str, ...]:
        nonlocal i
        begin = i
        while i < n and words[i] != "!" and not (words[i].startswith("-") and len(words[i]) > 1
                                                 and not digits(words[i][1])):
            i += 1
        return tuple(words[begin:i])

    while i < n:
        word = words[i]
        at = i
        i += 1
        if word == "!":
            if negate:
                raise RuleSyntaxError("double negation", at)
            negate = True
            continue
        spec = _BUILTIN_SPELLINGS.get(word)
        if spec is not None:
            args, neg, first = take(spec.nargs, at, word)
            if spec.name in ("source", "destination") and args:
                addresses.append(first)
                if not _PLAUSIBLE_ADDRESS.match(args[0]):
                    problem(f"invalid address {shown(args[0])} for {word}", first, structural_=False)
            if spec.name == "protocol" and args:
                protocol_word = args[0]
                protocol = protocol_word.lower()
            add(match_steps, matches, "", spec.name, first, args, negate or neg)
            negate = False
            continue
        if word in ("-m", "--match"):
            if i >= n:
                raise RuleSyntaxError(f"{word} needs a module name", at)
            module = words[i]
            i += 1
            if ext.match(module) is None:
                problem(f"unknown match module {shown(module)}", at + 1)
            modules.append(module)
            add(match_steps, matches, module, "", i, (), False)
            continue
        if word in ("-j", "--jump", "-g", "--goto"):
            if i >= n:
                raise RuleSyntaxError(f"{word} needs a target", at)
            if target_name:
                raise RuleSyntaxError("more than one target", at)
            target_name = words[i]
            target_index = i
            goto = word in ("-g", "--goto")
            target_spec = ext.target(target_name)
            i += 1
            continue
        if word in ("-c", "--set-counters"):
            args, _, counters_index = take(2, at, word)
            if not (digits(args[0]) and digits(args[1])):
                raise RuleSyntaxError(f"invalid counters {shown(' '.join(args))}", at)
            counters = (int(args[0]), int(args[1]))
            continue
        if not word.startswith("-") or word == "-":
            raise RuleSyntaxError(f"unexpected word {shown(word)}", at)
        spelling = word.lstrip("-")
        owner: str | None = None
        ospec: ext.OptionSpec | None = None
        if target_spec is not None:
            ospec = target_spec.lookup(spelling)
            if ospec is not None:
                owner = target_name
                args, neg, first = take(ospec.nargs, at, word)
                add(target_steps, target_opts, target_name, ospec.name, first, args, negate or neg)
                negate = False
                continue
        for module in reversed(modules):
            mspec = ext.match(module)
            if mspec is not None:
                ospec = mspec.lookup(spelling)
                if ospec is not None:
                    owner = module
                    break
        if owner is None and protocol in ext.PROTOCOL_MODULES:
            implied = ext.PROTOCOL_MODULES[protocol]
            ospec = ext.MATCHES[implied].lookup(spelling)
            if ospec is not None:
                owner = implied
                # The parse now depends on the protocol's spelling ("TCP", "6"), which a
                # shape key only sees when it is a known name.
                cacheable = cacheable and is_structural(protocol_word)
                modules.append(implied)
                add(match_steps, matches, implied, "", i, (), False)
        if owner is not None and ospec is not None:
            args, neg, first = take(ospec.nargs, at, word)
            add(match_steps, matches, owner, ospec.name, first, args, negate or neg)
            negate = False
            continue
        # Nobody knows this option: keep it with the most recent unknown owner.
        unknown_owner = None
        if target_name and target_spec is None:
            unknown_owner = target_name
        elif modules and ext.match(modules[-1]) is None:
            unknown_owner = modules[-1]
        problem(f"unknown option {word}", at)
        first = i
        args = take_greedy()
        if unknown_owner is not None and unknown_owner == target_name:
            add(target_steps, target_opts, target_name, spelling, first, args, negate)
        else:
            owner_name = unknown_owner or (modules[-1] if modules else "?")
            add(match_steps, matches, owner_name, spelling, first, args, negate)
        negate = False
    if negate:
        raise RuleSyntaxError("'!' at the end of the rule", n - 1)
    if target_name:
        target = Target(target_name, tuple(target_opts), goto)
    plan = None
    if cacheable:
        plan = Plan(tuple(match_steps), target_index, goto, tuple(target_steps), counters_index,
                    tuple(addresses), tuple(structural))
    return Rule(tuple(matches), target, counters), problems, plan


_new_option = tuple.__new__


def compile_plan(plan: Plan) -> Callable[[Sequence[str], int], Rule | None]:
    """Turn ``plan`` into one Python function that builds the rule for a line's words
    (``None`` when an address word does not look like an address: the slow path decides).

    The generated code only indexes the words and fills in the model objects; every constant
    is passed through the environment or as a ``repr`` literal.
    """
    env: dict[str, object] = {"Rule": Rule, "Target": Target, "new": _new_option, "Option": Option}

    def items(steps: tuple[object, ...], prefix: str) -> str:
        out = []
        for k, step in enumerate(steps):
            if step.__class__ is Option:
                env[f"{prefix}{k}"] = step
                out.append(f"{prefix}{k}")
            else:
                module, name, first, end, neg = cast(tuple[str, str, int, int, bool], step)
                args = "(" + "".join(f"w[{j}], " for j in range(first, end)) + ")"  # a tuple, as the model says
                out.append(f"new(Option, ({module!r}, {name!r}, {args}, {neg!r}))")
        return "(" + "".join(f"{x}, " for x in out) + ")"

    # The objects are made with object.__new__ and their fields set one by one: what the
    # dataclass constructors do, without a Python call per object (every field is set, from
    # the model's own list of fields and defaults).
    lines = ["def build(w, line):"]
    if plan.addresses:
        checks = " and ".join(f"plausible(w[{k}])" for k in plan.addresses)
        lines.append(f"    if not ({checks}): return None")
    lines.append("    r = new_object(Rule)")
    if plan.target >= 0:
        target = {"name": f"w[{plan.target}]", "options": items(plan.target_options, "t"),
                  "goto": repr(plan.goto)}
        lines.append("    t = new_object(Target)")
        lines += [f"    t.{name} = {target.get(name, default)}" for name, default in _TARGET_FIELDS]
    counters = "None"
    if plan.counters >= 0:
        # a line of this shape whose counters are not numbers goes to the slow path's error
        a, b = plan.counters, plan.counters + 1
        lines.append(f"    if not (digits(w[{a}]) and digits(w[{b}])): return None")
        counters = f"(int(w[{a}]), int(w[{b}]))"
    rule = {"matches": items(plan.matches, "m"), "target": "t" if plan.target >= 0 else "None",
            "counters": counters, "line": "line"}
    lines += [f"    r.{name} = {rule.get(name, default)}" for name, default in _RULE_FIELDS]
    lines.append("    return r")
    env["plausible"] = _PLAUSIBLE_ADDRESS.match
    env["digits"] = digits
    env["new_object"] = object.__new__
    exec("\n".join(lines), env)  # noqa: S102 - generated above
    return cast(Callable[[Sequence[str], int], "Rule | None"], env["build"])


def _field_defaults(cls: type) -> tuple[tuple[str, str], ...]:
    """Every field of a model dataclass with the ``repr`` of its default (``""`` for a field
    without one, which the generated code must then set itself)."""
    return tuple((f.name, "" if f.default is MISSING else repr(f.default)) for f in fields(cls))


_RULE_FIELDS = _field_defaults(Rule)
_TARGET_FIELDS = _field_defaults(Target)


def rule_from_args(args: Sequence[str], *, strict: bool = True) -> Rule:
    """A rule from an argument list as kube-proxy builds it (``["-m", "comment", ...]``)."""
    rule, _, _ = parse_rule_words(args, 0, strict=strict)
    return rule
