"""Match and target evaluators, one small ruleset each, both outcomes checked."""

from __future__ import annotations

import pytest

from netproxy.parser import parse_rules
from netproxy.trace import Packet, Tracer
from netproxy.trace.ipsets import parse_ipsets

LOCAL = ["10.0.0.1"]


def filter_input(rule: str, family: str = "ipv4", **kw: object) -> Tracer:
    text = f"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT {rule} -j DROP\nCOMMIT\n"
    return Tracer(parse_rules(text, source="m.rules", family=family),
                  local_ips=kw.pop("local", LOCAL), **kw)  # type: ignore[arg-type]


def verdict(t: Tracer, **packet: object) -> str:
    packet.setdefault("src", "10.9.9.9")
    packet.setdefault("dst", "10.0.0.1")
    res = t.trace(Packet(**packet))  # type: ignore[arg-type]
    assert res.total() == pytest.approx(1.0)
    return "+".join(sorted({o.verdict for o in res.outcomes}))


@pytest.mark.parametrize(("rule", "packet", "expected"), [
    ("-p tcp -m multiport --dports 80,443,8000:8100", dict(dport=8050), "DROP"),
    ("-p tcp -m multiport --dports 80,443,8000:8100", dict(dport=8101), "ACCEPT"),
    ("-p tcp -m multiport ! --dports 80,443", dict(dport=22), "DROP"),
    ("-p tcp -m multiport --ports 53", dict(dport=80, sport=53), "DROP"),
    ("-m iprange --src-range 10.9.0.0-10.9.255.255", {}, "DROP"),
    ("-m iprange ! --src-range 10.9.0.0-10.9.255.255", {}, "ACCEPT"),
    ("-p tcp --syn", dict(dport=1), "DROP"),
    ("-p tcp --syn", dict(dport=1, ct_state="ESTABLISHED"), "ACCEPT"),
    ("-p tcp --tcp-flags SYN,ACK ACK", dict(dport=1, tcp_flags="ACK,PSH"), "DROP"),
    ("-p icmp --icmp-type echo-request", dict(proto="icmp"), "DROP"),
    ("-p icmp --icmp-type port-unreachable", dict(proto="icmp", icmp_type="3/3"), "DROP"),
    ("-p icmp --icmp-type port-unreachable", dict(proto="icmp", icmp_type="3/1"), "ACCEPT"),
    ("-p icmp --icmp-type any", dict(proto="icmp", icmp_type="0"), "DROP"),
    ("-m connmark --mark 0x1/0x1", dict(ctmark=3), "DROP"),
    ("-m mark ! --mark 0x4000/0x4000", dict(mark=0x4000), "ACCEPT"),
    ("-m conntrack --ctstate RELATED,ESTABLISHED", dict(ct_state="ESTABLISHED"), "DROP"),
    ("-m state --state NEW", {}, "DROP"),
    ("-m conntrack --ctdir ORIGINAL", {}, "DROP"),
    ("-m conntrack --ctdir ORIGINAL", dict(ct_state="ESTABLISHED"), "UNKNOWN"),
    ("-m addrtype --dst-type LOCAL", {}, "DROP"),
    ("-m addrtype --src-type LOCAL", {}, "ACCEPT"),
    ("-m addrtype --dst-type LOCAL --limit-iface-in", {}, "UNKNOWN"),
    ("-m addrtype --dst-type MULTICAST", dict(dst="224.0.0.5"), "DROP"),
    ("-m pkttype --pkt-type broadcast", dict(dst="255.255.255.255"), "DROP"),
    ("-m pkttype --pkt-type unicast", {}, "DROP"),
    ("-f", {}, "ACCEPT"),
    ("! -f", {}, "DROP"),
    ("-m owner --uid-owner 0", {}, "ACCEPT"),  # arriving packets have no local socket
    ("-m physdev --physdev-is-bridged", dict(bridged=False), "ACCEPT"),
    ("-m physdev --physdev-is-bridged", dict(physdev_in="veth1", physdev_out="veth2"), "DROP"),
    ("-m physdev --physdev-in veth+", dict(physdev_in="veth1"), "DROP"),
    ("-m physdev --physdev-in veth+", {}, "UNKNOWN"),
    ("-m helper --helper ftp", {}, "UNKNOWN"),
    ("-m u32 --u32 0x0", {}, "UNKNOWN"),
    ("-m statistic --mode random --probability 0.25", {}, "ACCEPT+DROP"),
    ("-i eth+", dict(in_interface="eth0"), "DROP"),
    ("! -i eth+", dict(in_interface="eth0"), "ACCEPT"),
    ("-p udp --sport 53", dict(proto="udp", dport=5353), "UNKNOWN"),
    ("-p udp --sport 53", dict(proto="udp", dport=5353, sport=53), "DROP"),
])
def test_match(rule: str, packet: dict[str, object], expected: str) -> None:
    assert verdict(filter_input(rule), **packet) == expected


