"""Missing context: stated defaults, forks on unknowable facts, addresses inferred from a dump.

The expectations come from reading the dumps: which rule asks for the interface, the ipset
or the address type, and what each case does after it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from netproxy.parser import parse_rules, read_rules
from netproxy.trace import Packet, Tracer
from netproxy.trace.result import summary
from netproxy.trace.sequence import AUTO_STATE, trace_stream

from conftest import DUMPS, REPO


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netproxy", "trace", *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def dump(name: str) -> str:
    path = DUMPS / f"{name}.rules"
    if not path.exists():
        pytest.skip("real-world dumps not present beside the project")
    return str(path)


def tracer(name: str, **kw: object) -> Tracer:
    return Tracer(read_rules(dump(name)), assume=True, **kw)  # type: ignore[arg-type]


def endings(res) -> dict[tuple[str, str | None, tuple[str, ...]], float]:  # type: ignore[no-untyped-def]
    out: dict[tuple[str, str | None, tuple[str, ...]], float] = {}
    for o in res.outcomes:
        key = (o.verdict, o.dnat, o.conditions())
        out[key] = out.get(key, 0.0) + o.probability
    return out


def test_unnamed_interface_is_a_stated_default() -> None:
    # dump 01, Docker's "-A FORWARD -o docker0 ..." (line 42) needs the output interface.
    t = tracer("01-minik8s-flannel-docker", local_ips=["192.168.157.133"])
    res = t.trace(Packet(src="10.244.0.7", dst="10.96.0.10", dport=53, proto="udp",
                         in_interface="cni0"))
    assert endings(res) == {("ACCEPT", "10.244.0.4:53", ()): 0.5,
                            ("ACCEPT", "10.244.0.5:53", ()): 0.5}
    assert res.assumptions() == ["output interface: one that no rule names "
                                 "(give --out-interface)"]
    strict = Tracer(read_rules(dump("01-minik8s-flannel-docker")), local_ips=["192.168.157.133"])
    old = strict.trace(Packet(src="10.244.0.7", dst="10.96.0.10", dport=53, proto="udp",
                              in_interface="cni0"))
    assert {o.verdict for o in old.outcomes} == {"UNKNOWN"}


def test_cli_assumed_line_and_strict() -> None:
    args = ["--rules", dump("01-minik8s-flannel-docker"), "--local-ip", "192.168.157.133",
            "--src", "10.244.0.7", "--dst", "10.96.0.10", "--dport", "53", "--proto", "udp",
            "-i", "cni0"]
    r = run(*args)
    assert r.returncode == 0, r.stderr
    assert "summary: 2 endpoints, 50% each, not masqueraded" in r.stdout
    assert "assumed: output interface: one that no rule names (give --out-interface)" in r.stdout
    assert "missing: --out-interface" in r.stdout
    data = json.loads(run(*args, "--json").stdout)
    assert data["assumptions"] == ["output interface: one that no rule names "
                                   "(give --out-interface)"]
    strict = run(*args, "--strict", "--brief")
    assert "UNKNOWN 100% after DNAT to 10.244.0.4:53 50%, 10.244.0.5:53 50% (line 42: output " \
        "interface not known (give --out-interface))" in strict.stdout


def test_unnamed_bridge_port_means_not_bridged() -> None:
    # dump 02, line 116: weave's physdev rule; with the sets given, a definite answer.
    from netproxy.trace.ipsets import read_ipsets

    data = REPO / "tests" / "data" / "trace"

    t = tracer("02-kubeadm111-weave-docker", local_ips=["192.168.1.241"],
               ipsets=read_ipsets(str(data / "weave.ipsets")))
    res = t.trace(Packet(src="10.32.0.5", dst="10.96.0.10", dport=53, proto="udp",
                         in_interface="weave", out_interface="weave"))
    assert endings(res) == {("ACCEPT", "10.32.0.2:53", ()): 0.5,
                            ("ACCEPT", "10.32.0.3:53", ()): 0.5}
    assert "not bridged (give --physdev-in/--physdev-out)" in res.assumptions()


def test_ipset_without_contents_forks_with_conditions() -> None:
    # dump 11 (IPVS): KUBE-SERVICES asks KUBE-LOAD-BALANCER and KUBE-CLUSTER-IP (lines
    # 135-139); with the node's address given, the ClusterIP is the node's (kube-ipvs0)
    # where it is in either set, else forwarded.
    t = tracer("11-cilium-ipvs-docker-broken-dnat", local_ips=["192.168.0.2"])
    res = t.trace(Packet(src="10.42.0.9", dst="10.43.0.10", dport=53, proto="udp",
                         in_interface="cni0", out_interface="cni0"))
    conds = {c.text for c in res.conditions()}
    assert {"10.43.0.10,udp:53 in KUBE-LOAD-BALANCER",
            "10.43.0.10,udp:53 in KUBE-CLUSTER-IP"} <= conds
    for o in res.outcomes:
        in_set = any(c in ("10.43.0.10,udp:53 in KUBE-LOAD-BALANCER",
                           "10.43.0.10,udp:53 in KUBE-CLUSTER-IP") for c in o.conditions())
        assert o.delivered == ("ipvs" if in_set else "forwarded"), o.conditions()
    assert all(o.verdict != "UNKNOWN" for o in res.outcomes)
    # within each case the outcomes sum to 1
    from netproxy.trace.cases import case_list

    cases = case_list(res)
    assert cases
    for _conds, outs in cases:
        assert abs(sum(o.probability for o in outs) - 1.0) < 1e-9
    data = res.to_dict()
    assert any("assumes" in o for o in data["outcomes"])
    assert any(m.startswith("--ipsets FILE (") for m in data["missing"])


IPVS_RULES = REPO / "tests" / "data" / "trace" / "ipvs-unknown-sets.rules"
IN_CLUSTER_IP = "10.96.0.10,udp:53 in KUBE-CLUSTER-IP"
NODE_ADDRESS = "10.96.0.10 is a node address"
NOT_NODE_ADDRESS = "10.96.0.10 is not a node address"


def _ipvs_tracer() -> Tracer:
    return Tracer(read_rules(str(IPVS_RULES)), local_ips=None, assume=True)


def test_ipvs_service_set_member_is_a_node_address() -> None:
    # kube-proxy binds every address of its IPVS Service sets to kube-ipvs0: a cluster IP in
    # KUBE-CLUSTER-IP (or KUBE-LOAD-BALANCER) is the node's, not a second fact to fork on.
    res = _ipvs_tracer().trace(Packet(src="172.16.0.9", dst="10.96.0.10", dport=53,
                                      proto="udp"))
    in_sets = [o for o in res.outcomes
               if IN_CLUSTER_IP in o.conditions()
               or "10.96.0.10,udp:53 in KUBE-LOAD-BALANCER" in o.conditions()]
    assert in_sets and all(o.delivered == "ipvs" for o in in_sets)
    for o in res.outcomes:
        local = {c for c in o.conditions() if c.startswith("10.96.0.10 is ")}
        if o in in_sets:
            assert not local, o.conditions()
        else:
            assert len(local) == 1, o.conditions()  # in no Service set: it is still asked
    assert {c.text for c in res.conditions()} >= {IN_CLUSTER_IP, NODE_ADDRESS}
    assert "binds it to kube-ipvs0" in " ".join(res.notes)
    # Asked the other way round (a pod's query meets "addrtype --dst-type LOCAL" first): an
    # address that is not the node's is in no Service set.
    res = _ipvs_tracer().trace(Packet(src="10.244.0.5", dst="10.96.0.10", dport=53,
                                      proto="udp"))
    remote = [o for o in res.outcomes if NOT_NODE_ADDRESS in o.conditions()]
    assert remote and all(o.delivered == "forwarded" for o in remote)
    assert not any("KUBE-CLUSTER-IP" in c for o in remote for c in o.conditions())
    # With the node's addresses given, the Service addresses are the node's too: the set
    # fact decides, and "is a node address" is never asked as a second fact.
    given = Tracer(read_rules(str(IPVS_RULES)), local_ips=["192.168.0.2"], assume=True)
    res = given.trace(Packet(src="172.16.0.9", dst="10.96.0.10", dport=53, proto="udp"))
    for o in res.outcomes:
        in_set = any(c.startswith("10.96.0.10,udp:53 in KUBE-") for c in o.conditions())
        assert o.delivered == ("ipvs" if in_set else "forwarded"), o.conditions()
        assert not any(c.startswith("10.96.0.10 is ") for c in o.conditions())
    assert "those given and those kube-proxy binds to kube-ipvs0" in " ".join(res.notes)


def test_ipvs_service_set_member_stays_the_node_s_in_later_packets() -> None:
    # A later packet of the same client follows its case: where the query found the cluster
    # IP in KUBE-CLUSTER-IP, the repeat does not ask again whether it is a node address.
    packets = [Packet(src="172.16.0.9", dst="10.96.0.10", dport=53, sport=1000, proto="udp",
                      extra={"ct": AUTO_STATE}) for _ in range(2)]
    results = list(trace_stream({"ipv4": _ipvs_tracer()}, packets))
    for res in results:
        for o in res.outcomes:
            conds = o.conditions()
            if IN_CLUSTER_IP in conds:
                assert not any(c.startswith("10.96.0.10 is ") for c in conds), conds
                assert o.delivered == "ipvs"
    assert any(IN_CLUSTER_IP in o.conditions() for o in results[1].outcomes)


def test_packet_sequence_lists_missing_facts_once_with_counts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # dump 11 (IPVS, no set contents): three pod packets to two Services and a NodePort
    # question. Each packet forks on KUBE-LOAD-BALANCER; the facts are listed once at the
    # end, each with the packets it affected and its flag, not after every packet.
    packets = tmp_path / "p.txt"
    packets.write_text("src=10.42.0.9 dst=10.43.0.10 dport=53 proto=udp\n"
                       "src=10.42.0.9 dst=10.43.0.10 dport=53 proto=udp time=1\n"
                       "src=10.42.0.8 dst=10.43.0.1 dport=443\n")
    args = ["--rules", dump("11-cilium-ipvs-docker-broken-dnat"), "--local-ip", "192.168.0.2",
            "--packets", str(packets)]
    r = run(*args)
    assert r.returncode == 0, r.stderr
    assert "\nmissing: " not in r.stdout  # not per packet
    tail = r.stdout[r.stdout.index("missing in 3 of 3 packets"):].splitlines()
    assert tail[1].startswith("  --ipsets FILE: 3 packets: 10.43.0.10,udp:53 in "
                              "KUBE-LOAD-BALANCER? (2 packets); "), tail
    assert "10.43.0.1,tcp:443 in KUBE-LOAD-BALANCER? (1 packet)" in tail[1]
    assert any(line.startswith("  --in-interface: 3 packets: assumed input interface: one "
                               "that no rule names (3 packets)") for line in tail), tail
    brief = run(*args, "--brief").stdout.splitlines()
    assert [line[:3] for line in brief[:3]] == ["1: ", "2: ", "3: "]
    assert brief[3] == tail[0]
    data = json.loads(run(*args, "--json").stdout)
    assert len(data["packets"]) == 3
    assert not any("missing" in packet for packet in data["packets"])  # once, at the end
    ipsets = next(m for m in data["missing"] if m["flag"] == "--ipsets FILE")
    assert ipsets["packets"] == 3
    assert {"fact": "10.43.0.10,udp:53 in KUBE-LOAD-BALANCER?", "kind": "fork",
            "packets": 2} in ipsets["facts"]
    iif = next(m for m in data["missing"] if m["flag"] == "--in-interface")
    assert iif["facts"] == [{"fact": "input interface: one that no rule names",
                             "kind": "assumed", "packets": 3}]


def test_missing_tally_stays_flat_over_distinct_facts() -> None:
    from netproxy.trace import missing

    t = tracer("11-cilium-ipvs-docker-broken-dnat", local_ips=["192.168.0.2"])
    tally = missing.MissingTally()
    old = missing.MAX_FACTS
    missing.MAX_FACTS = 4
    try:
        for n in range(6):
            tally.add(t.trace(Packet(src="10.42.0.9", dst=f"10.43.0.{n + 1}", dport=53,
                                     proto="udp", in_interface="cni0", out_interface="cni0")))
    finally:
        missing.MAX_FACTS = old
    assert tally.packets == tally.affected == 6
    entry = tally.flags["--ipsets FILE"]
    # the first packet fills the four places (its KUBE-CLUSTER-IP fork matters: a cluster
    # IP in it is the node's); the five after it are counted as packets only
    assert entry.packets == 6 and len(entry.facts) == 4 and entry.uncounted == 5
    assert "further facts in 5 packets (not counted one by one)" in tally.lines()[1]


def test_fork_that_does_not_matter_is_definite() -> None:
    # dump 10: the NodePort has no endpoints; KUBE-EXTERNAL-SERVICES rejects it whether or
    # not the destination is a node address (the filter rule asks addrtype LOCAL too).
    t = tracer("10-centos7-flannel-docker-libvirt-reject", local_ips=None)
    res = t.trace(Packet(src="192.168.1.77", dst="192.168.1.5", dport=31306))
    assert endings(res) == {("REJECT", None, ()): 1.0}
    assert res.independent == ["whether 192.168.1.5 is a node address"]


def test_nodeport_to_an_unplaced_address_is_conditional_not_remote() -> None:
    # dump 00 without --local-ip: "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS" cannot be
    # decided for 192.168.1.10; it used to answer "forwarded, no DNAT" silently.
    r = run("--rules", dump("00-seed-hostnames"), "--src", "172.16.0.1", "--dst", "192.168.1.10",
            "--dport", "8080", "--brief")
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert "if 192.168.1.10 is a node address and 10.244.2.3 is not a node address: " \
        "1 endpoint 10.244.2.3:9376, masqueraded" in line
    assert "if 192.168.1.10 is not a node address: accepted without DNAT (forwarded)" in line


RULES_NODEPORT_ADDRESSES = """*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-SVC-A - [0:0]
:KUBE-SEP-A - [0:0]
:KUBE-MARK-MASQ - [0:0]
-A PREROUTING -j KUBE-SERVICES
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment "ns/a cluster IP" -m tcp --dport 80 -j KUBE-SVC-A
-A KUBE-SERVICES -d 192.168.7.7/32 -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -p tcp -m comment --comment "ns/a" -m tcp --dport 30080 -j KUBE-SVC-A
-A KUBE-SVC-A ! -s 10.244.0.0/16 -d 10.96.0.10/32 -p tcp -m comment --comment "ns/a cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-A -j KUBE-SEP-A
-A KUBE-SEP-A -p tcp -m tcp -j DNAT --to-destination 10.244.1.5:8080
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
COMMIT
"""


def test_node_addresses_and_pod_network_inferred_from_the_dump() -> None:
    t = Tracer(parse_rules(RULES_NODEPORT_ADDRESSES), local_ips=None, assume=True)
    assert t.local_ips == ["192.168.7.7"]
    assert any("192.168.7.7 is a node address (line 13: KUBE-SERVICES sends 192.168.7.7 to "
               "KUBE-NODEPORTS" in n for n in t.inferred)
    assert any(n.startswith("10.244.0.0/16 is the pod network") for n in t.inferred)
    res = t.trace(Packet(src="172.16.0.1", dst="192.168.7.7", dport=30080))
    assert endings(res) == {("ACCEPT", "10.244.1.5:8080", ()): 1.0}  # nothing left unknown
    assert any(n.startswith("inferred: 192.168.7.7 is a node address") for n in res.notes)
    pod = t.trace(Packet(src="10.244.3.3", dst="10.96.0.10", dport=80))
    assert pod.packet.origin == "pod"
    assert endings(pod) == {("ACCEPT", "10.244.1.5:8080", ()): 1.0}
    assert pod.outcomes[0].delivered == "forwarded"


@pytest.mark.parametrize("path", sorted(DUMPS.glob("*.rules")), ids=lambda p: p.stem)
def test_every_dump_answers_common_questions_without_unknown_for_missing_context(path) -> None:  # type: ignore[no-untyped-def]
    """Pod to a Service, hairpin, pod egress, LAN to a NodePort: no --local-ip, no -i/-o, no
    ipsets. Every outcome is definite or conditional; UNKNOWN only for what is not
    modelled (never "not known (give ...)")."""
    from netproxy.trace.inferred import infer_node

    rs = read_rules(path)
    t = Tracer(rs, local_ips=None, assume=True)
    six = rs.family == "ipv6"
    facts = infer_node(rs)
    pod_net = facts.pod_cidrs[0][0] if facts.pod_cidrs else ("fd00:10::/64" if six else
                                                             "10.244.0.0/16")
    base = pod_net.split("/")[0]
    pod = base + "9" if six else ".".join(base.split(".")[:3] + ["9"])
    questions = []
    services = rs.tables.get("nat") and rs.tables["nat"].chains.get("KUBE-SERVICES")
    svc = None
    for rule in services.rules if services else ():
        d = rule.builtin("destination")
        port = next((o for o in rule.matches if o.name == "dport"), None)
        if d is not None and port is not None and not d.negated and port.value.isdigit():
            svc = (d.value.split("/")[0], int(port.value))
            break
    ipvs = services and any(o.module == "set" and o.args and o.args[0] == "KUBE-CLUSTER-IP"
                            for r in services.rules for o in r.matches)
    if svc is None and ipvs:  # IPVS mode: cluster IPs are only in the (absent) ipsets
        svc = ("10.96.0.10", 53)
    if svc is not None:
        questions.append(Packet(src=pod, dst=svc[0], dport=svc[1]))          # pod to ClusterIP
        questions.append(Packet(src=pod, dst=svc[0], dport=svc[1], proto="udp"))
        host = t.local_ips[0] if t.local_ips else ("2001:db8::1" if six else "192.168.77.1")
        questions.append(Packet(src=host, origin="node", dst=svc[0], dport=svc[1],
                                proto="udp"))                                # node to ClusterIP
    hairpin = _hairpin(rs)
    if hairpin is not None:                                                  # endpoint to itself
        questions.append(Packet(src=hairpin[0], dst=hairpin[1], dport=hairpin[2]))
    questions.append(Packet(src=pod, dst="2001:db8::99" if six else "203.0.113.9", dport=443))
    lan = "2001:db8::50" if six else "192.168.77.50"
    node = t.local_ips[0] if t.local_ips else ("2001:db8::1" if six else "192.168.77.1")
    questions.append(Packet(src=lan, dst=node, dport=30080))                  # LAN to NodePort
    from netproxy.trace.cases import case_list

    for q in questions:
        res = t.trace(q)
        cases = case_list(res)
        if cases is None:  # definite
            assert abs(res.total() - 1.0) < 1e-9, q
        else:  # conditional: each case's outcomes sum to 1
            for _conds, outs in cases:
                assert abs(sum(o.probability for o in outs) - 1.0) < 1e-9, (q, _conds)
        for o in res.outcomes:
            if o.verdict == "UNKNOWN":
                assert "(give " not in (o.reason or ""), (q, o.reason)
                assert "not known" not in (o.reason or ""), (q, o.reason)
        if ipvs and q.dst == svc[0] and q.origin != "node":
            # without the sets' contents the answer rests on KUBE-CLUSTER-IP/-LOAD-BALANCER
            assert any(c.flag == "--ipsets FILE" for c in res.conditions()) or any(
                "KUBE-" in text for text in res.independent), (q, summary(res))


def _hairpin(rs):  # type: ignore[no-untyped-def]
    """(endpoint address, its Service's ClusterIP, port): a pod calling its own Service."""
    nat = rs.tables.get("nat")
    if nat is None or "KUBE-SERVICES" not in nat.chains:
        return None
    for rule in nat.chains["KUBE-SERVICES"].rules:
        d = rule.builtin("destination")
        port = next((o for o in rule.matches if o.name == "dport"), None)
        target = rule.target.name if rule.target is not None else ""
        if d is None or d.negated or port is None or not port.value.isdigit() \
                or target not in nat.chains:
            continue
        for jump in nat.chains[target].rules:
            sep = nat.chains.get(jump.target.name) if jump.target is not None else None
            for r in sep.rules if sep is not None else ():
                if r.target is not None and r.target.name == "DNAT":
                    to = next((o.value for o in r.target.options
                               if o.name == "to-destination"), None)
                    if to and to.count(":") == 1:
                        return to.split(":")[0], d.value.split("/")[0], int(port.value)
    return None

