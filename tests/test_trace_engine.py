"""The walk itself: hook order, verdicts, jumps, marks, NAT, forks, memory, errors."""

from __future__ import annotations

import pytest

from netproxy.errors import TraceError
from netproxy.netfilter.model import Chain, Option, Rule, Ruleset, Target
from netproxy.parser import parse_rules
from netproxy.trace import Memory, Packet, Tracer


def rules(text: str, family: str | None = None) -> Ruleset:
    return parse_rules(text, source="t.rules", family=family)


def one(tracer: Tracer, **kw: object):
    res = tracer.trace(Packet(**kw))  # type: ignore[arg-type]
    assert abs(res.total() - 1.0) < 1e-12
    return res


BASIC = """*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:SVC - [0:0]
:SEP1 - [0:0]
:SEP2 - [0:0]
:SEP3 - [0:0]
:MASQ - [0:0]
:POST - [0:0]
-A PREROUTING -j SVCS
-A OUTPUT -j SVCS
-A POSTROUTING -j POST
-A POST -m mark ! --mark 0x4000/0x4000 -j RETURN
-A POST -j MARK --xor-mark 0x4000
-A POST -j MASQUERADE --random-fully
-A MASQ -j MARK --or-mark 0x4000
-A SVC -m statistic --mode random --probability 0.3333333333 -j SEP1
-A SVC -m statistic --mode random --probability 0.5000000000 -j SEP2
-A SVC -j SEP3
-A SEP1 -s 10.1.0.1/32 -j MASQ
-A SEP1 -p tcp -j DNAT --to-destination 10.1.0.1:8080
-A SEP2 -s 10.1.0.2/32 -j MASQ
-A SEP2 -p tcp -j DNAT --to-destination 10.1.0.2:8080
-A SEP3 -s 10.1.0.3/32 -j MASQ
-A SEP3 -p tcp -j DNAT --to-destination 10.1.0.3:8080
:SVCS - [0:0]
-A SVCS -d 10.96.0.5/32 -p tcp -m tcp --dport 80 ! -s 10.1.0.0/16 -j MASQ
-A SVCS -d 10.96.0.5/32 -p tcp -m tcp --dport 80 -j SVC
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT
-A FORWARD -d 10.1.0.0/16 -m conntrack --ctstate DNAT -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -j REJECT
COMMIT
"""


def test_three_endpoints_with_kernel_probabilities() -> None:
    t = Tracer(rules(BASIC), local_ips=["192.168.0.10"])
    res = one(t, src="10.1.5.5", dst="10.96.0.5", dport=80)
    dnats = [(o.dnat, o.probability) for o in res.outcomes]
    u = round(2**31 * 0.3333333333) / 2**31
    assert dnats[0] == ("10.1.0.1:8080", u)
    assert dnats[1] == ("10.1.0.2:8080", (1 - u) * 0.5)
    assert dnats[2] == ("10.1.0.3:8080", (1 - u) * 0.5)
    assert all(o.verdict == "ACCEPT" and o.delivered == "forwarded" for o in res.outcomes)
    # in-cluster source: not masqueraded; accepted by the DNAT conntrack rule
    assert not any(o.masquerade for o in res.outcomes)
    (hop,) = [h for h in res.outcomes[0].path if h.table == "filter"]
    assert (hop.chain, hop.rule) == ("FORWARD", 2)


def test_masquerade_for_outside_source_and_mark_cleared() -> None:
    t = Tracer(rules(BASIC), local_ips=["192.168.0.10"])
    res = one(t, src="172.16.0.9", dst="10.96.0.5", dport=80)
    assert all(o.masquerade for o in res.outcomes)
    assert res.outcomes[0].masquerade_flags == "--random-fully"
    # accepted by the mark rule in FORWARD (the xor happens only later in POSTROUTING)
    assert any(h.chain == "FORWARD" and h.rule == 1 for h in res.outcomes[0].path)


def test_hairpin_endpoint_is_masqueraded_only_on_its_branch() -> None:
    t = Tracer(rules(BASIC), local_ips=["192.168.0.10"])
    res = one(t, src="10.1.0.2", dst="10.96.0.5", dport=80)
    masq = {o.dnat: o.masquerade for o in res.outcomes}
    assert masq == {"10.1.0.1:8080": False, "10.1.0.2:8080": True, "10.1.0.3:8080": False}


