"""The nftables-mode list view is what the kernel really shows: every golden transaction is
loaded with ``nft -f`` into a fresh network namespace, and ``nft list table`` there (the ip
table, then the ip6 table for dual-stack cases) must be byte-identical to expected.list. A case
with before.transaction is loaded onto the table that transaction makes (--existing-rules).

The list view follows nft 1.0.6's spelling (see docs/compile.md); with another nft the
comparison is skipped, saying which version was found."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from netproxy.backend.netns import Namespaces

GOLDEN = Path(__file__).resolve().parent / "golden" / "compile-nftables"
CASES = sorted(p.parent.name for p in GOLDEN.glob("*/flags"))
NFT_VERSION = "1.0.6"

pytestmark = pytest.mark.netns


def nft_version() -> str:
    if shutil.which("nft") is None:
        return ""
    out = subprocess.run(["nft", "--version"], capture_output=True, text=True).stdout
    found = re.search(r"v(\d+\.\d+\.\d+)", out)
    return found.group(1) if found else out.strip()


@pytest.fixture
def netns() -> Iterator[str]:
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed (scripts/setup.sh installs nftables)")
    with Namespaces("nftc") as made:
        yield made.make()


def nft(ns: str, *args: str, text: str | None = None) -> str:
    proc = subprocess.run(["ip", "netns", "exec", ns, "nft", *args], input=text,
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"nft {' '.join(args)}: {proc.stderr}"
    return proc.stdout


@pytest.mark.parametrize("case", CASES)
def test_transaction_loads_and_lists_as_golden(case: str, netns: str) -> None:
    folder = GOLDEN / case
    transaction = (folder / "expected.transaction").read_text()
    families = [f for f in ("ip", "ip6") if f"add table {f} kube-proxy" in transaction]
    version = nft_version()

    def listed() -> str:
        return "".join(nft(netns, "list", "table", family, "kube-proxy") for family in families)

    before = folder / "before.transaction"
    if before.exists():  # a node that already holds kube-proxy's table (--existing-rules)
        nft(netns, "-f", "-", text=before.read_text())
        if version == NFT_VERSION:
            assert listed() == (folder / "before.list").read_text()
    nft(netns, "-f", "-", text=transaction)
    if version != NFT_VERSION:
        pytest.skip(f"the list view is nft {NFT_VERSION}'s spelling; this host has nft {version}")
    assert listed() == (folder / "expected.list").read_text()
    # the namespace holds nothing else: nft list ruleset prints the same (both tables)
    assert nft(netns, "list", "ruleset") == (folder / "expected.list").read_text()
