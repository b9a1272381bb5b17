"""nft expressions whose value the kernel keeps or computes: ``numgen inc`` (a counter per
expression), ``jhash``/``symhash`` maps (the flow's hash bucket), ``numgen random`` compared
outside a map, ``fib ... oif`` (route lookups, from the node's routes or as a stated fork),
``fib saddr . oif type`` (an address's type on one interface), ``ct original|reply`` tuples,
``ct direction``, statements after a verdict map's ``continue``, and interfaces not given."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_node_routing import router

from netproxy.netfilter.model import Ruleset
from netproxy.parser.nftables import parse_nft_json, parse_nft_text, read_nft
from netproxy.trace import Packet, Tracer
from netproxy.trace.sequence import AUTO_STATE

DATA = Path(__file__).resolve().parent / "data" / "nft"
LISTING = DATA / "expressions.nft"


def tracer(*, routed: bool = True, assume: bool = True, strict: bool = False) -> Tracer:
    nft = read_nft(LISTING, strict=True)
    if routed:
        return Tracer(Ruleset(family="ipv4"), local_ips=[], nft=[nft], router=router(),
                      assume=assume, strict=strict)
    return Tracer(Ruleset(family="ipv4"), local_ips=["10.1.0.1"], nft=[nft], assume=assume,
                  strict=strict)


def shares(result) -> dict[tuple[str, str | None], float]:
    out: dict[tuple[str, str | None], float] = {}
    for o in result.outcomes:
        out[(o.verdict, o.dnat)] = round(out.get((o.verdict, o.dnat), 0.0) + o.probability, 12)
    return out


def syn(dst: str, sport: int = 1000, src: str = "10.1.0.5", **kw: object) -> Packet:
    return Packet(src=src, dst=dst, dport=80, sport=sport, in_interface="a0", **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------ kernel-kept values

def test_numgen_inc_is_one_third_each_for_one_packet_and_round_robin_in_a_sequence() -> None:
    t = tracer()
    one = t.trace(syn("10.96.1.1"))
    assert shares(one) == {("ACCEPT", "10.7.1.1:80"): pytest.approx(1 / 3),
                           ("ACCEPT", "10.7.1.2:80"): pytest.approx(1 / 3),
                           ("ACCEPT", "10.7.1.3:80"): pytest.approx(1 / 3)}
    # Four new connections in a row: each world takes the counter's next value, so no
    # connection goes where the previous one went, and the fourth where the first did.
    results = t.trace_sequence([syn("10.96.1.1", sport=1000 + n) for n in range(4)])
    assert [r.same_as_previous for r in results[1:]] == [0.0, 0.0, 0.0]
    assert all(shares(r) == shares(one) for r in results)


def test_hash_maps_weigh_buckets_by_their_share_of_the_hash_space_and_keep_a_flow() -> None:
    t = tracer()
    half = {("ACCEPT", "10.7.2.1:80"): 0.5, ("ACCEPT", "10.7.2.2:80"): 0.5}
    assert shares(t.trace(syn("10.96.1.2"))) == half
    # symhash mod 4 with `1-3 :` -> three buckets of the four for the second address
    assert shares(t.trace(syn("10.96.1.3"))) == {("ACCEPT", "10.7.3.1:80"): 0.25,
                                                ("ACCEPT", "10.7.3.2:80"): 0.75}
    # jhash of the source address: a second connection from the same client lands where the
    # first did (same bucket)
    same = t.trace_sequence([syn("10.96.1.2", sport=1000), syn("10.96.1.2", sport=2000)])
    assert same[1].same_as_previous == 1.0
    assert shares(same[1]) == half


def test_bucket_shares_are_exact_for_moduli_that_do_not_divide_the_hash_space() -> None:
    from netproxy.trace.nftrules import _bucket_shares

    three = _bucket_shares(3)
    assert sum(three) == 1.0
    assert [round(x * (1 << 32)) for x in three] == [1431655766, 1431655765, 1431655765]


def test_numgen_random_compared_outside_a_map_forks_with_its_share() -> None:
    assert shares(tracer().trace(syn("10.96.1.4"))) == {("DROP", "10.7.4.1:80"): 0.25,
                                                       ("ACCEPT", "10.7.4.2:80"): 0.75}


# ------------------------------------------------------------------ fib

def test_fib_reverse_path_from_the_node_routes() -> None:
    t = tracer()
    # 10.1.0.5 is routed back through a0: arriving there passes, arriving on b0 is dropped
    # by `fib saddr . iif oif missing drop` in the raw prerouting chain; the node routes
    # 10.9.9.0/24 through b0 (rejected by `fib daddr oif "b0"`), 10.9.1.1 through a0
    assert shares(t.trace(syn("10.9.9.9"))) == {("REJECT", None): 1.0}
    assert shares(t.trace(syn("10.9.1.1"))) == {("ACCEPT", None): 1.0}
    spoofed = t.trace(Packet(src="10.1.0.5", dst="10.9.1.1", dport=80, in_interface="b0"))
    assert shares(spoofed) == {("DROP", None): 1.0}
    assert spoofed.outcomes[0].path[-1].label() == "inet guard/rpf #1 (line 24)"


def test_fib_without_routes_is_a_stated_fork_and_out_interface_answers_daddr() -> None:
    t = tracer(routed=False)
    res = t.trace(syn("10.9.1.1", out_interface="b0"))
    cases = {(o.verdict, tuple(c.state(v) for v, c in o.assumes)) for o in res.outcomes}
    assert cases == {("REJECT", ("the node routes 10.1.0.5 through a0",)),
                     ("DROP", ("the node does not route 10.1.0.5 through a0",))}
    assert any("--snapshot" in m for m in res.missing())
    # another output interface: `fib daddr oif "b0"` does not match, the packet passes
    other = t.trace(syn("10.9.1.1", out_interface="c0"))
    assert {o.verdict for o in other.outcomes} == {"ACCEPT", "DROP"}
    assert t.trace(syn("10.9.1.1", out_interface="c9")).outcomes[0].path[-1].label() == \
        "inet guard/fwd #4 (line 32)"
    # without assumptions (--strict) the lookup is UNKNOWN, naming what gives it
    bare = tracer(routed=False, assume=False).trace(syn("10.9.1.1", out_interface="b0"))
    assert [o.reason for o in bare.outcomes] == [
        "the node's route to 10.1.0.5 is not known (give --snapshot)"]


def test_fib_source_type_on_the_output_interface() -> None:
    # kube-proxy's localhost NodePort masquerade (`fib saddr . oif type != local fib saddr
    # type local masquerade`): 127.0.0.1 is local on lo only, so leaving by b0 masquerades
    for t in (tracer(), tracer(routed=False)):
        res = t.trace(Packet(src="127.0.0.1", dst="127.0.0.1", dport=30080, origin="localhost",
                             out_interface="b0"))
        assert [(o.verdict, o.dnat, o.masquerade) for o in res.outcomes] == [
            ("ACCEPT", "10.7.5.1:8080", True)]


# ------------------------------------------------------------------ ct, vmap, interfaces

def test_ct_reply_tuple_is_the_natted_inverse() -> None:
    # `ct original ip daddr 10.96.1.4 ct reply ip saddr 10.7.4.1 ct reply proto-src 80 drop`
    # at postrouting: only the branch DNATed to 10.7.4.1 has that reply source
    res = tracer().trace(syn("10.96.1.4"))
    dropped = [o for o in res.outcomes if o.verdict == "DROP"]
    assert [o.path[-1].label() for o in dropped] == ["inet guard/late #1 (line 38)"]


def test_ct_direction_reply_for_the_answer_of_a_connection() -> None:
    t = tracer()
    tracked = {"ct": AUTO_STATE}  # conntrack state from the sequence, as --pcap does
    first = Packet(src="10.1.0.5", dst="10.9.1.1", dport=8080, sport=5555, in_interface="a0",
                   extra=tracked)
    answer = Packet(src="10.9.1.1", dst="10.1.0.5", sport=8080, dport=5555, in_interface="a0",
                    tcp_flags="SYN,ACK", extra=tracked)
    there, back = t.trace_sequence([first, answer])
    # `ct direction reply tcp sport 8080 accept`: the answer, not the first packet
    rule = "inet guard/fwd #3 (line 31)"
    assert rule not in [h.label() for o in there.outcomes for h in o.path]
    assert [o.verdict for o in back.outcomes] == ["ACCEPT"]
    assert rule in [h.label() for h in back.outcomes[0].path]


def test_ct_status_of_a_connection_seen_earlier_in_the_sequence() -> None:
    # the reply of a DNATed connection: `ct direction reply ct status dnat tcp sport 80 drop`
    tracked = {"ct": AUTO_STATE}
    first = Packet(src="10.1.0.5", dst="10.96.1.4", dport=80, sport=5556, in_interface="a0",
                   extra=tracked)
    t = tracer()
    there, = t.trace_sequence([first])
    endpoints = {o.dnat for o in there.outcomes if o.verdict == "ACCEPT"}
    assert endpoints == {"10.7.4.2:80"}  # 10.7.4.1 is dropped at postrouting (late)
    answer = Packet(src="10.7.4.2", dst="10.1.0.5", sport=80, dport=5556, in_interface="b0",
                    tcp_flags="SYN,ACK", extra=tracked)
    _, back = t.trace_sequence([first, answer])
    assert {(o.verdict, o.path[-1].label()) for o in back.outcomes} == {
        ("DROP", "inet guard/replies #1 (line 43)")}


def test_statements_after_a_verdict_map_run_only_on_continue() -> None:
    t = tracer()
    drop = t.trace(syn("10.9.1.1", src="10.1.0.66"))
    assert [o.path[-1].label() for o in drop.outcomes] == ["inet guard/fwd #1 (line 29)"]
    assert [o.verdict for o in drop.outcomes] == ["DROP"]
    cont = t.trace(syn("10.9.1.1", src="10.1.0.77"))
    # continue: `meta mark set 0x1 accept` runs, so the next rule (which drops it) is not
    assert [o.verdict for o in cont.outcomes] == ["ACCEPT"]
    labels = [h.label() for h in cont.outcomes[0].path]
    assert "inet guard/fwd #1 (line 29)" in labels
    assert "inet guard/fwd #2 (line 30)" not in labels
    other = t.trace(syn("10.9.9.9", src="10.1.0.78"))
    assert [o.verdict for o in other.outcomes] == ["REJECT"]  # no element: the next rules


def test_interface_not_given_takes_the_stated_default_as_iptables_does() -> None:
    t = tracer()
    res = t.trace(Packet(src="10.2.0.9", dst="10.9.1.1", dport=80, in_interface="b0"))
    assert "output interface: one that no rule names (give --out-interface)" not in \
        res.assumptions()  # the router gives it
    bare = tracer(routed=False)
    res = bare.trace(Packet(src="10.1.0.5", dst="10.9.1.1", dport=80, in_interface="a0"))
    assert "output interface: one that no rule names (give --out-interface)" in \
        res.assumptions()
    assert "UNKNOWN" not in {o.verdict for o in res.outcomes}


def test_text_and_json_listings_of_the_new_expressions_are_one_model() -> None:
    text = ("table ip t {\n\tchain c {\n"
            "\t\tmeta mark set jhash ip saddr . tcp sport mod 4 seed 0x1 offset 10\n"
            "\t\tip daddr 10.0.0.8 dnat to symhash mod 2 map { 0 : 10.1.1.1, 1 : 10.1.1.2 }\n"
            "\t\tnumgen inc mod 3 1 accept\n\t}\n}\n")
    json_text = (
        '{"nftables": [{"table": {"family": "ip", "name": "t", "handle": 1}},'
        '{"chain": {"family": "ip", "table": "t", "name": "c", "handle": 1}},'
        '{"rule": {"family": "ip", "table": "t", "chain": "c", "handle": 2, "expr": ['
        '{"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"jhash": {"mod": 4, '
        '"seed": 1, "offset": 10, "expr": {"concat": [{"payload": {"protocol": "ip", '
        '"field": "saddr"}}, {"payload": {"protocol": "tcp", "field": "sport"}}]}}}}}]}},'
        '{"rule": {"family": "ip", "table": "t", "chain": "c", "handle": 3, "expr": ['
        '{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, '
        '"right": "10.0.0.8"}}, {"dnat": {"addr": {"map": {"key": {"symhash": {"mod": 2}}, '
        '"data": {"set": [[0, "10.1.1.1"], [1, "10.1.1.2"]]}}}}}]}},'
        '{"rule": {"family": "ip", "table": "t", "chain": "c", "handle": 4, "expr": ['
        '{"match": {"op": "==", "left": {"numgen": {"mode": "inc", "mod": 3, "offset": 0}}, '
        '"right": 1}}, {"accept": null}]}}]}')
    a = parse_nft_text(text, strict=True)
    b = parse_nft_json(json_text, strict=True)
    rules = [[r.exprs for r in t.chains["c"].rules] for t in (a.tables[("ip", "t")],
                                                               b.tables[("ip", "t")])]
    assert rules[0] == rules[1]
    assert rules[0][1][1]["dnat"]["addr"]["map"]["key"] == {"symhash": {"mod": 2, "offset": 0}}


def test_strict_refuses_what_stays_undecidable() -> None:
    from netproxy.errors import NetproxyError

    listing = parse_nft_text("table ip t {\n\tchain c {\n\t\ttype filter hook input priority 0;"
                             "\n\t\tnumgen inc mod 2 0 accept\n\t}\n}\n", strict=True)
    with pytest.raises(NetproxyError, match="numgen compared outside a map"):
        Tracer(Ruleset(family="ipv4"), local_ips=[], nft=[listing], strict=True)


# ------------------------------------------------------------------ goldens, from the CLI

@pytest.fixture
def node_snapshot(tmp_path: Path) -> Path:
    """A node snapshot with test_node_routing's addresses, routes and policy rules (a0
    10.1.0.1/24, b0 10.2.0.1/24, 10.9.9.0/24 via b0, 10.7.0.0/16 via b0; not its uidrange
    rule), reverse path filtering off, and no rules of its own: the trace routes the packets
    instead of forking on fib lookups."""
    import json

    from test_node_routing import ADDRS, ROUTES4, RULES4
    from test_node_snapshot import snapshot_text

    rules = [r for r in RULES4 if "uid_start" not in r]
    path = tmp_path / "node.snap"
    path.write_text(snapshot_text(**{"iptables-save (legacy)": None, "ipset save": None},
                                  addr=json.dumps(ADDRS) + "\n",
                                  routes4=json.dumps(ROUTES4) + "\n",
                                  rules4=json.dumps(rules) + "\n",
                                  sysctl="net.ipv4.ip_forward = 1\n"
                                         "net.ipv4.conf.all.rp_filter = 0\n"
                                         "net.ipv4.conf.default.rp_filter = 0\n"
                                         "net.ipv4.conf.a0.rp_filter = 0\n"
                                         "net.ipv4.conf.b0.rp_filter = 0\n"))
    return path


@pytest.mark.parametrize(("golden", "args"), [
    # jhash of the source address, seeded: each bucket half of the hash space
    ("13-expressions-jhash-map.txt", ("--dst", "10.96.1.2")),
    # the node routes 10.9.9.0/24 through b0: `fib daddr oif "b0" reject`
    ("14-expressions-fib-oif-reject.txt", ("--dst", "10.9.9.9")),
    # numgen inc mod 3: four connections in a row, none where the previous one went
    ("15-expressions-numgen-inc-round-robin.txt", ("--dst", "10.96.1.1", "--repeat", "4",
                                                   "--brief")),
])
def test_golden_expressions_traced_from_the_cli(node_snapshot: Path, golden: str,
                                                args: tuple[str, ...]) -> None:
    from test_trace_nft import check_golden, run

    r = run("--snapshot", str(node_snapshot), "--rules", str(LISTING), "--src", "10.1.0.5",
            "--dport", "80", *args)
    assert r.returncode == 0, r.stderr
    assert "UNKNOWN" not in r.stdout and "missing" not in r.stdout
    check_golden(golden, r.stdout)


def test_golden_reply_of_a_dnat_connection_in_a_capture(node_snapshot: Path,
                                                        tmp_path: Path) -> None:
    """A capture: the SYN to 10.96.1.4 (numgen random: DNAT to 10.7.4.1, which `ct reply ip
    saddr` drops at postrouting, or to 10.7.4.2), the SYN-ACK from 10.7.4.2 (dropped by
    `ct direction reply ct status dnat`), the client's ACK (ESTABLISHED, that endpoint only)."""
    from scapy.layers.inet import IP, TCP
    from scapy.utils import wrpcap
    from test_trace_nft import check_golden, run

    cap = tmp_path / "reply.pcap"
    wrpcap(str(cap), [
        IP(src="10.1.0.5", dst="10.96.1.4") / TCP(sport=5556, dport=80, flags="S"),
        IP(src="10.7.4.2", dst="10.1.0.5") / TCP(sport=80, dport=5556, flags="SA"),
        IP(src="10.1.0.5", dst="10.96.1.4") / TCP(sport=5556, dport=80, flags="A")])
    r = run("--snapshot", str(node_snapshot), "--rules", str(LISTING), "--pcap", str(cap))
    assert r.returncode == 0, r.stderr
    check_golden("16-expressions-ct-reply-of-dnat.txt", r.stdout)


