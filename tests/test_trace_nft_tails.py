"""Tails on nftables (the tracer replaying the rest of a walk after a DNAT, recorded for an
earlier branch that arrived there in the same state) never change an answer: every compiled
nftables-mode table, the hand-written rulesets, the real listings and nodes that mix nftables
with iptables, traced with and without summaries and tails, packet for packet; and the cases
a careless replay would get wrong (a check that reads the output interface or a mark set on
the way, a check after a source NAT) answer as a full walk does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from netproxy.netfilter.model import Ruleset
from netproxy.netfilter.nft import NftRuleset
from netproxy.parser import read_rules
from netproxy.parser.nftables import parse_nft_text, read_nft
from netproxy.trace import Packet, Tracer
from netproxy.trace.sequence import AUTO_STATE, trace_stream

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "nft"
COMPILED = sorted((REPO / "tests" / "golden" / "compile-nftables").glob("*/expected.list"))
ELEMENT = re.compile(r"([0-9a-f.:]+ \. )?(tcp|udp|sctp) \. (\d+) : goto")
DNAT_TO = re.compile(r"(?:ip daddr|dnat (?:ip )?to) (\d+\.\d+\.\d+\.\d+)")
NODEPORT_IPS = re.compile(r"set nodeport-ips \{[^}]*?elements = \{ ([0-9a-f.:]+)")
SOURCES = {"ipv4": ["10.244.1.50", "10.42.3.9", "172.16.5.5", "198.51.100.7"],
           "ipv6": ["fd00:10:244:1::50", "2001:db8::7"]}
INTERFACES = [(None, None), ("eth0", "cni0"), ("cni0", "eth0")]


def _packets(text: str, family: str, node: str) -> list[Packet]:
    """Services the listing names (at most 30), addresses its rules match or DNAT to, and
    the node, from pods and outside, through a few interfaces, each twice with another
    source port (the second time replays what the first recorded)."""
    v6 = family == "ipv6"
    targets = [((m[1] or node).split(" ")[0], int(m[3]), m[2])
               for m in ELEMENT.finditer(text) if (":" in (m[1] or node)) == v6][:30]
    if not v6:
        targets += [(a, 80, "tcp") for a in dict.fromkeys(DNAT_TO.findall(text))][:10]
    targets += [(node, 30080, "tcp"), (node, 22, "tcp"),
                ("2001:db8:99::9" if v6 else "203.0.113.9", 443, "tcp")]
    return [Packet(dst=dst, src=src, dport=dport, proto=proto, sport=40000 + n,
                   in_interface=iif, out_interface=oif)
            for n in range(2) for dst, dport, proto in targets for src in SOURCES[family]
            for iif, oif in INTERFACES]


def _same(listings: list[NftRuleset], packets: list[Packet], *, family: str = "ipv4",
          local: list[str], rules: Ruleset | None = None, assume: bool = True,
          stream: bool = False) -> int:
    """Trace with summaries and tails, then without; the tails replayed."""
    results = []
    replayed = 0
    for summaries in (True, False):
        tracer = Tracer(rules or Ruleset(family=family), local_ips=local, assume=assume,
                        nft=listings)
        tracer.summaries = summaries
        if stream:
            for p in packets:
                p.extra["ct"] = AUTO_STATE
            results.append([r.to_dict() for r in trace_stream({family: tracer}, packets)])
        else:
            results.append([tracer.trace(p).to_dict() for p in packets])
        if summaries:
            replayed = sum(slot[2] for slot in tracer._tails.values())
    for with_, without in zip(*results, strict=True):
        assert with_ == without
    return replayed


def _node(text: str, default: str) -> str:
    m = NODEPORT_IPS.search(text)
    return m[1] if m else default


@pytest.mark.parametrize("path", COMPILED, ids=lambda p: p.parent.name)
def test_tails_change_no_answer_on_compiled_tables(path: Path) -> None:
    text = path.read_text()
    replayed = 0
    for family, table in (("ipv4", "table ip kube-proxy"), ("ipv6", "table ip6 kube-proxy")):
        if table not in text:
            continue
        node = _node(text, "fd00::11" if family == "ipv6" else "192.168.0.11")
        if (":" in node) != (family == "ipv6"):
            node = "fd00::11" if family == "ipv6" else "192.168.0.11"
        replayed += _same([read_nft(str(path))], _packets(text, family, node), family=family,
                          local=[node])
    if re.search(r"dnat (ip6? )?to", text):  # tails follow a DNAT
        assert replayed > 0


def test_tails_are_used_on_kube_proxys_table_in_sequences() -> None:
    """Affinity sets and masquerade marks, packets that follow their connections."""
    path = REPO / "tests" / "golden" / "compile-nftables" / "session-affinity" / "expected.list"
    text = path.read_text()
    node = _node(text, "192.168.0.11")
    packets = _packets(text, "ipv4", node)
    assert _same([read_nft(str(path))], packets, local=[node]) > 0
    _same([read_nft(str(path))], packets, local=[node], stream=True)


@pytest.mark.parametrize("assume", [True, False], ids=["assume", "strict"])
@pytest.mark.parametrize("path", sorted(DATA.glob("*.nft")), ids=lambda p: p.stem)
def test_tails_change_no_answer_on_hand_written_rulesets(path: Path, assume: bool) -> None:
    text = path.read_text()
    for family in ("ipv4", "ipv6"):
        node = "fd00::10" if family == "ipv6" else "192.168.0.10"
        _same([read_nft(str(path))], _packets(text, family, node), family=family,
              local=[node], assume=assume)


KUBE_PROXY_LISTINGS = {
    "01-k3s-pi-kubeproxy-nft-complete": ("10.34.4.246", ()),
    # cut short and trimmed: with the base chains and Services they lack (tests/data/nft)
    "02-kubeadm132-flannel-kubeproxy-nft-handles-truncated": ("10.128.0.25",
                                                              ("kube-proxy-v132-fixed.nft",)),
    "04-kubeadm136-pi-kubeproxy-nft-trimmed": ("192.168.0.231", ("kube-proxy-v136-fixed.nft",)),
    "05-kubeadm136-pi-kubeproxy-nft-trimmed-after-pod-replace": (
        "192.168.0.231", ("kube-proxy-v136-fixed.nft", "kube-proxy-v136-services.nft"))}


@pytest.mark.parametrize("assume", [True, False], ids=["assume", "strict"])
def test_tails_change_no_answer_on_real_listings(dumps_dir: Path, assume: bool) -> None:
    for path in sorted((dumps_dir / "nft").glob("*.nft")):
        node, extra = KUBE_PROXY_LISTINGS.get(path.stem, ("192.168.0.10", ()))
        text = path.read_text()
        listings = [read_nft(str(path)), *(read_nft(str(DATA / e)) for e in extra)]
        replayed = _same(listings, _packets(text, "ipv4", node), local=[node], assume=assume)
        if path.stem in KUBE_PROXY_LISTINGS:
            assert replayed > 0, path.stem


def test_tails_change_no_answer_on_mixed_nodes(dumps_dir: Path) -> None:
    """kube-proxy's nftables table beside flannel's (02 + 03, one cluster), and beside
    iptables-legacy dumps of Docker and flannel nodes (their chains join each hook by
    priority)."""
    nft = dumps_dir / "nft"
    kube = nft / "02-kubeadm132-flannel-kubeproxy-nft-handles-truncated.nft"
    listings = [read_nft(str(kube)), read_nft(str(DATA / "kube-proxy-v132-fixed.nft")),
                read_nft(str(nft / "03-kubeadm132-flannel-nft-table.nft"))]
    packets = _packets(kube.read_text(), "ipv4", "10.128.0.25")
    assert _same(listings, packets, local=["10.128.0.25"]) > 0
    k3s = nft / "01-k3s-pi-kubeproxy-nft-complete.nft"
    packets = _packets(k3s.read_text(), "ipv4", "10.34.4.246")
    for dump in ("01-minik8s-flannel-docker.rules",
                 "10-centos7-flannel-docker-libvirt-reject.rules"):
        rules = read_rules(str(dumps_dir / dump))
        assert _same([read_nft(str(k3s))], packets, local=["10.34.4.246"], rules=rules) > 0


# ---------------------------------------------------------------- what a replay must not get wrong

def _both(text: str, packet: Packet) -> list[tuple[str, str | None, float]]:
    """The outcomes with summaries and tails (after a first packet recorded them), which
    must be those without."""
    listing = parse_nft_text(text, source="t.nft")
    answers = []
    for summaries in (True, False):
        t = Tracer(Ruleset(family="ipv4"), local_ips=["192.168.0.10"], nft=[listing])
        t.summaries = summaries
        t.trace(packet.with_(sport=1000))
        answers.append(sorted((o.verdict, o.dnat, o.probability)
                              for o in t.trace(packet).outcomes))
    assert answers[0] == answers[1]
    return answers[0]


DNAT_TWO = """table ip t {
\tset pairs {
\t\ttype %s
\t\telements = { %s }
\t}
\tchain pre {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\ttcp dport 80 dnat to numgen random mod 2 map { 0 : 10.0.0.1, 1 : 10.0.0.2 }
\t}
%s
}
"""


def test_a_tail_check_reads_the_output_interface_of_its_own_hook() -> None:
    """The forward chain asks for the output interface with the address: a replay asking in
    prerouting's state (no output interface) would let 10.0.0.2 through."""
    text = DNAT_TWO % ("ifname . ipv4_addr", '"eth1" . 10.0.0.2', """\tchain fwd {
\t\ttype filter hook forward priority filter; policy accept;
\t\toifname . ip daddr @pairs drop
\t}""")
    got = _both(text, Packet(src="172.16.0.5", dst="192.168.0.10", dport=80, sport=2000,
                             in_interface="eth0", out_interface="eth1"))
    assert got == [("ACCEPT", "10.0.0.1:80", 0.5), ("DROP", "10.0.0.2:80", 0.5)]


