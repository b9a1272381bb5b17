"""kube-proxy's semantics as pure functions: service ports, endpoints, endpoint selection,
local-traffic detection and NodePort addresses. Knows Kubernetes, not iptables syntax."""

from __future__ import annotations
