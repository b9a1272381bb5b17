"""Canonical rule keys and a behaviour-preserving canonical rule order (netfilter meaning only).

Two rules that ``iptables-save`` would print the same way get the same key: the key is built
from :func:`netproxy.netfilter.saveform.to_saved`, so ``-d 10.0.0.1`` and ``-d 10.0.0.1/32``,
``--dport`` and ``--destination-port``, ``--or-mark`` and ``--set-xmark`` compare equal.
Counters and line numbers never enter a key. Chain names inside a rule (its jump target and
the ``recent --name`` list, which kube-proxy names after a chain) go through a caller-supplied
mapping, so that a rule can be compared by what its chains *are* rather than what they are
called.

The order of a chain is canonicalised by :func:`canonical_order`: two adjacent rules that can
never match the same packet may be swapped without changing what the chain does, so chains
that differ only by such swaps get the same canonical sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from netproxy.netfilter.model import Option, Rule, Target
from netproxy.netfilter.saveform import RESPELLED_TARGETS, to_saved

Rename = Callable[[str], str]

_SEP = "\x1e"
_ARG = "\x1f"
_PORT_MODULES = frozenset({"tcp", "udp", "sctp", "udplite", "dccp"})


def _same(name: str) -> str:
    return name


DisjointKey = tuple[str, str, str | None]


_MatchPart = tuple[str, str | None, str | None, str | None, bool]
_MATCHES: dict[tuple[str, tuple[Option, ...]], _MatchPart] = {}
_TARGETS: dict[tuple[str, str, tuple[Option, ...]], str] = {}
_CACHE_LIMIT = 1_000_000
"""Canonical forms are cached by the parsed option tuples (the parser shares equal options,
and kube-proxy repeats the same few shapes thousands of times)."""


def _match_part(matches: tuple[Option, ...], family: str, rename: Rename) -> _MatchPart:
    """(key, protocol, dport, host destination, pinned) of a rule's matches."""
    found = _MATCHES.get((family, matches))
    if found is not None:
        return found
    saved = to_saved(Rule(matches), family)
    parts: list[str] = []
    proto: str | None = None
    dport: str | None = None
    dest: str | None = None
    pinned = True
    cacheable = True
    for o in saved.matches:
        args = o.args
        module = o.module
        if not module:
            if o.name == "protocol":
                if o.negated or not args:
                    pinned = False
                else:
                    proto = args[0]
            elif o.name == "destination" and args and not o.negated and _host(args[0]):
                dest = args[0]
        elif o.name == "dport" and module in _PORT_MODULES:
            if o.negated or not args or ":" in args[0] or dport is not None:
                pinned = False
            else:
                dport = args[0]
        elif module == "recent" and o.name == "name" and args:
            args = (rename(args[0]),)
            cacheable = False
        parts.append(("!" if o.negated else "") + module + ":" + o.name + "=" + _ARG.join(args))
    result = (_SEP.join(parts), proto, dport, dest, pinned)
    if cacheable:
        if len(_MATCHES) > _CACHE_LIMIT:
            _MATCHES.clear()
        _MATCHES[(family, matches)] = result
    return result


def _target_part(target: Target, family: str) -> str:
    """The canonical options of a target (its name is added by the caller, renamed)."""
    respelled = target.name in RESPELLED_TARGETS
    if not target.options and not respelled:
        return ""
    cache_key = (family, target.name, target.options)
    found = _TARGETS.get(cache_key)
    if found is None:
        saved = to_saved(Rule((), target), family).target if respelled else target
        assert saved is not None
        found = "".join(_SEP + ("!" if o.negated else "") + o.name + "=" + _ARG.join(o.args)
                        for o in saved.options)
        if len(_TARGETS) > _CACHE_LIMIT:
            _TARGETS.clear()
        _TARGETS[cache_key] = found
    return found


def rule_key(rule: Rule, family: str, rename: Rename = _same) -> tuple[str, DisjointKey | None]:
    """The comparison key of ``rule`` and its disjointness key.

    The first item is a string that two rules share exactly when ``iptables-save`` prints
    them alike (``rename`` maps the chain names in the rule -- jump target, ``recent --name``
    -- to the names they are compared by). The second is ``(protocol, dport, exact
    destination or None)`` for rules pinned to one protocol and destination port, else
    ``None``: rules with different protocol or port never match the same packet, and with
    the same protocol and port they are disjoint when both name different host destinations.
    """
    if rule.opaque is not None:
        return "?" + " ".join(rule.opaque.split()), None
    mkey, proto, dport, dest, pinned = _match_part(rule.matches, family, rename)
    target = rule.target
    if target is None:
        key = mkey + _SEP + "->"
    else:
        key = (mkey + _SEP + ("-g " if target.goto else "-j ") + rename(target.name)
               + _target_part(target, family))
    if pinned and proto is not None and dport is not None:
        return key, (proto, dport, dest)
    return key, None


def _host(value: str) -> bool:
    return value.endswith("/32") or value.endswith("/128")


def canonical_order(keys: Sequence[str], disjoint: Sequence[DisjointKey | None]) -> list[int]:
    """Indexes of ``rules`` in a canonical order that behaves like the written one.

    ``keys`` and ``disjoint`` are the two results of :func:`rule_key` for each rule. The
    result is the Foata normal form of the chain under the "may match a common packet"
    dependency: each rule gets a level one above the highest level of an earlier rule it
    depends on, and the chain is sorted by (level, key). Two orders of one chain that differ
    only by swapping rules that never match the same packet give the same result. Rules that
    are not pinned to a protocol, port and destination depend on every other rule, so the
    order around them is kept as written.
    """
    n = len(keys)
    levels = [0] * n
    barrier = 0  # level of the latest rule everything depends on
    top = 0  # highest level so far
    exact: dict[tuple[str, str, str], int] = {}
    wild: dict[tuple[str, str], int] = {}  # (proto, port) rules without an exact destination
    group: dict[tuple[str, str], int] = {}  # every rule with that (proto, port)
    for i, dk in enumerate(disjoint):
        if dk is None:
            level = top + 1
            barrier = level
        else:
            pp = (dk[0], dk[1])
            if dk[2] is not None:
                key3 = (dk[0], dk[1], dk[2])
                level = 1 + max(barrier, exact.get(key3, 0), wild.get(pp, 0))
                exact[key3] = level
            else:
                level = 1 + max(barrier, group.get(pp, 0))
                wild[pp] = level
            if level > group.get(pp, 0):
                group[pp] = level
        levels[i] = level
        if level > top:
            top = level
    return sorted(range(n), key=lambda i: (levels[i], keys[i]))
