"""The differ's lazy locator names a chain hash's Service port by kubeview's reading (the one
the doctor's model uses): on every example dump, the compiled golden clusters and the real
dumps, each per-port chain it analyses belongs to the Service port the whole-ruleset model
gives that hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from netproxy.chainnames import port_proto_hash
from netproxy.diff.identity import analyse
from netproxy.diff.load import load_ruleset
from netproxy.kubeview import build_view
from netproxy.kubeview.iptables import hash_ports
from netproxy.kubeview.names import SERVICE_ROLES, ServiceKey, chain_hash, chain_role
from netproxy.netfilter.model import Ruleset
from netproxy.parser import parse_rules

from conftest import DUMPS

HERE = Path(__file__).resolve().parent
EXAMPLES = sorted(p for p in (HERE / "data" / "diff").glob("*.rules") if p.stem != "broken")
"""The example dumps (the broken one is an error case of its own tests)."""
REAL = sorted(DUMPS.glob("*.rules")) if DUMPS.is_dir() else []


def _model_names(ruleset: Ruleset) -> dict[str, ServiceKey]:
    view = build_view(ruleset)
    return {port.hash: ServiceKey(port.name, port.protocol if port.protocol != "?" else "")
            for port in [*view.services.values(), *view.leftovers]
            if port.hash is not None and not port.name.startswith("<unknown")}


def _check(ruleset: Ruleset) -> int:
    nat = ruleset.tables.get("nat")
    if nat is None:
        return 0
    model = _model_names(ruleset)
    view = analyse(ruleset)
    names = [n for n in nat.chains if chain_role(n) in SERVICE_ROLES]
    view.analyse_chains("nat", names)
    checked = 0
    for name in names:
        info = view.info("nat", name)
        want = model.get(chain_hash(name))
        got = info.service if info is not None else None
        if want is None:
            assert got is None, name
            continue
        assert got == want, name
        checked += 1
    return checked


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_dumps(path: Path) -> None:
    _check(load_ruleset(str(path)))


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.stem[:2])
def test_real_dumps(path: Path) -> None:
    _check(load_ruleset(str(path)))


def test_some_ports_are_checked() -> None:
    checked = sum(_check(load_ruleset(str(p))) for p in EXAMPLES)
    assert checked > 10


def test_a_hash_without_comments_is_named_like_the_model_does() -> None:
    # large-cluster mode leaves comments off the endpoint rules; here no rule of the port
    # has one, so only the hash of a port most clusters have names it (both readers alike)
    h = port_proto_hash("default/kubernetes:https", "tcp")
    text = ("*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n"
            f":KUBE-SVC-{h} - [0:0]\n:KUBE-SEP-AAAAAAAAAAAAAAAA - [0:0]\n"
            "-A PREROUTING -j KUBE-SERVICES\n"
            f"-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j KUBE-SVC-{h}\n"
            f"-A KUBE-SVC-{h} -j KUBE-SEP-AAAAAAAAAAAAAAAA\n"
            "-A KUBE-SEP-AAAAAAAAAAAAAAAA -p tcp -m tcp -j DNAT --to-destination 192.168.0.10:6443\n"
            "COMMIT\n")
    ruleset = parse_rules(text)
    assert hash_ports(ruleset.tables["nat"])[h] == ("default/kubernetes:https", "tcp")
    info = analyse(ruleset).info("nat", f"KUBE-SVC-{h}")
    assert info is not None and info.service == ServiceKey("default/kubernetes:https", "tcp")
    assert _check(ruleset) == 1
