"""kube-proxy's nftables-mode names (``hashAndTruncate`` in ``pkg/proxy/nftables/proxier.go``).

``service-ULMVA6XW-ns1/svc1/tcp/p80``: a prefix, the first 8 characters of
base32(sha256(name)), ``-`` and the readable name, cut to 240 characters with ``...`` when
longer. A leaf like :mod:`netproxy.chainnames` (the iptables-mode names).
"""

from __future__ import annotations

import base64
import hashlib

NAME_BASE_MAX = 240
"""knftables' name limit (256) minus the longest prefix kube-proxy puts before a base (16)."""
COMMENT_MAX = 128
"""knftables' comment limit in bytes (element comments are cut to it)."""

PREFIXES = ("service-", "local-", "external-", "firewall-", "endpoint-", "affinity-")


def hash_and_truncate(name: str) -> str:
    """``HASH8-name``, cut to 237 characters plus ``...`` when longer than 240."""
    digest = base64.b32encode(hashlib.sha256(name.encode()).digest()[:5]).decode()
    out = digest + "-" + name
    if len(out) > NAME_BASE_MAX:
        out = out[:NAME_BASE_MAX - 3] + "..."
    return out


def service_base(namespace: str, name: str, protocol: str, port_name: str) -> str:
    """The base of a service port's chains: ``HASH-ns/name/proto/port`` (protocol lower case)."""
    return hash_and_truncate(f"{namespace}/{name}/{protocol}/{port_name}")


def endpoint_base(namespace: str, name: str, protocol: str, port_name: str, ip: str,
                  port: int) -> str:
    """The base of an endpoint's chain and affinity set (IPv6 ``:`` written as ``.``)."""
    return hash_and_truncate(
        f"{namespace}/{name}/{protocol}/{port_name}__{ip.replace(':', '.')}/{port}")


def truncate_comment(text: str) -> str:
    """An element comment as kube-proxy writes it: its first 128 bytes (Go slices bytes)."""
    data = text.encode()
    if len(data) <= COMMENT_MAX:
        return text
    return data[:COMMENT_MAX].decode(errors="ignore")