def test_packets_file_with_state_auto_follows_the_connection_as_a_capture_does(
        node_snapshot: Path, tmp_path: Path) -> None:
    """The same three packets as a packets file: with `state=auto` each line's conntrack
    state follows from the earlier lines, so the trace is the capture's (golden 16); without
    it every line is NEW and the answer is not a reply (`ct direction reply` does not match)."""
    from test_trace_nft import GOLDEN, run

    lines = ["src=10.1.0.5 sport=5556 dst=10.96.1.4 dport=80",
             "src=10.7.4.2 sport=80 dst=10.1.0.5 dport=5556 tcp-flags=SYN,ACK",
             "src=10.1.0.5 sport=5556 dst=10.96.1.4 dport=80 tcp-flags=ACK"]
    auto = tmp_path / "auto.packets"
    auto.write_text("".join(f"{line} state=auto\n" for line in lines))
    r = run("--snapshot", str(node_snapshot), "--rules", str(LISTING), "--packets", str(auto),
            "--brief")
    assert r.returncode == 0, r.stderr
    assert r.stdout == (GOLDEN / "16-expressions-ct-reply-of-dnat.txt").read_text()
    plain = tmp_path / "plain.packets"
    plain.write_text("".join(f"{line}\n" for line in lines))
    r = run("--snapshot", str(node_snapshot), "--rules", str(LISTING), "--packets", str(plain),
            "--brief")
    assert r.returncode == 0, r.stderr
    second = r.stdout.splitlines()[1]
    assert second.startswith("2: tcp 10.7.4.2:80 -> 10.1.0.5:5556 from external, NEW, in b0: ")
    assert "guard/replies" not in second
