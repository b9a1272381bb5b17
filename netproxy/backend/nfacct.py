"""Create the nfacct counters kube-proxy's rules refer to (``-m nfacct --nfacct-name X``).

kube-proxy creates them over netlink before it restores rules that use them (they are not
part of the restore payload), and the kernel rejects a rule naming a missing counter. This
does the same inside the target namespace: ``NFNL_MSG_ACCT_NEW`` per name, "exists" ignored.
"""

from __future__ import annotations

import errno
import re
import socket
import struct

from netproxy.backend.nsthread import run_in_netns
from netproxy.errors import BackendError

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ACCT = 7
NFNL_MSG_ACCT_NEW = 0
NFACCT_NAME = 1
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE = 0x1, 0x4, 0x400
NLMSG_ERROR = 2

_NAME = re.compile(r"--nfacct-name\s+(\S+)")


def names_in(lines: list[str]) -> list[str]:
    """Counter names used by ``lines``, in order of first use."""
    found: dict[str, None] = {}
    for line in lines:
        if "--nfacct-name" in line:
            for name in _NAME.findall(line):
                found.setdefault(name.strip('"'), None)
    return list(found)


def _create(names: list[str]) -> None:
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
        for seq, name in enumerate(names, 1):
            raw = name.encode() + b"\0"
            attr = struct.pack("=HH", 4 + len(raw), NFACCT_NAME) + raw
            attr += b"\0" * (-len(attr) % 4)
            body = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0) + attr
            msg_type = (NFNL_SUBSYS_ACCT << 8) | NFNL_MSG_ACCT_NEW
            flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE
            sock.send(struct.pack("=IHHII", 16 + len(body), msg_type, flags, seq, 0) + body)
            reply = sock.recv(65536)
            _, rtype = struct.unpack_from("=IH", reply, 0)
            if rtype == NLMSG_ERROR:
                code = -struct.unpack_from("=i", reply, 16)[0]
                if code not in (0, errno.EBUSY, errno.EEXIST):
                    raise BackendError(f"cannot create nfacct counter {name!r}: {errno.errorcode.get(code, code)}"
                                       " (is the nfnetlink_acct module available?)")


def ensure(netns_name: str, names: list[str]) -> None:
    """Create the nfacct counters ``names`` in the namespace (existing ones are kept)."""
    if names:
        run_in_netns(netns_name, lambda: _create(names))
