"""Canonical rule keys and the behaviour-preserving canonical order used by netproxy diff."""

from __future__ import annotations

import pytest

from netproxy.diff.canon import canonical_order, rule_key
from netproxy.diff.chains import diff_rules
from netproxy.parser import rule_from_args


def r(text: str):
    return rule_from_args(text.split(), strict=False)


def key(text: str, rename=lambda n: n) -> str:
    return rule_key(r(text), "ipv4", rename)[0]


def same(a: list[str], b: list[str]) -> bool:
    removed, added = diff_rules([r(x) for x in a], [r(x) for x in b], "ipv4", str, str)
    return not removed and not added


@pytest.mark.parametrize("a,b", [
    ("-d 10.0.0.1 -p tcp -m tcp --dport 80 -j X", "-d 10.0.0.1/32 -p tcp -m tcp --dport 80 -j X"),
    ("-p tcp -m tcp --destination-port 80 -j X", "-m tcp -p tcp --dport 80 -j X"),
    ("-j MARK --or-mark 0x00004000", "-j MARK --set-xmark 0x4000/0x4000"),
    ("-m statistic --mode random --probability 0.5000000000 -j X",
     "-m statistic --mode random --probability 0.50000000000 -j X"),
    ("-m comment --comment a -s 10.1.0.0/16 -j X", "-s 10.1.0.0/16 -m comment --comment a -j X"),
    ("-j REJECT", "-j REJECT --reject-with icmp-port-unreachable"),
])
def test_equivalent_spellings_share_a_key(a, b):
    assert key(a) == key(b)


@pytest.mark.parametrize("a,b", [
    ("-d 10.0.0.1 -p tcp -m tcp --dport 80 -j X", "-d 10.0.0.2 -p tcp -m tcp --dport 80 -j X"),
    ("-d 10.0.0.1 -j X", "! -d 10.0.0.1 -j X"),
    ("-m statistic --mode random --probability 0.5 -j X",
     "-m statistic --mode random --probability 0.33333 -j X"),
    ("-j X", "-g X"),
])
def test_different_rules_have_different_keys(a, b):
    assert key(a) != key(b)


def test_counters_do_not_enter_the_key():
    a = r("-p tcp -j ACCEPT")
    b = r("-p tcp -j ACCEPT")
    b.counters = (5, 300)
    assert rule_key(a, "ipv4") == rule_key(b, "ipv4")


def test_chain_names_go_through_the_mapping():
    rename = {"KUBE-SEP-A": "SEP<x>", "KUBE-SEP-B": "SEP<x>"}.get
    a = key("-m recent --rcheck --seconds 10 --reap --name KUBE-SEP-A -j KUBE-SEP-A", lambda n: rename(n, n))
    b = key("-m recent --rcheck --seconds 10 --reap --name KUBE-SEP-B -j KUBE-SEP-B", lambda n: rename(n, n))
    assert a == b


SVC_WEB = "-d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-WEB"
SVC_DNS = "-d 10.96.0.53/32 -p udp -m udp --dport 53 -j KUBE-SVC-DNS"
SVC_API = "-d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j KUBE-SVC-API"
MASQ_WEB = "! -s 10.244.0.0/16 -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ"
TAIL = "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"


def test_disjoint_jumps_may_be_reordered():
    assert same([SVC_WEB, SVC_DNS, SVC_API, TAIL], [SVC_API, SVC_WEB, SVC_DNS, TAIL])


def test_rules_matching_the_same_packets_keep_their_order():
    assert not same([MASQ_WEB, SVC_WEB], [SVC_WEB, MASQ_WEB])
    # ... but may still move past rules for other destinations.
    assert same([MASQ_WEB, SVC_DNS, SVC_WEB], [SVC_DNS, MASQ_WEB, SVC_WEB])


def test_unpinned_rules_are_barriers():
    assert not same([SVC_WEB, TAIL, SVC_DNS], [SVC_WEB, SVC_DNS, TAIL])
    assert not same([TAIL, SVC_WEB], [SVC_WEB, TAIL])


def test_network_destinations_depend_on_hosts_inside_them():
    wide = "-d 10.96.0.0/16 -p tcp -m tcp --dport 80 -j DROP"
    assert not same([wide, SVC_WEB], [SVC_WEB, wide])
    # different port: still disjoint
    assert same([wide, SVC_API], [SVC_API, wide])


def test_node_ports_reorder_by_port():
    np1 = "-p tcp -m tcp --dport 30080 -j KUBE-EXT-A"
    np2 = "-p tcp -m tcp --dport 30081 -j KUBE-EXT-B"
    np3 = "-p udp -m udp --dport 30080 -j KUBE-EXT-C"
    assert same([np1, np2, np3], [np3, np2, np1])


def test_canonical_order_is_a_permutation():
    rules = [r(x) for x in (SVC_WEB, MASQ_WEB, TAIL, SVC_DNS)]
    keyed = [rule_key(x, "ipv4") for x in rules]
    order = canonical_order([k for k, _ in keyed], [d for _, d in keyed])
    assert sorted(order) == [0, 1, 2, 3]
    assert order.index(2) > order.index(0) and order.index(2) > order.index(1)
    assert order.index(2) < order.index(3)
