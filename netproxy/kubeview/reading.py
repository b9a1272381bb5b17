"""One Service port's meaning, spelled the same for both proxy modes.

:func:`reading` reduces a :class:`~netproxy.kubeview.model.ServicePortView` to what a user
means by "the Service's rules": its frontends, which endpoints get which share of new
connections (cluster-wide and, for Local policies, node-local), whether ClientIP affinity is
on, and whether kube-proxy answers "no endpoints" (REJECT) or "no local endpoints" (DROP).
Two rulesets -- an iptables dump and an nftables listing, before and after -- agree on a
Service port when their readings are equal. Shares are rounded to 6 decimals: the iptables
cascade's written probabilities only approximate 1/n.
"""

from __future__ import annotations

from typing import Any

from netproxy.kubeview.model import ServicePortView

FRONTEND_KINDS = {"cluster-ip": "cluster-ip", "external-ip": "external", "lb-ip": "external",
                  "node-port": "node-port"}
"""nftables cannot tell external IPs from load-balancer IPs: both read as ``external``."""


def reading(svc: ServicePortView) -> dict[str, Any]:
    """Frontends, endpoint shares, affinity and no-endpoint answers of one Service port."""
    frontends = sorted({(FRONTEND_KINDS.get(a.kind, a.kind), a.ip or "", a.port or 0)
                        for a in svc.addresses})
    local = svc.shares("SVL") or svc.shares("XLB")
    return {
        "frontends": [list(f) for f in frontends],
        "cluster": {ep: round(float(s), 6) for ep, s in sorted(svc.shares("SVC").items())},
        "local": {ep: round(float(s), 6) for ep, s in sorted(local.items())},
        "affinity": bool(svc.affinity),
        "reject": bool(svc.rejects),
        "drop": bool(svc.local_drops),
    }
