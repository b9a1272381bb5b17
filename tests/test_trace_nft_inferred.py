"""What kube-proxy's nftables table reveals about its node, when nobody said: node addresses
(``set nodeport-ips``, a firewall chain's "allow from node"), the pod network (the masquerade
rules' ``ip saddr != CIDR``, the "short-circuit pod traffic" rules), Service cluster IPs
(``set cluster-ips``, the ``service-ips`` keys of ``service-`` chains) and the Service CIDR
(``cluster-ips-check``'s drop rule) -- each stated with its line, as iptables mode does, and
combined with what an iptables dump beside the listing reveals."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from netproxy.netfilter.model import Ruleset
from netproxy.parser import parse_rules
from netproxy.parser.nftables import parse_nft_text, read_nft
from netproxy.trace import Packet, Tracer
from netproxy.trace.addr import format_addr, parse_addr
from netproxy.trace.cases import case_list
from netproxy.trace.inferred import infer_nft_node
from netproxy.trace.result import summary

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "trace-nft"

# kube-proxy v1.33-v1.35 layout, trimmed to what each inference needs
TABLE = """table ip kube-proxy {
	set cluster-ips {
		type ipv4_addr
		elements = { 10.96.0.10, 10.96.0.20 }
	}
	set nodeport-ips {
		type ipv4_addr
		comment "IPs that accept NodePort traffic"
		elements = { 192.168.7.7 }
	}
	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = { 10.96.0.10 . tcp . 80 : goto service-AAAAAAAA-ns/web/tcp/http,
			10.97.5.5 . tcp . 80 : goto service-AAAAAAAA-ns/web/tcp/http,
			192.168.7.8 . tcp . 80 : goto external-AAAAAAAA-ns/web/tcp/http }
	}
	map service-nodeports {
		type inet_proto . inet_service : verdict
		elements = { tcp . 30080 : goto external-AAAAAAAA-ns/web/tcp/http }
	}
	chain nat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		jump services
	}
	chain nat-output {
		type nat hook output priority -100; policy accept;
		jump services
	}
	chain nat-postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		jump masquerading
	}
	chain masquerading {
		meta mark & 0x00004000 == 0x00000000 return
		meta mark set meta mark ^ 0x00004000
		masquerade fully-random
	}
	chain services {
		ip daddr . meta l4proto . th dport vmap @service-ips
		ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
	}
	chain cluster-ips-check {
		ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"
		ip daddr { 10.96.0.0/16 } drop comment "Drop traffic to unallocated ClusterIPs"
	}
	chain mark-for-masquerade {
		meta mark set meta mark | 0x00004000
	}
	chain external-AAAAAAAA-ns/web/tcp/http {
		jump mark-for-masquerade
		goto service-AAAAAAAA-ns/web/tcp/http
	}
	chain service-AAAAAAAA-ns/web/tcp/http {
		ip daddr 10.96.0.10 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
		numgen random mod 2 vmap { 0 : goto endpoint-BBBBBBBB-ns/web/tcp/http__10.244.1.5/8080, 1 : goto endpoint-CCCCCCCC-ns/web/tcp/http__10.244.2.5/8080 }
	}
	chain endpoint-BBBBBBBB-ns/web/tcp/http__10.244.1.5/8080 {
		ip saddr 10.244.1.5 jump mark-for-masquerade
		meta l4proto tcp dnat to 10.244.1.5:8080
	}
	chain endpoint-CCCCCCCC-ns/web/tcp/http__10.244.2.5/8080 {
		ip saddr 10.244.2.5 jump mark-for-masquerade
		meta l4proto tcp dnat to 10.244.2.5:8080
	}
}
"""


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def nft_tracer(text: str, **kw) -> Tracer:  # type: ignore[no-untyped-def]
    kw.setdefault("local_ips", None)
    return Tracer(kw.pop("rules", None) or Ruleset(family=kw.pop("family", "ipv4")),
                  assume=True, nft=[parse_nft_text(text, source="kp.nft")], **kw)


# ------------------------------------------------------------ one unit test per inference

def test_nodeport_ips_are_node_addresses() -> None:
    t = nft_tracer(TABLE)
    assert t.local_ips == ["192.168.7.7"]
    at = line_of(TABLE, "elements = { 192.168.7.7 }")  # the element's own line
    assert f"192.168.7.7 is a node address (line {at}: ip kube-proxy set nodeport-ips, the " \
        "addresses NodePorts answer on, which kube-proxy fills with the node's own " \
        "addresses)" in t.inferred
    res = t.trace(Packet(src="172.16.0.1", dst="192.168.7.7", dport=30080))
    assert summary(res) == "2 endpoints, 50% each, masqueraded"  # definite: nothing unknown
    assert f"inferred: 192.168.7.7 is a node address (line {at}: ip kube-proxy set " \
        "nodeport-ips, the addresses NodePorts answer on, which kube-proxy fills with the " \
        "node's own addresses)" in res.notes


def test_pod_network_from_the_service_chains_masquerade_rule() -> None:
    t = nft_tracer(TABLE)
    at = line_of(TABLE, "ip saddr != 10.244.0.0/16")
    assert ("10.244.0.0/16 is the pod network, not the node's (line "
            f"{at}: service-AAAAAAAA-ns/web/tcp/http masquerades sources outside 10.244.0.0/16 "
            "(the pod network))") in t.inferred
    res = t.trace(Packet(src="10.244.3.3", dst="10.96.0.10", dport=80))
    assert res.packet.origin == "pod"
    assert summary(res) == "2 endpoints, 50% each, not masqueraded"
    outside = t.trace(Packet(src="172.16.0.1", dst="10.96.0.10", dport=80))
    assert outside.packet.origin == "external"
    assert summary(outside) == "2 endpoints, 50% each, masqueraded"


def test_pod_network_from_the_services_chain_and_the_short_circuit_rule() -> None:
    """v1.36 writes the off-cluster mark once in `services`; eTP Local external chains
    short-circuit pod traffic with `ip saddr CIDR goto`."""
    services = TABLE.replace(
        "ip daddr 10.96.0.10 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade\n",
        "").replace("\t\tip daddr . meta l4proto . th dport vmap @service-ips\n",
                    "\t\tip daddr @cluster-ips ip saddr != 10.244.0.0/16 meta mark set meta "
                    "mark | 0x00004000 comment \"masquerade clusterIP traffic from outside "
                    "cluster\"\n\t\tip daddr . meta l4proto . th dport vmap @service-ips\n")
    t = nft_tracer(services)
    assert any(n.startswith(f"10.244.0.0/16 is the pod network, not the node's (line "
                            f"{line_of(services, 'ip saddr != 10.244.0.0/16')}: services "
                            "masquerades sources outside") for n in t.inferred)
    short = TABLE.replace(
        "ip daddr 10.96.0.10 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade\n",
        "").replace("\t\tjump mark-for-masquerade\n\t\tgoto service-AAAAAAAA",
                    "\t\tip saddr 10.244.0.0/16 goto service-AAAAAAAA-ns/web/tcp/http comment "
                    "\"short-circuit pod traffic\"\n\t\tgoto service-AAAAAAAA")
    t = nft_tracer(short)
    assert any(n.startswith(f"10.244.0.0/16 is the pod network, not the node's (line "
                            f"{line_of(short, 'short-circuit')}: external-AAAAAAAA-ns/web/tcp/"
                            "http treats 10.244.0.0/16 as pods)") for n in t.inferred)


def test_service_cidr_from_cluster_ips_check_places_its_addresses_off_the_node() -> None:
    t = nft_tracer(TABLE)
    at = line_of(TABLE, "Drop traffic to unallocated")
    assert ("10.96.0.0/16 is the Service network, not the node's (line "
            f"{at}: cluster-ips-check drops traffic to unallocated cluster IPs in it)"
            in t.inferred)
    # an unallocated address of the Service CIDR is not the node's: forwarded, no question
    res = t.trace(Packet(src="10.244.3.3", dst="10.96.55.55", dport=80))
    assert summary(res) == "accepted without DNAT (forwarded), not masqueraded"
    assert not res.conditions()


def test_cluster_ips_are_not_node_addresses_but_external_ips_may_be() -> None:
    """Cluster IPs: `set cluster-ips` and service-ips keys going to a service- chain (none of
    them is bound to an interface in nftables mode). An ExternalIP key (goto external-) says
    nothing: it may well be the node's own address."""
    t = nft_tracer(TABLE.replace("\t\tip daddr { 10.96.0.0/16 } drop comment "
                                 "\"Drop traffic to unallocated ClusterIPs\"\n", ""))
    at = line_of(TABLE, "set cluster-ips")
    assert (f"10.96.0.10, 10.96.0.20, 10.97.5.5 are Service cluster IPs, not node addresses "
            f"(line {at}: ip kube-proxy set cluster-ips; nftables mode binds cluster IPs to "
            "no interface)") in t.inferred
    assert t.placed(parse_addr("10.97.5.5", "ipv4")) is False  # a service-ips key
    assert t.placed(parse_addr("10.96.0.20", "ipv4")) is False
    assert t.placed(parse_addr("192.168.7.8", "ipv4")) is None  # the ExternalIP: unknown
    facts = infer_nft_node([parse_nft_text(TABLE)], "ipv4")
    assert parse_addr("192.168.7.8", "ipv4") not in facts.service_ips


