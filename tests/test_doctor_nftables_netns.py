"""``netproxy doctor --netns NAME`` on a namespace holding kube-proxy's nftables table:
the table is loaded with the real ``nft -f`` into a fresh np-nftread-* namespace and the
doctor reads it back from the kernel."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netproxy.backend import netns

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = str(REPO / "fixtures" / "example-cluster")


@pytest.fixture
def ns() -> Iterator[str]:
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed (scripts/setup.sh installs nftables)")
    with netns.Namespaces("nftread") as made:
        yield made.make()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netproxy", *args], capture_output=True,
                          text=True, timeout=300, cwd=REPO)


def test_doctor_reads_the_table_from_the_kernel(ns: str, tmp_path: Path) -> None:
    compiled = cli("compile", EXAMPLE, "--proxy-mode", "nftables", "--format", "transaction")
    assert compiled.returncode == 0, compiled.stderr
    netns.run(ns, ["nft", "-f", "-"], input_text=compiled.stdout)
    proc = cli("doctor", "--netns", ns, "--node-ip", "192.168.0.11", "--failed-only")
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == "shop/legacy-db:postgres (tcp): failed: endpoints: no endpoint on this node's rules\n"
    proc = cli("doctor", "--netns", ns, "--json", "--no-walk", "--service", "shop/cart")
    data = json.loads(proc.stdout)
    assert data["source"] == f"netns {ns}"
    checks = {c["check"]: c["status"] for c in data["services"][0]["checks"]}
    assert checks["affinity"] == "passed" and checks["shares"] == "passed"
    mode = next(f for f in data["node"] if f["check"] == "proxy-mode")
    assert mode["status"] == "info"  # the namespace's iptables tables hold no kube-proxy chains
    # The kernel's own JSON listing (nft -j) gives the same answers.
    listing = tmp_path / "node.json"
    listing.write_text(netns.run(ns, ["nft", "-j", "list", "ruleset"]).stdout)
    proc = cli("doctor", str(listing), "--node-ip", "192.168.0.11", "--failed-only")
    assert (proc.returncode, proc.stdout) == (
        1, "shop/legacy-db:postgres (tcp): failed: endpoints: no endpoint on this node's rules\n")


def test_namespace_without_the_table_is_read_as_iptables(ns: str) -> None:
    proc = cli("doctor", "--netns", ns, "--failed-only")
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"netproxy: netns {ns}: no tables in the rules (expected iptables-save output)\n"
