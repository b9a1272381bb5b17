"""The DS field (tos/dscp) and the sender's uid: matches, targets, policy rule selectors, and
the facts a trace assumes when the user did not give them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_doctor_cli import run
from test_node_routing import ADDRS, ROUTES4, ip
from test_node_snapshot import snapshot_text

from netproxy.node.routing import Router, addresses_from_json, routes_from_json, rules_from_json
from netproxy.parser import parse_rules
from netproxy.trace import Packet, Tracer
from netproxy.trace.fields import DS_UNKNOWN, ds_test, parse_dscp, parse_tos, set_ds, uid_test

HEAD = """*mangle
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
"""
FILTER = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
"""


def tracer(mangle: str, filt: str = "", **kw: object) -> Tracer:
    text = HEAD + mangle + "COMMIT\n" + FILTER + filt + "COMMIT\n"
    return Tracer(parse_rules(text, source="t.rules"), local_ips=["10.0.0.254"], assume=True,
                  **kw)  # type: ignore[arg-type]


def summary(t: Tracer, **fields: object) -> list[tuple[str, tuple[str, ...]]]:
    """Each outcome's verdict with the facts it assumed, in words."""
    result = t.trace(Packet(src="10.0.0.1", dst="10.9.0.1", dport=80, **fields))  # type: ignore[arg-type]
    return sorted((o.verdict, tuple(sorted(c.state(v) for v, c in o.assumes)))
                  for o in result.outcomes)


# ---------------------------------------------------------------- the field itself

def test_values_and_names() -> None:
    assert parse_tos("0x10/0x3f") == (0x10, 0x3F)
    assert parse_tos("0x10") == (0x10, 0xFF)
    assert parse_tos("Minimize-Delay") == (0x10, 0x3F)
    assert parse_dscp("EF") == 46 and parse_dscp("af41") == 34 and parse_dscp("0x0a") == 10
    with pytest.raises(ValueError):
        parse_dscp("64")
    with pytest.raises(ValueError):
        parse_tos("0x100")


def test_facts_already_assumed_decide_later_tests() -> None:
    ef = (("ds", 0xFC, 46 << 2), True)
    assert ds_test(DS_UNKNOWN, [ef], 0xFC, 10 << 2) is False  # EF is not AF11
    assert ds_test(DS_UNKNOWN, [ef], 0xFC, 46 << 2) is True
    assert ds_test(DS_UNKNOWN, [ef], 0x1C, 0x18) is True  # bits of EF (0xb8) under 0x1c
    assert ds_test(DS_UNKNOWN, [ef], 0xFF, 0xB8) == (0xFF, 0xB8)  # the ECN bits are open
    not_low = (("ds", 0x1C, 0x10), False)
    assert ds_test(DS_UNKNOWN, [not_low], 0xFC, 0x10) is False  # would have bits 0x10
    assert ds_test(DS_UNKNOWN, [], 0xFC, 0x10) == (0xFC, 0x10)
    assert ds_test((0x28, 0xFF, 0), [], 0xFC, 0x28) is True  # a given field decides


def test_rewriting_the_field() -> None:
    ds = set_ds(DS_UNKNOWN, 46 << 2, 0xFC)  # -j DSCP --set-dscp 46: ECN bits stay unknown
    assert ds_test(ds, [], 0xFC, 46 << 2) is True
    assert ds_test(ds, [], 0xFF, 0xB8) == (0x03, 0x00)
    flipped = set_ds(DS_UNKNOWN, 0x01, 0x00)  # --xor-tos 0x01 of a bit nobody knows
    assert ds_test(flipped, [], 0x01, 0x01) == (0x01, 0x00)  # 1 now means 0 originally
    assert set_ds((0x12, 0xFF, 0), 0, 0x02) == (0x10, 0xFF, 0)  # --and-tos 0xfd


def test_uid_facts() -> None:
    assert uid_test(1500, [], 1000, 2000) is True
    assert uid_test(None, [(("owner", "uid", 5, 5), True)], 7, 9) is False
    assert uid_test(None, [(("owner", "uid", 5, 5), True)], 0, 10) is True
    assert uid_test(None, [(("owner", "uid", 0, 100), False)], 5, 5) is False
    assert uid_test(None, [], 5, 5) is None


# ---------------------------------------------------------------- matches and targets

