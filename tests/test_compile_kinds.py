"""Rule kinds: the restore line derived from a kind equals rendering the rule it builds,
for every kind the compiler uses and for values that need quoting."""

from __future__ import annotations

import itertools

import pytest

from netproxy.compiler import rules
from netproxy.compiler.build import addrtype, in_iface, source
from netproxy.compiler.kinds import KindError, RuleKind, kind
from netproxy.netfilter.model import Option, Rule, Target
from netproxy.render import rule_text

EXTRAS: tuple[tuple[Option, ...], ...] = ((), (source("10.244.0.0/16", True),),
                                         (in_iface("cbr0", True),), addrtype("src-type"))
FLAGS = (True, False)
PROTOCOLS = ("tcp", "udp", "sctp")
KINDS: list[RuleKind] = [
    rules.comment_only, rules.plain_jump,
    *(f(p) for f in (rules.node_port, rules.localhost_node_port, rules.node_port_verdict)
      for p in PROTOCOLS),
    *(rules.to_service_ip(p, extra) for p, extra in itertools.product(PROTOCOLS, EXTRAS)),
    *(rules.commented(extra) for extra in EXTRAS),
    *(f(flag) for f in (rules.from_source, rules.affinity_check, rules.random_pick, rules.last_pick)
      for flag in FLAGS),
    *(rules.dnat(p, a, b) for p, a, b in itertools.product(PROTOCOLS, FLAGS, FLAGS)),
]
VALUES = ["ns/web:http", "ns/web:http -> 10.1.0.7:8080", "", 'say "hi"', "back\\slash",
          "tab\there", "it's", "0.3333333333", "[fd00::1]:80"]


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
@pytest.mark.parametrize("rule_kind", KINDS, ids=repr)
def test_line_equals_rendered_rule(rule_kind: RuleKind, family: str) -> None:
    line = rule_kind.line(family)
    for shift in range(len(VALUES)):
        values = [VALUES[(shift + i) % len(VALUES)] for i in range(rule_kind.arity)]
        values = [v if i else v or "x" for i, v in enumerate(values)]
        expected = rule_text(rule_kind.build(*values), "KUBE-SEP-X", family, saved=False)
        assert line("KUBE-SEP-X", *values) == expected, values


def test_a_kind_that_changes_a_value_is_refused() -> None:
    @kind
    def clipped(addr: str) -> Rule:
        return Rule((Option("", "source", (addr[1:],)),), Target("ACCEPT"))

    with pytest.raises(KindError, match="clipped"):
        clipped.line("ipv4")


def test_a_kind_whose_value_names_a_module_is_refused() -> None:
    @kind
    def by_protocol(p: str) -> Rule:
        return Rule((Option(p, ""), Option("", "protocol", (p,))), Target("ACCEPT"))

    with pytest.raises(KindError, match="by_protocol"):
        by_protocol.line("ipv4")


def test_a_value_used_twice_in_one_argument_list() -> None:
    @kind
    def twice(text: str) -> Rule:
        return Rule((Option("comment", ""), Option("comment", "comment", (text, text))), None)

    assert twice.line("ipv4")("C", "a b") == rule_text(twice.build("a b"), "C", saved=False)


def test_literal_braces_and_backslashes_survive_the_f_string() -> None:
    @kind
    def odd(text: str) -> Rule:
        return Rule((Option("comment", ""), Option("comment", "comment", ("{a} \\ " + text,))),
                    Target("ACCEPT"))

    for value in ("x", "{y}", 'q"'):
        assert odd.line("ipv4")("C", value) == rule_text(odd.build(value), "C", saved=False)


@pytest.mark.parametrize("rule_kind", KINDS, ids=repr)
def test_lines_of_many_rules_equal_their_lines_one_by_one(rule_kind: RuleKind) -> None:
    """Every mix of per-rule and shared values, including values that need quoting."""
    rows = 4
    chains = [f"KUBE-SEP-{r}" for r in range(rows)]
    for varying in itertools.product((False, True), repeat=rule_kind.arity):
        columns = [[VALUES[(r + i) % len(VALUES)] for r in range(rows)] if per_rule
                   else VALUES[(i + 3) % len(VALUES)] for i, per_rule in enumerate(varying)]
        expected = [rule_kind.line("ipv4")(chains[r], *[c[r] if per_rule else c
                                                        for c, per_rule in zip(columns, varying, strict=True)])
                    for r in range(rows)]
        assert rule_kind.lines("ipv4", varying)(chains, *columns) == expected, varying


@pytest.mark.parametrize("rule_kind", KINDS, ids=repr)
def test_builds_of_many_rules_equal_their_builds_one_by_one(rule_kind: RuleKind) -> None:
    rows = 3
    for varying in itertools.product((False, True), repeat=rule_kind.arity):
        columns = [[VALUES[(r + i) % len(VALUES)] for r in range(rows)] if per_rule
                   else VALUES[(i + 3) % len(VALUES)] for i, per_rule in enumerate(varying)]
        expected = [rule_kind.build(*[c[r] if per_rule else c
                                      for c, per_rule in zip(columns, varying, strict=True)])
                    for r in range(rows)]
        assert rule_kind.builds(varying)(rows, *columns) == expected, varying


def test_builds_share_what_every_row_shares() -> None:
    rules_built = rules.dnat("tcp", True, False).builds((False, True, True))(
        2, "ns/web:http", ["KUBE-SEP-A", "KUBE-SEP-B"], ["10.1.0.1:80", "10.1.0.2:80"])
    assert rules_built[0].matches is rules_built[1].matches
    assert rules_built[0].target is not rules_built[1].target


def test_a_builder_that_changes_a_value_is_refused() -> None:
    @kind
    def clipped(addr: str) -> Rule:
        return Rule((Option("", "source", (addr[1:],)),), Target("ACCEPT"))

    with pytest.raises(KindError, match="clipped"):
        clipped.builds((True,))
