"""The summary line of an answer that depends on many unknown facts stays readable and exact:
independent facts (one per endpoint) are named once with what each changes, instead of
2^n cases repeating the endpoint list; facts that depend on each other get one exact
condition per answer and an ``otherwise``. JSON keeps every outcome with its ``assumes``."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from itertools import product
from pathlib import Path
from typing import Any

import pytest

from netproxy.parser import parse_rules, read_rules
from netproxy.trace import Packet, Tracer
from netproxy.trace.cases import case_list
from netproxy.trace.result import summary
from netproxy.trace.wording import _combine, answers

REPO = Path(__file__).resolve().parents[1]
HELLO = ["10.42.2.218", "10.42.5.164", "10.42.4.207", "10.42.4.206", "10.42.4.205",
         "10.42.4.204", "10.42.4.203", "10.42.4.202", "10.42.4.201"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netproxy", "trace", *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def without_pod_network(dumps_dir: Path, tmp_path: Path) -> Path:
    """The k3s listing as kube-proxy writes it with no local-traffic detector: no
    `ip saddr != <pod CIDR>` masquerade rules, so nothing says where the pods are."""
    text = (dumps_dir / "nft" / "01-k3s-pi-kubeproxy-nft-complete.nft").read_text()
    kept = [line for line in text.splitlines() if "ip saddr != 10.42.0.0/16" not in line]
    assert len(kept) == len(text.splitlines()) - 9  # one per service chain
    out = tmp_path / "no-detector.nft"
    out.write_text("\n".join(kept) + "\n")
    return out


def test_one_fact_per_endpoint_is_said_once_not_multiplied(dumps_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The lead's NodePort question on a listing that does not reveal the pod network: each
    of the 9 endpoints may be the node's own address (then delivered locally, not
    masqueraded). 2^9 cases used to be summed up as "in 1 of 64 cases; in 6 of 64 cases; ..."
    with the endpoint list repeated seven times."""
    path = without_pod_network(dumps_dir, tmp_path)
    args = (str(path), "--src", "192.168.1.9", "--dst", "10.34.4.246", "--dport", "30000")
    brief = run(*args, "--brief").stdout
    found = re.fullmatch(
        r"tcp 192\.168\.1\.9 -> 10\.34\.4\.246:30000 from external, NEW: 9 endpoints, 11\.1% "
        r"each, masqueraded; but for any endpoint that is a node address \(9 unknown facts: "
        r"(.*) and 3 more\), its share: not masqueraded\n", brief)
    assert found is not None, brief
    named = found[1].split(", ")  # six, in the walk's order
    assert len(named) == 6 and {n.removesuffix(":8080") for n in named} < set(HELLO)
    assert "cases" not in brief
    text = run(*args).stdout
    missing = next(line for line in text.splitlines() if line.startswith("missing:"))
    assert all(f"{ip} is a node address?" in missing for ip in HELLO)
    data = json.loads(run(*args, "--json").stdout)
    assert data["summary"] == brief.split(": ", 1)[1].strip()
    # JSON keeps the full structure: both cases of every endpoint, with the fact assumed
    assert len(data["outcomes"]) == 18
    assert sorted(o["assumes"][0] for o in data["outcomes"]) == sorted(
        [f"{ip} is a node address" for ip in HELLO]
        + [f"{ip} is not a node address" for ip in HELLO])
    for o in data["outcomes"]:
        local = o["assumes"] == [f"{o['dnat'].split(':')[0]} is a node address"]
        assert (o["delivered"], o["masquerade"]) == (("local", False) if local
                                                     else ("forwarded", True))