def test_negated_probability_weights() -> None:
    t = filter_input("-m statistic --mode random ! --probability 0.25")
    res = t.trace(Packet(src="10.9.9.9", dst="10.0.0.1"))
    weights = {o.verdict: o.probability for o in res.outcomes}
    assert weights == {"DROP": 0.75, "ACCEPT": 0.25}


def test_limit_burst_across_a_sequence() -> None:
    text = ("*filter\n:INPUT DROP [0:0]\n-A INPUT -m limit --limit 1/sec --limit-burst 2 "
            "-j ACCEPT\nCOMMIT\n")
    t = Tracer(parse_rules(text), local_ips=LOCAL)
    pk = [Packet(src="10.9.9.9", dst="10.0.0.1", time=x) for x in (0, 0, 0, 1.0, 1.0)]
    got = [r.outcomes[0].verdict for r in t.trace_sequence(pk)]
    assert got == ["ACCEPT", "ACCEPT", "DROP", "ACCEPT", "DROP"]


def test_owner_on_locally_generated_packets() -> None:
    text = ("*filter\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -m owner --uid-owner 1000-2000 -j DROP\n"
            "COMMIT\n")
    t = Tracer(parse_rules(text), local_ips=LOCAL)
    assert verdict(t, src="10.0.0.1", dst="10.5.5.5", uid=1500) == "DROP"
    assert verdict(t, src="10.0.0.1", dst="10.5.5.5", uid=0) == "ACCEPT"
    assert verdict(t, src="10.0.0.1", dst="10.5.5.5") == "UNKNOWN"


def test_ipset_contents() -> None:
    sets = parse_ipsets("create nets hash:net family inet\nadd nets 10.9.0.0/16\n"
                        "add nets 10.9.9.0/24 nomatch\ncreate svc hash:ip,port family inet\n"
                        "add svc 10.0.0.1,tcp:80\n")
    t = filter_input("-m set --match-set nets src", ipsets=sets)
    assert verdict(t, src="10.9.1.1") == "DROP"
    assert verdict(t, src="10.9.9.9") == "ACCEPT"   # excluded by nomatch
    t = filter_input("-m set --match-set svc dst,dst", ipsets=sets)
    assert verdict(t, dport=80) == "DROP"
    assert verdict(t, dport=81) == "ACCEPT"
    assert verdict(t, dport=80, proto="udp") == "ACCEPT"
    assert verdict(filter_input("-m set --match-set other src", ipsets=sets)) == "UNKNOWN"