MANGLE = ("-A PREROUTING -m dscp --dscp 0x2e -j MARK --set-xmark 0x1/0xffffffff\n"
          "-A PREROUTING -m dscp --dscp-class AF11 -j MARK --set-xmark 0x2/0xffffffff\n")
FILT = ("-A FORWARD -m mark --mark 0x1 -j DROP\n"
        "-A FORWARD -m tos --tos 0x28/0xfc -j REJECT\n")


def test_an_unknown_field_forks_without_contradicting_cases() -> None:
    t = tracer(MANGLE, FILT)
    assert summary(t) == [
        ("ACCEPT", ("the packet's DSCP is not 10 (AF11)", "the packet's DSCP is not 46 (EF)")),
        ("DROP", ("the packet's DSCP is 46 (EF)",)),  # never also "is 10"
        ("REJECT", ("the packet's DSCP is 10 (AF11)", "the packet's DSCP is not 46 (EF)")),
    ]


@pytest.mark.parametrize(("tos", "verdict"), [(0xB8, "DROP"), (0xBB, "DROP"), (0x28, "REJECT"),
                                               (0x29, "REJECT"), (0x00, "ACCEPT")])
def test_a_given_field_decides(tos: int, verdict: str) -> None:
    assert summary(tracer(MANGLE, FILT), tos=tos) == [(verdict, ())]


def test_strict_makes_the_field_unknown() -> None:
    t = tracer(MANGLE, FILT, strict=False)
    t.assume = t.ctx.assume = False
    result = t.trace(Packet(src="10.0.0.1", dst="10.9.0.1", dport=80))
    (o,) = result.outcomes
    assert o.verdict == "UNKNOWN" and "give --tos/--dscp" in (o.reason or "")


def test_tos_and_dscp_targets_rewrite_the_field() -> None:
    mangle = ("-A PREROUTING -s 10.0.0.1/32 -j DSCP --set-dscp-class EF\n"
              "-A PREROUTING -m tos --tos 0x08/0x08 -j TOS --set-tos 0x28/0xfc\n")
    # EF (0xb8) set by the first rule: no fork; it has bit 0x08, so the second makes it AF11.
    assert summary(tracer(mangle, FILT)) == [("REJECT", ())]
    mangle = "-A PREROUTING -j TOS --set-tos 0x28/0xfc\n"
    assert summary(tracer(mangle, FILT), tos=0xB9) == [("REJECT", ())]
    mangle = "-A PREROUTING -j TOS --and-tos 0x03\n"  # keeps only the ECN bits
    assert summary(tracer(mangle, FILT)) == [("ACCEPT", ())]


def test_owner_uid_facts_stay_consistent() -> None:
    text = HEAD + "COMMIT\n" + FILTER + (
        "-A OUTPUT -m owner --uid-owner 5 -j DROP\n"
        "-A OUTPUT -m owner --uid-owner 0-10 -j REJECT\n") + "COMMIT\n"
    t = Tracer(parse_rules(text, source="t.rules"), local_ips=["10.0.0.254"], assume=True)
    result = t.trace(Packet(src="10.0.0.254", dst="10.9.0.1", dport=80))
    got = sorted((o.verdict, tuple(c.state(v) for v, c in o.assumes)) for o in result.outcomes)
    assert got == [("ACCEPT", ("the sender's uid is not 5", "the sender's uid is not 0-10")),
                   ("DROP", ("the sender's uid is 5",)),
                   ("REJECT", ("the sender's uid is not 5", "the sender's uid is 0-10"))]


# ---------------------------------------------------------------- policy rule selectors

RULES = [
    {"priority": 0, "src": "all", "table": "local"},
    {"priority": 90, "src": "all", "tos": "lowdelay", "table": "100"},
    {"priority": 95, "src": "all", "uid_start": 1000, "uid_end": 2000, "table": "100"},
    {"priority": 1000, "src": "all", "l3mdev": None},
    {"priority": 32766, "src": "all", "table": "main"},
]


def router(rules: list[dict[str, object]] = RULES) -> Router:
    return Router("ipv4", routes_from_json(ROUTES4, "ipv4"), rules_from_json(rules, "ipv4"),
                  addresses_from_json(ADDRS, "ipv4"), forwarding=True)


@pytest.mark.parametrize(("tos", "table"), [(0x10, "100"), (0x30, "100"), (0x11, "100"),
                                            (0x12, "100"), (0x14, "main"), (0x00, "main")])
