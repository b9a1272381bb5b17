"""The tracer on every real-world dump beside the project.

Each expectation was checked by reading the dump: the KUBE-SERVICES rule the packet hits,
the SVC chain's statistic rules (with the probabilities exactly as saved, old kube-proxy's
5-digit roundings included), the SEP chain's DNAT, and the CNI/Docker/firewall rules after
it. Undecidable rules must give UNKNOWN with their line, never a guess.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from netproxy.parser import read_rules
from netproxy.trace import Packet, Tracer
from netproxy.trace.ipsets import read_ipsets

from conftest import DUMPS

DATA = Path(__file__).resolve().parent / "data" / "trace"


def kernel(text: str) -> float:
    return int(2**31 * float(text) + 0.5) / 2**31


def _tracer(name: str, local: list[str], ipsets: str | None = None) -> Tracer:
    path = DUMPS / f"{name}.rules"
    if not path.exists():
        pytest.skip("real-world dumps not present beside the project")
    sets = read_ipsets(str(DATA / ipsets)) if ipsets else None
    return Tracer(read_rules(path), local_ips=local, ipsets=sets)


def table(res) -> dict[tuple[str, str | None, bool], float]:
    out: dict[tuple[str, str | None, bool], float] = {}
    for o in res.outcomes:
        key = (o.verdict, o.dnat, o.masquerade)
        out[key] = out.get(key, 0.0) + o.probability
    return out


A, R, D, U = "ACCEPT", "REJECT", "DROP", "UNKNOWN"
P33, P50 = kernel("0.33332999982"), 0.5
HELLO = ["0.14286000002", "0.16667000018", "0.20000000019", "0.25000000000",
         "0.33332999982", "0.50000000000"]


def _hello_split() -> dict[tuple[str, str | None, bool], float]:
    """dump 06, default/hello: seven endpoints with kube-proxy 1.10's 5-digit probabilities."""
    eps = ["192.168.136.140", "192.168.149.34", "192.168.187.204", "192.168.207.166",
           "192.168.216.216", "192.168.229.17", "192.168.244.95"]
    out = {}
    rest = 1.0
    for ep, p in zip(eps, [*HELLO, None], strict=True):
        share = rest * kernel(p) if p is not None else rest
        out[(A, f"{ep}:80", False)] = share
        rest -= share
    return out


