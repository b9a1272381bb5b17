"""What kube-proxy's chain names and comments say (Kubernetes meaning, no rule logic).

kube-proxy names per-service chains ``KUBE-<ROLE>-<hash>`` where the hash is shared by all
chains of one service port (SVC, SVL, EXT, FW and the pre-1.24 XLB) and endpoint chains are
``KUBE-SEP-<hash>``. Its comments carry the service-port name (``ns/name:port``; before about
1.20 an unnamed port was written ``ns/name:``) and the kind of frontend a rule serves.
"""

from __future__ import annotations

import re
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

_SPN = re.compile(r"(?<![\w./-])([a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?(:[-a-z0-9]*)?)(?![\w/])")
_ENDPOINT = re.compile(r" -> (\S+)$")


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


def comment_spn(comment: str | None) -> str | None:
    """The service-port name a kube-proxy comment mentions, if any."""
    if not comment or "/" not in comment:
        return None
    found = _SPN.search(comment)
    return normalise_spn(found.group(1)) if found else None


def comment_endpoint(comment: str | None) -> str | None:
    """``ip:port`` of an ``"ns/name:port -> ip:port"`` comment."""
    if not comment:
        return None
    found = _ENDPOINT.search(comment)
    return found.group(1) if found else None


def frontend_kind(comment: str | None, chain: str) -> str | None:
    """What kind of frontend a rule in a shared chain serves, from its comment and chain."""
    text = comment or ""
    if text.endswith("health check node port"):
        return "health check node port"
    if "cluster IP" in text:
        return "cluster IP"
    if "external IP" in text:
        return "external IP"
    if "loadbalancer IP" in text or " LB IP" in text or "traffic not accepted by" in text:
        return "loadbalancer IP"
    if chain == "KUBE-NODEPORTS":
        return "node port"
    return None


def no_endpoint_reason(comment: str | None) -> str | None:
    text = comment or ""
    if text.endswith("has no local endpoints"):
        return "no local endpoints"
    if text.endswith("has no endpoints"):
        return "no endpoints"
    if "traffic not accepted by" in text:
        return "source not allowed"
    return None
