"""The node's route lookup: policy rules, longest prefix, route types -- tables of cases.

The routes and rules are iproute2 JSON as `ip -j route show table all` / `ip -j rule`
print them on a kernel (copied from a namespace built like tests/test_node_netns.py's).
"""

from __future__ import annotations

from typing import Any

import pytest

from netproxy.node.routing import (
    RouteDataError,
    Router,
    addresses_from_json,
    routes_from_json,
    rules_from_json,
)
from netproxy.trace.addr import parse_addr

ROUTES4 = [
    {"dst": "10.7.0.0/16", "gateway": "10.2.0.253", "dev": "b0", "table": "100", "flags": []},
    {"type": "throw", "dst": "10.5.0.0/16", "table": "100", "flags": []},
    {"dst": "default", "gateway": "10.2.0.254", "dev": "b0", "flags": []},
    {"dst": "10.1.0.0/24", "dev": "a0", "protocol": "kernel", "scope": "link",
     "prefsrc": "10.1.0.1", "flags": []},
    {"dst": "10.2.0.0/24", "dev": "b0", "protocol": "kernel", "scope": "link",
     "prefsrc": "10.2.0.1", "flags": []},
    {"type": "prohibit", "dst": "10.6.0.0/16", "flags": []},
    {"type": "blackhole", "dst": "10.8.0.0/16", "flags": []},
    {"type": "unreachable", "dst": "10.4.0.0/16", "flags": []},
    {"dst": "10.9.0.0/16", "gateway": "10.1.0.254", "dev": "a0", "metric": 5, "flags": []},
    {"dst": "10.9.0.0/16", "gateway": "10.2.0.254", "dev": "b0", "metric": 10, "flags": []},
    {"dst": "10.9.9.0/24", "gateway": "10.2.0.250", "dev": "b0", "metric": 50, "flags": []},
    {"dst": "10.3.0.0/16", "nexthops": [{"gateway": "10.1.0.250", "dev": "a0", "weight": 1},
                                        {"gateway": "10.2.0.250", "dev": "b0", "weight": 1}],
     "flags": []},
    {"dst": "10.33.0.0/16", "gateway": "10.1.0.249", "dev": "a0", "flags": ["dead"]},
    {"type": "local", "dst": "10.1.0.1", "dev": "a0", "table": "local", "scope": "host",
     "prefsrc": "10.1.0.1", "flags": []},
    {"type": "broadcast", "dst": "10.1.0.255", "dev": "a0", "table": "local", "scope": "link",
     "prefsrc": "10.1.0.1", "flags": []},
    {"type": "local", "dst": "10.2.0.1", "dev": "b0", "table": "local", "scope": "host",
     "prefsrc": "10.2.0.1", "flags": []},
    {"type": "local", "dst": "127.0.0.0/8", "dev": "lo", "table": "local", "scope": "host",
     "prefsrc": "127.0.0.1", "flags": []},
    {"type": "local", "dst": "192.0.2.0/24", "dev": "lo", "table": "local", "flags": []},
    {"dst": "fd00::/64", "dev": "a0", "metric": 256, "flags": []},  # other family: skipped
]
RULES4 = [
    {"priority": 0, "src": "all", "table": "local"},
    {"priority": 80, "src": "all", "dst": "10.66.0.0", "dstlen": 16, "action": "prohibit"},
    {"priority": 90, "src": "10.1.0.0", "srclen": 24, "iif": "a0", "table": "100"},
    {"priority": 100, "src": "all", "fwmark": "0x10", "fwmask": "0xff", "table": "100"},
    {"priority": 110, "src": "all", "ipproto": "udp", "dport_start": 5000, "dport_end": 5999,
     "table": "100"},
    {"priority": 120, "not": None, "src": "all", "fwmark": "0x1", "table": "100"},
    {"priority": 130, "src": "all", "uid_start": 100, "uid_end": 200, "table": "100"},
    {"priority": 32766, "src": "all", "table": "main"},
    {"priority": 32767, "src": "all", "table": "default"},
]
ADDRS = [
    {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8,
                                    "scope": "host"}]},
    {"ifname": "a0", "addr_info": [{"family": "inet", "local": "10.1.0.1", "prefixlen": 24,
                                    "scope": "global"},
                                   {"family": "inet6", "local": "fd00::1", "prefixlen": 64}]},
    {"ifname": "b0", "addr_info": [{"family": "inet", "local": "10.2.0.1", "prefixlen": 24,
                                    "scope": "global"}]},
]