def test_rule_tos_compares_the_bits_linux_keeps(tos: int, table: str) -> None:
    # As Linux 6.18 answered `ip route get ... tos T` for `rule add tos 0x10`.
    d = router().lookup(ip("10.7.1.1"), ds=(tos, 0xFF, 0), uid=0, ask=True)
    assert d.table == table


def test_ipv6_rule_tos_compares_the_dscp() -> None:
    # Linux 6.18: `ip -6 rule add tos 0x30` is accepted (printed as AF12), and tos 0x11
    # matches a rule's 0x10 while 0x14 does not: the DSCP bits are compared.
    rules = rules_from_json([{"priority": 100, "src": "all", "tos": "AF12", "table": "100"}],
                            "ipv6")
    assert rules[0].ds == (0xFC, 0x30)


def test_rule_text_and_dscp_selector() -> None:
    (rule,) = rules_from_json([{"priority": 5, "src": "all", "dscp": "EF", "table": "7"}], "ipv4")
    assert rule.ds == (0xFC, 0xB8) and rule.text == "5: from all dscp EF lookup 7"
    (rule,) = rules_from_json([RULES[3]], "ipv4")
    assert rule.l3mdev and rule.text == "1000: from all lookup [l3mdev-table]"


def test_rule_uidrange() -> None:
    r = router()
    local = r.lookup(ip("10.7.1.1"), ds=(0, 0xFF, 0), uid=1500, ask=True)
    assert local.table == "100"
    arriving = r.lookup(ip("10.7.1.1"), src=ip("10.2.0.9"), iif="b0", ds=(0, 0xFF, 0),
                        uid=0, ask=True)
    assert arriving.table == "main"  # uid 0, as the kernel takes a packet from afar
    zero = router([{"priority": 9, "src": "all", "uid_start": 0, "uid_end": 0,
                    "table": "100"}, *RULES[4:]])
    assert zero.lookup(ip("10.7.1.1"), src=ip("10.2.0.9"), iif="b0", uid=0,
                       ask=True).table == "100"


def test_an_unknown_field_or_uid_is_a_fact_to_assume() -> None:
    r = router()
    d = r.lookup(ip("10.7.1.1"), ds=DS_UNKNOWN, uid=None, ask=True)
    assert d.kind == "undecided" and d.needs is not None
    assert d.needs[0] == ("ds", 0x1C, 0x10)
    d = r.lookup(ip("10.7.1.1"), ds=DS_UNKNOWN, uid=None,
                 facts=((("ds", 0x1C, 0x10), False),), ask=True)
    assert d.kind == "undecided" and d.needs[0] == ("owner", "uid", 1000, 2000)
    d = r.lookup(ip("10.7.1.1"), ds=DS_UNKNOWN, uid=None,
                 facts=((("ds", 0x1C, 0x10), False), (("owner", "uid", 1000, 2000), True)),
                 ask=True)
    assert d.table == "100" and d.rule == 95
    # Callers that do not ask keep the old answer: not matching, said so.
    d = r.lookup(ip("10.7.1.1"))
    assert d.table == "main" and any("DS field" in n for n in d.notes)


def test_l3mdev_selects_the_vrf_table() -> None:
    routes = [*ROUTES4, {"dst": "10.9.0.0/16", "gateway": "10.2.0.200", "dev": "b0",
                         "table": "200", "flags": []}]
    r = Router("ipv4", routes_from_json(routes, "ipv4"), rules_from_json(RULES, "ipv4"),
               addresses_from_json(ADDRS, "ipv4"), forwarding=True)
    d = r.lookup(ip("10.9.1.1"), src=ip("10.2.0.9"), iif="b0", ds=(0, 0xFF, 0), uid=0,
                 ask=True)
    assert d.table == "main" and any("does not record the node's VRF devices" in n
                                     for n in d.notes)
    r.ports = {"vrf-blue": ("b0",)}
    r.set_vrfs({"vrf-blue": "200"})
    d = r.lookup(ip("10.9.1.1"), src=ip("10.2.0.9"), iif="b0", ds=(0, 0xFF, 0), uid=0,
                 ask=True)
    assert (d.table, d.rule, d.gateway) == ("200", 1000, "10.2.0.200")
    d = r.lookup(ip("10.9.1.1"), src=ip("10.1.0.9"), iif="a0", ds=(0, 0xFF, 0), uid=0,
                 ask=True)
    assert d.table == "main" and not d.notes  # a0 is in no VRF


