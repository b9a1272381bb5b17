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
from collections.abc import Sequence
from typing import NamedTuple

from netproxy.netfilter import extensions as ext
from netproxy.netfilter.model import Option, Rule, Target

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


class RuleSyntaxError(ValueError):
    def __init__(self, message: str, word: int) -> None:
        super().__init__(message)
        self.word = word


def parse_rule_words(
    words: Sequence[str], start: int = 0, *, strict: bool = False
) -> tuple[Rule, list[RuleProblem]]:
    """Parse ``words[start:]`` (everything after ``-A CHAIN``) into a rule.

    Returns the rule and the problems a lenient parse accepted; raises
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
    protocol = ""
    negate = False
    n = len(words)
    i = start

    def problem(message: str, at: int) -> None:
        if strict:
            raise RuleSyntaxError(message, at)
        problems.append(RuleProblem(at, message))

    def take(count: int, at: int, name: str) -> tuple[tuple[str, ...], bool]:
        """The next ``count`` words as arguments (an old-style ``!`` among them negates)."""
        nonlocal i
        neg = False
        if count > 0 and i < n and words[i] == "!":
            neg = True
            i += 1
        args = tuple(words[i:i + count])
        if len(args) < count:
            raise RuleSyntaxError(f"option {name} needs {count} argument(s)", at)
        if count and any(a.startswith("--") and len(a) > 2 for a in args):
            # Malformed dumps print an empty value followed by the next option.
            problem(f"option {name} has no value", at)
            args = tuple(a for a in args if not a.startswith("--"))
            i += len(args)
            return args or ("",), neg
        i += count
        return args, neg

    def take_greedy() -> tuple[str, ...]:
        nonlocal i
        begin = i
        while i < n and words[i] != "!" and not (words[i].startswith("-") and len(words[i]) > 1
                                                 and not words[i][1].isdigit()):
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
            args, neg = take(spec.nargs, at, word)
            if spec.name in ("source", "destination") and args and not _PLAUSIBLE_ADDRESS.match(args[0]):
                problem(f"invalid address {args[0]!r} for {word}", at + 1)
            if spec.name == "protocol" and args:
                protocol = args[0].lower()
            matches.append(_intern(Option("", spec.name, args, negate or neg)))
            negate = False
            continue
        if word in ("-m", "--match"):
            if i >= n:
                raise RuleSyntaxError(f"{word} needs a module name", at)
            module = words[i]
            i += 1
            if ext.match(module) is None:
                problem(f"unknown match module {module!r}", at + 1)
            modules.append(module)
            matches.append(_intern(Option(module, "", ())))
            continue
        if word in ("-j", "--jump", "-g", "--goto"):
            if i >= n:
                raise RuleSyntaxError(f"{word} needs a target", at)
            if target_name:
                raise RuleSyntaxError("more than one target", at)
            target_name = words[i]
            goto = word in ("-g", "--goto")
            target_spec = ext.target(target_name)
            i += 1
            continue
        if word in ("-c", "--set-counters"):
            args, _ = take(2, at, word)
            try:
                counters = (int(args[0]), int(args[1]))
            except ValueError:
                raise RuleSyntaxError(f"invalid counters {' '.join(args)!r}", at) from None
            continue
        if not word.startswith("-") or word == "-":
            raise RuleSyntaxError(f"unexpected word {word!r}", at)
        spelling = word.lstrip("-")
        owner: str | None = None
        ospec: ext.OptionSpec | None = None
        if target_spec is not None:
            ospec = target_spec.lookup(spelling)
            if ospec is not None:
                owner = target_name
                args, neg = take(ospec.nargs, at, word)
                target_opts.append(_intern(Option(target_name, ospec.name, args, negate or neg)))
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
                modules.append(implied)
                matches.append(_intern(Option(implied, "", ())))
        if owner is not None and ospec is not None:
            args, neg = take(ospec.nargs, at, word)
            matches.append(_intern(Option(owner, ospec.name, args, negate or neg)))
            negate = False
            continue
        # Nobody knows this option: keep it with the most recent unknown owner.
        unknown_owner = None
        if target_name and target_spec is None:
            unknown_owner = target_name
        elif modules and ext.match(modules[-1]) is None:
            unknown_owner = modules[-1]
        problem(f"unknown option {word}", at)
        args = take_greedy()
        if unknown_owner is not None and unknown_owner == target_name:
            target_opts.append(Option(target_name, spelling, args, negate))
        else:
            matches.append(Option(unknown_owner or (modules[-1] if modules else "?"), spelling, args, negate))
        negate = False
    if negate:
        raise RuleSyntaxError("'!' at the end of the rule", n - 1)
    if target_name:
        target = Target(target_name, tuple(target_opts), goto)
    return Rule(tuple(matches), target, counters), problems


def rule_from_args(args: Sequence[str], *, strict: bool = True) -> Rule:
    """A rule from an argument list as kube-proxy builds it (``["-m", "comment", ...]``)."""
    rule, _ = parse_rule_words(args, 0, strict=strict)
    return rule