CASES = [
    # dump, local IPs, ipsets, packet, expected {(verdict, dnat, masquerade): p}, unknown line
    ("00-seed-hostnames", ["192.168.1.10"], None,
     dict(src="10.244.1.9", dst="10.0.1.175", dport=80),
     {(A, "10.244.1.7:9376", False): P33, (A, "10.244.2.3:9376", False): (1 - P33) / 2,
      (A, "10.244.3.6:9376", False): (1 - P33) / 2}, None),
    ("00-seed-hostnames", ["192.168.1.10"], None,   # NodePort: KUBE-MARK-MASQ then SVC
     dict(src="172.16.0.1", dst="192.168.1.10", dport=8080),
     {(A, "10.244.2.3:9376", True): 1.0}, None),
    ("01-minik8s-flannel-docker", ["192.168.157.133"], None,   # FORWARD DROP, FLANNEL-FWD accepts
     dict(src="10.244.0.7", dst="10.96.0.10", dport=53, proto="udp", in_interface="cni0",
          out_interface="cni0"),
     {(A, "10.244.0.4:53", False): P50, (A, "10.244.0.5:53", False): P50}, None),
    ("01-minik8s-flannel-docker", ["192.168.157.133"], None,   # API server on the node itself
     dict(src="10.244.0.7", dst="10.96.0.1", dport=443, in_interface="cni0"),
     {(A, "192.168.157.133:6443", False): 1.0}, None),
    ("01-minik8s-flannel-docker", ["192.168.157.133"], None,   # established: nat not consulted
     dict(src="10.244.0.7", dst="10.96.0.10", dport=53, proto="udp", in_interface="cni0",
          out_interface="cni0", ct_state="ESTABLISHED"),
     {(A, None, False): 1.0}, None),
    ("02-kubeadm111-weave-docker", ["192.168.1.241"], "weave.ipsets",  # weave NPC with sets
     dict(src="10.32.0.5", dst="10.96.0.10", dport=53, proto="udp", in_interface="weave",
          out_interface="weave", physdev_in="vethwepl1", physdev_out=""),
     {(A, "10.32.0.2:53", False): P50, (A, "10.32.0.3:53", False): P50}, None),
    ("02-kubeadm111-weave-docker", ["192.168.1.241"], None,     # set contents unknown
     dict(src="10.32.0.5", dst="10.96.0.10", dport=53, proto="udp", in_interface="weave",
          out_interface="weave", physdev_in="vethwepl1", physdev_out=""),
     {(U, "10.32.0.2:53", False): P50, (U, "10.32.0.3:53", False): P50}, 123),
    ("02-kubeadm111-weave-docker", ["192.168.1.241"], None,     # bridge port unknown
     dict(src="10.32.0.5", dst="10.96.0.10", dport=53, proto="udp", in_interface="weave",
          out_interface="weave"),
     {(U, "10.32.0.2:53", False): P50, (U, "10.32.0.3:53", False): P50}, 116),
    ("02-kubeadm111-weave-docker", ["192.168.1.241"], None,     # node to DNS: masqueraded
     dict(src="192.168.1.241", dst="10.96.0.10", dport=53, proto="udp", out_interface="weave"),
     {(A, "10.32.0.2:53", True): P50, (A, "10.32.0.3:53", True): P50}, None),
    ("03-kubeadm111-nocni-docker", ["192.168.50.101"], None,    # no endpoints, from OUTPUT
     dict(src="192.168.50.101", dst="10.96.0.10", dport=53, proto="udp"), {(R, None, False): 1.0},
     None),
    ("03-kubeadm111-nocni-docker", ["192.168.50.101"], None,
     dict(src="192.168.50.101", dst="10.96.0.1", dport=443),
     {(A, "192.168.50.101:6443", True): 1.0}, None),
    ("04-k3s-pi-kuberouter-nft", ["192.168.1.105"], None,       # kube-router pod firewall chains
     dict(src="10.42.0.20", dst="10.43.0.10", dport=53, proto="udp", in_interface="cni0",
          out_interface="cni0", physdev_in="veth1", physdev_out=""),
     {(A, "10.42.0.7:53", False): 1.0}, None),
    ("04-k3s-pi-kuberouter-nft", ["192.168.1.105"], None,       # NodePort, eTP Local, hostNetwork
     dict(src="192.168.1.50", dst="192.168.1.105", dport=30080, in_interface="eth0",
          out_interface="cni0"),
     {(A, "192.168.1.105:8096", False): 1.0}, None),
    ("05-k3s-pi-kuberouter-nft-v6", ["2001:db8::105"], None,    # no IPv6 services: local delivery
     dict(src="2001:db8::50", dst="2001:db8::105", dport=30080, in_interface="eth0"),
     {(A, None, False): 1.0}, None),
    ("06-eks-awsvpccni-affinity", ["192.168.182.224"], None,
     dict(src="192.168.10.5", dst="10.100.204.119", dport=80, in_interface="eth0",
          out_interface="eth0"), _hello_split(), None),
    ("06-eks-awsvpccni-affinity", ["192.168.182.224"], None,    # affinity rules, first packet
     dict(src="192.168.10.5", dst="10.100.0.1", dport=443, in_interface="eni1",
          out_interface="eth0"),
     {(A, "192.168.128.239:443", False): P50, (A, "192.168.74.164:443", False): P50}, None),
    ("07-kubeadm122-flannel-docker-libvirt", ["192.168.100.1"], None,
     dict(src="10.244.1.20", dst="10.96.0.10", dport=53, proto="udp", in_interface="cni0",
          out_interface="cni0"),
     {(A, "10.244.0.5:53", False): P50, (A, "10.244.2.21:53", False): P50}, None),
    ("07-kubeadm122-flannel-docker-libvirt", ["192.168.100.1"], None,
     dict(src="192.168.100.1", dst="10.96.0.1", dport=443), {(A, "192.168.100.1:6443", True): 1.0},
     None),
    ("08-k3s-docker-save-c-counters", ["10.0.20.5"], None,
     dict(src="10.42.0.9", dst="10.43.0.1", dport=443, in_interface="cni0"),
     {(A, "10.0.20.5:6443", False): 1.0}, None),
    ("08-k3s-docker-save-c-counters", ["10.0.20.5"], None,      # DNS without endpoints
     dict(src="10.42.0.9", dst="10.43.0.10", dport=53, proto="udp", in_interface="cni0",
          out_interface="cni0"), {(R, None, False): 1.0}, None),
    ("09-coreos-2016-flannel-kubeproxy11", ["159.203.72.124"], None,
     dict(src="10.2.6.9", dst="11.1.2.10", dport=53, proto="udp", in_interface="cbr0",
          out_interface="cbr0"), {(A, "10.2.6.2:53", False): 1.0}, None),
    ("09-coreos-2016-flannel-kubeproxy11", ["159.203.72.124"], None,
     dict(src="10.2.6.9", dst="11.1.2.1", dport=443, in_interface="cbr0"),
     {(A, "159.203.72.124:443", False): 1.0}, None),
    ("10-centos7-flannel-docker-libvirt-reject", ["192.168.1.5"], None,  # CentOS INPUT REJECT
     dict(src="10.244.0.9", dst="10.2.0.1", dport=443, in_interface="cni0"),
     {(R, "192.168.1.5:6443", False): 1.0}, None),
    ("10-centos7-flannel-docker-libvirt-reject", ["192.168.1.5"], None,  # NodePort, no endpoints
     dict(src="192.168.1.77", dst="192.168.1.5", dport=31306, in_interface="eth0"),
     {(R, None, False): 1.0}, None),
    ("11-cilium-ipvs-docker-broken-dnat", ["192.168.0.2"], None,  # IPVS: ipset contents needed
     dict(src="10.0.0.9", dst="192.168.26.207", dport=80, in_interface="eth0"),
     {(U, None, False): 1.0}, 135),
    ("12-calico-vxlan-ipvs-nat", ["192.168.0.10"], None,
     dict(src="10.0.0.9", dst="10.96.0.1", dport=443, in_interface="eth0", out_interface="eth0"),
     {(U, None, False): 1.0}, 58),
    ("13-kubeproxy16-externalip-docker-redacted", ["10.5.6.29"], None,  # SEP chain redacted: empty
     dict(src="10.24.3.3", dst="10.24.0.1", dport=443, in_interface="cbr0", out_interface="eth0",
          physdev_in="veth1", physdev_out=""), {(A, None, False): 1.0}, None),
    ("13-kubeproxy16-externalip-docker-redacted", ["10.5.6.29"], None,  # external IP on the node
     dict(src="10.1.1.1", dst="10.5.6.29", dport=53, proto="udp", in_interface="eth0",
          out_interface="cbr0", bridged=False), {(A, "10.100.13.3:53", True): 1.0}, None),
    ("13-kubeproxy16-externalip-docker-redacted", ["10.5.6.29"], None,  # reaches x.x.x.x rule
     dict(src="10.1.1.1", dst="203.0.113.9", dport=53, in_interface="eth0", bridged=False),
     {(U, None, False): 1.0}, 47),
]