def sets_rules(n: int, masquerade: bool = True) -> str:
    """A Service of ``n`` endpoints whose endpoint chains mark for masquerading the clients
    in an ipset of their own: ``n`` independent facts."""
    lines = ["*nat", ":PREROUTING ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]",
             ":KUBE-SERVICES - [0:0]", ":KUBE-SVC-A - [0:0]", ":KUBE-MARK-MASQ - [0:0]"]
    lines += [f":KUBE-SEP-{i} - [0:0]" for i in range(n)]
    lines += ["-A PREROUTING -j KUBE-SERVICES",
              "-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-A",
              "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000"]
    if masquerade:
        lines.append("-A POSTROUTING -m mark --mark 0x4000/0x4000 -j MASQUERADE")
    for i in range(n):
        left = n - i
        prob = f" -m statistic --mode random --probability {1 / left:.11f}" if left > 1 else ""
        lines.append(f"-A KUBE-SVC-A{prob} -j KUBE-SEP-{i}")
        lines.append(f"-A KUBE-SEP-{i} -m set --match-set allow{i} src -j KUBE-MARK-MASQ")
        lines.append(f"-A KUBE-SEP-{i} -p tcp -m tcp -j DNAT --to-destination 10.244.{i}.5:8080")
    return "\n".join(lines + ["COMMIT", ""])


def test_independent_facts_of_any_kind_name_each_fact_once() -> None:
    t = Tracer(parse_rules(sets_rules(8)), local_ips=["192.168.0.1"], assume=True)
    res = t.trace(Packet(src="172.16.0.9", dst="10.96.0.10", dport=80))
    text = summary(res)
    assert text == (
        "if none of 8 unknown facts holds: 8 endpoints, 12.5% each, not masqueraded; where "
        "one holds, its own share changes: masqueraded for " + ", ".join(
            f"10.244.{i}.5:8080 if 172.16.0.9 in allow{i}" for i in range(8)))
    for i in range(8):
        assert len(re.findall(rf"in allow{i}\b", text)) == 1


def test_many_independent_facts_neither_hang_nor_flood_the_line() -> None:
    """30 facts are 2^30 cases: the line is made from each fact's own two cases."""
    import time

    t = Tracer(parse_rules(sets_rules(30)), local_ips=["192.168.0.1"], assume=True)
    res = t.trace(Packet(src="172.16.0.9", dst="10.96.0.10", dport=80))
    start = time.process_time()
    text = summary(res)
    assert time.process_time() - start < 5
    assert text.startswith("if none of 30 unknown facts holds: 30 endpoints, 3.3% each, not "
                           "masqueraded; where one holds, its own share changes: masqueraded "
                           "for 10.244.0.5:8080 if 172.16.0.9 in allow0, ")
    assert text.endswith("10.244.11.5:8080 if 172.16.0.9 in allow11 and 18 more, each if its "
                         "own fact holds (listed under missing)")
    # without the masquerade rule the marks change nothing: one answer, no case split
    t = Tracer(parse_rules(sets_rules(30, masquerade=False)), local_ips=["192.168.0.1"],
               assume=True)
    res = t.trace(Packet(src="172.16.0.9", dst="10.96.0.10", dport=80))
    assert summary(res) == "30 endpoints, 3.3% each, not masqueraded"


# -- facts that depend on each other: exact conditions ------------------------------------

def holds(terms: list[frozenset[Any]], case: dict[Any, bool]) -> bool:
    return any(all(case[k] == v for k, v in term) for term in terms)


def test_combined_conditions_are_equal_to_the_cases_they_replace() -> None:
    """Random decision trees over 5 facts (a fact asked only on some branches, as a walk
    asks them): the shortened condition of each answer holds in exactly that answer's
    worlds."""
    rnd = random.Random(7)
    facts = list(range(5))

    def tree(asked: list[int]) -> list[tuple[list[tuple[int, bool]], str]]:
        free = [f for f in facts if f not in [k for k, _ in asked]]
        if not free or rnd.random() < 0.25:
            return [(asked, rnd.choice("XYZ"))]
        f = rnd.choice(free)
        return tree(asked + [(f, True)]) + tree(asked + [(f, False)])

    for _ in range(300):
        leaves = tree([])
        grouped: dict[str, list[list[tuple[int, bool]]]] = {}
        for conds, what in leaves:
            grouped.setdefault(what, []).append(conds)
        combined = {what: _combine(cases) for what, cases in grouped.items()}
        for values in product((True, False), repeat=len(facts)):
            world = dict(zip(facts, values, strict=True))
            leaf = next(what for conds, what in leaves if all(world[k] == v for k, v in conds))
            assert [w for w, terms in combined.items() if holds(terms, world)] == [leaf]
        assert sum(len(t) for terms in combined.values() for t in terms) <= sum(
            len(c) for cases in grouped.values() for c in cases)


