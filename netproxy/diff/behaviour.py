"""Behavioural comparison: trace the same probe packets through both rulesets.

Probes come from every service frontend either ruleset has (cluster IPs, external IPs,
load-balancer IPs with their ports, node ports on a node address) and are sent from each
kind of source: a pod, the node itself and an outside client. Two rulesets behave alike for
a probe when the tracer finds the same outcomes: verdict, DNAT destination and masquerade,
each with the same probability.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netproxy.diff.identity import KubeView
from netproxy.diff.report import DiffReport, ProbeLine
from netproxy.errors import TraceError
from netproxy.kubeview.model import RulesetView
from netproxy.kubeview.names import FRONTEND_CHAINS, ServiceKey
from netproxy.netfilter.model import Rule, Ruleset
from netproxy.netfilter.nft import NftRuleset
from netproxy.netfilter.values import saved_address
from netproxy.textsafe import digits
from netproxy.trace import Packet, Tracer, TraceResult

if TYPE_CHECKING:
    from netproxy.diff.nftdiff import Views

_EXTERNAL = {"ipv4": "203.0.113.77", "ipv6": "2001:db8:ffff::77"}
_NODE = {"ipv4": "192.0.2.10", "ipv6": "2001:db8:1::10"}
_PORT_MODULES = ("tcp", "udp", "sctp")
_SAME = 1e-6
_POD_IF = "probe-pod0"
"""Interface names of the probes: the same on both sides, so outcomes stay comparable."""
_OUT_IF = "eth0"


@dataclass(frozen=True, slots=True, order=True)
class Frontend:
    dst: str
    """A service address, or ``""`` for a node port (sent to a node address)."""
    proto: str
    port: int


def _host(value: str) -> str | None:
    addr, _, plen = value.partition("/")
    if plen in ("", "32", "128"):
        return addr
    return None


def rule_frontend(rule: Rule) -> Frontend | None:
    proto = rule.builtin("protocol")
    if proto is None or proto.negated or not proto.args:
        return None
    port = None
    for module in _PORT_MODULES:
        opt = rule.option(module, "dport")
        if opt is not None and opt.args and not opt.negated:
            port = opt.args[0]
    if port is None or not digits(port):
        return None
    dst = rule.builtin("destination")
    if dst is None:
        return Frontend("", proto.args[0].lower(), int(port))
    if dst.negated or not dst.args:
        return None
    host = _host(dst.args[0])
    return Frontend(host, proto.args[0].lower(), int(port)) if host else None


def frontends(ruleset: Ruleset) -> set[Frontend]:
    """Every (address, protocol, port) a frontend rule of kube-proxy matches."""
    out: set[Frontend] = set()
    for table in ruleset.tables.values():
        for cname in FRONTEND_CHAINS:
            chain = table.chains.get(cname)
            for rule in chain.rules if chain is not None else ():
                if rule.opaque is None:
                    f = rule_frontend(rule)
                    if f is not None:
                        out.add(f)
    return out


def pod_source(rulesets: list[Ruleset], family: str) -> str:
    """An address inside the pod network: from the local-traffic detector's CIDR
    (``! -s <cidr> -j KUBE-MARK-MASQ``), else next to an endpoint."""
    endpoint: str | None = None
    for ruleset in rulesets:
        nat = ruleset.tables.get("nat")
        if nat is None:
            continue
        for chain in nat.chains.values():
            for rule in chain.rules:
                t = rule.target
                if t is None:
                    continue
                src = rule.builtin("source")
                if t.name == "KUBE-MARK-MASQ" and src is not None and src.negated and src.args:
                    try:
                        net = ipaddress.ip_network(saved_address(src.args[0], family), strict=False)
                    except ValueError:
                        continue
                    if net.num_addresses > 4:
                        return str(net.network_address + min(250, net.num_addresses - 2))
                if endpoint is None and t.name == "DNAT":
                    opt = t.get("to-destination")
                    if opt is not None and opt.args:
                        endpoint = opt.args[0].rsplit(":", 1)[0].strip("[]")
    if endpoint is not None:
        try:
            return str(ipaddress.ip_address(endpoint) + 1)
        except ValueError:
            pass
    return "10.244.0.250" if family == "ipv4" else "fd00:10:244::250"


AFFINITY = "next connection from this client: same endpoint"
"""The key :func:`outcomes` adds with ``affinity=True``: how likely a second connection of
the same client reaches the endpoint the first one did."""


def outcomes(tracer: Tracer, packet: Packet, *, reasons: bool = True,
             affinity: bool = False) -> dict[str, float]:
    """The packet's outcomes as ``text -> probability`` (verdict, DNAT destination,
    masquerade; the tracer's reason unless ``reasons=False``). ``affinity``: when the first
    connection may reach several endpoints, trace a second one from the same client (same
    source, another source port, a second later) in the kernel state each first branch left,
    and add :data:`AFFINITY` with the probability that it reaches the same endpoint."""
    try:
        result = tracer.trace(packet)
    except TraceError as err:
        return {f"error: {err}": 1.0}
    merged = texts(result, reasons=reasons)
    if affinity and len({o.dnat for o in result.outcomes if o.dnat}) > 1:
        second = packet.with_(sport=(packet.sport or 40000) + 1, time=packet.time + 1.0)
        sticky = 0.0
        for o in result.outcomes:
            if not o.dnat:
                continue
            try:
                again = tracer.trace(second, memory=o.memory)
            except TraceError:
                continue
            sticky += o.probability * sum(a.probability for a in again.outcomes
                                          if a.dnat == o.dnat)
        merged[AFFINITY] = sticky
    return merged


def texts(result: TraceResult, *, reasons: bool = True) -> dict[str, float]:
    """A trace's outcomes as :func:`outcomes` gives them (without the affinity trace)."""
    merged: dict[str, float] = {}
    for o in result.outcomes:
        text = o.verdict
        if o.dnat:
            text += f" DNAT {o.dnat}"
        if o.masquerade:
            text += " masquerade"
        if o.reason and reasons:
            text += f" ({o.reason})"
        merged[text] = merged.get(text, 0.0) + o.probability
    return merged


