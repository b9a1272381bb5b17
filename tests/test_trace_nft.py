"""Tracing nftables listings: kube-proxy's table in nftables mode (real listings 01-05),
native nftables beside iptables-nft tables, a firewalld-like inet filter, a Calico-like table
(sets, marks, policy drop) beside kube-proxy's, affinity across a packet sequence, and the
walk's order of base chains by priority."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from netproxy.netfilter.model import Ruleset
from netproxy.parser import parse_rules
from netproxy.parser.nftables import parse_nft_text, read_nft
from netproxy.trace import Packet, Tracer

from conftest import DUMPS

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "nft"
GOLDEN = REPO / "tests" / "golden" / "trace-nft"
NFT = DUMPS / "nft"


def listing(name: str) -> str:
    path = NFT / f"{name}.nft"
    if not path.exists():
        pytest.skip("real-world nft listings not present beside the project")
    return str(path)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netproxy", "trace", *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def check_golden(name: str, text: str) -> None:
    """Compare with tests/golden/trace-nft/NAME; NETPROXY_REGEN=1 rewrites it (then read it!)."""
    text = text.replace(str(DUMPS), "DUMPS").replace(str(REPO) + "/", "")
    path = GOLDEN / name
    if os.environ.get("NETPROXY_REGEN") == "1":
        path.write_text(text)
    assert text == path.read_text()


def tracer(*paths: str, family: str = "ipv4", local: tuple[str, ...] = (),
           rules: Ruleset | None = None, pods: tuple[str, ...] = ()) -> Tracer:
    listings = [read_nft(p) for p in paths]
    return Tracer(rules or Ruleset(family=family), local_ips=list(local), nft=listings,
                  pod_cidrs=pods)


def shares(result) -> dict[tuple[str, str | None, bool], float]:
    out: dict[tuple[str, str | None, bool], float] = {}
    for o in result.outcomes:
        key = (o.verdict, o.dnat, o.masquerade)
        out[key] = out.get(key, 0.0) + o.probability
    return out


HELLO = ["10.42.2.218", "10.42.4.201", "10.42.4.202", "10.42.4.203", "10.42.4.204",
         "10.42.4.205", "10.42.4.206", "10.42.4.207", "10.42.5.164"]


# ---------------------------------------------------------------- kube-proxy, listing 01

def test_kube_proxy_cluster_ip_nine_endpoints_exactly_one_ninth() -> None:
    t = tracer(listing("01-k3s-pi-kubeproxy-nft-complete"), local=("10.34.4.246",),
               pods=("10.42.0.0/16",))
    res = t.trace(Packet(src="10.42.1.5", dst="10.43.195.72", dport=8000))
    assert shares(res) == {("ACCEPT", f"{ip}:8080", False): 1 / 9 for ip in HELLO}
    assert abs(res.total() - 1.0) < 1e-12


def test_kube_proxy_nodeport_from_outside_is_masqueraded() -> None:
    t = tracer(listing("01-k3s-pi-kubeproxy-nft-complete"), local=("10.34.4.246",))
    res = t.trace(Packet(src="192.168.1.9", dst="10.34.4.246", dport=30000))
    assert shares(res) == {("ACCEPT", f"{ip}:8080", True): 1 / 9 for ip in HELLO}
    o = res.outcomes[0]
    assert o.masquerade_flags == "fully-random"
    labels = [h.label() for h in o.path]
    assert labels[:3] == ["ip kube-proxy/filter-prerouting #1 (line 78)",
                          "ip kube-proxy/filter-prerouting policy (line 76)",
                          "ip kube-proxy/nat-prerouting #1 (line 6)"]
    assert "ip kube-proxy/masquerading #3 (line 129)" in labels


@pytest.mark.parametrize(("dst", "dport", "verdict", "by"), [
    ("10.43.21.102", 4317, "REJECT", "reject-chain"),     # no endpoints (element comment)
    ("10.43.0.10", 99, "REJECT", "cluster-ips-check"),    # a ClusterIP, another port
    ("10.43.99.99", 80, "DROP", "cluster-ips-check"),     # unallocated in the ServiceCIDR
])
def test_kube_proxy_filter_verdicts(dst: str, dport: int, verdict: str, by: str) -> None:
    t = tracer(listing("01-k3s-pi-kubeproxy-nft-complete"), local=("10.34.4.246",))
    res = t.trace(Packet(src="10.42.1.5", dst=dst, dport=dport))
    assert [o.verdict for o in res.outcomes] == [verdict]
    assert res.outcomes[0].path[-1].chain == by


def test_golden_kube_proxy_nodeport_text() -> None:
    r = run("--rules", listing("01-k3s-pi-kubeproxy-nft-complete"), "--local-ip", "10.34.4.246",
            "--src", "192.168.1.9", "--dst", "10.34.4.246", "--dport", "30000")
    assert r.returncode == 0, r.stderr
    check_golden("01-nodeport.txt", r.stdout)


def test_golden_kube_proxy_json_rule_references() -> None:
    r = run("--rules", listing("02-kubeadm132-flannel-kubeproxy-nft-handles-truncated"),
            "--rules", str(DATA / "kube-proxy-v132-fixed.nft"), "--rules",
            listing("03-kubeadm132-flannel-nft-table"), "--local-ip", "10.128.0.25",
            "--cluster-cidr", "10.244.0.0/16", "--src", "10.244.2.9", "--dst",
            "10.255.36.158", "--dport", "8000", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["summary"] == "4 endpoints, 25% each, not masqueraded"
    hop = next(h for h in data["outcomes"][0]["path"] if h["chain"].startswith("service-"))
    assert (hop["family"], hop["table"], hop["handle"]) == ("ip", "kube-proxy", 138)
    check_golden("02-03-clusterip.json", r.stdout)


# ---------------------------------------------------------------- 02/03: with flannel's table

def test_truncated_listing_with_flannel_masquerade_from_outside() -> None:
    t = tracer(listing("02-kubeadm132-flannel-kubeproxy-nft-handles-truncated"),
               str(DATA / "kube-proxy-v132-fixed.nft"),
               listing("03-kubeadm132-flannel-nft-table"), local=("10.128.0.25",))
    eps = ["10.244.1.71", "10.244.1.72", "10.244.1.73", "10.244.1.76"]
    res = t.trace(Packet(src="192.168.5.5", dst="10.255.36.158", dport=8000))
    assert shares(res) == {("ACCEPT", f"{ip}:8000", True): 0.25 for ip in eps}
    # kube-proxy's masquerading (srcnat) masquerades first; flannel's postrtg, at the same
    # priority but listed later, never sees the packet (a NAT statement accepts).
    chains = [h.chain for h in res.outcomes[0].path]
    assert "masquerading" in chains and "postrtg" not in chains


def test_chain_a_cut_listing_lacks_is_unknown_naming_it() -> None:
    t = tracer(listing("02-kubeadm132-flannel-kubeproxy-nft-handles-truncated"),
               str(DATA / "kube-proxy-v132-fixed.nft"), local=("10.128.0.25",))
    res = t.trace(Packet(src="10.244.2.9", dst="10.255.0.10", dport=53))
    assert [o.verdict for o in res.outcomes] == ["UNKNOWN"]
    assert "service-NWBZK7IH-kube-system/kube-dns/tcp/dns-tcp" in str(res.outcomes[0].reason)
    assert res.outcomes[0].path[-1].line == 49


# ---------------------------------------------------------------- 04/05: v1.36 layout

@pytest.mark.parametrize(("name", "extra", "before", "after"), [
    ("04-kubeadm136-pi-kubeproxy-nft-trimmed", (), "10.244.0.10", "10.244.0.8"),
    ("05-kubeadm136-pi-kubeproxy-nft-trimmed-after-pod-replace",
     ("kube-proxy-v136-services.nft",), "10.244.0.11", "10.244.0.8"),
])
def test_v136_dnat_map_and_hairpin(name: str, extra: tuple[str, ...], before: str,
                                   after: str) -> None:
    t = tracer(listing(name), str(DATA / "kube-proxy-v136-fixed.nft"),
               *(str(DATA / e) for e in extra), local=("192.168.0.231",), pods=("10.244.0.0/16",))
    res = t.trace(Packet(src="10.244.0.30", dst="10.100.192.23", dport=80))
    assert shares(res) == {("ACCEPT", f"{before}:9898", False): 0.5,
                           ("ACCEPT", f"{after}:9898", False): 0.5}
    # A pod reaching itself through the Service: @hairpin-connections masquerades it.
    res = t.trace(Packet(src=before, dst="10.100.192.23", dport=80))
    assert shares(res) == {("ACCEPT", f"{before}:9898", True): 0.5,
                           ("ACCEPT", f"{after}:9898", False): 0.5}


def test_golden_v136_hairpin_text() -> None:
    r = run("--rules", listing("04-kubeadm136-pi-kubeproxy-nft-trimmed"), "--rules",
            str(DATA / "kube-proxy-v136-fixed.nft"), "--local-ip", "192.168.0.231",
            "--src", "10.244.0.8", "--dst", "10.100.192.23", "--dport", "80")
    assert r.returncode == 0, r.stderr
    check_golden("04-hairpin.txt", r.stdout)


# ---------------------------------------------------------------- affinity across packets

def test_affinity_set_keeps_the_endpoint_across_packets() -> None:
    t = tracer(str(DATA / "affinity.nft"), local=("192.168.0.10",))
    p = Packet(src="198.51.100.7", dst="10.96.30.30", dport=443)
    first, second = t.trace_sequence([p, p])
    assert shares(first) == {("ACCEPT", "10.244.1.8:8443", False): 0.5,
                             ("ACCEPT", "10.244.2.8:8443", False): 0.5}
    assert second.same_as_previous == pytest.approx(1.0)
    chains = {h.chain for o in second.outcomes for h in o.path}
    assert not any(c.startswith("service-") and "numgen" in c for c in chains)
    # after the set's timeout (10m) numgen picks again
    later = Packet(src="198.51.100.7", dst="10.96.30.30", dport=443, time=601.0)
    _, third = t.trace_sequence([p, later])
    assert third.same_as_previous == pytest.approx(0.5)


# ---------------------------------------------------------------- mixed worlds, priorities

def test_docker_iptables_nft_beside_kube_proxy() -> None:
    t = tracer(str(DATA / "docker-beside-kube-proxy.nft"), local=("192.168.0.10",))
    # Pod traffic to a Service with remote endpoints: kube-proxy's filter-forward accepts,
    # which does not skip Docker's FORWARD (policy drop): the packet is dropped there.
    res = t.trace(Packet(src="10.244.1.9", dst="10.96.0.10", dport=53, proto="udp",
                         in_interface="cni0", out_interface="eth0"))
    assert shares(res) == {("DROP", "10.244.1.5:53", False): 0.5,
                           ("DROP", "10.244.2.7:53", False): 0.5}
    last = res.outcomes[0].path[-1]
    assert (last.family, last.table, last.chain, last.rule) == ("ip", "filter", "FORWARD", None)
    # Docker's published port, reached from the LAN: Docker's nat DNATs (its table is
    # listed first at dstnat), its FORWARD accepts, kube-proxy's chains see the rest.
    res = t.trace(Packet(src="192.168.0.99", dst="192.168.0.10", dport=8080,
                         in_interface="eth0", out_interface="docker0"))
    assert shares(res) == {("ACCEPT", "172.17.0.2:80", False): 1.0}


def test_iptables_dump_and_nft_listing_walk_by_priority() -> None:
    rules = parse_rules("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n"
                        ":OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n",
                        source="legacy.rules")
    nft = parse_nft_text("table inet fw {\n\tchain early {\n\t\ttype filter hook input "
                         "priority -10; policy accept;\n\t\ttcp dport 22 counter\n\t}\n"
                         "\tchain late {\n\t\ttype filter hook input priority 10; policy "
                         "drop;\n\t}\n}\n", source="fw.nft")
    t = Tracer(rules, local_ips=["192.168.0.10"], nft=[nft])
    res = t.trace(Packet(src="192.168.0.99", dst="192.168.0.10", dport=22))
    # -10 (nft), 0 (iptables filter: ACCEPT), 10 (nft policy drop): the accept does not
    # skip the later base chain, whose policy drops the packet.
    labels = [h.label() for h in res.outcomes[0].path]
    assert labels == ["inet fw/early #1 (fw.nft:4)", "inet fw/early policy (fw.nft:2)",
                      "filter/INPUT #1 (line 5)", "inet fw/late policy (fw.nft:6)"]
    assert res.outcomes[0].verdict == "DROP"


def test_firewalld_like_inet_filter() -> None:
    t = tracer(str(DATA / "firewalld-like.nft"), local=("192.168.0.10",))
    def verdict(**kw: object) -> str:
        res = t.trace(Packet(dst="192.168.0.10", in_interface="eth0", **kw))  # type: ignore[arg-type]
        return "/".join(sorted({o.verdict for o in res.outcomes}))
    assert verdict(src="203.0.113.5", dport=443) == "ACCEPT"
    assert verdict(src="203.0.113.5", dport=8080) == "REJECT"
    assert verdict(src="192.168.10.7", dport=8080) == "ACCEPT"       # trusted-sources
    assert verdict(src="203.0.113.5", dport=8080, ct_state="ESTABLISHED") == "ACCEPT"
    assert verdict(src="203.0.113.5", proto="icmp") == "ACCEPT"


def test_real_firewalld_ruleset() -> None:
    t = tracer(listing("07-rhel8-firewalld-libvirt"), local=("10.0.2.15",))
    ssh = t.trace(Packet(src="203.0.113.5", dst="10.0.2.15", dport=22, in_interface="enp0s3"))
    assert [o.verdict for o in ssh.outcomes] == ["ACCEPT"]
    other = t.trace(Packet(src="203.0.113.5", dst="10.0.2.15", dport=8080,
                           in_interface="enp0s3"))
    assert [o.verdict for o in other.outcomes] == ["REJECT"]
    assert other.outcomes[0].path[-1].label() == "inet firewalld/filter_INPUT #6 (line 231)"
    assert any("bridge" in n and "not traced" in n for n in other.notes)


def test_ipv6_packet_walks_ip6_and_inet_tables_only() -> None:
    t = tracer(str(DATA / "features.nft"), family="ipv6", local=("fd00::10",))
    res = t.trace(Packet(src="2001:db8::5", dst="2002::1", dport=80, proto="tcp",
                         out_interface="eth0"))
    assert [o.verdict for o in res.outcomes] == ["REJECT"]
    assert res.outcomes[0].path[-1].label() == "ip6 v6only/forward #1 (line 90)"


def test_brief_and_dot_work_on_listings() -> None:
    args = ("--rules", listing("01-k3s-pi-kubeproxy-nft-complete"), "--local-ip",
            "10.34.4.246", "--src", "10.42.1.5", "--dst", "10.43.0.10", "--dport", "53",
            "--proto", "udp")
    r = run(*args, "--brief")
    # from pod: the service chains' `ip saddr != 10.42.0.0/16` names the pod network
    assert r.stdout == ("udp 10.42.1.5 -> 10.43.0.10:53 from pod, NEW: 1 endpoint "
                        "10.42.0.171:53, not masqueraded\n")
    r = run(*args, "--format", "dot")
    assert r.returncode == 0 and '"ip kube-proxy/services"' in r.stdout


def test_strict_refuses_what_it_cannot_decide() -> None:
    r = run("--rules", listing("06-kubeadm131-calico-crio-iptables-nft"), "--strict",
            "--src", "10.0.0.1", "--dst", "10.0.0.2")
    assert r.returncode == 2
    assert ":103:51: xt match 'set'" in r.stderr


# ---------------------------------------------------------------- trace INPUTS --proxy-mode nftables

CLUSTER = str(REPO / "fixtures" / "example-cluster")
BOTH_MODES = [
    ("10.244.2.50", "10.96.100.10", 80, "tcp"),    # ClusterIP, 3 endpoints, from a pod
    ("172.16.0.9", "10.96.100.10", 80, "tcp"),     # ClusterIP from outside: masqueraded
    ("172.16.0.9", "192.168.0.11", 30080, "tcp"),  # NodePort
    ("172.16.0.9", "203.0.113.10", 443, "tcp"),    # LoadBalancer, source not allowed: DROP
    ("198.51.100.7", "203.0.113.10", 443, "tcp"),  # LoadBalancer, allowed source
    ("172.16.0.9", "192.168.0.11", 30081, "tcp"),  # eTP Local NodePort
    ("10.244.2.50", "10.96.100.50", 5432, "tcp"),  # no endpoints: REJECT
    ("10.244.2.50", "10.96.0.10", 53, "udp"),      # DNS
]


def _table(args: tuple[str, ...]) -> dict[tuple[str, str | None, bool], float]:
    r = run(CLUSTER, *args, "--json")
    assert r.returncode in (0, 3), r.stderr
    out: dict[tuple[str, str | None, bool], float] = {}
    for o in json.loads(r.stdout)["outcomes"]:
        key = (o["verdict"], o["dnat"], o["masquerade"])
        out[key] = round(out.get(key, 0.0) + o["probability"], 9)
    return out


@pytest.mark.parametrize(("src", "dst", "dport", "proto"), BOTH_MODES)
def test_trace_inputs_in_nftables_mode_agrees_with_iptables_mode(src: str, dst: str, dport: int,
                                                                 proto: str) -> None:
    args = ("--src", src, "--dst", dst, "--dport", str(dport), "--proto", proto)
    assert _table(("--proxy-mode", "nftables", *args)) == _table(args)


def test_trace_inputs_nftables_mode_walks_kube_proxy_table() -> None:
    r = run(CLUSTER, "--proxy-mode", "nftables", "--src", "10.244.2.50", "--dst",
            "10.96.100.40", "--dport", "9000", "--repeat", "2", "--brief")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].endswith("[same endpoint as before: 100.0%]")
    r = run(CLUSTER, "--proxy-mode", "nftables", "--src", "10.244.2.50", "--dst",
            "10.96.100.10", "--dport", "80")
    assert "ip kube-proxy/nat-prerouting #1" in r.stdout
    r = run(CLUSTER, "--kube-proxy-version", "1.36", "--dst", "10.96.100.10")
    assert r.returncode == 2 and "only in nftables mode" in r.stderr


# ---------------------------------------------------------------- Calico-like table beside kube-proxy

KUBE_PROXY_EXAMPLE = str(REPO / "tests" / "golden" / "compile-nftables" / "example-cluster"
                         / "expected.list")
CALICO = str(DATA / "calico-like.nft")


@pytest.mark.parametrize(("golden", "src", "extra"), [
    ("05-calico-allowed-by-set.txt", "10.244.2.50", ()),          # in @cali40s:shop-frontend-clients
    ("06-calico-policy-drop.txt", "10.244.3.77", ()),             # no policy allows: base chain drops
    ("07-calico-wireguard-mark.txt", "10.244.3.77", ("--mark", "0x100000")),  # same, WireGuard's mark
])
def test_golden_calico_like_beside_kube_proxy(golden: str, src: str, extra: tuple[str, ...]) -> None:
    r = run("--rules", KUBE_PROXY_EXAMPLE, "--rules", CALICO, "--local-ip", "192.168.0.11",
            "--cluster-cidr", "10.244.0.0/16", "--src", src, "--dst", "10.96.100.10", "--dport", "80",
            *extra)
    assert r.returncode == 0, r.stderr
    check_golden(golden, r.stdout)


def test_calico_like_marks_and_sets_decide() -> None:
    t = tracer(KUBE_PROXY_EXAMPLE, CALICO, local=("192.168.0.11",), pods=("10.244.0.0/16",))
    frontend = {f"10.244.{n}.10:8080" for n in (1, 2, 3)}

    def outcome(src: str, mark: int = 0) -> tuple[set[str], set[str | None], str]:
        res = t.trace(Packet(src=src, dst="10.96.100.10", dport=80, mark=mark))
        last = res.outcomes[0].path[-1]
        return {o.verdict for o in res.outcomes}, {o.dnat for o in res.outcomes}, last.chain
    allowed = outcome("10.244.2.50")
    assert allowed[:2] == ({"ACCEPT"}, frontend)
    # kube-proxy DNATs first; Calico's forward chain then drops by its policy
    assert outcome("10.244.3.77") == ({"DROP"}, frontend, "cali-FORWARD")
    assert outcome("10.244.3.77", mark=0x100000)[:2] == ({"ACCEPT"}, frontend)
    # the raw chain's workload mark sends the quarantined pod to the egress chain
    assert outcome("10.244.2.60") == ({"DROP"}, frontend, "cali-from-wl-dispatch")
    # monitoring networks are allowed from outside the cluster (no workload mark); other
    # outside sources are not
    assert outcome("198.51.100.7")[0] == {"ACCEPT"}
    assert outcome("172.16.0.9")[0] == {"DROP"}


# ---------------------------------------------------------------- goldens of hand-written rulesets

@pytest.mark.parametrize(("golden", "args"), [
    # firewalld-like inet filter: a trusted source, a zone's port, the zone's reject
    ("08-firewalld-trusted-source.txt", ("--src", "192.168.10.7", "--dport", "8080")),
    ("09-firewalld-zone-port.txt", ("--src", "203.0.113.5", "--dport", "443")),
    ("10-firewalld-reject.txt", ("--src", "203.0.113.5", "--dport", "8080")),
])
def test_golden_firewalld_like(golden: str, args: tuple[str, ...]) -> None:
    r = run("--rules", str(DATA / "firewalld-like.nft"), "--local-ip", "192.168.0.10",
            "--dst", "192.168.0.10", "-i", "eth0", *args)
    assert r.returncode == 0, r.stderr
    check_golden(golden, r.stdout)


@pytest.mark.parametrize(("golden", "args"), [
    # a Docker iptables-nft node beside table ip kube-proxy: pod traffic to a Service is
    # accepted by kube-proxy's filter-forward and dropped by Docker's FORWARD policy
    ("11-docker-drops-service-traffic.txt", ("--src", "10.244.1.9", "--dst", "10.96.0.10",
                                             "--dport", "53", "--proto", "udp", "-i", "cni0",
                                             "-o", "eth0")),
    # Docker's published port from the LAN: Docker's DNAT, then kube-proxy's chains
    ("12-docker-published-port.txt", ("--src", "192.168.0.99", "--dst", "192.168.0.10",
                                      "--dport", "8080", "-i", "eth0", "-o", "docker0")),
])
def test_golden_docker_beside_kube_proxy(golden: str, args: tuple[str, ...]) -> None:
    r = run("--rules", str(DATA / "docker-beside-kube-proxy.nft"), "--local-ip",
            "192.168.0.10", "--cluster-cidr", "10.244.0.0/16", *args)
    assert r.returncode == 0, r.stderr
    check_golden(golden, r.stdout)
