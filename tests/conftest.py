"""Shared test fixtures: where the real-world dumps live, and when namespace tests can run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DUMPS = REPO.parent / "shared" / "dumps"
"""Real iptables-save dumps, kept beside the project (never copied into it)."""
FIXTURES = REPO / "fixtures"


def all_dumps() -> list[Path]:
    return sorted(DUMPS.glob("*.rules"))


@pytest.fixture
def dumps_dir() -> Path:
    if not DUMPS.is_dir():
        pytest.skip(f"real-world dumps not present beside the project ({DUMPS.name}/)")
    return DUMPS


def netns_unavailable_reason() -> str | None:
    """Why namespace tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    name = f"np-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True)
    if made.returncode != 0:
        return "cannot create network namespaces: " + made.stderr.decode().strip()
    subprocess.run(["ip", "netns", "delete", name], capture_output=True)
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(item.get_closest_marker("netns") for item in items):
        return
    reason = netns_unavailable_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.get_closest_marker("netns"):
            item.add_marker(skip)