def test_a_check_after_a_mark_set_on_the_way_reads_that_mark() -> None:
    """A mark set from a mark (no check of its own) and then a lookup with it."""
    text = DNAT_TWO % ("ipv4_addr . mark", "10.0.0.2 . 0x00000010", """\tchain fwd {
\t\ttype filter hook forward priority filter; policy accept;
\t\tmeta mark set meta mark | 0x00000010
\t\tip daddr . meta mark @pairs drop
\t}""")
    got = _both(text, Packet(src="172.16.0.5", dst="192.168.0.10", dport=80, sport=2000,
                             in_interface="eth0", out_interface="eth1"))
    assert got == [("ACCEPT", "10.0.0.1:80", 0.5), ("DROP", "10.0.0.2:80", 0.5)]


def test_a_check_after_a_source_nat_reads_the_new_source() -> None:
    """After ``snat to`` a later base chain looks the new source up with the destination."""
    text = DNAT_TWO % ("ipv4_addr . ipv4_addr", "192.0.2.1 . 10.0.0.2", """\tchain post {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tsnat to 192.0.2.1
\t}
\tchain late {
\t\ttype filter hook postrouting priority 300; policy accept;
\t\tip saddr . ip daddr @pairs drop
\t}""")
    got = _both(text, Packet(src="172.16.0.5", dst="192.168.0.10", dport=80, sport=2000,
                             in_interface="eth0", out_interface="eth1"))
    assert got == [("ACCEPT", "10.0.0.1:80", 0.5), ("DROP", "10.0.0.2:80", 0.5)]
