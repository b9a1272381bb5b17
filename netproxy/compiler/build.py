"""Small constructors for kube-proxy's rules in the shared rule model.

Options are built directly (not parsed from argument lists) because the compiler writes
hundreds of thousands of rules; the order of items is exactly kube-proxy's argument order,
so the restore payload renders byte for byte. Common items are shared between rules.
"""

from __future__ import annotations

from functools import cache, lru_cache

from netproxy.netfilter.model import Option, Rule, Target

COMMENT = Option("comment", "")


@cache
def module(name: str) -> Option:
    """The ``-m name`` token."""
    return Option(name, "")


def comment(text: str) -> tuple[Option, Option]:
    """``-m comment --comment text`` (text without quotes; the renderer quotes as needed)."""
    return (COMMENT, Option("comment", "comment", (text,)))


@cache
def proto(protocol: str) -> tuple[Option, Option]:
    """``-m tcp -p tcp`` (kube-proxy's order)."""
    return (Option(protocol, ""), Option("", "protocol", (protocol,)))


def dest(addr: str, negated: bool = False) -> Option:
    return Option("", "destination", (addr,), negated)


def source(addr: str, negated: bool = False) -> Option:
    return Option("", "source", (addr,), negated)


def in_iface(name: str, negated: bool = False) -> Option:
    return Option("", "in-interface", (name,), negated)


@cache
def dport(protocol: str, port: str) -> Option:
    return Option(protocol, "dport", (port,))


@cache
def addrtype(which: str, kind: str = "LOCAL") -> tuple[Option, Option]:
    """``-m addrtype --src-type LOCAL`` / ``--dst-type LOCAL``."""
    return (module("addrtype"), Option("addrtype", which, (kind,)))


@cache
def ctstate(states: str, negated: bool = False) -> tuple[Option, Option]:
    return (module("conntrack"), Option("conntrack", "ctstate", (states,), negated))


@cache
def nfacct(name: str) -> tuple[Option, Option]:
    return (module("nfacct"), Option("nfacct", "nfacct-name", (name,)))


@lru_cache(maxsize=4096)
def jump(name: str) -> Target:
    """``-j name``, shared by the rules that jump there (the compiler never changes a target)."""
    return Target(name)


def rule(matches: tuple[Option, ...], target: str | Target | None) -> Rule:
    """A rule; ``target`` may be a chain/verdict name, a :class:`Target`, or None (no ``-j``)."""
    if isinstance(target, str):
        target = Target(target)
    return Rule(matches, target)