def test_firewall_allow_from_node_reveals_the_node_address() -> None:
    """kube-proxy appends the LB IP to a firewall chain's source ranges only when a range
    holds the node's address: a lone host range then is that address."""
    fw = TABLE.replace("\tchain services {", """\tmap firewall-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = { 203.0.113.10 . tcp . 443 : goto firewall-DDDDDDDD-ns/lb/tcp/https }
	}
	chain firewall-DDDDDDDD-ns/lb/tcp/https {
		ip saddr != { 192.168.7.9/32, 203.0.113.10 } drop
	}
	chain firewall-EEEEEEEE-ns/lb2/tcp/https {
		ip saddr != { 192.168.0.0/16, 203.0.113.11 } drop
	}
	chain services {""").replace(
        "elements = { 203.0.113.10 . tcp . 443 : goto firewall-DDDDDDDD-ns/lb/tcp/https }",
        "elements = { 203.0.113.10 . tcp . 443 : goto firewall-DDDDDDDD-ns/lb/tcp/https, "
        "203.0.113.11 . tcp . 443 : goto firewall-EEEEEEEE-ns/lb2/tcp/https }")
    t = nft_tracer(fw)
    assert "192.168.7.9" in t.local_ips
    assert (f"192.168.7.9 is a node address (line {line_of(fw, '192.168.7.9/32')}: "
            "firewall-DDDDDDDD-ns/lb/tcp/https allows traffic from the node, and its only "
            "source range is 192.168.7.9)") in t.inferred
    assert any(n.startswith("the node's primary address lies in 192.168.0.0/16 (line ")
               for n in t.inferred)


