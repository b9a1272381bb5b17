"""Option resolution, negation, spellings and errors of the rule parser."""

from __future__ import annotations

import pytest

from netproxy.errors import ParseError
from netproxy.netfilter.model import Option
from netproxy.parser import parse_rules, rule_from_args
from netproxy.render import rule_text


def one(text: str, table: str = "filter", strict: bool = False):
    rs = parse_rules(f"*{table}\n:X - [0:0]\n{text}\nCOMMIT\n", strict=strict)
    return rs, rs.tables[table].chains["X"].rules[0]


def test_written_order_is_kept_and_owners_resolved() -> None:
    rule = rule_from_args(["-m", "comment", "--comment", "default/web:http cluster IP", "-m", "tcp",
                           "-p", "tcp", "-d", "10.96.10.10", "--dport", "80", "-j", "KUBE-SVC-X"])
    assert rule.matches == (
        Option("comment", "", ()),
        Option("comment", "comment", ("default/web:http cluster IP",)),
        Option("tcp", "", ()),
        Option("", "protocol", ("tcp",)),
        Option("", "destination", ("10.96.10.10",)),
        Option("tcp", "dport", ("80",)),
    )
    assert rule_text(rule, "KUBE-SERVICES", saved=False) == (
        '-A KUBE-SERVICES -m comment --comment "default/web:http cluster IP" -m tcp -p tcp '
        "-d 10.96.10.10 --dport 80 -j KUBE-SVC-X")
    assert rule_text(rule, "KUBE-SERVICES") == (
        '-A KUBE-SERVICES -d 10.96.10.10/32 -p tcp -m comment --comment "default/web:http cluster IP" '
        "-m tcp --dport 80 -j KUBE-SVC-X")


def test_aliases_and_implicit_protocol_module() -> None:
    _, rule = one("-A X --destination 10.0.0.1 --protocol tcp --destination-port 80 -j ACCEPT")
    assert rule_text(rule, "X") == "-A X -d 10.0.0.1/32 -p tcp -m tcp --dport 80 -j ACCEPT"


@pytest.mark.parametrize("text", ["-A X ! -s 10.0.0.0/8 -j DROP", "-A X -s ! 10.0.0.0/8 -j DROP"])
def test_negation_in_both_positions(text: str) -> None:
    _, rule = one(text)
    assert rule.builtin("source") == Option("", "source", ("10.0.0.0/8",), True)


def test_same_option_in_two_modules_goes_to_the_latest() -> None:
    _, rule = one("-A X -m mark --mark 0x1 -m connmark --mark 0x2/0xff -j ACCEPT")
    assert rule.option("mark", "mark") == Option("mark", "mark", ("0x1",))
    assert rule.option("connmark", "mark") == Option("connmark", "mark", ("0x2/0xff",))


def test_target_options_after_jump() -> None:
    _, rule = one("-A X -p tcp -j DNAT --to-destination 10.1.2.3:80", table="nat")
    assert rule.target is not None and rule.target.get("to-destination") == Option(
        "DNAT", "to-destination", ("10.1.2.3:80",))


def test_unknown_module_is_kept_in_lenient_mode() -> None:
    rs, rule = one("-A X -m frobnicate --level 3 --fast -j ACCEPT")
    assert Option("frobnicate", "level", ("3",)) in rule.matches
    assert Option("frobnicate", "fast", ()) in rule.matches
    assert any("frobnicate" in p.message for p in rs.problems)


def test_strict_mode_names_line_and_column() -> None:
    with pytest.raises(ParseError) as err:
        one("-A X -m frobnicate --level 3 -j ACCEPT", strict=True)
    assert str(err.value) == "<input>:3:9: unknown match module 'frobnicate'"


def test_unparseable_line_becomes_opaque_rule() -> None:
    rs, rule = one("-A X -s 10.0.0.1 -j")
    assert rule.opaque == "-A X -s 10.0.0.1 -j" and rule.line == 3
    assert rs.problems and rs.problems[0].line == 3


def test_quotes_and_escapes() -> None:
    _, rule = one('-A X -m comment --comment "say \\"hi\\" \\\\ there" -j ACCEPT')
    assert rule.comment() == 'say "hi" \\ there'
    assert rule_text(rule, "X") == '-A X -m comment --comment "say \\"hi\\" \\\\ there" -j ACCEPT'


def test_undeclared_jump_target_is_reported() -> None:
    rs, _ = one("-A X -j NOWHERE")
    assert any("NOWHERE" in p.message for p in rs.problems)
    with pytest.raises(ParseError):
        one("-A X -j NOWHERE", strict=True)


def test_rule_outside_table_is_an_error() -> None:
    with pytest.raises(ParseError) as err:
        parse_rules("-A INPUT -j ACCEPT\n", source="dump.rules")
    assert str(err.value).startswith("dump.rules:1:1: rule outside a table")


def test_counter_prefix() -> None:
    rs = parse_rules("*filter\n:INPUT ACCEPT [5:300]\n[7:420] -A INPUT -j ACCEPT\nCOMMIT\n")
    chain = rs.tables["filter"].chains["INPUT"]
    assert chain.counters == (5, 300) and chain.rules[0].counters == (7, 420)


