"""Kept for callers: kube-proxy's chain names and comment helpers live in
:mod:`netproxy.kubeview.names` and :mod:`netproxy.kubeview.comments` now."""

from __future__ import annotations

from netproxy.kubeview.comments import (
    comment_endpoint,
    comment_spn,
    frontend_kind,
    no_endpoint_reason,
)
from netproxy.kubeview.names import (
    DROP_CHAIN,
    ENDPOINT_ROLE,
    FIXED_CHAINS,
    FRONTEND_CHAINS,
    MASQ_CHAIN,
    SERVICE_ROLES,
    ServiceKey,
    chain_hash,
    chain_role,
    is_kube_chain,
    normalise_spn,
)

__all__ = [
    "DROP_CHAIN", "ENDPOINT_ROLE", "FIXED_CHAINS", "FRONTEND_CHAINS", "MASQ_CHAIN", "SERVICE_ROLES",
    "ServiceKey", "chain_hash", "chain_role", "comment_endpoint", "comment_spn", "frontend_kind",
    "is_kube_chain", "no_endpoint_reason", "normalise_spn",
]