# ---------------------------------------------------------------- from the command line

POLICY = json.dumps([{"priority": 0, "src": "all", "table": "local"},
                     {"priority": 90, "src": "all", "tos": "0x10", "table": "100"},
                     {"priority": 95, "src": "all", "uid_start": 1000, "uid_end": 2000,
                      "table": "100"},
                     {"priority": 32766, "src": "all", "table": "main"}])
ROUTES = json.dumps([
    {"dst": "default", "gateway": "192.168.0.1", "dev": "eth0", "flags": []},
    {"dst": "default", "gateway": "192.168.0.2", "dev": "eth0", "table": "100", "flags": []},
    {"dst": "192.168.0.0/24", "dev": "eth0", "prefsrc": "192.168.0.11", "flags": []},
    {"dst": "10.244.1.0/24", "dev": "cni0", "prefsrc": "10.244.1.1", "flags": []},
    {"type": "local", "dst": "192.168.0.11", "dev": "eth0", "table": "local", "flags": []},
    {"type": "local", "dst": "10.244.1.1", "dev": "cni0", "table": "local", "flags": []}])


@pytest.fixture
def snap(tmp_path: Path) -> Path:
    path = tmp_path / "node.snap"
    path.write_text(snapshot_text(rules4=POLICY + "\n", routes4=ROUTES + "\n"))
    return path


def test_cli_forks_on_the_policy_rules_facts(snap: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "trace", str(snap), "--from", "node", "--dst", "8.8.8.8",
                         "--dport", "53", "--proto", "udp", "--json")
    assert code == 0, err
    data = json.loads(out)
    got = sorted((o["route"]["gateway"], tuple(o.get("assumes", ())))
                 for o in data["outcomes"])
    assert got == [
        ("192.168.0.1", ("the packet's TOS byte & 0x1c is not 0x10",
                         "the sender's uid is not 1000-2000")),
        ("192.168.0.2", ("the packet's TOS byte & 0x1c is 0x10",)),
        ("192.168.0.2", ("the packet's TOS byte & 0x1c is not 0x10",
                         "the sender's uid is 1000-2000")),
    ]
    for flags, gateway in ((["--tos", "0x10"], "192.168.0.2"), (["--dscp", "AF21"], "192.168.0.1"),
                           (["--tos", "0", "--uid", "1500"], "192.168.0.2")):
        code, out, err = run(capsys, "trace", str(snap), "--from", "node", "--dst", "8.8.8.8",
                             "--json", *flags, *([] if "--uid" in flags else ["--uid", "0"]))
        assert code == 0, err
        (o,) = json.loads(out)["outcomes"]
        assert o["route"]["gateway"] == gateway, (flags, o)


def test_cli_packets_file_and_bad_values(snap: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    packets = tmp_path / "p.txt"
    packets.write_text("src=10.244.1.5 dst=8.8.8.8 dport=53 proto=udp dscp=EF\n"
                       "src=10.244.1.5 dst=8.8.8.8 dport=53 proto=udp tos=0x10\n")
    code, out, err = run(capsys, "trace", str(snap), "--packets", str(packets), "--json")
    assert code == 0, err
    docs = json.loads(out)["packets"]
    # A pod's packet arrives on cni0: uid 0, and only the tos rule can send it to table 100.
    assert [d["outcomes"][0]["route"]["gateway"] for d in docs] == ["192.168.0.1",
                                                                   "192.168.0.2"]
    packets.write_text("src=10.244.1.5 dst=8.8.8.8 dscp=EF tos=0x10\n")
    code, out, err = run(capsys, "trace", str(snap), "--packets", str(packets))
    assert code == 2 and f"{packets}:1: dscp 'EF' and tos 0x10 disagree" in err
    code, out, err = run(capsys, "trace", str(snap), "--dst", "8.8.8.8", "--tos", "300")
    assert code == 2 and "tos: want a byte" in err and "\n" not in err.strip()
    code, out, err = run(capsys, "trace", str(snap), "--dst", "8.8.8.8", "--dscp", "XX")
    assert code == 2 and "dscp: want 0..63 or a class name" in err
