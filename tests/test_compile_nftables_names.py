"""nftables-mode names (hashAndTruncate) against the spec's check values, and the list view's
spelling helpers (each also held to the kernel by tests/test_compile_nftables_kernel.py)."""

from __future__ import annotations

import pytest

from netproxy import nftnames
from netproxy.compiler.nftables.listing import (
    element_order,
    interval_set,
    priority_text,
    timeout_text,
)
from netproxy.compiler.nftables.table import Container


@pytest.mark.parametrize(("name", "digest"), [
    ("ns1/svc1/tcp/p80", "ULMVA6XW"),
    ("ns1/svc1/tcp/p80__10.180.0.1/80", "5OJB2KTY"),
    ("testing/service/tcp/http", "P4ZYZVCF"),
    ("testing/service/tcp/http__fd80.abcd.12..a1b2.c3d4.e5f6.9999/80", "U7E2ET36"),
])
def test_spec_check_values(name: str, digest: str) -> None:
    assert nftnames.hash_and_truncate(name) == f"{digest}-{name}"


def test_endpoint_base_writes_ipv6_colons_as_dots() -> None:
    assert nftnames.endpoint_base("testing", "service", "tcp", "http", "fd80:abcd:12::a1b2:c3d4:e5f6:9999",
                                  80).startswith("U7E2ET36-")


def test_long_names_are_cut_to_240_with_dots() -> None:
    name = "n" * 63 + "/" + "s" * 63 + "/tcp/" + "p" * 63 + "__" + "f" * 39 + "/65535"
    base = nftnames.hash_and_truncate(name)
    assert len(base) == 240 and base.endswith("...") and base[9:237] == name[:228]


def test_comments_are_cut_to_128_bytes() -> None:
    assert nftnames.truncate_comment("a" * 200) == "a" * 128
    assert nftnames.truncate_comment("ns/name:port") == "ns/name:port"


@pytest.mark.parametrize(("seconds", "text"), [(600, "10m"), (10800, "3h"), (86400, "1d"),
                                               (5430, "1h30m30s"), (1, "1s")])
def test_timeouts(seconds: int, text: str) -> None:
    assert timeout_text(seconds) == text


@pytest.mark.parametrize(("hook", "priority", "text"), [
    ("prerouting", -110, "dstnat - 10"), ("output", -110, "-110"), ("input", 0, "filter"),
    ("prerouting", -100, "dstnat"), ("output", -100, "-100"), ("postrouting", 100, "srcnat")])
def test_priorities_as_nft_1_0_6_names_them(hook: str, priority: int, text: str) -> None:
    assert priority_text(hook, priority) == text


@pytest.mark.parametrize(("cidrs", "text"), [
    (["10.96.0.0/16"], "10.96.0.0/16"),
    (["203.0.113.10/32"], "203.0.113.10"),
    (["10.0.0.0/8", "10.1.0.0/16"], "{ 10.0.0.0/8 }"),
    (["10.0.0.0/25", "10.0.0.128/25"], "{ 10.0.0.0/24 }"),
    (["10.0.0.128/26", "10.0.0.0/25"], "{ 10.0.0.0-10.0.0.191 }"),
    (["192.168.0.0/24", "10.0.0.0/8", "203.0.113.10/32"], "{ 10.0.0.0/8, 192.168.0.0/24, 203.0.113.10 }"),
    (["fd00::/64", "fd00:0:0:1::/64"], "{ fd00::/63 }"),
])
def test_anonymous_interval_sets(cidrs: list[str], text: str) -> None:
    assert interval_set(cidrs) == text


def test_element_order_single_values_by_value_concatenations_by_reversed_bytes() -> None:
    single = Container("set", "cluster-ips", "ipv4_addr")
    for key in ("10.96.20.20", "10.96.0.53", "10.96.10.10"):
        single.elements[key] = ("", "")
    assert element_order(single) == ["10.96.0.53", "10.96.10.10", "10.96.20.20"]
    concat = Container("map", "service-ips", "ipv4_addr . inet_proto . inet_service : verdict")
    for key in ("10.96.30.30 . tcp . 443", "10.96.20.20 . tcp . 8080", "203.0.113.10 . tcp . 443",
                "10.96.10.10 . tcp . 80"):
        concat.elements[key] = ("drop", "")
    assert element_order(concat) == ["10.96.10.10 . tcp . 80", "10.96.20.20 . tcp . 8080",
                                     "203.0.113.10 . tcp . 443", "10.96.30.30 . tcp . 443"]