def router(rules: list[dict[str, object]] | None = None, forwarding: bool | None = True) -> Router:
    return Router("ipv4", routes_from_json(ROUTES4, "ipv4"),
                  rules_from_json(RULES4 if rules is None else rules, "ipv4"),
                  addresses_from_json(ADDRS, "ipv4"), forwarding=forwarding)


def ip(text: str) -> int:
    return parse_addr(text, "ipv4")


# (what, dst, lookup keywords, kind, dev, gateway, src, table, rule)
CASES = [
    ("own address", "10.1.0.1", {}, "local", "lo", None, "10.1.0.1", "local", 0),
    ("own address, arriving elsewhere", "10.2.0.1", {"iif": "a0", "src": "10.1.0.9"},
     "local", "lo", None, "10.2.0.1", "local", 0),
    ("loopback /8", "127.3.4.5", {}, "local", "lo", None, "127.3.4.5", "local", 0),
    ("AnyIP local prefix", "192.0.2.77", {}, "local", "lo", None, "192.0.2.77", "local", 0),
    ("subnet broadcast", "10.1.0.255", {}, "broadcast", "a0", None, "10.1.0.1", "local", 0),
    ("connected subnet", "10.1.0.50", {}, "unicast", "a0", None, "10.1.0.1", "main", 32766),
    ("default route", "8.8.8.8", {}, "unicast", "b0", "10.2.0.254", "10.2.0.1", "main", 32766),
    ("lowest metric of equal prefixes", "10.9.1.1", {}, "unicast", "a0", "10.1.0.254",
     "10.1.0.1", "main", 32766),
    ("longer prefix beats lower metric", "10.9.9.9", {}, "unicast", "b0", "10.2.0.250",
     "10.2.0.1", "main", 32766),
    ("blackhole route", "10.8.1.1", {}, "blackhole", None, None, None, "main", 32766),
    ("prohibit route", "10.6.1.1", {}, "prohibit", None, None, None, "main", 32766),
    ("unreachable route", "10.4.1.1", {}, "unreachable", None, None, None, "main", 32766),
    ("fwmark rule (masked)", "10.7.1.1", {"mark": 0x310}, "unicast", "b0", "10.2.0.253",
     "10.2.0.1", "100", 100),
    ("fwmark outside the mask misses (then 'not fwmark 0x1' takes it)", "10.7.1.1",
     {"mark": 0x11}, "unicast", "b0", "10.2.0.253", "10.2.0.1", "100", 120),
    ("iif and from rule", "10.7.1.1", {"iif": "a0", "src": "10.1.0.9"}, "unicast", "b0",
     "10.2.0.253", None, "100", 90),
    ("iif rule, other interface", "10.7.1.1", {"iif": "b0", "src": "10.1.0.9", "mark": 1},
     "unicast", "b0", "10.2.0.254", None, "main", 32766),
    ("from rule, no source (local output)", "10.7.1.1", {"mark": 1}, "unicast", "b0",
     "10.2.0.254", "10.2.0.1", "main", 32766),
    ("ipproto/dport rule", "10.7.1.1", {"proto": 17, "dport": 5353, "mark": 1}, "unicast",
     "b0", "10.2.0.253", "10.2.0.1", "100", 110),
    ("port outside the range", "10.7.1.1", {"proto": 17, "dport": 53, "mark": 1}, "unicast",
     "b0", "10.2.0.254", "10.2.0.1", "main", 32766),
    ("not fwmark", "10.7.1.1", {"mark": 0}, "unicast", "b0", "10.2.0.253", "10.2.0.1",
     "100", 120),
    ("throw goes on to the next rule", "10.5.1.1", {"mark": 0x10}, "unicast", "b0",
     "10.2.0.254", "10.2.0.1", "main", 32766),
    ("prohibit rule", "10.66.0.1", {}, "prohibit", None, None, None, None, 80),
    ("multipath: first next hop", "10.3.0.1", {"mark": 1}, "unicast", "a0", "10.1.0.250",
     "10.1.0.1", "main", 32766),
    ("dead route skipped", "10.33.0.1", {"mark": 1}, "unicast", "b0", "10.2.0.254",
     "10.2.0.1", "main", 32766),
]


@pytest.mark.parametrize(("what", "dst", "kw", "kind", "dev", "gateway", "src", "table", "rule"),
                         CASES, ids=[c[0] for c in CASES])
