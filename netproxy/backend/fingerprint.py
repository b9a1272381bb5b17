"""Cheap kernel-side fingerprints that tell whether rules changed since we last looked.

Reading a large ruleset back is slow (``iptables-nft-save`` of a 10,000-service node takes
minutes, or crashes), so after an apply the engine records what it wrote together with a
fingerprint, and trusts the record next time only while the fingerprint is unchanged:

* nft: the nf_tables ruleset generation id (``NFT_MSG_GETGEN``), bumped by every commit of
  any nftables or iptables-nft change in the namespace -- an exact "nothing changed" test.
* legacy: per loaded table, ``IPT_SO_GET_INFO`` (number of entries, blob size, hook offsets),
  which changes with almost every edit; an in-place edit of equal size made by another tool
  is not seen (``apply --reread`` reads the rules instead).
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
from pathlib import Path

from netproxy.backend.nsthread import run_in_netns

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETGEN = 16
NFTA_GEN_ID = 1
NLM_F_REQUEST = 1
IPT_SO_GET_INFO = 64
SOL_IP = 0
SOL_IPV6 = 41
_INFO_SIZE = 84


def nft_generation() -> int:
    """The nf_tables generation id of the calling thread's namespace."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
        msg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN
        body = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0)
        sock.send(struct.pack("=IHHII", 16 + len(body), msg_type, NLM_F_REQUEST, 1, 0) + body)
        data = sock.recv(65536)
    length, mtype = struct.unpack_from("=IH", data, 0)
    offset = 16 + 4
    while offset + 4 <= length:
        nla_len, nla_type = struct.unpack_from("=HH", data, offset)
        if nla_len < 4:
            break
        if nla_type & 0x3FFF == NFTA_GEN_ID:
            return int(struct.unpack_from("!I", data, offset + 4)[0])
        offset += (nla_len + 3) & ~3
    raise OSError(f"no generation id in nf_tables reply (type {mtype:#x})")


def legacy_tables_info(family: str) -> dict[str, list[int]]:
    """Per loaded legacy table: hook offsets, entry count and size (``IPT_SO_GET_INFO``)."""
    names_file = "ip6_tables_names" if family == "ipv6" else "ip_tables_names"
    try:
        loaded = Path(f"/proc/thread-self/net/{names_file}").read_text().split()
    except OSError:
        return {}
    libc = ctypes.CDLL(None, use_errno=True)
    af, level = (socket.AF_INET6, SOL_IPV6) if family == "ipv6" else (socket.AF_INET, SOL_IP)
    out: dict[str, list[int]] = {}
    with socket.socket(af, socket.SOCK_RAW, socket.IPPROTO_RAW) as sock:
        for name in sorted(loaded):
            buf = ctypes.create_string_buffer(name.encode(), _INFO_SIZE)
            size = ctypes.c_uint32(_INFO_SIZE)
            if libc.getsockopt(sock.fileno(), level, IPT_SO_GET_INFO, buf, ctypes.byref(size)) != 0:
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
            out[name] = list(struct.unpack_from("=I5I5III", buf.raw, 32))
    return out


def fingerprint(netns_name: str, variant: str, family: str) -> str:
    """A string that changes whenever the namespace's rules of this variant change."""
    if variant == "nft":
        return f"nft-gen:{run_in_netns(netns_name, nft_generation)}"
    info = run_in_netns(netns_name, lambda: legacy_tables_info(family))
    return "legacy:" + ";".join(f"{t}={','.join(map(str, v))}" for t, v in sorted(info.items()))
