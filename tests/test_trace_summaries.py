"""Base chain summaries and tails (the tracer replaying a base chain, or the rest of a walk
after a DNAT, walked before in the same state) never change an answer: every real dump and the test clusters, traced with and without
them, packet for packet."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from netproxy.netfilter.model import Ruleset
from netproxy.parser import parse_rules, read_rules
from netproxy.trace import Packet, Tracer
from netproxy.trace.addr import parse_addr
from netproxy.trace.result import TraceResult
from netproxy.trace.sequence import AUTO_STATE, trace_stream

from conftest import all_dumps

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "trace"
SOURCES = ["10.244.1.50", "10.244.2.7", "172.16.5.5", "198.51.100.7", "127.0.0.1"]


def _packets(rules: Ruleset, local: str) -> list[Packet]:
    """Every Service address and port the dump's nat KUBE-SERVICES and KUBE-NODEPORTS
    name (at most 40 of each), from pods, outside and the node, each twice (the second
    time replays what the first recorded) with other source ports."""
    v6 = rules.family == "ipv6"
    nat = rules.tables.get("nat")
    targets: list[tuple[str, int | None, str]] = []
    for name in ("KUBE-SERVICES", "KUBE-NODEPORTS"):
        chain = nat.chains.get(name) if nat is not None else None
        for rule in (chain.rules if chain is not None else [])[:40]:
            d, proto = rule.builtin("destination"), rule.builtin("protocol")
            port = next((o for o in rule.matches if o.name == "dport"), None)
            dst = d.value.split("/")[0] if d is not None and not d.negated else local
            if proto is None or proto.value not in ("tcp", "udp") or not _address(dst, rules):
                continue  # another protocol, or an address redacted in the dump
            value = port.value if port is not None else ""
            targets.append((dst, int(value) if value.isdigit() else None, proto.value))
    if not targets:
        # No kube-proxy Service rules (an IPVS-mode node, a redacted dump): the base chains
        # are walked all the same, so ask the node itself and every address a rule names.
        targets = [(local, 80, "tcp"), (local, 53, "udp")]
        for table in rules.tables.values():
            for chain in table.chains.values():
                for rule in chain.rules:
                    d = rule.builtin("destination")
                    dst = d.value.split("/")[0] if d is not None else ""
                    if dst and _address(dst, rules) and len(targets) < 40:
                        targets.append((dst, 443, "tcp"))
    sources = ["fd00::5", "2001:db8::7", "::1"] if v6 else SOURCES
    out = []
    for n in range(2):
        for dst, dport, proto in targets:
            for src in sources:
                out.append(Packet(dst=dst, src=src, dport=dport, proto=proto,
                                  sport=40000 + n))
    return out


def _address(text: str, rules: Ruleset) -> bool:
    try:
        parse_addr(text, rules.family)
    except ValueError:
        return False
    return True


def _same(rules: Ruleset, local: list[str] | None, packets: list[Packet], *,
          stream: bool = False, assume: bool = True) -> tuple[int, list[TraceResult]]:
    """How many walks replayed a summary, and the results (with summaries); fails where a
    summary changed an answer."""
    results = []
    answers: list[TraceResult] = []
    for summaries in (True, False):
        tracer = Tracer(rules, local_ips=local, assume=assume)
        tracer.summaries = summaries
        if stream:
            for p in packets:
                p.extra["ct"] = AUTO_STATE
            traced = list(trace_stream({rules.family: tracer}, packets))
        else:
            traced = [tracer.trace(p) for p in packets]
        results.append([r.to_dict() for r in traced])
        if summaries:
            replayed = sum(slot[2] for slot in tracer._summaries.values())
            answers = traced
    for with_, without in zip(*results, strict=True):
        assert with_ == without
    return replayed, answers


UNSUMMARIZED = {
    ("11-cilium-ipvs-docker-broken-dnat", False),
    ("12-calico-vxlan-ipvs-nat", True),
    ("12-calico-vxlan-ipvs-nat", False),
}
"""(dump, assume) where no walk can be summarized: every packet's walk forks on (assume) or
stops UNKNOWN at (strict) an ipset of kube-proxy's IPVS mode whose contents the dump does not
hold, and a walk that forks or stops is not summarized (the test checks that this is why)."""


def _forks_or_stops(result: TraceResult) -> bool:
    return bool(result.conditions() or result.independent
                or any(o.verdict == "UNKNOWN" and "ipset" in (o.reason or "")
                       for o in result.outcomes))


@pytest.mark.parametrize("assume", [True, False], ids=["assume", "strict"])
@pytest.mark.parametrize("path", all_dumps(), ids=lambda p: p.stem)
def test_summaries_change_no_answer_on_real_dumps(path: Path, assume: bool) -> None:
    rules = read_rules(path)
    local = re.search(r"addrtype --dst-type LOCAL", path.read_text())
    node = "fd00::1" if rules.family == "ipv6" else "192.168.0.10"
    packets = _packets(rules, node)
    replayed, results = _same(rules, [node] if local else None, packets, assume=assume)
    if (path.stem, assume) in UNSUMMARIZED:
        assert all(_forks_or_stops(r) for r in results)
    else:
        assert replayed > 0, "no walk replayed a summary: the comparison proved nothing"


def test_summaries_are_used_and_change_no_answer_in_a_capture() -> None:
    rules = parse_rules(_compiled(), source="cluster")
    packets = _packets(rules, "192.168.0.10")
    assert _same(rules, ["192.168.0.10"], packets)[0] > 0
    assert _same(rules, ["192.168.0.10"], packets, stream=True)[0] > 0


def _compiled() -> str:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "netproxy", "compile",
                           str(DATA / "cluster.yaml")], capture_output=True, text=True,
                          check=True, cwd=REPO).stdout
