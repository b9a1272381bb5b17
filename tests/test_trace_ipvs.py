"""kube-proxy's IPVS mode: the addresses it binds to kube-ipvs0 are the node's, and a packet
delivered to one at a Service port is IPVS's from there on.

The small fixture (tests/data/trace/ipvs-unknown-sets.rules) is a node in IPVS mode reduced
to what decides a DNS query; ipvs-service-sets.ipsets is an `ipset save` of it holding the
cluster IP 10.96.0.10 (udp and tcp 53) and 10.96.0.1 (tcp 443).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_node_snapshot import ADDR, ROUTES4, snapshot_text

from netproxy.parser import read_rules
from netproxy.trace import Packet, Tracer
from netproxy.trace.ipsets import read_ipsets
from netproxy.trace.sequence import AUTO_STATE, trace_stream

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "trace"
RULES = DATA / "ipvs-unknown-sets.rules"
SETS = DATA / "ipvs-service-sets.ipsets"
TAKES_OVER = "delivered to the node where IPVS takes over"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netproxy", "trace", *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def test_local_ip_in_ipvs_mode_adds_the_service_addresses_as_set_facts() -> None:
    # --local-ip names the node's interface address; the cluster IP is the node's too where
    # it is in KUBE-CLUSTER-IP or KUBE-LOAD-BALANCER (kube-ipvs0), and only then: one fact.
    t = Tracer(read_rules(str(RULES)), local_ips=["192.168.0.2"], assume=True)
    res = t.trace(Packet(src="172.16.0.9", dst="10.96.0.10", dport=53, proto="udp"))
    delivered = {}
    for o in res.outcomes:
        conds = o.conditions()
        assert not any(c.startswith("10.96.0.10 is ") for c in conds), conds
        in_set = any(c in ("10.96.0.10,udp:53 in KUBE-CLUSTER-IP",
                           "10.96.0.10,udp:53 in KUBE-LOAD-BALANCER") for c in conds)
        delivered.setdefault(in_set, set()).add(o.delivered)
    assert delivered == {True: {"ipvs"}, False: {"forwarded"}}
    # the node delivers it to INPUT: no POSTROUTING hop on the IPVS outcomes
    assert all(h.chain != "POSTROUTING" for o in res.outcomes if o.delivered == "ipvs"
               for h in o.path)
    assert "the node's addresses are those given and those kube-proxy binds to kube-ipvs0" \
        in " ".join(res.notes)


def test_known_sets_make_their_addresses_the_node_s() -> None:
    sets = read_ipsets(str(SETS))
    for local_ips in (["192.168.0.2"], None):
        t = Tracer(read_rules(str(RULES)), local_ips=local_ips, ipsets=sets, assume=True)
        res = t.trace(Packet(src="172.16.0.9", dst="10.96.0.10", dport=53, proto="udp"))
        assert [(o.delivered, o.conditions()) for o in res.outcomes] == [("ipvs", ())]
        assert any("addresses of its Service sets (from the ipsets) are the node's too" in n
                   for n in res.notes) or local_ips is None
        # the same address at a port no Service has: the node's, but nothing for IPVS
        res = t.trace(Packet(src="10.244.0.5", dst="10.96.0.10", dport=80))
        assert {o.delivered for o in res.outcomes} == {"local"}
        # an address in no set is forwarded (with the node's other addresses given)
        if local_ips:
            res = t.trace(Packet(src="10.244.0.5", dst="10.96.0.99", dport=53, proto="udp"))
            assert {o.delivered for o in res.outcomes} == {"forwarded"}


def test_cli_says_ipvs_takes_over_in_text_and_json() -> None:
    args = ["--rules", str(RULES), "--local-ip", "192.168.0.2", "--ipsets", str(SETS),
            "--src", "10.244.0.5", "--dst", "10.96.0.10", "--dport", "53", "--proto", "udp"]
    r = run(*args)
    assert r.returncode == 0, r.stderr
    assert f"summary: accepted without DNAT ({TAKES_OVER}), not masqueraded" in r.stdout
    assert f"ACCEPT, {TAKES_OVER}, no DNAT" in r.stdout
    assert "local socket" not in r.stdout
    data = json.loads(run(*args, "--json").stdout)
    assert [o["delivered"] for o in data["outcomes"]] == ["ipvs"]


def _ipvs_snapshot(tmp_path: Path, ipset: str | None) -> Path:
    addr = [*ADDR, {"ifname": "kube-ipvs0", "addr_info": [
        {"family": "inet", "local": "10.96.0.10", "prefixlen": 32, "scope": "global"}]}]
    routes = [*ROUTES4, {"type": "local", "dst": "10.96.0.10", "dev": "kube-ipvs0",
                         "table": "local", "prefsrc": "10.96.0.10", "flags": []}]
    path = tmp_path / "node.snap"
    path.write_text(snapshot_text(**{"iptables-save (legacy)": RULES.read_text(),
                                     "ipset save": ipset, "addr": json.dumps(addr) + "\n",
                                     "routes4": json.dumps(routes) + "\n"}))
    return path


def test_snapshot_kube_ipvs0_addresses_agree_with_the_sets(tmp_path: Path) -> None:
    # A snapshot's ip addr lists kube-ipvs0: its cluster IP is the node's, IPVS takes over,
    # and the same answer comes with or without the snapshot's ipset section.
    for ipset in (SETS.read_text(), None):
        snap = _ipvs_snapshot(tmp_path, ipset)
        r = run("--snapshot", str(snap), "--src", "10.244.1.7", "--dst", "10.96.0.10",
                "--dport", "53", "--proto", "udp", "--json")
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        assert {o["delivered"] for o in data["outcomes"]} == {"ipvs"}, data["outcomes"]
        assert any("the 1 on kube-ipvs0 (its ip addr)" in n for n in data["notes"])
    # A set address the node does not hold on kube-ipvs0: the node is believed, and told.
    snap = _ipvs_snapshot(tmp_path, SETS.read_text())
    r = run("--snapshot", str(snap), "--src", "10.244.1.7", "--dst", "10.96.0.1",
            "--dport", "443", "--json")
    data = json.loads(r.stdout)
    assert {o["delivered"] for o in data["outcomes"]} == {"forwarded"}
    assert any("1 address of its Service sets is not on kube-ipvs0 (first 10.96.0.1)" in n
               for n in data["notes"])


def test_dump_12_local_ip_cluster_ip_goes_to_ipvs(dumps_dir: Path) -> None:
    # dump 12 (Calico, IPVS): KUBE-SERVICES accepts KUBE-CLUSTER-IP members (line 60); with
    # --local-ip the cluster IP in that set is the node's, so the query goes to INPUT.
    rules = read_rules(str(dumps_dir / "12-calico-vxlan-ipvs-nat.rules"))
    t = Tracer(rules, local_ips=["192.168.0.10"], assume=True)
    res = t.trace(Packet(src="10.0.0.9", dst="10.96.0.10", dport=53, proto="udp",
                         in_interface="eth0"))
    ipvs = [o for o in res.outcomes if o.delivered == "ipvs"]
    assert [o.conditions() for o in ipvs] == [("10.96.0.10,udp:53 in KUBE-CLUSTER-IP",)]
    assert not ipvs[0].masquerade
    assert all(o.delivered == "forwarded" for o in res.outcomes if o not in ipvs)


def test_dump_11_with_sets_is_definite(dumps_dir: Path, tmp_path: Path) -> None:
    sets = tmp_path / "sets"
    sets.write_text("create KUBE-CLUSTER-IP hash:ip,port family inet\n"
                    "add KUBE-CLUSTER-IP 10.43.0.10,udp:53\n"
                    "create KUBE-LOAD-BALANCER hash:ip,port family inet\n"
                    "create KUBE-LOOP-BACK hash:ip,port,ip family inet\n"
                    "create KUBE-NODE-PORT-TCP bitmap:port range 0-65535\n"
                    "create KUBE-NODE-PORT-UDP bitmap:port range 0-65535\n")
    r = run("--rules", str(dumps_dir / "11-cilium-ipvs-docker-broken-dnat.rules"),
            "--local-ip", "192.168.0.2", "--ipsets", str(sets), "--src", "10.42.0.9",
            "--dst", "10.43.0.10", "--dport", "53", "--proto", "udp", "-i", "cni0",
            "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert [(o["delivered"], o.get("assumes")) for o in data["outcomes"]] == [("ipvs", None)]


def _query_and_reply(reply_dst: str, client: str) -> list[Packet]:
    return [Packet(src=client, sport=1000, dst="10.96.0.10", dport=53, proto="udp",
                   extra={"ct": AUTO_STATE}),
            Packet(src="10.96.0.10", sport=53, dst=reply_dst, dport=1000, proto="udp",
                   extra={"ct": AUTO_STATE})]


def test_reply_from_a_cluster_ip_the_case_made_the_node_s_is_the_node_s_packet() -> None:
    # The query found 10.96.0.10 in a Service set: in that case the address is the node's
    # (kube-ipvs0) and the reply from it leaves the node as its own packet, not "from
    # external ... forwarded".
    t = Tracer(read_rules(str(RULES)), local_ips=["192.168.0.2"], assume=True)
    _query, reply = trace_stream({"ipv4": t}, _query_and_reply("10.244.0.5", "10.244.0.5"))
    in_set = [o for o in reply.outcomes
              if any(c in ("10.96.0.10,udp:53 in KUBE-CLUSTER-IP",
                           "10.96.0.10,udp:53 in KUBE-LOAD-BALANCER") for c in o.conditions())]
    assert in_set and {o.delivered for o in in_set} == {"sent"}
    assert all(h.chain in ("OUTPUT", "POSTROUTING") or h.table != "nat"
               for o in in_set for h in o.path if h.depth == 0)
    others = [o for o in reply.outcomes if o not in in_set]
    assert others and "sent" not in {o.delivered for o in others}
    notes = " ".join(reply.notes)
    assert "where its case makes 10.96.0.10 the node's, the packet is the node's own" in notes
    assert "where the packet comes from differs by case: external, node" in notes


def test_reply_to_a_connection_masqueraded_to_an_unknown_node_address() -> None:
    # No node address known: the query, where forwarded and masqueraded, left from an
    # address the tracer cannot name. A reply to 192.168.0.2 answers it in the case where
    # 192.168.0.2 is the node's (its reverse NAT restores the client), and is a packet of
    # its own in the other case -- not NEW in both.
    t = Tracer(read_rules(str(RULES)), local_ips=None, assume=True)
    _query, reply = trace_stream({"ipv4": t}, _query_and_reply("192.168.0.2", "172.16.0.9"))
    restored = [o for o in reply.outcomes if o.reverse]
    assert restored
    for o in restored:
        assert o.reverse == "destination restored to 172.16.0.9:1000"
        assert "192.168.0.2 is a node address" in o.conditions()
        assert "10.96.0.10,udp:53 not in KUBE-CLUSTER-IP" in o.conditions()
    assert not any(o.reverse for o in reply.outcomes
                   if "192.168.0.2 is not a node address" in o.conditions())


def test_dump_11_reply_follows_the_query_s_case(dumps_dir: Path) -> None:
    rules = read_rules(str(dumps_dir / "11-cilium-ipvs-docker-broken-dnat.rules"))
    t = Tracer(rules, local_ips=["192.168.0.2"], assume=True)
    packets = [Packet(src="10.42.0.9", sport=3000, dst="10.43.0.10", dport=53, proto="udp",
                      in_interface="cni0", extra={"ct": AUTO_STATE}),
               Packet(src="10.43.0.10", sport=53, dst="10.42.0.9", dport=3000, proto="udp",
                      extra={"ct": AUTO_STATE})]
    query, reply = trace_stream({"ipv4": t}, packets)
    assert {o.delivered for o in query.outcomes} == {"ipvs", "forwarded"}
    for o in reply.outcomes:
        node = any(c in ("10.43.0.10,udp:53 in KUBE-CLUSTER-IP",
                         "10.43.0.10,udp:53 in KUBE-LOAD-BALANCER") for c in o.conditions())
        assert (o.delivered == "sent") == node, (o.delivered, o.conditions())
