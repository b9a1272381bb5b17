"""The kinds of rule kube-proxy writes for every service port and endpoint (spec §2.3).

Each kind is a function of string values laid out in kube-proxy's argument order (see
:mod:`netproxy.compiler.kinds`), written plainly: the column builders derived from it share
what a service port's rules have in common. Variants that differ in structure, not values (the protocol,
which names a match module; with or without comments in large-cluster mode; with session
affinity; with the local-traffic detector's match), are separate kinds made once by cached
factories; they keep the same parameters, so a writer passes the same values whichever
variant it uses.
"""

from __future__ import annotations

from functools import cache

from netproxy.compiler.build import (
    COMMENT,
    addrtype,
    dest,
    dport,
    jump,
    module,
    nfacct,
    proto,
    source,
)
from netproxy.compiler.fixed import LOCALHOST_NP_COUNTER
from netproxy.compiler.kinds import RuleKind, kind
from netproxy.netfilter.model import Option, Rule, Target

RECENT = module("recent")
RCHECK = Option("recent", "rcheck")
REAP = Option("recent", "reap")
SET = Option("recent", "set")
STATISTIC = module("statistic")
RANDOM = Option("statistic", "mode", ("random",))
LOCALHOST = dest("127.0.0.0/8")
_new_tuple = tuple.__new__


def _opt(mod: str, name: str, value: str) -> Option:
    """A non-negated one-argument option, without NamedTuple's Python-level constructor."""
    return _new_tuple(Option, (mod, name, (value,), False))


def _comment(text: str) -> tuple[Option, Option]:
    return (COMMENT, _opt("comment", "comment", text))


@cache
def to_service_ip(p: str, extra: tuple[Option, ...] = ()) -> RuleKind:
    """``-m comment --comment TEXT -m P -p P -d ADDR --dport PORT [EXTRA] -j TARGET``: the
    cluster IP, external IP and load balancer IP rules (nat jumps and filter verdicts), and
    the masquerade rule of a service chain (``extra``: the detector's not-local match)."""
    def service_ip(text: str, addr: str, port: str, target: str) -> Rule:
        return Rule(_comment(text) + proto(p) + (dest(addr), dport(p, port)) + extra, jump(target))
    return RuleKind(service_ip)


@cache
def node_port(p: str) -> RuleKind:
    """``-m comment --comment TEXT -m P -p P --dport PORT -j TARGET`` (also the health check)."""
    def node_port_jump(text: str, port: str, target: str) -> Rule:
        return Rule(_comment(text) + proto(p) + (dport(p, port),), jump(target))
    return RuleKind(node_port_jump)


@cache
def localhost_node_port(p: str) -> RuleKind:
    """A node port reached on 127.0.0.0/8, counted by nfacct."""
    def localhost_jump(text: str, port: str, target: str) -> Rule:
        return Rule(_comment(text) + proto(p) + (LOCALHOST, dport(p, port))
                    + nfacct(LOCALHOST_NP_COUNTER), jump(target))
    return RuleKind(localhost_jump)


@cache
def node_port_verdict(p: str) -> RuleKind:
    """The filter rule for a node port without (local) endpoints."""
    def verdict(text: str, port: str, target: str) -> Rule:
        return Rule(_comment(text) + addrtype("dst-type") + proto(p) + (dport(p, port),),
                    jump(target))
    return RuleKind(verdict)


@cache
def commented(extra: tuple[Option, ...] = ()) -> RuleKind:
    """``-m comment --comment TEXT [EXTRA] -j TARGET``."""
    def commented_jump(text: str, target: str) -> Rule:
        return Rule(_comment(text) + extra, jump(target))
    return RuleKind(commented_jump)


@kind
def comment_only(text: str) -> Rule:
    """``-m comment --comment TEXT`` without a target (the end of a KUBE-FW chain)."""
    return Rule(_comment(text), None)


@kind
def plain_jump(target: str) -> Rule:
    """``-j TARGET``."""
    return Rule((), jump(target))


@cache
def from_source(commented: bool) -> RuleKind:
    """``[-m comment --comment TEXT] -s ADDR -j TARGET``: the source ranges of a KUBE-FW
    chain, the hairpin masquerade of a KUBE-SEP chain."""
    def source_jump(text: str, addr: str, target: str) -> Rule:
        return Rule((_comment(text) if commented else ()) + (source(addr),), jump(target))
    return RuleKind(source_jump)


@cache
def affinity_check(commented: bool) -> RuleKind:
    """``[-m comment --comment "SPN -> EP"] -m recent --name SEP --rcheck --seconds N --reap
    -j SEP``."""
    def recent_check(spn: str, endpoint: str, sep: str, seconds: str) -> Rule:
        head = _comment(f"{spn} -> {endpoint}") if commented else ()
        return Rule(head + (RECENT, _opt("recent", "name", sep), RCHECK,
                            _opt("recent", "seconds", seconds), REAP), jump(sep))
    return RuleKind(recent_check)


@cache
def random_pick(commented: bool) -> RuleKind:
    """``[-m comment --comment "SPN -> EP"] -m statistic --mode random --probability P -j SEP``."""
    def probability_jump(spn: str, endpoint: str, probability: str, target: str) -> Rule:
        head = _comment(f"{spn} -> {endpoint}") if commented else ()
        return Rule(head + (STATISTIC, RANDOM, _opt("statistic", "probability", probability)),
                    jump(target))
    return RuleKind(probability_jump)


@cache
def last_pick(commented: bool) -> RuleKind:
    """``[-m comment --comment "SPN -> EP"] -j SEP``: the last endpoint, taken with the
    remaining probability."""
    def last_jump(spn: str, endpoint: str, target: str) -> Rule:
        return Rule(_comment(f"{spn} -> {endpoint}") if commented else (), jump(target))
    return RuleKind(last_jump)


@cache
def dnat(p: str, commented: bool, sticky: bool) -> RuleKind:
    """``[comment] [-m recent --name SEP --set] -m P -p P -j DNAT --to-destination EP``."""
    def dnat_rule(text: str, sep: str, endpoint: str) -> Rule:
        head: tuple[Option, ...] = _comment(text) if commented else ()
        if sticky:
            head += (RECENT, _opt("recent", "name", sep), SET)
        return Rule(head + proto(p), Target("DNAT", (_opt("DNAT", "to-destination", endpoint),)))
    return RuleKind(dnat_rule)