def same(a: dict[str, float], b: dict[str, float]) -> bool:
    """Two outcome maps agree: the same texts, each with the same probability."""
    if set(a) != set(b):
        return False
    return all(abs(a[k] - b[k]) <= _SAME for k in a)


def lines(outcomes: dict[str, float]) -> list[str]:
    """``["50.00% ACCEPT DNAT ...", ...]``, sorted by text."""
    return [f"{p * 100:.2f}% {text}" for text, p in sorted(outcomes.items())]


def service_frontends(ruleset: Ruleset | KubeView, keys: list[tuple[str, str]]) -> set[Frontend]:
    """The frontends of the given service ports only (of a ruleset, or of the view the
    text diff already asked about it)."""
    view = ruleset if isinstance(ruleset, KubeView) else KubeView(ruleset)
    out: set[Frontend] = set()
    for spn, proto in keys:
        index = view.service(ServiceKey(spn, proto))
        for _table, _chain, rule in index.shared if index is not None else ():
            f = rule_frontend(rule) if rule.opaque is None else None
            if f is not None:
                out.add(f)
    return out


def probes(old: Ruleset, new: Ruleset, node_ip: str,
           only: set[Frontend] | None = None) -> list[tuple[str, Packet]]:
    """``(description, packet)`` for every frontend of either ruleset (or those in ``only``)
    and every source kind."""
    chosen = only if only is not None else frontends(old) | frontends(new)
    return frontend_probes(chosen, pod_source([old, new], new.family), node_ip, new.family)


def frontend_probes(chosen: set[Frontend], pod: str, node_ip: str,
                    family: str) -> list[tuple[str, Packet]]:
    """``(description, packet)`` for each frontend from a pod, the node and outside."""
    out: list[tuple[str, Packet]] = []
    for f in sorted(chosen):
        dst = f.dst or node_ip
        shown = f"[{dst}]" if ":" in dst else dst
        what = f"{f.proto} {shown}:{f.port}" if f.dst else f"{f.proto} node port {shown}:{f.port}"
        out.append((f"{what} from pod {pod}", Packet(dst, pod, f.proto, f.port, origin="pod",
                                                     in_interface=_POD_IF, out_interface=_OUT_IF)))
        out.append((f"{what} from the node", Packet(dst, None, f.proto, f.port, origin="node",
                                                    out_interface=_OUT_IF)))
        ext = _EXTERNAL[family]
        out.append((f"{what} from outside {ext}", Packet(dst, ext, f.proto, f.port, origin="external",
                                                         in_interface=_OUT_IF, out_interface=_OUT_IF)))
    return out


