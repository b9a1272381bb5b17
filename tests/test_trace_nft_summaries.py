"""Base chain summaries on nftables rulesets (the tracer replaying a base chain walked before
in the same state, lookups in sets and maps included) never change an answer: every real
`nft list ruleset` dump and the test cluster's nftables-mode table, traced with and without
them, packet for packet."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from netproxy.netfilter.model import Ruleset
from netproxy.netfilter.nft import NftRuleset
from netproxy.parser.nftables import parse_nft, read_nft
from netproxy.trace import Packet, Tracer
from netproxy.trace.sequence import AUTO_STATE, trace_stream

from conftest import DUMPS

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["10.244.1.50", "10.244.2.7", "172.16.5.5", "198.51.100.7", "127.0.0.1"]
ELEMENT = re.compile(r"(\d+\.\d+\.\d+\.\d+ \. )?(tcp|udp) \. (\d+) : goto")


def _packets(text: str, node: str) -> list[Packet]:
    """The first 40 service-ips / service-nodeports elements kube-proxy's table lists (a
    NodePort to the node's address), and two questions any ruleset answers, from pods,
    outside and the node, each twice (the second time replays what the first recorded)
    with another source port."""
    targets = [((m[1] or node).split(" ")[0], int(m[3]), m[2])
               for m in ELEMENT.finditer(text)][:40]
    targets += [("203.0.113.9", 443, "tcp"), (node, 30080, "tcp")]
    return [Packet(dst=dst, src=src, dport=dport, proto=proto, sport=40000 + n)
            for n in range(2) for dst, dport, proto in targets for src in SOURCES]


def _same(listing: NftRuleset, local: list[str] | None, packets: list[Packet], *,
          stream: bool = False, assume: bool = True) -> int:
    results = []
    replayed = 0
    for summaries in (True, False):
        tracer = Tracer(Ruleset(family="ipv4"), local_ips=local, assume=assume, nft=[listing])
        tracer.summaries = summaries
        if stream:
            for p in packets:
                p.extra["ct"] = AUTO_STATE
            results.append([r.to_dict() for r in trace_stream({"ipv4": tracer}, packets)])
        else:
            results.append([tracer.trace(p).to_dict() for p in packets])
        if summaries:
            replayed = sum(slot[2] for slot in tracer._summaries.values())
    for with_, without in zip(*results, strict=True):
        assert with_ == without
    return replayed


@pytest.mark.parametrize("assume", [True, False], ids=["assume", "strict"])
@pytest.mark.parametrize("path", sorted(DUMPS.glob("nft/*.nft")), ids=lambda p: p.stem)
def test_summaries_change_no_answer_on_real_nft_listings(path: Path, assume: bool) -> None:
    text = path.read_text()
    listing = read_nft(str(path))
    replayed = _same(listing, None, _packets(text, "192.168.0.10"), assume=assume)
    if any(c.hook for table in listing.tables.values() for c in table.chains.values()):
        assert replayed > 0, "no walk replayed a summary: the comparison proved nothing"
    else:  # a trimmed listing without base chains: packets walk nothing to summarize
        assert replayed == 0


def test_summaries_are_used_and_change_no_answer_on_kube_proxys_nftables_table() -> None:
    """The compiled table has ClusterIP affinity (dynamic sets the packets update) and
    masquerade marks: the walks that touch them are not summarized, the others are."""
    import subprocess
    import sys

    text = subprocess.run([sys.executable, "-m", "netproxy", "compile",
                           str(REPO / "tests" / "data" / "trace" / "cluster.yaml"),
                           "--proxy-mode", "nftables"], capture_output=True, text=True,
                          check=True, cwd=REPO).stdout
    listing = parse_nft(text, source="cluster")
    packets = _packets(text, "192.168.0.10")
    assert _same(listing, ["192.168.0.10"], packets) > 0
    assert _same(listing, ["192.168.0.10"], packets, stream=True) > 0
