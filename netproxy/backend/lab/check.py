"""lab check: send real packets to every frontend from every kind of source and compare
what the kernel did with what the tracer predicts for the rules read back from the node.

Per probe group (one frontend, one source) the checks are:

* ``subset``: every observed result (endpoint reached, refused, timed out) was predicted;
* ``coverage``: every predicted result with probability >= 10% was observed (not for
  session-affinity services, where one client sticks to one endpoint); the group gets as
  many attempts as it takes (``--count`` at least) for a result never seen to be a
  disagreement at the split test's alpha rather than bad luck;
* ``split``: each predicted result's count passes an exact binomial test (:mod:`stats`);
  for affinity services instead: all attempts reached the same endpoint;
* ``masquerade``: the source the endpoint saw is the client's own address exactly when the
  tracer predicts no masquerading;
* ``kernel path`` (sampled groups): the rules the kernel reports for one packet
  (``xtables-monitor --trace`` on iptables-nft, the TRACE target through nfnetlink_log on
  iptables-legacy) equal the tracer's path for the branch taken.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from netproxy.backend import netns
from netproxy.backend.lab import ktrace, nflog, nfttrace, stats
from netproxy.backend.lab.spec import (
    EXTERNAL_CLIENT,
    NODE_EXTERNAL,
    NODE_GATEWAY,
    Frontend,
    LabSpec,
)
from netproxy.backend.probe import MAX_ATTEMPTS
from netproxy.netfilter.model import Ruleset
from netproxy.netfilter.nft import NftRuleset
from netproxy.progress import Progress, progress
from netproxy.trace import Packet, Tracer, TraceResult

COVERAGE_MIN = 0.10
SPORTS = (10000, 32767)
"""The source ports the probes are sent from, one per attempt and none twice in a check
(below Linux's ephemeral range). The kernel picks UDP source ports at random: of 300
datagrams one came from a port used before, matched that datagram's conntrack entry and
skipped DNAT (the same endpoint again, no nat hops in a kernel path)."""
PATH_TABLES = ("nat", "filter")


@dataclass(slots=True)
class Group:
    frontend: Frontend
    source: str  # pod / external / node / endpoint
    client_ns: str
    src: str | None
    in_interface: str | None
    count: int = 0
    local: str = ""
    observed: list[dict[str, Any]] = field(default_factory=list)
    predicted: dict[str, float] = field(default_factory=dict)
    masq_predicted: dict[str, set[bool]] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    kernel_path: dict[str, Any] | None = None
    packet: Packet | None = None
    """The packet the prediction traced (for comparing two modes' predictions)."""
    traced: TraceResult | None = None
    """What the tracer made of ``packet``."""

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.checks.values())

    def label(self) -> str:
        f = self.frontend
        service = f"{f.service} " if f.service else ""
        return (f"{service}{f.kind} {f.ip}:{f.port}/{f.proto} from {self.source} "
                f"{self.local or self.src or ''}").rstrip()


ONLY_POD = ("cluster-ip-other-port", "unallocated-service-ip")
"""Frontend kinds probed from the pod client only (as netproxy migrate does)."""


def outcome_key(outcome: Any, dst: str, local_ips: set[str], port: int = 0,
                beyond: frozenset[str] = frozenset(), src: str | None = None) -> str:
    """What a client would see for a tracer outcome; ``beyond``: the ``ip:port`` the
    external namespace answers for (a packet sent on unchanged to one is answered there).
    A connection DNATed back to its sender ``src`` without masquerading arrives there from
    the sender's own address: the kernel drops it as martian (no answer)."""
    if outcome.verdict == "DROP":
        return "timeout"
    if outcome.verdict == "REJECT":
        return "refused"
    if outcome.verdict == "ACCEPT":
        if outcome.dnat:
            if src and not outcome.masquerade and \
                    str(outcome.dnat).rsplit(":", 1)[0].strip("[]") == src:
                return "timeout"
            return str(outcome.dnat)
        if dst in local_ips or dst.startswith("127."):
            return "refused"
        return f"{dst}:{port}" if f"{dst}:{port}" in beyond else "timeout"
    return f"unknown ({outcome.verdict})"


def observed_key(result: dict[str, Any]) -> str:
    if result["kind"] == "answered":
        return str(result["local"])
    return str(result["kind"])


class Checker:
    def __init__(self, state: dict[str, Any], spec: LabSpec, ruleset: Ruleset, *, count: int,
                 timeout: float, budget: float, kernel_paths: int, variant: str,
                 nft: Sequence[NftRuleset] = ()) -> None:
        self.state = state
        self.spec = spec
        self.count = count
        self.timeout = timeout
        self.deadline = time.monotonic() + budget
        self.kernel_paths = kernel_paths
        self.variant = variant
        self.ruleset = ruleset
        self.local_ips = {*spec.node_ips, NODE_EXTERNAL, NODE_GATEWAY, "127.0.0.1"}
        self.beyond = frozenset(f"{b.ip}:{port}" for b in spec.beyond for port in b.tcp)
        self.tracer = Tracer(ruleset, local_ips=sorted(self.local_ips), nft=nft)
        self.nft = list(nft)
        """kube-proxy's nftables table (nftables mode): the tracer walks it."""
        self.groups: list[Group] = []
        self._sport: dict[str, int] = {}
        """The next source port per client namespace."""

    # -- planning ---------------------------------------------------------------------
    def plan(self) -> None:
        ifs = self.state["interfaces"]
        for f in self.spec.frontends:
            if f.kind == "localhost-node-port":
                self.groups.append(Group(f, "node", self.state["node"], None, None))
                continue
            if f.kind == "cluster-ip-hairpin":
                index = [p.ip for p in self.spec.pods].index(f.client)
                self.groups.append(Group(f, "endpoint", self.state["pods"][f.client], f.client,
                                         f"p{index}"))
                continue
            if f.kind in ONLY_POD:
                self.groups.append(Group(f, "pod", self.state["pod_client"], self.spec.pod_client,
                                         ifs["pod_client"]))
                continue
            self.groups.append(Group(f, "pod", self.state["pod_client"], self.spec.pod_client, ifs["pod_client"]))
            sources = self.spec.external_sources if f.kind == "load-balancer" and f.source_ranges else [EXTERNAL_CLIENT]
            for src in sources:
                self.groups.append(Group(f, "external", self.state["external"], src, ifs["external"]))
            self.groups.append(Group(f, "node", self.state["node"], None, None))
        for g in self.groups:
            self._predict(g, self._guess_src(g))
        alpha = stats.ALPHA / self.split_tests()
        for g in self.groups:
            certain_silence = g.predicted.get("timeout", 0.0) >= 1.0
            g.count = 2 if certain_silence else self.count
            if not g.frontend.affinity:  # enough attempts that coverage is a sound test
                for p in g.predicted.values():
                    if COVERAGE_MIN <= p < 1.0:
                        g.count = stats.attempts_to_see(p, alpha, g.count, MAX_ATTEMPTS)

    def _guess_src(self, g: Group) -> str:
        if g.src:
            return g.src
        dst = g.frontend.ip
        if dst.startswith("127."):
            return "127.0.0.1"
        return dst if dst in self.local_ips else self.spec.node_ips[0]

    def _predict(self, g: Group, src: str) -> None:
        f = g.frontend
        origin = g.source if g.source != "node" else ("localhost" if src.startswith("127.") else "node")
        origin = "pod" if origin == "endpoint" else origin
        packet = Packet(dst=f.ip, src=src, proto=f.proto, dport=f.port, in_interface=g.in_interface,
                        origin=origin)
        g.packet = packet
        result = g.traced = self.tracer.trace(packet)
        g.predicted, g.masq_predicted = {}, {}
        for o in result.outcomes:
            key = outcome_key(o, f.ip, self.local_ips, f.port, self.beyond, packet.src)
            g.predicted[key] = g.predicted.get(key, 0.0) + o.probability
            g.masq_predicted.setdefault(key, set()).add(bool(o.masquerade))
        g.checks.pop("prediction", None)

    # -- probing ----------------------------------------------------------------------
    def probe(self, bar: Progress | None = None) -> None:
        by_ns: dict[str, list[Group]] = {}
        for g in self.groups:
            by_ns.setdefault(g.client_ns, []).append(g)
        for ns, groups in by_ns.items():
            probes = [{"dst": g.frontend.ip, "port": g.frontend.port, "proto": g.frontend.proto,
                       "src": g.src, "count": g.count, "timeout": self.timeout,
                       "sport": self._sports(ns, g.count)} for g in groups]
            for g, res in zip(groups, self._run_probes(ns, probes), strict=True):
                g.local = res["local"] or (g.src or "")
                g.observed = res["results"]
            if bar is not None:
                bar.advance(len(groups))

    def _sports(self, ns: str, count: int) -> int:
        """The first of ``count`` source ports not used yet in client namespace ``ns``
        (after 22,768 attempts from one namespace they are used again)."""
        first = self._sport.get(ns, SPORTS[0])
        if first + count > SPORTS[1]:
            first = SPORTS[0]
        self._sport[ns] = first + count
        return first

    def _run_probes(self, ns: str, probes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        budget = max(1.0, self.deadline - time.monotonic())
        proc = subprocess.run(netns.exec_argv(ns, [sys.executable, "-m", "netproxy.backend.probe", f"{budget:.0f}"]),
                              input=json.dumps(probes), capture_output=True, text=True, timeout=budget + 30)
        if proc.returncode != 0:
            raise RuntimeError(f"probe in {ns} failed: {proc.stderr.strip().splitlines()[-1:]}")
        data: list[dict[str, Any]] = json.loads(proc.stdout)
        return data

    # -- judging ----------------------------------------------------------------------
    def split_tests(self) -> int:
        """How many split tests the whole check makes: the Bonferroni divisor, so that a
        correct tracer fails the check (not just one group) by chance at most ``ALPHA``."""
        return max(1, sum(sum(1 for p in g.predicted.values() if p > 0)
                          for g in self.groups if not g.frontend.affinity))

    def judge(self, g: Group, tests: int) -> None:
        """Judge group ``g``; its split tests are ``tests`` of the check's whole family."""
        seen = Counter(observed_key(r) for r in g.observed)
        n = sum(seen.values())
        predicted = {k: p for k, p in g.predicted.items() if p > 0}
        extra = sorted(k for k in seen if k not in predicted)
        g.checks["subset"] = {"ok": not extra and n > 0, "unexpected": extra, "attempts": n}
        if g.frontend.affinity:
            reached = [k for k in seen if k not in ("timeout", "refused")]
            g.checks["affinity"] = {"ok": len(reached) <= 1, "endpoints": reached}
        else:
            alpha = stats.ALPHA / tests
            # never seen, and that is no bad luck at the check's alpha (the count planned
            # makes it so; fewer attempts, cut by the budget, make a miss plausible)
            missing = sorted(k for k, p in predicted.items() if p >= COVERAGE_MIN and seen[k] == 0
                             and stats.two_sided_p(0, n, p) < alpha)
            g.checks["coverage"] = {"ok": not missing, "missing": missing}
            split = {}
            ok = True
            for key, p in sorted(predicted.items()):
                pv = stats.two_sided_p(seen[key], n, p) if n else 0.0
                low, high = stats.interval(n, p, alpha) if n else (0, 0)
                split[key] = {"predicted": round(p, 6), "observed": seen[key], "accepted": [low, high],
                              "p_value": round(pv, 6)}
                ok = ok and pv >= alpha
            g.checks["split"] = {"ok": ok, "test": f"exact two-sided binomial, alpha {stats.ALPHA} "
                                 f"Bonferroni over the check's {tests} results", "outcomes": split}
        bad = []
        for r in g.observed:
            if r["kind"] != "answered":
                continue
            key = r["local"]
            seen_src = r["peer"].rpartition(":")[0]
            masq = seen_src != g.local
            expected = g.masq_predicted.get(key, set())
            if expected and masq not in expected:
                bad.append({"endpoint": key, "saw": seen_src, "predicted_masquerade": sorted(expected)})
        g.checks["masquerade"] = {"ok": not bad, "mismatches": bad[:3]}

    def judge_path(self, g: Group) -> None:
        f = g.frontend
        src = g.local or g.src or self.spec.node_ips[0]
        hook = "OUTPUT" if g.source == "node" else "PREROUTING"
        match = ["-s", src, "-d", f.ip, "-p", f.proto, "--dport", str(f.port)]
        sample: list[dict[str, Any]] = []

        def send() -> None:
            probe = [{"dst": f.ip, "port": f.port, "proto": f.proto, "src": g.src, "count": 1,
                      "timeout": self.timeout, "sport": self._sports(g.client_ns, 1)}]
            sample.extend(self._run_probes(g.client_ns, probe)[0]["results"])

        tables: tuple[str, ...] = PATH_TABLES
        if self.nft:
            tables = ("kube-proxy",)
            hops = nfttrace.kernel_path(self.state["node"], src, f.ip, f.proto, f.port, send)
        elif self.variant == "nft":
            hops = ktrace.kernel_path(self.state["node"], match, hook, send, src)
        else:
            hops = nflog.kernel_path(self.state["node"], match, hook, send, src, self._rule_text, self._policy)
        kernel = [(h.table, h.chain, h.text) for h in hops if h.table in tables]
        taken = observed_key(sample[0]) if sample else "timeout"
        origin = "pod" if g.source == "endpoint" else g.source
        if g.source == "node" and src.startswith("127."):
            origin = "localhost"
        result = self.tracer.trace(Packet(dst=f.ip, src=src, proto=f.proto, dport=f.port,
                                          in_interface=g.in_interface, origin=origin))
        candidates = [o for o in result.outcomes
                      if outcome_key(o, f.ip, self.local_ips, f.port, self.beyond, src) == taken]
        best: list[tuple[str, str, str]] = []
        for o in candidates:
            path = [(h.table, h.chain, h.text if h.rule is not None or self.nft
                     else _policy(h.text)) for h in o.path if h.table in tables]
            if path == kernel:
                best = path
                break
            best = best or path
        g.kernel_path = {"ok": bool(kernel) and best == kernel, "taken": taken,
                         "kernel": [" ".join(k) for k in kernel], "tracer": [" ".join(t) for t in best]}
        g.checks["kernel_path"] = {"ok": g.kernel_path["ok"]}

    def _rule_text(self, table: str, chain: str, number: int) -> str:
        from netproxy.render import rule_text

        found = self.ruleset.tables.get(table)
        rules = found.chains[chain].rules if found is not None and chain in found.chains else []
        return rule_text(rules[number - 1], chain, self.ruleset.family) if 0 < number <= len(rules) else f"#{number}"

    def _policy(self, table: str, chain: str) -> str:
        found = self.ruleset.tables.get(table)
        return (found.chains[chain].policy or "") if found is not None and chain in found.chains else ""

    def run(self) -> dict[str, Any]:
        self.plan()
        # no connection of an earlier check (or of the other mode's rules) is tracked: every
        # attempt is a new conntrack entry, NATed by the rules the node holds now
        netns.run(self.state["node"], ["conntrack", "-F"])
        with progress("lab check: sending traffic", len(self.groups),
                      unit="frontend/source groups") as bar:
            self.probe(bar)
        for g in self.groups:
            if g.local and g.local != g.src and g.source == "node":
                self._predict(g, g.local)  # the source address the kernel actually chose
        tests = self.split_tests()
        for g in self.groups:
            self.judge(g, tests)
        sampled = 0
        seen_kinds: set[tuple[str, str]] = set()
        for g in self.groups:
            kind = (g.frontend.kind, g.source)
            if sampled >= self.kernel_paths or kind in seen_kinds or time.monotonic() > self.deadline:
                continue
            seen_kinds.add(kind)
            sampled += 1
            self.judge_path(g)
        return self.report()

    def report(self) -> dict[str, Any]:
        frontends: dict[str, dict[str, Any]] = {}
        for g in self.groups:
            f = g.frontend
            name = f"{f.service} {f.kind} {f.ip}:{f.port}/{f.proto}"
            entry = frontends.setdefault(name, {"groups": 0, "agree": 0, "sources": []})
            entry["groups"] += 1
            entry["agree"] += int(g.ok)
            entry["sources"].append({"source": g.source, "src": g.local or g.src, "ok": g.ok,
                                     "observed": dict(Counter(observed_key(r) for r in g.observed)),
                                     "predicted": {k: round(v, 6) for k, v in g.predicted.items() if v > 0},
                                     "checks": g.checks, "kernel_path": g.kernel_path})
        total = len(self.groups)
        agree = sum(int(g.ok) for g in self.groups)
        paths = [g for g in self.groups if g.kernel_path is not None]
        return {"frontends": frontends, "groups": total, "agree": agree,
                "agreement": round(agree / total, 4) if total else 1.0,
                "kernel_paths": {"sampled": len(paths), "agree": sum(int(g.kernel_path["ok"]) for g in paths if g.kernel_path)},
                "statistics": f"exact two-sided binomial per outcome, family-wise alpha {stats.ALPHA} "
                              f"over the whole check (Bonferroni over {self.split_tests()} results)",
                "attempts": sum(len(g.observed) for g in self.groups)}


def _policy(text: str) -> str:
    return text.split()[-1] if text else ""