def compare_behaviour(report: DiffReport, old: Ruleset, new: Ruleset, *,
                      local_ips: list[str] | None = None, scope: str = "all",
                      views: tuple[KubeView, KubeView] | None = None) -> None:
    """Trace every probe through both rulesets; record the probes whose outcomes differ.

    ``scope="changed"`` probes only the frontends of the services the text diff found
    changed -- unless rules outside the services changed (kube-proxy's shared rules, other
    programs' chains), which can change any outcome; then every frontend is probed.
    ``views``: the views the text diff read the rulesets through, when the caller has them.
    """
    family = new.family
    local = list(local_ips or [])
    node_ips = [ip for ip in local if not ipaddress.ip_address(ip).is_loopback]
    if not node_ips:
        node_ips = [_NODE[family]]
        local.append(node_ips[0])
    told = Tracer(old, local_ips=local)
    tnew = Tracer(new, local_ips=local)
    found: list[ProbeLine] = []
    only: set[Frontend] | None = None
    if scope == "changed" and all(g.kind == "service" for g in report.groups):
        ov, nv = views if views is not None else (KubeView(old), KubeView(new))
        only = service_frontends(ov, report.changed_services) | \
            service_frontends(nv, report.changed_services)
    report.probe_scope = "all" if only is None else "changed"
    plan = probes(old, new, node_ips[0], only)
    for text, packet in plan:
        a = outcomes(told, packet)
        b = outcomes(tnew, packet)
        if not same(a, b):
            found.append(ProbeLine(text, lines(a), lines(b)))
    report.behaviour = found
    report.probes = len(plan)
    report.summary["behaviour_differences"] = len(found)


# -- nftables listings -------------------------------------------------------------------------

def view_frontends(view: RulesetView, keys: list[tuple[str, str]] | None = None) -> set[Frontend]:
    """Every (address, protocol, port) of kube-proxy's nftables table that a Service port
    answers on (``service-ips``, ``service-nodeports``, ``no-endpoint-*`` elements), or only
    those of the Service ports ``keys``."""
    from netproxy.kubeview.model import NftRef
    from netproxy.kubeview.nftables import nft_element_parts

    out: set[Frontend] = set()
    for key, port in view.services.items():
        if keys is not None and key not in keys:
            continue
        for ref in [a.ref for a in port.addresses] + port.rejects + port.local_drops:
            parts = nft_element_parts(ref) if isinstance(ref, NftRef) else []
            if len(parts) not in (2, 3) or not isinstance(parts[-1], int):
                continue
            dst = str(parts[0]) if len(parts) == 3 else ""
            out.add(Frontend(dst, str(parts[-2]).lower(), parts[-1]))
    return out


def view_pod_source(views: list[RulesetView], family: str) -> str:
    """An address inside the pod network the views' local-traffic detector names, else
    next to an endpoint."""
    for view in views:
        for cidr in view.pod_cidrs:
            try:
                net = ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                continue
            if net.num_addresses > 4:
                return str(net.network_address + min(250, net.num_addresses - 2))
    for view in views:
        seps = [sep for port in view.services.values() for sep in port.endpoints.values()]
        for sep in seps:
            if sep.destination:
                try:
                    return str(ipaddress.ip_address(sep.destination.rsplit(":", 1)[0].strip("[]")) + 1)
                except ValueError:
                    continue
    return "10.244.0.250" if family == "ipv4" else "fd00:10:244::250"


def compare_listings(report: DiffReport, old: NftRuleset, new: NftRuleset, *,
                     local_ips: list[str] | None = None, scope: str = "all",
                     views: Views | None = None) -> None:
    """:func:`compare_behaviour` for two nftables listings: probes for the frontends of
    kube-proxy's table (each family it has), walked through every table of each listing;
    ``views``: the listings' :func:`~netproxy.diff.nftdiff.listing_views`, when the caller
    has them (the text diff read them)."""
    from netproxy.diff.nftdiff import listing_views

    found: list[ProbeLine] = []
    total = 0
    changed = all(g.kind == "service" for g in report.groups) and scope == "changed"
    for family, pair in (listing_views(old, new) if views is None else views).items():
        present = [v for v in pair if v is not None]
        local = [ip for ip in (local_ips or []) if (":" in ip) == (family == "ipv6")]
        node_ips = [ip for ip in local if not ipaddress.ip_address(ip).is_loopback]
        for view in present:
            if not node_ips and view.nodeport_ips:
                node_ips = [ip for ip in view.nodeport_ips if "/" not in ip][:1]
        if not node_ips:
            node_ips = [_NODE[family]]
        local = list(dict.fromkeys([*local, *node_ips, "::1" if family == "ipv6" else "127.0.0.1"]))
        keys = report.changed_services if changed else None
        chosen = set().union(*(view_frontends(v, keys) for v in present))
        plan = frontend_probes(chosen, view_pod_source(present, family), node_ips[0], family)
        told = Tracer(Ruleset(family=family, source=old.source), local_ips=local, nft=[old])
        tnew = Tracer(Ruleset(family=family, source=new.source), local_ips=local, nft=[new])
        for text, packet in plan:
            a = outcomes(told, packet)
            b = outcomes(tnew, packet)
            if not same(a, b):
                found.append(ProbeLine(text, lines(a), lines(b)))
        total += len(plan)
    report.probe_scope = "changed" if changed else "all"
    report.behaviour = found
    report.probes = total
    report.summary["behaviour_differences"] = len(found)
