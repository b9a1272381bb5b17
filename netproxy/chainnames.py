"""kube-proxy's chain names: ``KUBE-SVC-`` + base32(sha256(spn + protocol))[:16] and friends."""

from __future__ import annotations

import base64
import hashlib

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
"""Base32 of every 10-bit value: 16 characters of base32 are exactly 10 bytes = 8 pairs."""


def port_proto_hash(spn: str, protocol: str, extra: str = "") -> str:
    """The 16-character hash kube-proxy puts in per-service chain names (``portProtoHash``):
    the first 16 characters of base32(sha256(spn + protocol + extra))."""
    n = int.from_bytes(hashlib.sha256((spn + protocol + extra).encode()).digest()[:10], "big")
    pairs = _PAIRS
    return (pairs[n >> 70] + pairs[(n >> 60) & 1023] + pairs[(n >> 50) & 1023]
            + pairs[(n >> 40) & 1023] + pairs[(n >> 30) & 1023] + pairs[(n >> 20) & 1023]
            + pairs[(n >> 10) & 1023] + pairs[n & 1023])


def port_proto_hash_reference(spn: str, protocol: str, extra: str = "") -> str:
    """The same hash written the obvious way (used by tests to check the fast version)."""
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