def test_ip6_table_of_an_ipv6_trace() -> None:
    six = """table ip6 kube-proxy {
	set nodeport-ips {
		type ipv6_addr
		elements = { 2001:db8::7 }
	}
	chain service-AAAAAAAA-ns/web/tcp/http {
		ip6 daddr fd00:96::10 tcp dport 80 ip6 saddr != fd00:244::/64 jump mark-for-masquerade
	}
	chain mark-for-masquerade {
		meta mark set meta mark | 0x00004000
	}
}
"""
    t = nft_tracer(six + TABLE, family="ipv6")
    assert t.local_ips == ["2001:db8::7"]
    assert [n.split(" (")[0] for n in t.inferred] == [
        "2001:db8::7 is a node address", "fd00:244::/64 is the pod network, not the node's"]
    assert t.trace(Packet(src="fd00:244::9", dst="2001:db8::99", dport=80)).packet.origin == "pod"


def test_given_addresses_and_pod_networks_win() -> None:
    t = nft_tracer(TABLE, local_ips=["192.168.7.1"], pod_cidrs=["10.32.0.0/12"])
    assert t.local_ips == ["192.168.7.1"] and t.inferred == []
    # a snapshot knows the node's addresses, not its pod network: that is still inferred
    t = nft_tracer(TABLE, local_ips=["192.168.7.1"])
    assert [n.split(" (")[0] for n in t.inferred] == [
        "10.244.0.0/16 is the pod network, not the node's"]


def test_an_iptables_dump_beside_the_listing_adds_its_own_facts() -> None:
    """A node that runs kube-proxy in both modes (or was switched): both sources count, and
    each statement names its file."""
    rules = parse_rules("""*nat
:PREROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A KUBE-SERVICES -d 192.168.7.50/32 -m comment --comment "kubernetes service nodeports" -j KUBE-NODEPORTS
COMMIT
""", source="node.rules")
    t = nft_tracer(TABLE, rules=rules)
    assert sorted(t.local_ips) == ["192.168.7.50", "192.168.7.7"]
    assert any(n.startswith("192.168.7.50 is a node address (node.rules:6: KUBE-SERVICES")
               for n in t.inferred)
    assert any(n.startswith("192.168.7.7 is a node address (kp.nft:") for n in t.inferred)
    assert t.trace(Packet(src="10.244.9.9", dst="10.96.0.10", dport=80)).packet.origin == "pod"


# ------------------------------------------------------------ the real listings

NFT = sorted((REPO.parent / "shared" / "dumps" / "nft").glob("*.nft"))


