"""``lab check --proxy-mode both``: the same lab checked in iptables mode and then in
nftables mode. Each check holds the kernel to the tracer; this module sets the two side by
side: per frontend/source group, what ``netproxy migrate`` predicts changes between the
modes (the tracer's outcomes in each, sorted into kube-proxy's intended differences and
findings) and what the kernel did in each."""

from __future__ import annotations

from collections import Counter
from typing import Any

from netproxy.backend.lab.check import Checker, Group, observed_key, outcome_key
from netproxy.diff.behaviour import lines, same, texts
from netproxy.errors import TraceError
from netproxy.migrate import probes as p
from netproxy.migrate.expected import classify
from netproxy.proxy.nodeports import NodePortAddresses
from netproxy.trace import Packet, Tracer, TraceResult

_KINDS = {"cluster-ip": p.CLUSTER_IP, "node-port": p.NODE_PORT,
          "localhost-node-port": p.LOCALHOST_NODE_PORT, "external-ip": p.EXTERNAL_IP,
          "load-balancer": p.LB_IP, "cluster-ip-other-port": p.OTHER_PORT,
          "unallocated-service-ip": p.UNALLOCATED, "cluster-ip-hairpin": p.CLUSTER_IP}


def _probe(g: Group) -> p.Probe:
    f = g.frontend
    ranges = tuple(f.source_ranges)
    if g.source == "endpoint":
        source = p.ENDPOINT_HERE if f.client_local else p.ENDPOINT_ELSEWHERE
    elif g.source == "pod":
        source = p.POD_HERE
    elif g.source == "external":
        source = p.OUT_OF_RANGE if ranges else p.OUTSIDE
    else:
        source = p.LOCALHOST if f.kind == "localhost-node-port" else p.NODE
    assert g.packet is not None
    return p.Probe(f.service, _KINDS.get(f.kind, p.CLUSTER_IP), source, g.packet, ranges)


def _kinds(seen: dict[str, int], affinity: bool) -> set[str]:
    """What was observed, as a set; with session affinity one endpoint reached is one
    endpoint reached (which one is chance, in each mode)."""
    if not affinity:
        return set(seen)
    return {k if k in ("timeout", "refused") else "one endpoint" for k in seen}


def _allowed(checker: Checker, g: Group, traced: TraceResult) -> set[str]:
    """What a client may see when the rules ``traced`` went through hold (as the check
    keys it)."""
    f = g.frontend
    assert g.packet is not None
    return {outcome_key(o, f.ip, checker.local_ips, f.port, checker.beyond, g.packet.src)
            for o in traced.outcomes if o.probability > 0}


def _trace(tracer: Tracer, packet: Packet) -> tuple[dict[str, float], TraceResult | None]:
    """The packet's outcomes (:func:`~netproxy.diff.behaviour.outcomes`, no reasons) and the
    trace they come from (None when the tracer refused the packet)."""
    try:
        traced = tracer.trace(packet)
    except TraceError as err:
        return {f"error: {err}": 1.0}, None
    return texts(traced, reasons=False), traced


def _read_back(checker: Checker, g: Group, packet: Packet) -> dict[str, float]:
    """The outcomes of the rules read back from the node: the check's own trace of the
    group's packet when it is ``packet`` (traced once)."""
    if g.traced is not None and g.packet == packet:
        return texts(g.traced, reasons=False)
    return _trace(checker.tracer, packet)[0]


def compare_modes(old: Checker, new: Checker, *, old_nodeports: NodePortAddresses,
                  new_nodeports: NodePortAddresses,
                  predicted: tuple[Tracer, Tracer]) -> dict[str, Any]:
    """Both checks have run (``old``: iptables mode, ``new``: nftables mode, the same
    groups in the same order). ``predicted``: tracers of the rules ``netproxy migrate``
    compiles for each mode. Per group: the
    difference the prediction names (or a finding), and whether the kernel agrees: each
    mode's check passed, the rules read back trace as the compiled ones, and every result
    the kernel gave in each mode is one the prediction allows."""
    rows: list[dict[str, Any]] = []
    findings = 0
    confirmed = 0
    for a, b in zip(old.groups, new.groups, strict=True):
        assert a.label() == b.label()
        probe = _probe(a)
        ra = _read_back(old, a, probe.packet)
        rb = _read_back(new, b, probe.packet)
        t_old, t_new = predicted
        pa, traced_a = _trace(t_old, probe.packet)
        pb, traced_b = _trace(t_new, probe.packet)
        seen_a = dict(Counter(observed_key(r) for r in a.observed))
        seen_b = dict(Counter(observed_key(r) for r in b.observed))
        predicted_change = not same(pa, pb)
        observed_change = _kinds(seen_a, a.frontend.affinity) != _kinds(seen_b, b.frontend.affinity)
        key = classify(probe, pa, pb, old_nodeports=old_nodeports,
                       new_nodeports=new_nodeports) if predicted_change else None
        if predicted_change and key is None:
            findings += 1
        as_compiled = same(pa, ra) and same(pb, rb)
        allowed = (traced_a is not None and traced_b is not None
                   and set(seen_a) <= _allowed(old, a, traced_a)
                   and set(seen_b) <= _allowed(new, b, traced_b))
        why = [text for bad, text in (
            (not a.ok, "the iptables-mode check failed"),
            (not b.ok, "the nftables-mode check failed"),
            (not as_compiled, "the rules read back do not trace as the compiled ones"),
            (not allowed, "the kernel gave a result the prediction does not allow")) if bad]
        ok = not why
        confirmed += int(ok)
        if predicted_change or observed_change or not ok:
            rows.append({"group": a.label(), "service": probe.service, "kind": probe.frontend,
                         "expected": key, "finding": predicted_change and key is None,
                         "predicted": {"iptables": lines(pa), "nftables": lines(pb)},
                         "observed": {"iptables": seen_a, "nftables": seen_b},
                         "rules_as_compiled": as_compiled, "kernel_agrees": ok, "why": why})
    return {"groups": len(old.groups), "confirmed": confirmed, "changed": rows,
            "findings": findings}