def test_lookup(what: str, dst: str, kw: dict[str, object], kind: str, dev: str | None,
                gateway: str | None, src: str | None, table: str | None, rule: int) -> None:
    args = dict(kw)
    if isinstance(args.get("src"), str):
        args["src"] = ip(str(args["src"]))
    d = router().lookup(ip(dst), **args)  # type: ignore[arg-type]
    assert (d.kind, d.dev, d.gateway, d.table, d.rule) == (kind, dev, gateway, table, rule), what
    if kw.get("iif") is None:  # a locally generated packet gets its source from the route
        assert d.src == src, what


def test_forwarding_off_refuses_transit_but_not_local_delivery() -> None:
    r = router(forwarding=False)
    assert r.lookup(ip("8.8.8.8"), iif="a0", src=ip("10.1.0.9")).kind == "not-forwarding"
    assert r.lookup(ip("10.2.0.1"), iif="a0", src=ip("10.1.0.9")).kind == "local"
    assert r.lookup(ip("8.8.8.8")).kind == "unicast"  # the node's own packets still leave


def test_no_route_at_all() -> None:
    r = router(rules=[{"priority": 0, "src": "all", "table": "local"},
                      {"priority": 32766, "src": "all", "table": "main", "fwmark": "0x1"}])
    d = r.lookup(ip("8.8.8.8"))
    assert d.kind == "none" and d.refused
    assert "no route" in d.describe()


def test_goto_nop_and_suppress_prefixlength() -> None:
    rules = [{"priority": 0, "src": "all", "table": "local"},
             {"priority": 10, "src": "all", "goto": 50},
             {"priority": 20, "src": "all", "table": "100"},  # skipped by the goto
             {"priority": 50, "src": "all", "nop": None},
             {"priority": 60, "src": "all", "table": "main", "suppress_prefixlen": 0},
             {"priority": 70, "src": "all", "table": "100"},
             {"priority": 32766, "src": "all", "table": "main"}]
    r = router(rules=rules)
    d = r.lookup(ip("10.7.1.1"))  # main has only the default (/0, suppressed) -> table 100
    assert (d.table, d.rule, d.gateway) == ("100", 70, "10.2.0.253")
    d = r.lookup(ip("10.1.0.9"))  # a /24 is not suppressed
    assert (d.table, d.rule, d.dev) == ("main", 60, "a0")


def test_unmodelled_selector_is_noted() -> None:
    d = router().lookup(ip("8.8.8.8"), mark=1)
    assert any("uidrange" in n for n in d.notes)


@pytest.mark.parametrize(("values", "iif", "mode", "said"), [
    ({}, "a0", 0, "rp_filter is not recorded in the snapshot: the reverse path check is taken "
                  "as off"),
    ({"all": 0, "default": 1}, "a0", 1, "a0's own value is not recorded: taken as "
                                        "net.ipv4.conf.default.rp_filter = 1"),
    ({"all": 2, "a0": 1}, "a0", 2, "net.ipv4.conf rp_filter all = 2, a0 = 1"),  # the larger
    ({"all": 0, "a0": 1, "default": 0}, "a0", 1, "net.ipv4.conf rp_filter all = 0, a0 = 1"),
])
def test_rp_filter_mode_is_the_larger_of_all_and_the_interface(
        values: dict[str, int], iif: str, mode: int, said: str) -> None:
    r = router()
    r.set_rp_filter(values)
    got, why, assumed = r.rp_mode(iif)
    assert got == mode and said in why
    assert assumed == ("taken as" in said)


def test_rp_filter_refusal_says_the_mark_was_not_used() -> None:
    """Policy rules select by fwmark here: a marked packet's refusal says its route back was
    looked up without the mark (src_valid_mark, not recorded, taken as the default 0)."""
    r = router()
    r.set_rp_filter({"all": 0, "a0": 1})
    plain = r.lookup(ip("10.9.1.1"), iif="a0", src=ip("10.2.0.9"))
    marked = r.lookup(ip("10.9.1.1"), iif="a0", src=ip("10.2.0.9"), mark=0x310)
    assert plain.kind == marked.kind == "rp-filter"
    assert "mark" not in plain.describe()
    assert marked.describe() == plain.describe() + (
        "; the route back was looked up without the packet's mark 0x310 (src_valid_mark is "
        "not recorded: taken as 0, the kernel's default)")


