"""``trace --pcap`` on nftables listings: kube-proxy's nftables table compiled for the example
cluster, a capture with a connection's SYN, its reply and a later packet; replies are
ESTABLISHED and reverse the connection's NAT, and results come out while the capture is
still being read."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from netproxy.netfilter.model import Ruleset
from netproxy.parser.nftables import read_nft
from netproxy.trace import Packet, Tracer
from netproxy.trace.pcap import read_pcap
from netproxy.trace.sequence import trace_stream

REPO = Path(__file__).resolve().parents[1]
KUBE_PROXY = REPO / "tests" / "golden" / "compile-nftables" / "example-cluster" / "expected.list"
ROUND_ROBIN = REPO / "tests" / "data" / "nft" / "expressions.nft"


def capture(path: Path) -> Path:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    wrpcap(str(path), [
        Ether() / IP(src="10.244.1.50", dst="10.96.100.10") / TCP(sport=40000, dport=80, flags="S"),
        Ether() / IP(src="10.244.2.10", dst="10.244.1.50") / TCP(sport=8080, dport=40000,
                                                                 flags="SA"),
        Ether() / IP(src="10.244.1.50", dst="10.96.100.10") / TCP(sport=40000, dport=80, flags="A"),
        Ether() / IP(src="172.16.5.5", dst="192.168.0.11") / TCP(sport=41000, dport=30080,
                                                                 flags="S"),
        Ether() / IP(src="10.244.3.10", dst="192.168.0.11") / TCP(sport=8080, dport=41000,
                                                                  flags="SA")])
    return path


def test_pcap_on_kube_proxy_nftables_table(tmp_path: Path) -> None:
    cap = capture(tmp_path / "k.pcap")
    r = subprocess.run([sys.executable, "-m", "netproxy", "trace", "--rules", str(KUBE_PROXY),
                        "--local-ip", "192.168.0.11", "--cluster-cidr", "10.244.0.0/16",
                        "--pcap", str(cap)], capture_output=True, text=True, timeout=120,
                       cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "1: tcp 10.244.1.50:40000 -> 10.96.100.10:80 from pod, NEW: 3 endpoints, 33.3% each, "
        "not masqueraded",
        # the SYN-ACK answers the DNATed connection: ESTABLISHED, its source restored to the
        # Service, and it shows which endpoint the connection went to
        "2: tcp 10.244.2.10:8080 -> 10.244.1.50:40000 from pod, ESTABLISHED: accepted without "
        "DNAT (forwarded), not masqueraded, reply: source restored to 10.96.100.10:80",
        # so the connection's next packet goes to that endpoint only
        "3: tcp 10.244.1.50:40000 -> 10.96.100.10:80 from pod, ESTABLISHED: 1 endpoint "
        "10.244.2.10:8080, not masqueraded",
        "4: tcp 172.16.5.5:41000 -> 192.168.0.11:30080 from external, NEW: 3 endpoints, 33.3% "
        "each, masqueraded",
        "5: tcp 10.244.3.10:8080 -> 192.168.0.11:41000 from pod, ESTABLISHED: accepted without "
        "DNAT (forwarded), not masqueraded, reply: destination restored to 172.16.5.5:41000, "
        "source restored to 192.168.0.11:30080"]


def test_pcap_results_stream_while_the_capture_is_read(tmp_path: Path) -> None:
    """The first packet's result is out before the reader has gone past the second packet
    (a capture of any length is traced in flat memory)."""
    cap = capture(tmp_path / "k.pcap")
    t = Tracer(Ruleset(family="ipv4"), local_ips=["192.168.0.11"], nft=[read_nft(KUBE_PROXY)],
               pod_cidrs=["10.244.0.0/16"])
    read: list[Packet] = []

    def counted() -> Iterator[Packet]:
        for p in read_pcap(str(cap), {}):
            read.append(p)
            yield p

    results = trace_stream({"ipv4": t}, counted())
    first = next(results)
    assert len(read) <= 2 and first.outcomes[0].dnat is not None
    assert len(list(results)) == 4 and len(read) == 5


def test_pcap_follows_a_numgen_inc_counter(tmp_path: Path) -> None:
    """Three connections in a capture to a `numgen inc mod 3` DNAT: the second and third
    each go to the element after the previous one's (round robin), never the same."""
    from scapy.layers.inet import IP, TCP
    from scapy.utils import wrpcap

    cap = tmp_path / "rr.pcap"
    wrpcap(str(cap), [IP(src="10.1.0.5", dst="10.96.1.1") / TCP(sport=1000 + n, dport=80,
                                                                flags="S") for n in range(3)])
    r = subprocess.run([sys.executable, "-m", "netproxy", "trace", "--rules", str(ROUND_ROBIN),
                        "--local-ip", "10.1.0.1", "-i", "a0", "-o", "c0", "--pcap", str(cap),
                        "--json"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    import json

    packets = json.loads(r.stdout)["packets"]
    assert [p["same_as_previous"] for p in packets[1:]] == [0.0, 0.0]
