"""Packet sequences after a fork on an unknown fact: each case keeps its own state.

An ipset without contents forks a packet's walk into "in the set" and "not in the set". What
the kernel then remembers (a recent entry, a connection and its NAT) differs by case, and a
later packet of the same client or connection must follow the state of its own case, not the
first case's for both.
"""

from __future__ import annotations

from netproxy.parser import parse_rules
from netproxy.trace import Packet, Tracer
from netproxy.trace.result import summary
from netproxy.trace.sequence import AUTO_STATE, trace_stream

# A client in ALLOWED is remembered (recent list SEEN); a client seen before skips the
# Service (RETURN before any DNAT).
SEEN_RULES = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:SEEN - [0:0]
:KUBE-SVC-B - [0:0]
:KUBE-SEP-3 - [0:0]
:KUBE-SEP-4 - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A KUBE-SERVICES -m recent --rcheck --name SEEN -j RETURN
-A KUBE-SERVICES -m set --match-set ALLOWED src -j SEEN
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-B
-A SEEN -m recent --set --name SEEN
-A KUBE-SVC-B -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-3
-A KUBE-SVC-B -j KUBE-SEP-4
-A KUBE-SEP-3 -p tcp -m tcp -j DNAT --to-destination 10.244.3.3:80
-A KUBE-SEP-4 -p tcp -m tcp -j DNAT --to-destination 10.244.4.4:80
COMMIT
"""

# Clients in ALLOWED go to one Service's endpoints, the others to another's.
SPLIT_RULES = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SVC-B - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m set --match-set ALLOWED src -m tcp --dport 80 -j KUBE-SVC-A
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-B
-A KUBE-SVC-A -p tcp -m statistic --mode random --probability 0.50000000000 -j DNAT --to-destination 10.244.1.1:80
-A KUBE-SVC-A -p tcp -j DNAT --to-destination 10.244.2.2:80
-A KUBE-SVC-B -p tcp -m statistic --mode random --probability 0.50000000000 -j DNAT --to-destination 10.244.3.3:80
-A KUBE-SVC-B -p tcp -j DNAT --to-destination 10.244.4.4:80
COMMIT
"""

IN = "10.244.0.5 in ALLOWED"
OUT = "10.244.0.5 not in ALLOWED"


def tracer(text: str) -> Tracer:
    return Tracer(parse_rules(text), local_ips=["192.168.0.1"], assume=True)


def by_case(res) -> dict[tuple[str, ...], dict[str | None, float]]:  # type: ignore[no-untyped-def]
    out: dict[tuple[str, ...], dict[str | None, float]] = {}
    for o in res.outcomes:
        case = out.setdefault(o.conditions(), {})
        case[o.dnat] = round(case.get(o.dnat, 0.0) + o.probability, 9)
    return out


def test_a_later_packet_follows_the_state_of_its_own_case() -> None:
    t = tracer(SEEN_RULES)
    packets = [Packet(src="10.244.0.5", dst="10.96.0.10", dport=80, time=n) for n in range(3)]
    first, second, third = trace_stream({"ipv4": t}, packets)
    # The first packet ends alike in both cases, but only "in ALLOWED" remembers the client:
    # the fact matters to what follows, so it is not dropped as irrelevant.
    assert summary(first) == "2 endpoints, 50% each, not masqueraded"
    assert {c.text for c in first.conditions()} == {IN}
    # Before, the second packet followed the first case's state in both cases: a definite
    # "accepted without DNAT". Each case now has its own answer.
    for later in (second, third):
        assert by_case(later) == {(IN,): {None: 1.0},
                                  (OUT,): {"10.244.3.3:80": 0.5, "10.244.4.4:80": 0.5}}
        assert summary(later) == (f"if {IN}: accepted without DNAT (forwarded), not "
                                  f"masqueraded; if {OUT}: 2 endpoints, 50% each, not "
                                  "masqueraded")
    # In the case where the client reached an endpoint before, it reaches the same one half
    # of the time; in the other it never does: no single share is given, and a note says so.
    assert second.same_as_previous is None
    assert "the share reaching the same endpoint as before differs by case" in second.notes


def _tcp(src: str, dst: str, sport: int, dport: int, flags: str, time: float) -> Packet:
    p = Packet(src=src, dst=dst, sport=sport, dport=dport, tcp_flags=flags, time=time)
    p.extra["ct"] = AUTO_STATE
    return p


def test_a_connection_keeps_the_nat_of_its_own_case() -> None:
    t = tracer(SPLIT_RULES)
    packets = [_tcp("10.244.0.5", "10.96.0.10", 4000, 80, "SYN", 0),
               _tcp("10.244.3.3", "10.244.0.5", 80, 4000, "SYN,ACK", 1),
               _tcp("10.244.0.5", "10.96.0.10", 4000, 80, "ACK", 2)]
    syn, synack, ack = trace_stream({"ipv4": t}, packets)
    assert by_case(syn) == {(IN,): {"10.244.1.1:80": 0.5, "10.244.2.2:80": 0.5},
                            (OUT,): {"10.244.3.3:80": 0.5, "10.244.4.4:80": 0.5}}
    # Equal shares in both cases: the summary names the endpoints so the cases differ.
    assert summary(syn) == (f"if {IN}: 2 endpoints (10.244.1.1:80, 10.244.2.2:80), 50% each, "
                            f"not masqueraded; if {OUT}: 2 endpoints (10.244.3.3:80, "
                            "10.244.4.4:80), 50% each, not masqueraded")
    # The SYN-ACK from 10.244.3.3 answers the connection only where the client was not in
    # ALLOWED: there it is the reply (source restored to the Service); where it was, no
    # connection of the client went to 10.244.3.3.
    replies = {o.conditions(): o.reverse for o in synack.outcomes}
    assert replies == {(IN,): None, (OUT,): "source restored to 10.96.0.10:80"}
    # The ACK then goes on in each case's own worlds: 50/50 where nothing pinned the
    # connection, 10.244.3.3 only where the SYN-ACK showed which world happened.
    assert "ESTABLISHED" in ack.packet.ct
    assert by_case(ack) == {(IN,): {"10.244.1.1:80": 0.5, "10.244.2.2:80": 0.5},
                            (OUT,): {"10.244.3.3:80": 1.0}}


def test_cases_sum_to_one_each() -> None:
    from netproxy.trace.cases import case_list

    t = tracer(SPLIT_RULES)
    packets = [_tcp("10.244.0.5", "10.96.0.10", 4000 + n % 2, 80, "SYN" if n < 2 else "ACK", n)
               for n in range(4)]
    for res in trace_stream({"ipv4": t}, packets):
        cases = case_list(res)
        assert cases
        for _conds, outs in cases:
            assert abs(sum(o.probability for o in outs) - 1.0) < 1e-9