@pytest.mark.parametrize("name", [p.name for p in NFT] or ["none"])
def test_every_listing_answers_pod_lan_and_node_questions(dumps_dir, name) -> None:  # type: ignore[no-untyped-def]
    """Pod to a ClusterIP, the LAN to a NodePort on a `nodeport-ips` address, the node to a
    ClusterIP: where kube-proxy's table reveals the pod network and the node's address the
    answers are definite and say what they inferred; elsewhere conditional, never UNKNOWN
    for missing context."""
    path = dumps_dir / "nft" / name
    listing = read_nft(str(path))
    t = Tracer(Ruleset(family="ipv4", source=str(path)), local_ips=None, assume=True,
               nft=[listing])
    text = path.read_text()
    kube_proxy = ("ip", "kube-proxy") in listing.tables
    node_rules = listing.tables[("ip", "kube-proxy")].sets if kube_proxy else {}
    reveals_node = bool("nodeport-ips" in node_rules and node_rules["nodeport-ips"].elements)
    reveals_pods = bool(t._pods)
    assert reveals_node == bool(t.local_ips)
    if kube_proxy and "10.34.4.246" in text:  # 01: the complete table reveals everything
        assert reveals_node and reveals_pods
    pod = format_addr(t._pods[0][0] + 9, "ipv4") if reveals_pods else "10.244.0.9"
    node = t.local_ips[0] if reveals_node else "192.168.77.1"
    element = re.search(r"(\d+\.\d+\.\d+\.\d+) \. (tcp|udp) \. (\d+) : goto service", text)
    nodeport = re.search(r"(tcp|udp) \. (\d+) : goto external", text)
    questions = [("lan", Packet(src="192.168.77.50", dst=node,
                                dport=int(nodeport[2]) if nodeport else 30080))]
    if element is not None:
        svc = dict(dst=element[1], dport=int(element[3]), proto=element[2])
        questions += [("pod", Packet(src=pod, **svc)),  # type: ignore[arg-type]
                      ("node", Packet(src=node, origin="node", **svc))]  # type: ignore[arg-type]
    for kind, q in questions:
        res = t.trace(q)
        cases = case_list(res)
        for _conds, outs in cases if cases is not None else [((), res.outcomes)]:
            assert abs(sum(o.probability for o in outs) - 1.0) < 1e-9, (kind, _conds)
        for o in res.outcomes:
            if o.verdict == "UNKNOWN":
                assert "(give " not in (o.reason or ""), (kind, o.reason)
        if kind == "pod" and reveals_pods:
            assert res.packet.origin == "pod", summary(res)
            assert any("is the pod network" in n for n in res.notes)
        if kind == "lan" and reveals_node or kind in ("pod", "node") and reveals_pods \
                and reveals_node:
            assert cases is None, (kind, summary(res))  # definite
            assert any(n.startswith("inferred: ") for n in res.notes)
        if kind == "lan" and reveals_node and nodeport is not None and \
                "nat-prerouting" in text:
            assert res.outcomes[0].dnat is not None, summary(res)  # the NodePort DNATs


# ------------------------------------------------------------ goldens

def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netproxy", "trace", *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def check_golden(name: str, text: str, dumps: Path) -> None:
    import os

    text = text.replace(str(dumps), "DUMPS")
    path = GOLDEN / name
    if os.environ.get("NETPROXY_REGEN") == "1":
        path.write_text(text)
    assert text == path.read_text()


def test_golden_pod_to_dns_inferred_json(dumps_dir) -> None:  # type: ignore[no-untyped-def]
    """The lead's question: a pod calling kube-dns over UDP on the k3s listing, nothing
    given: from pod, forwarded to the endpoint, not masqueraded; what was inferred, with
    lines (JSON: ``notes``, as in iptables mode)."""
    r = run(str(dumps_dir / "nft" / "01-k3s-pi-kubeproxy-nft-complete.nft"), "--src",
            "10.42.2.5", "--dst", "10.43.0.10", "--dport", "53", "--proto", "udp", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["packet"]["origin"] == "pod" and "missing" not in data
    assert data["summary"] == "1 endpoint 10.42.0.171:53, not masqueraded"
    check_golden("17-inferred-pod-to-dns.json", r.stdout, dumps_dir)


def test_golden_lan_to_nodeport_inferred(dumps_dir) -> None:  # type: ignore[no-untyped-def]
    """The lead's NodePort question without --local-ip: the nodeport-ips address is the
    node's and the endpoints are pods, so one definite answer instead of 9 unknown facts."""
    args = (str(dumps_dir / "nft" / "01-k3s-pi-kubeproxy-nft-complete.nft"), "--src",
            "192.168.1.9", "--dst", "10.34.4.246", "--dport", "30000")
    r = run(*args)
    assert r.returncode == 0, r.stderr
    assert "\nmissing:" not in r.stdout
    assert [n.split(" (")[0] for n in r.stdout.splitlines() if n.startswith("note:")] == [
        "note: inferred: 10.34.4.246 is a node address",
        "note: inferred: 10.43.0.0/16 is the Service network, not the node's",
        "note: inferred: 10.42.0.0/16 is the pod network, not the node's"]
    check_golden("18-inferred-lan-to-nodeport.txt", r.stdout, dumps_dir)
    brief = run(*args, "--brief")
    assert brief.stdout == ("tcp 192.168.1.9 -> 10.34.4.246:30000 from external, NEW: "
                            "9 endpoints, 11.1% each, masqueraded\n")
