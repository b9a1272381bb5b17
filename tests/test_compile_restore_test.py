"""Every golden case's output loads with iptables-restore --test (legacy and nft backends).

Runs inside a network namespace created for this module and always deleted, so the root
namespace's firewall is never touched.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from netproxy.backend.netns import Namespaces

GOLDEN = Path(__file__).resolve().parent / "golden" / "compile"
CASES = sorted(p.parent.name for p in GOLDEN.glob("*/flags"))

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    with Namespaces("compile") as made:
        yield made.make()


def family_of(case: str) -> str:
    return "ipv6" if "--family ipv6" in (GOLDEN / case / "flags").read_text() else "ipv4"


@pytest.mark.parametrize("backend", ["legacy", "nft"])
@pytest.mark.parametrize("fmt", ["restore", "save"])
@pytest.mark.parametrize("case", CASES)
def test_loads_with_restore_test(case: str, fmt: str, backend: str, netns: str) -> None:
    tool = ("ip6tables" if family_of(case) == "ipv6" else "iptables") + f"-{backend}-restore"
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed")
    text = (GOLDEN / case / f"expected.{fmt}").read_bytes()
    proc = subprocess.run(["ip", "netns", "exec", netns, tool, "--test"], input=text,
                          capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
