"""What kube-proxy's chain names say (Kubernetes meaning, no rule logic).

kube-proxy names per-service chains ``KUBE-<ROLE>-<hash>`` where the hash is shared by all
chains of one service port (SVC, SVL, EXT, FW and the pre-1.24 XLB) and endpoint chains are
``KUBE-SEP-<hash>``. What its comments say is in :mod:`netproxy.kubeview.comments`.
"""

from __future__ import annotations

from typing import NamedTuple

SERVICE_ROLES = ("SVC", "SVL", "EXT", "FW", "XLB")
ENDPOINT_ROLE = "SEP"
_ROLE_PREFIXES = {f"KUBE-{r}-": r for r in (*SERVICE_ROLES, ENDPOINT_ROLE)}

FIXED_CHAINS = frozenset({
    "KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", "KUBE-MARK-DROP",
    "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-PROXY-FIREWALL", "KUBE-FIREWALL",
    "KUBE-PROXY-CANARY", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT",
})
"""Chains kube-proxy (or kubelet on its behalf) creates under a fixed name."""

FRONTEND_CHAINS = frozenset({
    "KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES", "KUBE-PROXY-FIREWALL",
})
"""Shared chains holding one rule per service frontend (cluster IP, node port, ...)."""

MASQ_CHAIN = "KUBE-MARK-MASQ"
DROP_CHAIN = "KUBE-MARK-DROP"



class ServiceKey(NamedTuple):
    """A service port as kube-proxy sees it: its name and protocol (``""`` when unknown)."""

    spn: str
    protocol: str

    def label(self) -> str:
        return f"{self.spn} {self.protocol}".rstrip()


def chain_role(name: str) -> str | None:
    """``SVC``, ``SVL``, ``EXT``, ``FW``, ``XLB`` or ``SEP`` for per-service chains, else None."""
    if not name.startswith("KUBE-"):
        return None
    cut = name.find("-", 5)
    if cut < 0:
        return None
    return _ROLE_PREFIXES.get(name[:cut + 1])


def chain_hash(name: str) -> str:
    """The part after ``KUBE-<ROLE>-``."""
    return name.split("-", 2)[2] if name.count("-") >= 2 else name


def is_kube_chain(name: str) -> bool:
    """Whether kube-proxy owns the chain (fixed name or per-service prefix)."""
    return name in FIXED_CHAINS or chain_role(name) is not None


def normalise_spn(text: str) -> str:
    """``ns/name:`` (old spelling of an unnamed port) becomes ``ns/name``."""
    return text[:-1] if text.endswith(":") else text