@pytest.mark.parametrize("name,question", [
    ("12-calico-vxlan-ipvs-nat", dict(src="10.0.0.9", dst="10.96.0.10", dport=53, proto="udp",
                                      in_interface="eth0")),  # the golden's question
    ("12-calico-vxlan-ipvs-nat", dict(src="192.168.77.50", dst="192.168.77.1", dport=30080)),
    ("11-cilium-ipvs-docker-broken-dnat", dict(src="192.168.77.50", dst="192.168.77.1",
                                               dport=30080)),
])
def test_iptables_dump_conditions_say_what_the_cases_say(dumps_dir, name, question) -> None:  # type: ignore[no-untyped-def]
    """The per-answer wording on real IPVS dumps: every case of the walk gives the answer
    whose condition holds in it, and only that one."""
    rs = read_rules(dumps_dir / f"{name}.rules")
    local = ["192.168.0.10"] if question["src"] == "10.0.0.9" else None
    res = Tracer(rs, local_ips=local, assume=True).trace(Packet(**question))
    cases = case_list(res)
    assert cases is not None and len(cases) > 2
    found = answers(res, cases)
    assert len(found) >= 2
    from netproxy.trace.result import summarize

    keys = {c.state(v): (c.key, v) for c in res.conditions() for v in (True, False)}
    facts = [c.key for c in res.conditions()]
    for values in product((True, False), repeat=len(facts)):
        world = dict(zip(facts, values, strict=True))
        outs = next(o for conds, o in cases
                    if all(world[keys[c][0]] == keys[c][1] for c in conds))
        assert [what for what, terms in found.items() if holds(terms, world)] in (
            [summarize(outs)], [summarize(outs, named=True)]), world
    text = summary(res)
    assert "otherwise: " in text and " cases" not in text


def test_too_many_intertwined_facts_say_what_each_answer_needs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A reply whose case tree spans ten or more facts: exact conditions would run to thousands of
    characters; the line says what each answer needs instead (still true), and JSON keeps
    every case."""
    packets = tmp_path / "packets.txt"
    packets.write_text("src=172.16.0.9 dst=10.96.0.10 dport=53 proto=udp sport=1000 state=auto\n"
                       "src=10.96.0.10 dst=172.16.0.9 sport=53 dport=1000 proto=udp state=auto\n")
    rules = REPO / "tests" / "data" / "trace" / "ipvs-unknown-sets.rules"
    lines = run(str(rules), "--packets", str(packets), "--brief").stdout.splitlines()
    reply = lines[1].split("ESTABLISHED: ", 1)[1]
    assert re.match(r"depends on (1[0-9]) unknown facts \(listed under missing\): ", reply), reply
    assert len(reply) < 1000
    assert "accepted without DNAT (forwarded), not masqueraded only if " in reply
    assert "172.16.0.9 is not a node address" in reply.split(
        "accepted without DNAT (forwarded), not masqueraded only if ")[1].split(";")[0]
    doc = json.loads(run(str(rules), "--packets", str(packets), "--json").stdout)
    for o in doc["packets"][1]["outcomes"]:
        if o["delivered"] == "forwarded" and not o["masquerade"]:
            assert "172.16.0.9 is not a node address" in o["assumes"]