def test_policy_drop_and_local_delivery() -> None:
    t = Tracer(rules(BASIC), local_ips=["192.168.0.10"])
    res = one(t, src="172.16.0.9", dst="10.2.0.1", dport=80)
    assert [o.verdict for o in res.outcomes] == ["DROP"]
    assert res.outcomes[0].path[-1].rule is None
    res = one(t, src="172.16.0.9", dst="192.168.0.10", dport=443)
    assert res.outcomes[0].verdict == "ACCEPT" and res.outcomes[0].delivered == "local"
    res = one(t, src="172.16.0.9", dst="192.168.0.10", dport=22)
    assert res.outcomes[0].verdict == "REJECT"


def test_node_origin_uses_output() -> None:
    t = Tracer(rules(BASIC), local_ips=["192.168.0.10"])
    res = one(t, src="192.168.0.10", dst="10.96.0.5", dport=80)
    assert res.packet.origin == "node"
    assert res.outcomes[0].path[0].chain == "OUTPUT"
    assert {o.dnat for o in res.outcomes} == {"10.1.0.1:8080", "10.1.0.2:8080", "10.1.0.3:8080"}
    assert all(o.delivered == "sent" and o.masquerade for o in res.outcomes)


def test_established_skips_nat() -> None:
    t = Tracer(rules(BASIC), local_ips=["192.168.0.10"])
    res = one(t, src="172.16.0.9", dst="10.96.0.5", dport=80, ct_state="ESTABLISHED")
    assert [o.dnat for o in res.outcomes] == [None]
    assert res.notes and "nat table not consulted" in res.notes[0]


GOTO = """*filter
:INPUT ACCEPT [0:0]
:A - [0:0]
:B - [0:0]
-A INPUT -p tcp -g A
-A INPUT -j DROP
-A A -p tcp --dport 1 -j ACCEPT
-A A -j B
-A B -p tcp --dport 2 -j RETURN
-A B -p tcp --dport 3 -j REJECT
COMMIT
"""


@pytest.mark.parametrize(("port", "verdict", "last"), [
    (1, "ACCEPT", ("A", 1)),
    (2, "ACCEPT", ("INPUT", None)),   # RETURN from B goes to A; A ends; goto -> INPUT policy
    (3, "REJECT", ("B", 2)),
    (4, "ACCEPT", ("INPUT", None)),
])
def test_goto_return_semantics(port: int, verdict: str, last: tuple[str, int | None]) -> None:
    t = Tracer(rules(GOTO), local_ips=["10.0.0.1"])
    res = one(t, src="10.9.9.9", dst="10.0.0.1", dport=port)
    o = res.outcomes[0]
    assert o.verdict == verdict
    assert (o.path[-1].chain, o.path[-1].rule) == last
    # the second INPUT rule (-j DROP) is never reached after a goto
    assert not any(h.chain == "INPUT" and h.rule == 2 for h in o.path)


def test_mark_operations() -> None:
    text = """*mangle
:PREROUTING ACCEPT [0:0]
-A PREROUTING -j MARK --set-xmark 0x10/0xff
-A PREROUTING -j MARK --or-mark 0x4000
-A PREROUTING -j MARK --and-mark 0xfffffff0
-A PREROUTING -j MARK --xor-mark 0x1
-A PREROUTING -j CONNMARK --save-mark --nfmask 0xffff --ctmask 0xffff
-A PREROUTING -m mark --mark 0x4011 -m connmark --mark 0x4011 -j DROP
COMMIT
"""
    t = Tracer(rules(text))
    res = one(t, src="10.9.9.9", dst="10.0.0.1", mark=0xF0F)
    # (0xf0f & ~0xff) ^ 0x10 = 0xf10; | 0x4000 = 0x4f10; & ~0xf = 0x4f10; ^ 1 = 0x4f11
    assert res.outcomes[0].verdict == "ACCEPT"
    res = one(t, src="10.9.9.9", dst="10.0.0.1", mark=0x0)
    assert res.outcomes[0].verdict == "DROP"


def test_unknown_match_and_target_name_the_line() -> None:
    text = """*filter
:INPUT ACCEPT [0:0]
-A INPUT -p udp -m frob --zap 1 -j DROP
-A INPUT -p tcp -m frob --zap 1 -j DROP
-A INPUT -p tcp -j FOO
COMMIT
"""
    rs = rules(text)
    t = Tracer(rs, local_ips=["10.0.0.1"])
    res = one(t, src="10.9.9.9", dst="10.0.0.1", dport=80)
    (o,) = res.outcomes
    assert o.verdict == "UNKNOWN"
    assert o.path[-1].line == 4 and "frob" in (o.reason or "")
    # a definite mismatch elsewhere in the rule still decides it
    res = one(t, src="10.9.9.9", dst="10.0.0.1", dport=80, proto="icmp")
    assert res.outcomes[0].verdict == "ACCEPT"
    with pytest.raises(TraceError, match="t.rules:3"):
        Tracer(rs, strict=True)


