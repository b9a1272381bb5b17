"""apply --proxy-mode nftables --rules FILE: which tables an nft -f file touches, read
without a kernel; and the record apply keeps of the table it loaded, read back as written."""

from __future__ import annotations

import pytest

from netproxy.backend import nftfile, nftrecord
from netproxy.compiler.nftables.existing import KernelTable
from netproxy.compiler.nftables.table import Chain, Container
from netproxy.errors import ParseError


def test_statements_split_outside_braces_quotes_and_comments() -> None:
    text = ('add table ip kube-proxy { comment "rules; for kube-proxy" ; }  # a comment; here\n'
            "add element ip kube-proxy s { 1.2.3.4,\n  5.6.7.8 }; flush chain ip kube-proxy a\n"
            "add rule ip kube-proxy a \\\n  drop\n")
    got = [(s.line, s.text) for s in nftfile.statements(text)]
    assert got == [(1, 'add table ip kube-proxy { comment "rules; for kube-proxy" ; }'),
                   (2, "add element ip kube-proxy s { 1.2.3.4,\n  5.6.7.8 }"),
                   (3, "flush chain ip kube-proxy a"),
                   (4, "add rule ip kube-proxy a    drop")]


def test_tables_of_a_transaction_and_a_listing() -> None:
    found = nftfile.check("define X = 1\nadd chain kube-proxy a\n"
                          "add ct helper ip6 kube-proxy h { type \"ftp\" protocol tcp ; }\n", "f")
    assert found.tables == ["ip", "ip6"] and found.families == ["ipv4", "ipv6"]
    assert not found.listing and found.statements == 2
    listing = nftfile.check("table ip kube-proxy {\n\tchain a {\n\t}\n}\n", "f")
    assert listing.listing and listing.tables == ["ip"]


@pytest.mark.parametrize(("text", "message"), [
    ("add chain ip kube-proxy a\ndelete table inet filter\n",
     "f.nft:2: touches table inet filter;"),
    ("add rule kube-proxy2 a drop\n", "f.nft:1: touches table ip kube-proxy2;"),
    ("table ip kube-proxy {\n}\ntable bridge kube-proxy {\n}\n",
     "f.nft:3: touches table bridge kube-proxy;"),
    ("flush ruleset\n", "f.nft:1: cannot tell which table 'flush ruleset' touches"),
    ('include "/etc/nftables.conf"\n', "f.nft:1: cannot tell which table"),
    ("list ruleset\n", "f.nft:1: cannot tell which table"),
    ("# only a comment\n", "f.nft: no statement for table ip/ip6 kube-proxy"),
])
def test_other_tables_are_refused_with_the_line(text: str, message: str) -> None:
    with pytest.raises(ParseError) as err:
        nftfile.check(text, "f.nft")
    assert str(err.value).startswith(message)


def test_record_reads_back_as_written() -> None:
    table = KernelTable(
        "rules for kube-proxy",
        {"nat-prerouting": Chain("nat-prerouting", "prerouting", "nat", -100, "",
                                 ["jump services"]),
         "service-X": Chain("service-X", comment="", rules=['ip daddr 1.2.3.4 comment "a\\tb"'])},
        {"cluster-ips": Container("set", "cluster-ips", "ipv4_addr", "", 0, "Active ClusterIPs",
                                  {"10.96.0.1": ("", "")}),
         "service-ips": Container("map", "service-ips", "ipv4_addr . inet_proto . inet_service"
                                  " : verdict", "", 0, "", {"10.96.0.1 . tcp . 443":
                                                            ("goto service-X", "c")}),
         "rejected": Container("counter", "rejected")})
    generation, back = nftrecord.parse(nftrecord.render(table, 42))
    assert generation == 42 and back == table
