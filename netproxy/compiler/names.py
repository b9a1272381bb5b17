"""kube-proxy's chain names: ``KUBE-SVC-`` + base32(sha256(spn + protocol))[:16] and friends."""

from __future__ import annotations

import base64
import hashlib


def port_proto_hash(spn: str, protocol: str, extra: str = "") -> str:
    """The 16-character hash kube-proxy puts in per-service chain names (``portProtoHash``)."""
    digest = hashlib.sha256((spn + protocol + extra).encode()).digest()
    return base64.b32encode(digest)[:16].decode()


def service_chain(spn: str, protocol: str) -> str:
    return "KUBE-SVC-" + port_proto_hash(spn, protocol)


def local_chain(spn: str, protocol: str) -> str:
    return "KUBE-SVL-" + port_proto_hash(spn, protocol)


def external_chain(spn: str, protocol: str) -> str:
    return "KUBE-EXT-" + port_proto_hash(spn, protocol)


def firewall_chain(spn: str, protocol: str) -> str:
    return "KUBE-FW-" + port_proto_hash(spn, protocol)


def endpoint_chain(spn: str, protocol: str, endpoint: str) -> str:
    """``KUBE-SEP-`` chain of endpoint ``ip:port`` (``[ip]:port`` for IPv6)."""
    return "KUBE-SEP-" + port_proto_hash(spn, protocol, endpoint)


OWNED_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-SEP-", "KUBE-FW-", "KUBE-EXT-")
"""Chains kube-proxy owns and deletes when no longer used."""
