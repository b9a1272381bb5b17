"""The differ reads a Service port through kubeview, the doctor's reader: the port's part of
the ruleset (located lazily by the differ) gives the same facts as the port in the model of
the whole ruleset."""

from __future__ import annotations

from pathlib import Path

import pytest

from netproxy.diff.identity import analyse
from netproxy.diff.load import load_ruleset
from netproxy.diff.portfacts import port_facts, service_facts
from netproxy.kubeview import build_view
from netproxy.kubeview.model import RulesetView
from netproxy.kubeview.names import ServiceKey

from conftest import DUMPS

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "diff"
FILES = [DATA / "base.rules", DATA / "old-xlb.rules", DATA / "partial-forgot.rules",
         DATA / "stale-sep.rules", *sorted(DUMPS.glob("0[1-9]-*.rules"))]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_part_reads_like_the_whole(path: Path) -> None:
    ruleset = load_ruleset(str(path))
    whole = build_view(ruleset)
    located = analyse(ruleset)
    for table, content in ruleset.tables.items():
        # as when every chain differs: the differ locates only chains it analysed (an
        # endpoint chain nothing jumps to belongs to a port through its own comment)
        located.analyse_chains(table, content.chains)
    compared = 0
    for (name, protocol), port in whole.services.items():
        index = located.service(ServiceKey(name, "" if protocol == "?" else protocol))
        if index is None or name.startswith("<unknown"):
            continue
        alone = RulesetView(ruleset, {port.key: port}, whole.endpoint_chains)
        assert port_facts(ruleset, index) == service_facts(alone), (name, protocol)
        compared += 1
    assert compared >= min(3, len(whole.services))


def test_part_facts_name_endpoints_and_shares() -> None:
    ruleset = load_ruleset(str(DATA / "base.rules"))
    index = analyse(ruleset).service(ServiceKey("default/web:http", "tcp"))
    assert index is not None
    facts = port_facts(ruleset, index)
    assert [(e.endpoint, round(e.share, 4)) for e in facts.endpoints["SVC"]] == [
        ("10.244.1.5:8080", 0.5), ("10.244.2.7:8080", 0.5)]
    assert any(f.startswith("cluster IP 10.96.10.10:80 -> SVC") for f in facts.frontends), facts.frontends