def test_rp_filter_strict_loose_and_no_route_back() -> None:
    r = router()
    r.set_rp_filter({"all": 0, "a0": 1, "b0": 2})
    # strict on a0: 10.2.0.9 goes back via b0
    d = r.lookup(ip("10.9.1.1"), iif="a0", src=ip("10.2.0.9"))
    assert d.kind == "rp-filter" and d.refused and d.silent
    assert d.describe() == ("reverse path filter (strict, net.ipv4.conf rp_filter all = 0, "
                            "a0 = 1): the node routes 10.2.0.9 back via b0, not a0 "
                            "(10.2.0.0/24 dev b0 src 10.2.0.1 (table main, rule 32766))")
    assert r.lookup(ip("10.9.1.1"), iif="a0", src=ip("10.1.0.9")).kind == "unicast"
    # loose on b0: any unicast route back, but not a blackhole one
    assert r.lookup(ip("10.9.1.1"), iif="b0", src=ip("10.1.0.9")).kind == "unicast"
    d = r.lookup(ip("10.9.1.1"), iif="b0", src=ip("10.8.0.9"))
    assert d.kind == "rp-filter" and "the route back to 10.8.0.9 is blackhole" in d.describe()
    # local delivery is checked too; the node's own packets are not
    assert r.lookup(ip("10.2.0.1"), iif="a0", src=ip("10.2.0.9")).kind == "rp-filter"
    assert r.lookup(ip("10.9.1.1"), src=ip("10.2.0.9")).kind == "unicast"


def test_is_local() -> None:
    r = router()
    assert r.is_local(ip("10.2.0.1")) and r.is_local(ip("192.0.2.9"))
    assert not r.is_local(ip("10.2.0.2"))


def test_ipv6_lookup() -> None:
    routes = [{"dst": "fd00::/64", "dev": "a0", "metric": 256, "flags": []},
              {"dst": "default", "gateway": "fd00::fe", "dev": "a0", "metric": 1024,
               "flags": []},
              {"type": "blackhole", "dst": "fd99::/16", "metric": 1024, "flags": []},
              {"type": "local", "dst": "fd00::1", "dev": "a0", "table": "local", "flags": []},
              {"dst": "10.0.0.0/8", "dev": "a0", "flags": []}]
    rules = [{"priority": 0, "src": "all", "table": "local"},
             {"priority": 32766, "src": "all", "table": "main"}]
    r = Router("ipv6", routes_from_json(routes, "ipv6"), rules_from_json(rules, "ipv6"),
               addresses_from_json(ADDRS, "ipv6"))
    assert r.lookup(parse_addr("fd00::1", "ipv6")).kind == "local"
    d = r.lookup(parse_addr("2001:db8::1", "ipv6"))
    assert (d.kind, d.dev, d.gateway, d.src) == ("unicast", "a0", "fd00::fe", "fd00::1")
    assert r.lookup(parse_addr("fd99::1", "ipv6")).kind == "blackhole"


@pytest.mark.parametrize(("reader", "data", "message"), [
    (routes_from_json, {"dst": "x"}, "expected a JSON list"),
    (routes_from_json, [{"gateway": "10.0.0.1"}], "entry 1: not a route"),
    (routes_from_json, [{"dst": "10.0.0.0/33"}], "bad prefix length"),
    (routes_from_json, [{"dst": "10.0.0.0/8", "metric": "x"}], "bad metric"),
    (rules_from_json, [{"table": "main"}], "entry 1: not a policy rule"),
    (rules_from_json, [{"priority": 5, "action": "frobnicate"}], "unknown rule action"),
    (rules_from_json, [{"priority": 5, "fwmark": "zz"}], "entry 1"),
    (addresses_from_json, [{"addr_info": []}], "not an interface"),
])
def test_bad_json_entries(reader: Any, data: object, message: str) -> None:
    with pytest.raises(RouteDataError, match=message):
        reader(data, "ipv4")


def test_one_router_answers_every_case_alike() -> None:
    """Decisions are cached by the fields the rules select on: asking all the cases of the
    table in turn (and again, reversed) of one router gives each case's own answer."""
    r = router()
    for case in CASES + CASES[::-1]:
        _what, dst, kw, kind, dev, gateway, _src, table, rule = case
        args = dict(kw)
        if isinstance(args.get("src"), str):
            args["src"] = ip(str(args["src"]))
        d = r.lookup(ip(dst), **args)  # type: ignore[arg-type]
        assert (d.kind, d.dev, d.gateway, d.table, d.rule) == (kind, dev, gateway, table, rule)