def test_unterminated_quote_is_a_problem_not_a_crash() -> None:
    rs, rule = one('-A X -m comment --comment "open -j ACCEPT')
    assert rule.opaque is not None
    assert rs.problems[0].message == "unterminated quote" and rs.problems[0].line == 3
    with pytest.raises(ParseError) as err:
        one('-A X -m comment --comment "open -j ACCEPT', strict=True)
    assert str(err.value) == "<input>:3:27: unterminated quote"


def test_hot_path_options_have_tuple_args() -> None:
    text = "*nat\n:X - [0:0]\n" + "".join(
        f'-A X -d 10.0.0.{i} -p tcp -m comment --comment "svc {i}" -m tcp --dport 80 -j ACCEPT\n'
        for i in range(3)) + "COMMIT\n"
    rules = parse_rules(text).tables["nat"].chains["X"].rules
    for rule in rules:  # the second and third come from the cached plan
        assert all(type(opt.args) is tuple for opt in rule.matches)
        hash(rule.matches)


def _chain_rules(lines: list[str]) -> tuple[list, list]:
    rs = parse_rules("*filter\n:X - [0:0]\n" + "".join(f"{line}\n" for line in lines) + "COMMIT\n")
    return rs.tables["filter"].chains["X"].rules, rs.problems


@pytest.mark.parametrize("second", [
    "-A X -s 10.0.0.2/32 -m comment --comment --bogus -j ACCEPT",   # "--" in a value
    '-A X -s 10.0.0.2/32 -m comment --comment "--bogus" -j ACCEPT',  # the same, quoted
    '-A X -s 10.0.0.2/32 -m comment --comment -"-bogus" -j ACCEPT',  # a quote joins the dashes
])
def test_a_cached_shape_does_not_hide_a_long_option_among_values(second: str) -> None:
    # Same known words in the same places as the first line, so the same shape key; the
    # "--" where the first line had a value must still be read (and reported) as an option.
    first = '-A X -s 10.0.0.1/32 -m comment --comment "svc a" -j ACCEPT'
    expected, expected_problems = _chain_rules([second])
    rules, problems = _chain_rules([first, second])
    assert rules[1].matches == expected[0].matches and rules[1].target == expected[0].target
    assert [p.message for p in problems] == [p.message for p in expected_problems] != []


def test_a_cached_shape_does_not_decide_the_protocol_of_an_unknown_spelling() -> None:
    # "-p TCP" loads tcp for --dport; "-p 6" is no protocol netproxy knows by that name, so
    # --dport there is an unknown option, whatever the line before it was.
    rules, problems = _chain_rules(["-A X -p TCP --dport 80 -j ACCEPT",
                                    "-A X -p 6 --dport 80 -j ACCEPT"])
    assert rules[0].option("tcp", "dport") is not None
    assert rules[1].option("tcp", "dport") is None
    assert [p.line for p in problems] == [4]


def test_restore_payload_flushing_a_chain_it_wrote_before() -> None:
    rs = parse_rules("*filter\n:X - [0:0]\n:Y - [0:0]\n-A X -j ACCEPT\n-A Y -j ACCEPT\n-F X\n"
                     "-A X -j DROP\nCOMMIT\n")
    table = rs.tables["filter"]
    assert [r.jump for r in table.chains["X"].rules] == ["DROP"]
    assert table.writes is None  # rendered chain by chain: what the kernel holds afterwards


def test_interleaved_restore_payload_keeps_its_written_order() -> None:
    text = ("*nat\n:A - [0:0]\n:B - [0:0]\n-A B -j RETURN\n-A A -s 10.0.0.1/32 -j RETURN\n"
            "-A A -s 10.0.0.2/32 -j RETURN\n-A B -j ACCEPT\n-X C\nCOMMIT\n")
    table = parse_rules(text).tables["nat"]
    assert [(c, r.line if r else None) for c, r in table.writes or []] == [
        ("B", 4), ("A", 5), ("A", 6), ("B", 7), ("C", None)]


@pytest.mark.parametrize("size", [1, 5, 7, 64])
def test_reading_in_pieces_gives_the_lines_of_the_whole_text(size: int) -> None:
    from itertools import chain

    from netproxy.parser.dump import _pieces

    text = "*nat\r\n:X - [0:0]\n\n-A X -j RETURN\x0b-A X\nCOMMIT\r\nlast"
    assert list(chain.from_iterable(map(str.splitlines, _pieces(text, size)))) == text.splitlines()
    assert "".join(_pieces(text, size)) == text


@pytest.mark.parametrize("first, second", [
    # A "!" where the first line had a value negates (the old position of "!").
    ("-A X -s 10.0.0.1/32 -m comment --comment a -j ACCEPT",
     "-A X -s 10.0.0.2/32 -m comment --comment ! -j ACCEPT"),
    # A known target where the first line jumped to a chain takes the options it knows:
    # --mask is CONNMARK's here, recent's after a chain.
    ("-A X -m recent --rcheck --name a -j KUBE-A --mask 255.255.255.255",
     "-A X -m recent --rcheck --name a -j CONNMARK --mask 0x1"),
])
def test_a_shape_seen_before_does_not_swallow_a_different_line(first: str, second: str) -> None:
    alone, alone_problems = _chain_rules([second])
    rules, problems = _chain_rules([first, second])
    assert (rules[1].matches, rules[1].target) == (alone[0].matches, alone[0].target)
    assert [p.message for p in problems if p.line == 4] == [p.message for p in alone_problems]
