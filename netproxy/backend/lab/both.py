"""``lab check --proxy-mode both``: the same lab checked in iptables mode and then in
nftables mode. Each check holds the kernel to the tracer; this module sets the two side by
side: per frontend/source group, what ``netproxy migrate`` predicts changes between the
modes (the tracer's outcomes in each, sorted into kube-proxy's intended differences and
findings) and what the kernel did in each."""

from __future__ import annotations

from collections import Counter
from typing import Any

from netproxy.backend.lab.check import Checker, Group, observed_key
from netproxy.diff.behaviour import lines, outcomes, same
from netproxy.migrate import probes as p
from netproxy.migrate.expected import classify
from netproxy.proxy.nodeports import NodePortAddresses

_KINDS = {"cluster-ip": p.CLUSTER_IP, "node-port": p.NODE_PORT,
          "localhost-node-port": p.LOCALHOST_NODE_PORT, "external-ip": p.EXTERNAL_IP,
          "load-balancer": p.LB_IP}


def _probe(g: Group) -> p.Probe:
    f = g.frontend
    ranges = tuple(f.source_ranges)
    if g.source == "pod":
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


def _name(g: Group) -> str:
    return g.label()


def compare_modes(old: Checker, new: Checker, *, old_nodeports: NodePortAddresses,
                  new_nodeports: NodePortAddresses) -> dict[str, Any]:
    """Both checks have run (``old``: iptables mode, ``new``: nftables mode, the same
    groups in the same order). Returns the migration part of the report."""
    rows: list[dict[str, Any]] = []
    findings = 0
    confirmed = 0
    for a, b in zip(old.groups, new.groups, strict=True):
        assert _name(a) == _name(b)
        probe = _probe(a)
        pa = outcomes(old.tracer, probe.packet, reasons=False)
        pb = outcomes(new.tracer, probe.packet, reasons=False)
        seen_a = dict(Counter(observed_key(r) for r in a.observed))
        seen_b = dict(Counter(observed_key(r) for r in b.observed))
        predicted_change = not same(pa, pb)
        observed_change = _kinds(seen_a, a.frontend.affinity) != _kinds(seen_b, b.frontend.affinity)
        key = classify(probe, pa, pb, old_nodeports=old_nodeports,
                       new_nodeports=new_nodeports) if predicted_change else None
        if predicted_change and key is None:
            findings += 1
        # the kernel confirms the prediction when each mode's check passed for this group
        ok = a.ok and b.ok
        confirmed += int(ok)
        if predicted_change or observed_change:
            rows.append({"group": _name(a), "service": probe.service,
                         "expected": key, "finding": predicted_change and key is None,
                         "predicted": {"iptables": lines(pa), "nftables": lines(pb)},
                         "observed": {"iptables": seen_a, "nftables": seen_b},
                         "kernel_agrees": ok})
    return {"groups": len(old.groups), "confirmed": confirmed, "changed": rows,
            "findings": findings}