def test_unknown_interface_is_reported_not_guessed() -> None:
    text = """*filter
:FORWARD ACCEPT [0:0]
-A FORWARD -o docker0 -j DROP
COMMIT
"""
    t = Tracer(rules(text), local_ips=["10.0.0.1"])
    res = one(t, src="10.9.9.9", dst="10.5.0.1", dport=80)
    assert res.outcomes[0].verdict == "UNKNOWN"
    assert "--out-interface" in (res.outcomes[0].reason or "")
    res = one(t, src="10.9.9.9", dst="10.5.0.1", dport=80, out_interface="eth0")
    assert res.outcomes[0].verdict == "ACCEPT"
    res = one(t, src="10.9.9.9", dst="10.5.0.1", dport=80, out_interface="docker0")
    assert res.outcomes[0].verdict == "DROP"


def test_nth_counts_across_packets() -> None:
    text = """*filter
:INPUT ACCEPT [0:0]
-A INPUT -m statistic --mode nth --every 3 --packet 1 -j DROP
COMMIT
"""
    t = Tracer(rules(text), local_ips=["10.0.0.1"])
    pk = Packet(src="10.9.9.9", dst="10.0.0.1", dport=1)
    verdicts = [r.outcomes[0].verdict for r in t.trace_sequence([pk] * 7)]
    # packet k (0-based) matches when k = 1 (mod 3), as xt_statistic counts
    assert verdicts == ["ACCEPT", "DROP", "ACCEPT", "ACCEPT", "DROP", "ACCEPT", "ACCEPT"]


def test_recent_affinity_across_packets() -> None:
    text = """*nat
:PREROUTING ACCEPT [0:0]
:SVC - [0:0]
:E1 - [0:0]
:E2 - [0:0]
-A PREROUTING -d 10.96.0.1 -j SVC
-A SVC -m recent --name E1 --rcheck --seconds 100 --reap -j E1
-A SVC -m recent --name E2 --rcheck --seconds 100 --reap -j E2
-A SVC -m statistic --mode random --probability 0.5 -j E1
-A SVC -j E2
-A E1 -m recent --name E1 --set -p tcp -j DNAT --to-destination 10.1.0.1:80
-A E2 -m recent --name E2 --set -p tcp -j DNAT --to-destination 10.1.0.2:80
COMMIT
"""
    t = Tracer(rules(text), local_ips=["10.0.0.1"])
    first = t.trace(Packet(src="10.9.9.9", dst="10.96.0.1", dport=80))
    (o1, o2) = first.outcomes
    assert (o1.dnat, o2.dnat) == ("10.1.0.1:80", "10.1.0.2:80")
    again = t.trace(Packet(src="10.9.9.9", dst="10.96.0.1", dport=80), memory=o1.memory)
    assert [o.dnat for o in again.outcomes] == ["10.1.0.1:80"]
    assert again.outcomes[0].probability == 1.0
    other = t.trace(Packet(src="10.9.9.8", dst="10.96.0.1", dport=80), memory=o1.memory)
    assert len(other.outcomes) == 2
    late = t.trace(Packet(src="10.9.9.9", dst="10.96.0.1", dport=80, time=101.0),
                   memory=o1.memory)
    assert len(late.outcomes) == 2  # the entry expired
    seq = t.trace_sequence([Packet(src="10.9.9.9", dst="10.96.0.1", dport=80)] * 3)
    assert [r.same_as_previous for r in seq] == [None, 1.0, 1.0]
    assert sorted(o.probability for o in seq[2].outcomes) == [0.5, 0.5]


def _chain_ruleset(n: int, loop: bool = False) -> Ruleset:
    rs = Ruleset(source="deep.rules")
    table = rs.table("filter")
    inp = table.chain("INPUT")
    inp.rules.append(Rule(target=Target("C0"), line=1))
    for i in range(n):
        c = Chain(f"C{i}")
        table.chains[c.name] = c
    for i in range(n):
        nxt = f"C{i + 1}" if i + 1 < n else ("C0" if loop else "ACCEPT")
        table.chains[f"C{i}"].rules.append(Rule(target=Target(nxt), line=i + 2))
    return rs


def test_jump_loop_is_a_clear_error() -> None:
    t = Tracer(_chain_ruleset(3, loop=True), local_ips=["10.0.0.1"])
    with pytest.raises(TraceError, match=r"jump loop .*C0 -> C1 -> C2 -> C0"):
        t.trace(Packet(src="10.9.9.9", dst="10.0.0.1", dport=1))