NAT = """*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -p tcp --dport 81 -j DNAT --to-destination 10.2.0.1-10.2.0.9:80
-A PREROUTING -p tcp --dport 82 -j DNAT --to-destination :8082
-A PREROUTING -p tcp --dport 83 -j REDIRECT --to-ports 3128
-A PREROUTING -p tcp --dport 84 -j DNAT
-A PREROUTING -p tcp --dport 85 -j QUEUE
-A OUTPUT -p tcp --dport 86 -j REDIRECT --to-ports 3129
-A POSTROUTING -d 10.7.0.0/16 -j SNAT --to-source 10.0.0.1
COMMIT
*raw
:PREROUTING ACCEPT [0:0]
-A PREROUTING -p tcp --dport 87 -j NOTRACK
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
-A INPUT -m conntrack --ctstate DNAT -p tcp --dport 3128 -j ACCEPT
-A INPUT -m conntrack --ctstate UNTRACKED -j REJECT
-A FORWARD -m conntrack --ctorigdst 10.0.0.1 --ctorigdstport 82 -j ACCEPT
COMMIT
"""


def nat_trace(**kw: object):
    t = Tracer(parse_rules(NAT, source="nat.rules"), local_ips=["10.0.0.1"])
    kw.setdefault("src", "10.9.9.9")
    return t.trace(Packet(**kw))  # type: ignore[arg-type]


def test_nat_targets() -> None:
    (o,) = nat_trace(dst="10.0.0.1", dport=81).outcomes
    assert o.verdict == "UNKNOWN" and "address range" in (o.reason or "")
    (o,) = nat_trace(dst="10.0.0.1", dport=82).outcomes   # port only: stays local
    assert (o.dnat, o.delivered) == ("10.0.0.1:8082", "local")
    (o,) = nat_trace(dst="10.5.5.5", dport=83).outcomes   # REDIRECT to the node
    assert (o.verdict, o.dnat, o.delivered) == ("ACCEPT", "10.0.0.1:3128", "local")
    assert o.path[-1].chain == "INPUT" and o.path[-1].rule == 1
    (o,) = nat_trace(dst="10.5.5.5", dport=84).outcomes   # malformed, as in real dumps
    assert o.verdict == "UNKNOWN" and "without --to-destination" in (o.reason or "")
    assert o.path[-1].line == 8
    (o,) = nat_trace(dst="10.5.5.5", dport=85).outcomes
    assert o.verdict == "UNKNOWN" and "userspace" in (o.reason or "")
    (o,) = nat_trace(src="10.0.0.1", dst="10.5.5.5", dport=86).outcomes
    assert (o.dnat, o.delivered) == ("127.0.0.1:3129", "local")
    (o,) = nat_trace(dst="10.7.1.1", dport=80).outcomes
    assert (o.snat, o.masquerade, o.verdict) == ("10.0.0.1", False, "ACCEPT")
    (o,) = nat_trace(dst="10.0.0.1", dport=87).outcomes   # NOTRACK: untracked, nat skipped
    assert o.verdict == "REJECT"


def test_ipv6_icmp_and_addresses() -> None:
    text = ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s fd00::/64 -p ipv6-icmp -m icmp6 "
            "--icmpv6-type echo-request -j DROP\nCOMMIT\n")
    t = Tracer(parse_rules(text, family="ipv6"), local_ips=["fd00:1::1"])
    assert verdict(t, src="fd00::5", dst="fd00:1::1", proto="icmpv6") == "DROP"
    assert verdict(t, src="fd00:2::5", dst="fd00:1::1", proto="icmpv6") == "ACCEPT"
    assert verdict(t, src="fd00::5", dst="fd00:1::1", proto="icmpv6", icmp_type="129") == "ACCEPT"


@pytest.mark.parametrize(("rule", "state", "expected"), [
    ("-m conntrack --ctstate DNAT", "ESTABLISHED", "UNKNOWN"),
    ("-m conntrack --ctstate DNAT", "ESTABLISHED,DNAT", "DROP"),
    ("-m conntrack --ctstate DNAT", "ESTABLISHED,SNAT", "ACCEPT"),
    ("-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT", "ESTABLISHED", "ACCEPT"),
    ("-m conntrack --ctstate DNAT", "NEW", "ACCEPT"),
    ("-m conntrack --ctstate DNAT", "INVALID", "ACCEPT"),
])
def test_nat_states_of_later_packets(rule: str, state: str, expected: str) -> None:
    assert verdict(filter_input(rule), ct_state=state) == expected
