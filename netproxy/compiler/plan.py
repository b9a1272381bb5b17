"""What kube-proxy decides for one service port before it writes a rule (the top of the
service loop in ``syncProxyRules``): which chains exist, where the cluster IP and external
traffic go, and which filter verdict replaces them when there are no (local) endpoints."""

from __future__ import annotations

from dataclasses import dataclass

from netproxy import chainnames as names
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
    """Which chains and targets a service port uses (the top of kube-proxy's service loop)."""
    spn, p = svc.spn, svc.protocol
    hash_of = names.port_proto_hash
    digest = hash_of(spn, p)
    svc_chain, svl_chain = "KUBE-SVC-" + digest, "KUBE-SVL-" + digest
    has_eps = cat.has_any
    has_internal = has_eps and (not svc.internal_policy_local or bool(cat.local))
    has_external = has_eps and (not svc.external_policy_local or bool(cat.local))
    int_target = svl_chain if svc.internal_policy_local else svc_chain
    ext_target = svl_chain if svc.external_policy_local else svc_chain
    int_comment = ext_comment = ""
    if not has_eps:
        int_target = ext_target = "REJECT"
        int_comment = ext_comment = f"{spn} has no endpoints"
    else:
        if not has_internal:
            int_target, int_comment = "DROP", f"{spn} has no local endpoints"
        if not has_external:
            ext_target, ext_comment = "DROP", f"{spn} has no local endpoints"
    return Plan(
        svc=svc, cat=cat, spn=spn, p=p, svc_chain=svc_chain, svl_chain=svl_chain,
        ext_chain="KUBE-EXT-" + digest, fw_chain="KUBE-FW-" + digest,
        internal_chain=svl_chain if svc.internal_policy_local else svc_chain,
        external_policy_chain=svl_chain if svc.external_policy_local else svc_chain,
        has_internal=has_internal, has_external=has_external,
        uses_cluster_chain=bool(cat.cluster) and svc.uses_cluster_endpoints,
        uses_local_chain=bool(cat.local) and svc.uses_local_endpoints,
        uses_ext_chain=has_eps and svc.externally_accessible,
        uses_fw_chain=has_eps and bool(svc.lb_vips) and bool(svc.source_ranges),
        int_target=int_target, ext_target=ext_target,
        int_comment=int_comment, ext_comment=ext_comment,
        sep_names={ep.endpoint: "KUBE-SEP-" + hash_of(spn, p, ep.endpoint) for ep in cat.all_reachable},
        port=str(svc.port),
    )
