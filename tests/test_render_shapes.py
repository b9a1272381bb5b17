"""The fast paths of rendering give what the plain, option-by-option formatting gives.

``render`` compiles one formatter per shape of match part and ``saveform`` one save layout
per signature; both are checked here against straightforward reference code on random rules
built from real options and awkward values (quoting, negation, missing or extra arguments,
addresses that do not parse, ``recent`` defaults).
"""

from __future__ import annotations

import random

import pytest

from netproxy.netfilter.extensions import BUILTIN_SHORT
from netproxy.netfilter.model import Chain, Option, Rule, Ruleset, Target
from netproxy.netfilter.saveform import saved_general, to_saved
from netproxy.render import render_restore, render_save, rule_text


def _recent(name: str, *args: str) -> Option:
    return Option("recent", name, args)


POOL = [
    Option("recent", ""), _recent("name", "KUBE-SEP-X"), _recent("rcheck"), _recent("set"),
    _recent("seconds", "10800"), _recent("reap"), _recent("mask", "255.255.255.255"),
    _recent("mask", "255.255.0.0"), _recent("rdest"), _recent("rsource"), _recent("name"),
    _recent("rcheck", "extra"),
    Option("", "source", ("10.0.0.1",)), Option("", "source", ("10.0.0.0/8",), True),
    Option("", "source", ("10.0.0.0/8", "x")), Option("", "source", ()),
    Option("", "destination", ("fe80::1",)), Option("", "destination", ("not-an-ip",)),
    Option("", "protocol", ("TCP",)), Option("", "protocol", ("6",)), Option("", "fragment"),
    Option("", "in-interface", ("eth+",), True),
    Option("comment", ""), Option("comment", "comment", ("ns/svc:http cluster IP",)),
    Option("comment", "comment", ("",)), Option("comment", "comment", ('say "hi" \\ there',)),
    Option("comment", "comment", ("bare_word-1",)),
    Option("statistic", ""), Option("statistic", "mode", ("random",)),
    Option("statistic", "probability", ("0.3333333333",)), Option("statistic", "probability", ("x",)),
    Option("conntrack", ""), Option("conntrack", "ctstate", ("established,new",), True),
    Option("mark", ""), Option("mark", "mark", ("0x00004000/0x00004000",), True),
    Option("nfacct", ""), Option("nfacct", "nfacct-name", ("localhost_nps_accepted_pkts",)),
    Option("tcp", ""), Option("tcp", "dport", ("80",)), Option("tcp", "dport", ("80", "81")),
    Option("udp", "sport", ("53",)), Option("addrtype", ""), Option("addrtype", "dst-type", ("local",)),
]

TARGETS = [
    None, Target("KUBE-SEP-X"), Target("KUBE-SVC-X", goto=True), Target("REJECT"),
    Target("MARK", (Option("MARK", "or-mark", ("0x00004000",)),)),
    Target("MARK", (Option("MARK", "set-xmark", ("0x4000/0xffffffff",)),)),
    Target("DNAT", (Option("DNAT", "to-destination", ("10.244.1.5:8080",)),)),
    Target("LOG", (Option("LOG", "log-prefix", ("two words",)),)),
    Target("MASQUERADE", (Option("MASQUERADE", "random-fully"),)),
]


def _words(opt: Option, saved: bool) -> list[str]:
    """Reference spelling of one option, written out plainly."""
    out = ["!"] if opt.negated and opt.name else []
    if not opt.module:
        return [*out, "-" + BUILTIN_SHORT.get(opt.name, opt.name), *opt.args]
    if not opt.name:
        return ["-m", opt.module]
    out.append("--" + opt.name)
    for arg in opt.args:
        if not saved:
            special = not arg or any(c in " \t\"'\\" for c in arg)
            out.append('"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"' if special else arg)
        elif opt.name in ("comment", "log-prefix"):
            bare = arg and all(c.isascii() and (c.isalnum() or c in "_-") for c in arg)
            out.append(arg if bare else '"' + arg.replace("\\", "\\\\").replace('"', '\\"')
                       .replace("'", "\\'") + '"')
        elif opt.module == "nfacct":
            out.append(" " + arg)
        else:
            out.append(arg)
    return out


def _reference(rule: Rule, saved: bool, family: str, version: tuple[int, ...]) -> str:
    if saved:
        rule = saved_general(rule, family, version)
    words = [w for opt in rule.matches for w in _words(opt, saved)]
    if rule.target is not None:
        words += ["-g" if rule.target.goto else "-j", rule.target.name]
        words += [w for opt in rule.target.options for w in _words(opt, saved)]
    return " ".join(["-A", "C", *words])


def _rules(seed: int, count: int) -> list[Rule]:
    rng = random.Random(seed)
    return [Rule(tuple(rng.choice(POOL) for _ in range(rng.randint(0, 6))), rng.choice(TARGETS))
            for _ in range(count)]


@pytest.mark.parametrize("version", [(1, 8, 7), (1, 8, 9), (1, 8, 10)])
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_save_layouts_match_the_general_path(family: str, version: tuple[int, ...]) -> None:
    for rule in _rules(1, 1500):
        assert to_saved(rule, family, version) == saved_general(rule, family, version), rule


@pytest.mark.parametrize("version", [(1, 8, 9), (1, 8, 10)])
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_rule_text_matches_plain_formatting(family: str, version: tuple[int, ...]) -> None:
    for rule in _rules(2, 1500):
        assert rule_text(rule, "C", family, True, version) == _reference(rule, True, family, version)
        assert rule_text(rule, "C", family, False) == _reference(rule, False, family, version)


def test_whole_rulesets_use_the_same_spelling() -> None:
    rules = _rules(3, 2000)
    ruleset = Ruleset()
    ruleset.table("filter").chains["C"] = Chain("C", None, None, rules)
    saved = render_save(ruleset).splitlines()
    restore = render_restore(ruleset).splitlines()
    assert [line for line in saved if line.startswith("-A")] == [
        _reference(r, True, "ipv4", (1, 8, 9)) for r in rules]
    assert [line for line in restore if line.startswith("-A")] == [
        _reference(r, False, "ipv4", (1, 8, 9)) for r in rules]
