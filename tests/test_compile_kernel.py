"""The save view is what the kernel really shows: replay kubelet's and kube-proxy's start-up
on a clean node (a network namespace made for each case, iptables-nft), load the compiled
restore payload with ``--noflush`` as kube-proxy does, and compare ``iptables-save`` with
the golden save view byte for byte (header comments aside)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netproxy.backend.netns import Namespaces

GOLDEN = Path(__file__).resolve().parent / "golden" / "compile"
CASES = sorted(p.parent.name for p in GOLDEN.glob("*/flags"))

pytestmark = pytest.mark.netns

NFACCT_ADD = r"""
import socket, struct, sys
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
s.bind((0, 0))
for seq, name in enumerate(sys.argv[1:], 1):
    data = name.encode() + b"\0"
    attr = struct.pack("HH", 4 + len(data), 1) + data + b"\0" * (-(4 + len(data)) % 4)
    body = struct.pack("BBH", 0, 0, 0) + attr
    # NFNL_SUBSYS_ACCT << 8 | NFNL_MSG_ACCT_NEW; NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE
    s.send(struct.pack("IHHII", 16 + len(body), 7 << 8, 1 | 4 | 0x400, seq, 0) + body)
    err = struct.unpack("i", s.recv(4096)[16:20])[0]
    if err not in (0, -17):
        sys.exit(f"nfacct {name}: {err}")
"""

# kube-proxy's jump rules, in the order it ensures them (EnsureRule with Prepend).
JUMPS = [
    ("filter", "INPUT", "KUBE-EXTERNAL-SERVICES", ["-m", "conntrack", "--ctstate", "NEW"], "kubernetes externally-visible service portals"),
    ("filter", "FORWARD", "KUBE-EXTERNAL-SERVICES", ["-m", "conntrack", "--ctstate", "NEW"], "kubernetes externally-visible service portals"),
    ("filter", "INPUT", "KUBE-NODEPORTS", [], "kubernetes health check service ports"),
    ("filter", "FORWARD", "KUBE-SERVICES", ["-m", "conntrack", "--ctstate", "NEW"], "kubernetes service portals"),
    ("filter", "OUTPUT", "KUBE-SERVICES", ["-m", "conntrack", "--ctstate", "NEW"], "kubernetes service portals"),
    ("filter", "FORWARD", "KUBE-FORWARD", [], "kubernetes forwarding rules"),
    ("filter", "INPUT", "KUBE-PROXY-FIREWALL", ["-m", "conntrack", "--ctstate", "NEW"], "kubernetes load balancer firewall"),
    ("filter", "OUTPUT", "KUBE-PROXY-FIREWALL", ["-m", "conntrack", "--ctstate", "NEW"], "kubernetes load balancer firewall"),
    ("filter", "FORWARD", "KUBE-PROXY-FIREWALL", ["-m", "conntrack", "--ctstate", "NEW"], "kubernetes load balancer firewall"),
    ("nat", "OUTPUT", "KUBE-SERVICES", [], "kubernetes service portals"),
    ("nat", "PREROUTING", "KUBE-SERVICES", [], "kubernetes service portals"),
    ("nat", "POSTROUTING", "KUBE-POSTROUTING", [], "kubernetes postrouting rules"),
    ("filter", "INPUT", "KUBE-FIREWALL", [], ""),
    ("filter", "OUTPUT", "KUBE-FIREWALL", [], ""),
]


@pytest.fixture
def netns() -> Iterator[str]:
    with Namespaces("compile-k") as made:
        yield made.make()


def start_node(ns: str, ipv6: bool, before: Path | None) -> list[str]:
    """kubelet's and kube-proxy's objects outside the payload; returns the iptables command."""
    ipt = ["ip", "netns", "exec", ns, "ip6tables-nft" if ipv6 else "iptables-nft", "-w"]

    def run(*args: str, check: bool = True) -> int:
        proc = subprocess.run([*ipt, *args], capture_output=True, text=True)
        if check:
            assert proc.returncode == 0, f"{args}: {proc.stderr}"
        return proc.returncode

    counters = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", NFACCT_ADD,
                               "ct_state_invalid_dropped_pkts", "localhost_nps_accepted_pkts"],
                              capture_output=True, text=True)
    assert counters.returncode == 0, counters.stderr
    if before is not None:
        restore = subprocess.run([*ipt[:-2], ipt[-2] + "-restore"], input=before.read_text(),
                                 capture_output=True, text=True)
        assert restore.returncode == 0, restore.stderr
    else:  # kubelet >= 1.28, started first
        run("-t", "mangle", "-N", "KUBE-IPTABLES-HINT")
        for table in ("mangle", "nat", "filter"):
            run("-t", table, "-N", "KUBE-KUBELET-CANARY")
        if not ipv6:
            run("-N", "KUBE-FIREWALL")
            run("-A", "KUBE-FIREWALL", "-m", "comment", "--comment", "block incoming localnet connections",
                "--dst", "127.0.0.0/8", "!", "--src", "127.0.0.0/8", "-m", "conntrack", "!", "--ctstate",
                "RELATED,ESTABLISHED,DNAT", "-j", "DROP")
            run("-I", "OUTPUT", "-j", "KUBE-FIREWALL")
            run("-I", "INPUT", "-j", "KUBE-FIREWALL")
    for table in ("mangle", "nat", "filter"):  # kube-proxy's canary
        run("-t", table, "-N", "KUBE-PROXY-CANARY", check=False)
    for table, src, dst, extra, text in JUMPS:
        run("-t", table, "-N", dst, check=False)
        args = [*extra, *(["-m", "comment", "--comment", text] if text else []), "-j", dst]
        if run("-t", table, "-C", src, *args, check=False) != 0:
            run("-t", table, "-I", src, *args)
    return ipt


@pytest.mark.parametrize("case", CASES)
def test_kernel_shows_the_save_view(case: str, netns: str) -> None:
    folder = GOLDEN / case
    ipv6 = "--family ipv6" in (folder / "flags").read_text()
    tool = "ip6tables-nft" if ipv6 else "iptables-nft"
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed")
    before = folder / "node-before.rules"
    ipt = start_node(netns, ipv6, before if before.exists() else None)
    restore = subprocess.run([*ipt[:-2], tool + "-restore", "-w", "--noflush", "--counters"],
                             input=(folder / "expected.restore").read_text(), capture_output=True, text=True)
    assert restore.returncode == 0, restore.stderr
    saved = subprocess.run([*ipt[:-2], tool + "-save"], capture_output=True, text=True, check=True).stdout
    got = "".join(line + "\n" for line in saved.splitlines() if not line.startswith("#"))
    assert got == (folder / "expected.save").read_text()
