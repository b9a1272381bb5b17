"""bench_apply's floor measurements leave the namespace exactly as it was (rules and counters).

The kernel floor reads a legacy table with IPT_SO_GET_ENTRIES and replaces it with the same
entries from Python (no libiptc); the restore floor commits a one-chain change with
iptables-legacy-restore. Both only measure: what iptables-legacy-save -c prints before and
after must be identical, counters included.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from netproxy.backend import netns, xtables

pytestmark = pytest.mark.netns

RULES = """\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
:KUBE-SEP-AAAAAAAAAAAAAAAA - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-WEBWEBWEBWEBWEBW - [0:0]
[7:420] -A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
[3:180] -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
[2:120] -A DOCKER -i docker0 -j RETURN
[5:300] -A KUBE-SEP-AAAAAAAAAAAAAAAA -p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination 10.244.1.5:8080
[6:360] -A KUBE-SERVICES -d 10.96.10.10/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-WEBWEBWEBWEBWEBW
[4:240] -A KUBE-SVC-WEBWEBWEBWEBWEBW -m comment --comment "default/web:http -> 10.244.1.5:8080" -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-AAAAAAAAAAAAAAAA --mask 255.255.255.255 --rsource -j KUBE-SEP-AAAAAAAAAAAAAAAA
[1:60] -A KUBE-SVC-WEBWEBWEBWEBWEBW -m comment --comment "default/web:http -> 10.244.1.5:8080" -j KUBE-SEP-AAAAAAAAAAAAAAAA
COMMIT
"""


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ModuleType]:
    monkeypatch.setenv("XTABLES_LOCKFILE", str(tmp_path / "xtables.lock"))
    path = Path(__file__).resolve().parents[1] / "scripts" / "bench_apply.py"
    spec = importlib.util.spec_from_file_location("bench_apply", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_apply"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("bench_apply", None)


@pytest.fixture
def loaded() -> Iterator[str]:
    tools = xtables.resolve("legacy")
    with netns.Namespaces("floor") as spaces:
        name = spaces.make()
        netns.run(name, [tools.restore_bin, "--counters"], input_text=RULES)
        yield name


def _saved(name: str) -> str:
    text = netns.run(name, ["iptables-legacy-save", "-c", "-t", "nat"]).stdout
    return "\n".join(line for line in text.splitlines() if not line.startswith("#"))


def test_kernel_floor_replaces_the_table_by_itself(bench: ModuleType, loaded: str) -> None:
    before = _saved(loaded)
    assert "[5:300] -A KUBE-SEP-AAAAAAAAAAAAAAAA" in before
    steps = bench.kernel_floor(loaded)
    assert set(steps) == {"get_entries", "set_replace", "add_counters", "total"}
    assert all(v >= 0 for v in steps.values())
    assert _saved(loaded) == before


def test_restore_floor_changes_nothing_and_reports_cpu(bench: ModuleType, loaded: str) -> None:
    before = _saved(loaded)
    floor = bench.restore_floor(loaded, xtables.resolve("legacy"))
    assert set(floor) == {"wall", "user", "system"}
    assert floor["wall"] >= floor["user"] >= 0
    assert _saved(loaded) == before
