"""Parse each *shape* of rule once.

Real dumps hold hundreds of thousands of rules but only a few dozen shapes: the same options
in the same order, differing only in addresses, ports, comments and chain names. Everything
the rule parser decides depends on which words are options (they start with ``-``), on the
known option spellings, module names, protocol names and target names among the words, and
on nothing else -- provided every option and module in the line is known, which is the only
case the reader caches a :class:`~netproxy.parser.rules.Plan` for.

:func:`shape_key` captures that in one C-level pass over the words: each word is mapped to
itself if it is one of those known names, else to ``None``. That alone does not say where
unknown options are, so a plan also records :func:`long_dashes` of the line it was made
from -- how many ``--`` its known words hold. Every word of a line splits off whole (no
``--`` crosses a blank or a quote), so ``line.count("--")`` of another line with the same
key equals that figure exactly when none of its other words holds a ``--``; such a line has
no unknown long option and no ``--``-like value in an argument, which are the only places
where the words outside the key could change the parse. Lines that fail the check take the
general path. Two lines with equal keys and equal counts therefore parse the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from netproxy.netfilter import extensions as ext

COMMON_VALUES = frozenset({
    "random", "nth", "LOCAL", "UNICAST", "BROADCAST", "MULTICAST", "NEW", "INVALID",
    "ESTABLISHED", "RELATED", "RELATED,ESTABLISHED", "ESTABLISHED,RELATED",
    "RELATED,ESTABLISHED,DNAT", "icmp-port-unreachable", "icmp6-port-unreachable",
    "icmp-host-prohibited", "tcp-reset", "0x4000/0x4000", "0x4000/0x0", "0x8000/0x8000",
})
"""Argument values so frequent that keeping them in the key lets the parser share their
:class:`~netproxy.netfilter.model.Option` objects instead of building one per rule."""


def is_structural(word: str) -> bool:
    return word in STRUCTURAL


def _structural_words() -> dict[str, str]:
    words = {"!", "-m", "--match", "-j", "--jump", "-g", "--goto", "-c", "--set-counters"}
    for extension in (ext.BUILTIN_MATCH, *ext.MATCHES.values(), *ext.TARGETS.values()):
        words.add(extension.name)
        for option in extension.options:
            for spelling in (option.name, *option.aliases):
                words.add(("-" if len(spelling) == 1 else "--") + spelling)
    words.update(ext.PROTOCOL_MODULES)
    words.update(COMMON_VALUES)
    words.discard("")
    return {w: w for w in words}


STRUCTURAL = _structural_words()
"""Every known option spelling, module, protocol, target and common value, mapped to itself."""
_get = STRUCTURAL.get


def shape_key(words: Sequence[str]) -> tuple[str | None, ...]:
    """A key equal for lines whose known words (options, modules, protocols, targets,
    common values) stand in the same places; see :func:`long_dashes` for the rest."""
    return tuple(map(_get, words))


def long_dashes(words: Sequence[str]) -> int:
    """How many ``--`` the known words of a line hold (what ``line.count("--")`` must be for
    another line of the same shape to parse alike)."""
    return sum(w.count("--") for w in words if w in STRUCTURAL)


def compile_check(key: Sequence[str | None], target: int) -> Callable[[Sequence[str]], bool]:
    """A test that a line of as many words as ``key`` has the same shape, cheaper than
    computing its key: its known words (from word 2 on) are those of ``key``, and a target
    word that was not a known name is still none.

    Not comparing the other words is safe: where the key has a value, any other value --
    known name or not -- is read the same way, except ``!`` and words holding ``--``, which
    the caller rules out by counting them on the line (see :func:`long_dashes`).
    """
    tests = [f"w[{i}] == {word!r}" for i, word in enumerate(key) if i >= 2 and word is not None]
    if target >= 0 and key[target] is None:
        tests.append(f"w[{target}] not in known")
    check: Callable[[Sequence[str]], bool] = eval(  # noqa: S307 - built from known words above
        f"lambda w: {' and '.join(tests) or 'True'}", {"known": STRUCTURAL})
    return check


def bangs(words: Sequence[str]) -> int:
    """How many ``!`` the known words of a line hold (what ``line.count("!")`` must be)."""
    return sum(w.count("!") for w in words if w in STRUCTURAL)