@pytest.mark.parametrize(("dump", "local", "ipsets", "packet", "expected", "line"), CASES,
                         ids=[f"{c[0][:2]}-{c[3]['dst']}:{c[3]['dport']}" for c in CASES])
def test_dump_packet(dump: str, local: list[str], ipsets: str | None, packet: dict[str, object],
                     expected: dict[tuple[str, str | None, bool], float], line: int | None) -> None:
    res = _tracer(dump, local, ipsets).trace(Packet(**packet))  # type: ignore[arg-type]
    assert res.total() == pytest.approx(1.0, abs=1e-12)
    got = table(res)
    assert got.keys() == expected.keys()
    for key, p in expected.items():
        assert got[key] == pytest.approx(p, abs=1e-12), key
    unknown = [o for o in res.outcomes if o.verdict == U]
    if line is None:
        assert not unknown
    else:
        assert {o.path[-1].line for o in unknown} == {line}
        assert all(o.reason for o in unknown)


@pytest.mark.parametrize("name", ["11-cilium-ipvs-docker-broken-dnat", "12-calico-vxlan-ipvs-nat"])
def test_ipvs_mode_is_noted(name: str) -> None:
    res = _tracer(name, ["192.168.0.2"]).trace(Packet(src="10.0.0.9", dst="10.96.0.1", dport=443,
                                                       in_interface="eth0"))
    assert any("IPVS" in n for n in res.notes)


def test_affinity_on_a_real_dump() -> None:
    t = _tracer("06-eks-awsvpccni-affinity", ["192.168.182.224"])
    pk = Packet(src="192.168.10.5", dst="10.100.0.1", dport=443, in_interface="eth0",
                out_interface="eth0")
    first, second = t.trace_sequence([pk, pk])
    assert second.same_as_previous == 1.0
    assert {o.dnat for o in second.outcomes} == {o.dnat for o in first.outcomes}


def _service_packets(tracer: Tracer) -> list[Packet]:
    """A packet to every -d/--dport pair of KUBE-SERVICES rules in the nat table."""
    nat = tracer.ruleset.tables.get("nat")
    chain = nat.chains.get("KUBE-SERVICES") if nat else None
    out = []
    for rule in chain.rules if chain else ():
        d = rule.builtin("destination")
        proto = rule.builtin("protocol")
        port = next((o for o in rule.matches if o.name == "dport"), None)
        if d is None or d.negated or proto is None or port is None or not port.value.isdigit():
            continue
        addr = d.value.split("/")[0]
        if "x" in addr:
            continue
        src = "fd00:99::1" if ":" in addr else "172.31.255.1"
        out.append(Packet(src=src, dst=addr, dport=int(port.value), proto=proto.value,
                          in_interface="eth0", out_interface="eth0", bridged=False))
    return out


@pytest.mark.parametrize("name", sorted(p.stem for p in DUMPS.glob("*.rules")) or ["none"])
def test_every_dump_traces_its_services(name: str) -> None:
    if name == "none":
        pytest.skip("real-world dumps not present beside the project")
    rs = read_rules(DUMPS / f"{name}.rules")
    tracer = Tracer(rs, local_ips=["192.0.2.1"] if rs.family == "ipv4" else ["2001:db8::1"])
    packets = _service_packets(tracer) or [
        Packet(src="172.31.255.1" if rs.family == "ipv4" else "fd00:99::1",
               dst="192.0.2.1" if rs.family == "ipv4" else "2001:db8::1", dport=80,
               in_interface="eth0", bridged=False)]
    for pk in packets:
        res = tracer.trace(pk)
        assert res.total() == pytest.approx(1.0, abs=1e-12)
        for o in res.outcomes:
            assert o.verdict in ("ACCEPT", "DROP", "REJECT", "UNKNOWN")
            if o.verdict == "UNKNOWN":
                assert o.reason and o.path and o.path[-1].line > 0
