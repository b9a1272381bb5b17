"""The facts of one service port of kube-proxy's nftables table, as the statements the
differ compares (the same :class:`~netproxy.diff.portfacts.ServiceFacts` as in iptables
mode), read from the kubeview model (:mod:`netproxy.kubeview.nftables`).

Frontends are the port's ``service-ips`` / ``service-nodeports`` elements and where they go,
its ``no-endpoint-services`` / ``no-endpoint-nodeports`` answers and its ``firewall-ips``
elements; endpoints are the entries of the ``numgen`` map or vmap of its ``service-`` and
``local-`` chains, each with its exact share of new connections.
"""

from __future__ import annotations

from typing import Any

from netproxy.diff.portfacts import POLICY_ROLES, EndpointShare, ServiceFacts, internal_policy
from netproxy.kubeview.model import (
    EndpointChain,
    NftRef,
    Ref,
    RulesetView,
    ServicePortView,
    hostport,
)
from netproxy.kubeview.nftables import chain_kind, nft_element_parts
from netproxy.netfilter.nfttext import stmt_text

_KIND_WORDS = {"cluster-ip": "cluster IP", "external-ip": "external IP", "lb-ip": "loadbalancer IP",
               "node-port": "node port"}


def _role(view: RulesetView, target: str | None) -> str:
    """What a verdict leads to: the role of a per-service chain that exists, else its name."""
    if target is None:
        return "?"
    kind = chain_kind(target)
    if kind is not None and view.nft_chain(target) is not None:
        return kind[0]
    return target


def _where(parts: list[Any]) -> tuple[str | None, str]:
    """(address or None, ``ip:port`` / port) of an element key ``ip . proto . port`` or
    ``proto . port``."""
    port = str(parts[-1]) if parts else ""
    if len(parts) >= 3:
        return str(parts[0]), hostport(str(parts[0]), port)
    return None, port


def _address_kind(cluster_ips: set[str], ip: str | None, lb: set[str]) -> str:
    if ip is None:
        return "node port"
    if ip in cluster_ips:
        return "cluster IP"
    return "loadbalancer IP" if ip in lb else "external IP"


def cluster_ips(view: RulesetView) -> set[str]:
    """The elements of kube-proxy's ``cluster-ips`` set."""
    found = view.nft_set("cluster-ips")
    return {str(e.key) for e in found.elements} if found is not None else set()


def _match_words(ref: Ref) -> str:
    """The matches of an nftables rule (no mark setting, verdicts or comment)."""
    rule = ref.rule if isinstance(ref, NftRef) else None
    if rule is None:
        return ""
    return " ".join(stmt_text(s) for s in rule.exprs if isinstance(s, dict) and "match" in s)


def _endpoint_note(sep: EndpointChain, direct: bool, hairpin: bool) -> str:
    parts: list[str] = []
    if direct:
        parts.append(f"DNAT to {sep.name}")
    else:
        for dest, _ref in sep.dnat:
            parts.append(f"DNAT to {dest or '?'}" + (" with affinity" if sep.affinity_sets else ""))
        if not sep.dnat:
            parts.append("empty chain (no DNAT)" if not sep.rules else "chain without DNAT")
    parts += [f"hairpin masquerade [{_match_words(ref)}]" for ref in sep.masq]  # before v1.36
    if hairpin:
        parts.append("hairpin masquerade")
    return ", ".join(parts)


def nft_facts(view: RulesetView, port: ServicePortView,
              clusters: set[str] | None = None) -> ServiceFacts:
    """The facts of ``port``, a Service port of ``view`` (kube-proxy's nftables table);
    ``clusters``: :func:`cluster_ips` of the view, when the caller has it."""
    facts = ServiceFacts()
    clusters = cluster_ips(view) if clusters is None else clusters
    lb = {a.ip for a in port.addresses if a.kind == "lb-ip" and a.ip}
    for a in port.addresses:
        where = (hostport(a.ip, a.port) if a.ip else str(a.port)) if a.port is not None else (a.ip or "")
        facts.frontends.add(f"{_KIND_WORDS.get(a.kind, a.kind)} {where} -> {_role(view, a.target)}")
    for refs, answer in ((port.rejects, "REJECT (no endpoints)"), (port.local_drops, "DROP (no local endpoints)")):
        for ref in refs:
            if not isinstance(ref, NftRef) or ref.element is None:
                continue
            ip, where = _where(nft_element_parts(ref))
            facts.frontends.add(f"{_address_kind(clusters, ip, lb)} {where} -> {answer}")
    for ref in port.firewall_rules:
        if isinstance(ref, NftRef) and ref.element is not None:
            _ip, where = _where(nft_element_parts(ref))
            facts.frontends.add(f"loadbalancer IP {where} (firewall-ips) -> {_role(view, ref.jump)}")
    facts.chains = dict(port.chains)
    hairpinned = set()
    for ref in port.hairpins:
        if isinstance(ref, NftRef) and ref.element is not None:
            parts = nft_element_parts(ref)
            if len(parts) == 4:
                hairpinned.add(hostport(str(parts[1]), parts[3]))
    labels: dict[str, str] = {}
    for name, sep in (*port.endpoints.items(), *port.orphan_endpoints.items()):
        labels[name] = sep.destination or name
    for jump in port.jumps:
        if jump.sep not in labels and jump.comment_endpoint:
            labels[jump.sep] = jump.comment_endpoint
    for role in POLICY_ROLES:
        if role not in port.chains:
            continue
        eps: list[EndpointShare] = []
        for jump in port.balancing(role):
            label = labels.get(jump.sep, jump.sep)
            reached = port.endpoints.get(jump.sep)
            if reached is None:
                facts.endpoint_notes[label] = f"chain {jump.sep} does not exist"
            share = jump.share
            text = f"numgen {share.numerator}/{share.denominator}" if share is not None else ""
            eps.append(EndpointShare(label, text, float(share or 0), len(eps) + 1, jump.sep,
                                     reached is not None and bool(reached.dnat)))
        facts.endpoints[role] = eps
    for name, sep in (*port.endpoints.items(), *port.orphan_endpoints.items()):
        label = labels.get(name, name)
        facts.endpoint_notes[label] = _endpoint_note(sep, not name.startswith("endpoint-"),
                                                     label in hairpinned)
    for ref in port.masq_rules:
        role = (chain_kind(ref.chain) or (ref.chain,))[0] if isinstance(ref, NftRef) and ref.chain else "?"
        facts.masquerade.add(f"in {role} [{_match_words(ref) or 'all traffic'}]")
    if port.affinity:
        timeout = port.affinity_timeout
        facts.affinity = f"ClientIP {int(timeout)}s" if timeout is not None else "ClientIP"
    facts.source_ranges = set(port.source_ranges)
    if "EXT" in port.chains:
        local = any(isinstance(r, NftRef) and (r.jump or "").startswith("local-") for r in port.ext_rules)
        facts.external_policy = "Local" if local else "Cluster"
    facts.internal_policy = internal_policy(facts)
    return facts