def test_goto_loop_is_a_clear_error() -> None:
    rs = _chain_ruleset(2, loop=True)
    for chain in rs.tables["filter"].chains.values():
        for rule in chain.rules:
            if rule.target is not None and rule.target.name.startswith("C") and chain.name != "INPUT":
                rule.target.goto = True
    with pytest.raises(TraceError, match="jump loop"):
        Tracer(rs, local_ips=["10.0.0.1"]).trace(Packet(src="10.9.9.9", dst="10.0.0.1", dport=1))


def test_very_deep_chain_is_a_clear_error() -> None:
    t = Tracer(_chain_ruleset(100_000), local_ips=["10.0.0.1"])
    with pytest.raises(TraceError, match="nested deeper than"):
        t.trace(Packet(src="10.9.9.9", dst="10.0.0.1", dport=1))


def test_bad_packets() -> None:
    t = Tracer(rules(BASIC), local_ips=["192.168.0.10"])
    with pytest.raises(TraceError, match="bad destination"):
        t.trace(Packet(src="10.0.0.1", dst="10.0.0.300"))
    with pytest.raises(TraceError, match="ipv6 but the rules are ipv4"):
        t.trace(Packet(src="10.0.0.1", dst="fd00::1"))
    with pytest.raises(TraceError, match="source address is needed"):
        t.trace(Packet(dst="10.0.0.1"))
    with pytest.raises(TraceError, match="bad --local-ip"):
        Tracer(rules(BASIC), local_ips=["nope"])
    assert Tracer(rules(BASIC), local_ips=["fd00::1", "192.168.0.10"]).local_ips == ["192.168.0.10"]


def test_rule_models_built_in_code() -> None:
    rs = Ruleset(source="code")
    nat = rs.table("nat")
    pre = nat.chain("PREROUTING")
    pre.rules.append(Rule(matches=(Option("", "destination", ("10.96.0.9",)),
                                   Option("", "protocol", ("udp",)),
                                   Option("udp", "dport", ("53",))),
                          target=Target("DNAT", (Option("DNAT", "to-destination",
                                                        ("10.1.0.53:5353",)),))))
    t = Tracer(rs)
    res = one(t, src="10.1.2.3", dst="10.96.0.9", dport=53, proto="udp")
    assert res.outcomes[0].dnat == "10.1.0.53:5353"
    assert res.outcomes[0].path[0].text.startswith("-A PREROUTING -d 10.96.0.9/32")
    res = one(t, src="10.1.2.3", dst="10.96.0.9", dport=53, proto="tcp")
    assert res.outcomes[0].dnat is None


def test_memory_is_not_shared_between_branches() -> None:
    m = Memory()
    m2 = m.with_recent("X", 1, (0.0,))
    assert m.recent == {} and m2.recent == {"X": {1: (0.0,)}}


def test_branch_explosion_is_a_clear_error() -> None:
    lines = ["*filter", ":INPUT ACCEPT [0:0]"] + [f":F{i} - [0:0]" for i in range(5)]
    lines.append("-A INPUT -j F0")
    for i in range(4):  # 16-way splits, four deep: 65,536 branches
        for k in range(15):
            lines.append(f"-A F{i} -m statistic --mode random --probability {1 / (16 - k):.10f}"
                         f" -g F{i + 1}")
        lines.append(f"-A F{i} -g F{i + 1}")
    t = Tracer(rules("\n".join(lines + ["COMMIT", ""])), local_ips=["10.0.0.1"])
    with pytest.raises(TraceError, match="more than 50000 branches"):
        t.trace(Packet(src="10.9.9.9", dst="10.0.0.1", dport=1))


def test_endless_re_entry_is_a_clear_error() -> None:
    lines = ["*filter", ":INPUT ACCEPT [0:0]"] + [f":F{i} - [0:0]" for i in range(21)]
    lines.append("-A INPUT -j F0")
    for i in range(20):  # every chain entered twice from its parent: 2^20 visits of F20
        lines += [f"-A F{i} -j F{i + 1}", f"-A F{i} -j F{i + 1}"]
    t = Tracer(rules("\n".join(lines + ["COMMIT", ""])), local_ips=["10.0.0.1"])
    with pytest.raises(TraceError, match="longer than 20000 hops"):
        t.trace(Packet(src="10.9.9.9", dst="10.0.0.1", dport=1))


def test_queue_policy_is_unknown() -> None:
    t = Tracer(rules("*filter\n:INPUT QUEUE [0:0]\nCOMMIT\n"), local_ips=["10.0.0.1"])
    (o,) = t.trace(Packet(src="10.9.9.9", dst="10.0.0.1", dport=1)).outcomes
    assert o.verdict == "UNKNOWN" and "QUEUE" in (o.reason or "")
    assert o.path[-1].text == "-P INPUT QUEUE"
