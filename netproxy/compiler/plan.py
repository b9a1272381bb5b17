"""kube-proxy's decisions for one service port (:mod:`netproxy.proxy.decisions`, shared with
nftables mode) named in iptables terms: which chains exist, where the cluster IP and external
traffic go, and which filter target replaces them when there are no (local) endpoints."""

from __future__ import annotations

from dataclasses import dataclass

from netproxy import chainnames as names
from netproxy.proxy.decisions import DROP, REJECT, decide
from netproxy.proxy.serviceport import ServicePortInfo
from netproxy.proxy.topology import Categorized


@dataclass(slots=True)
class Plan:
    """The decisions kube-proxy takes for one service port before writing its rules."""

    svc: ServicePortInfo
    cat: Categorized
    spn: str
    p: str
    svc_chain: str
    svl_chain: str
    ext_chain: str
    fw_chain: str
    internal_chain: str
    external_policy_chain: str
    has_internal: bool
    has_external: bool
    uses_cluster_chain: bool
    uses_local_chain: bool
    uses_ext_chain: bool
    uses_fw_chain: bool
    int_target: str
    ext_target: str
    int_comment: str
    ext_comment: str
    sep_names: dict[str, str]
    """Endpoint string -> KUBE-SEP chain name, hashed once per reachable endpoint."""
    port: str
    """The service port as the rules spell it."""

    def sep(self, endpoint: str) -> str:
        name = self.sep_names.get(endpoint)
        if name is None:
            name = self.sep_names[endpoint] = names.endpoint_chain(self.spn, self.p, endpoint)
        return name

    @property
    def lb_target(self) -> str:
        return self.fw_chain if self.uses_fw_chain else self.ext_chain


def plan(svc: ServicePortInfo, cat: Categorized) -> Plan:
    """kube-proxy's decisions for a service port (:func:`netproxy.proxy.decisions.decide`)
    named in iptables terms: chains, targets and comments."""
    spn, p = svc.spn, svc.protocol
    hash_of = names.port_proto_hash
    digest = hash_of(spn, p)
    svc_chain, svl_chain = "KUBE-SVC-" + digest, "KUBE-SVL-" + digest
    d = decide(svc, cat)
    internal_chain = svl_chain if d.internal_local else svc_chain
    external_policy_chain = svl_chain if d.external_local else svc_chain
    int_target, int_comment = _verdict(d.internal_verdict, internal_chain, spn)
    ext_target, ext_comment = _verdict(d.external_verdict, external_policy_chain, spn)
    return Plan(
        svc=svc, cat=cat, spn=spn, p=p, svc_chain=svc_chain, svl_chain=svl_chain,
        ext_chain="KUBE-EXT-" + digest, fw_chain="KUBE-FW-" + digest,
        internal_chain=internal_chain, external_policy_chain=external_policy_chain,
        has_internal=d.has_internal, has_external=d.has_external,
        uses_cluster_chain=d.uses_cluster, uses_local_chain=d.uses_local,
        uses_ext_chain=d.uses_external,
        # iptables mode writes the firewall chain only when there are endpoints
        uses_fw_chain=d.has_endpoints and d.uses_source_ranges,
        int_target=int_target, ext_target=ext_target,
        int_comment=int_comment, ext_comment=ext_comment,
        sep_names={ep.endpoint: "KUBE-SEP-" + hash_of(spn, p, ep.endpoint) for ep in cat.all_reachable},
        port=str(svc.port),
    )


def _verdict(verdict: str, chain: str, spn: str) -> tuple[str, str]:
    """The iptables target and comment for a decision's filter verdict."""
    if verdict == REJECT:
        return "REJECT", f"{spn} has no endpoints"
    if verdict == DROP:
        return "DROP", f"{spn} has no local endpoints"
    return chain, ""
