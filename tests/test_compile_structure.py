"""Structural checks on every compiled golden case: jumps resolve, no orphan kube-proxy
chains, the payload is a subset of the save view, and text round-trips through the parser."""

from __future__ import annotations

import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from netproxy.commands import cluster_options
from netproxy.compiler import Compiled
from netproxy.netfilter.extensions import TARGETS
from netproxy.netfilter.model import Rule, Ruleset
from netproxy.parser import parse_rules, read_rules
from netproxy.render import render_restore, render_save

GOLDEN = Path(__file__).resolve().parent / "golden" / "compile"
CASES = sorted(p.parent.name for p in GOLDEN.glob("*/flags"))
EXEMPT = {"KUBE-PROXY-CANARY", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT"}
SERVICE_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")


def compiled(case: str, monkeypatch: pytest.MonkeyPatch) -> Compiled:
    folder = GOLDEN / case
    monkeypatch.chdir(folder)
    captured: dict = {}

    @cluster_options.cluster_options
    @click.option("--existing-rules")
    def grab(**params: object) -> None:
        captured.update(params)

    command = click.command()(grab)
    result = CliRunner().invoke(command, shlex.split((folder / "flags").read_text()))
    assert result.exit_code == 0, result.output
    existing: tuple[str, ...] = ()
    if captured.pop("existing_rules"):
        existing = tuple(read_rules(folder / "node-before.rules").tables["nat"].chains)
    return cluster_options.compile_params(captured, existing)


def jumps(ruleset: Ruleset) -> list[tuple[str, str, str]]:
    return [(t.name, c.name, r.target.name) for t in ruleset.tables.values()
            for c, _, r in t.rules() if r.target is not None]


@pytest.mark.parametrize("case", CASES)
def test_jumps_resolve_and_no_orphans(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    result = compiled(case, monkeypatch)
    for view in (result.payload, result.save):
        for table, chain, target in jumps(view):
            if target in TARGETS:
                continue
            assert target in view.tables[table].chains, f"{table}/{chain} jumps to missing {target}"
            assert target != chain
    save = result.save
    referenced = {(t, target) for t, _, target in jumps(save)}
    for table in save.tables.values():
        has_service_chains = any(n.startswith(SERVICE_PREFIXES) for n in table.chains)
        for name, chain in table.chains.items():
            if chain.builtin or name in EXEMPT:
                continue
            if name == "KUBE-MARK-MASQ" and not has_service_chains:
                continue  # nothing needs masquerading when no service has endpoints
            assert (table.name, name) in referenced, f"orphan chain {table.name}/{name}"


@pytest.mark.parametrize("case", CASES)
def test_payload_is_part_of_save_view(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    result = compiled(case, monkeypatch)
    assert list(result.payload.tables) == ["filter", "nat"]
    assert list(result.save.tables) == ["mangle", "filter", "nat"]
    for name, table in result.payload.tables.items():
        for chain in table.chains.values():
            assert result.save.tables[name].chains[chain.name].rules == chain.rules
        assert table.writes is not None
        assert len(table.writes) == sum(len(c.rules) for c in table.chains.values()) + len(table.deleted)
        for gone in table.deleted:
            assert gone not in result.save.tables[name].chains


def _shape(rule: Rule) -> tuple:
    """Matches and target with argument sequences as tuples (the parser may hand out lists)."""
    opts = tuple((o.module, o.name, tuple(o.args), o.negated) for o in rule.matches)
    target = rule.target
    topts = () if target is None else tuple((o.name, tuple(o.args)) for o in target.options)
    return opts, rule.jump, topts


@pytest.mark.parametrize("case", CASES)
def test_text_round_trips_through_parser(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    result = compiled(case, monkeypatch)
    family = result.payload.family
    for view, text in ((result.payload, render_restore(result.payload)),
                       (result.save, render_save(result.save))):
        parsed = parse_rules(text, family=family, strict=True)
        assert list(parsed.tables) == list(view.tables)
        for name, table in view.tables.items():
            assert sorted(parsed.tables[name].chains) == sorted(table.chains)
            for chain in table.chains.values():
                assert len(parsed.tables[name].chains[chain.name].rules) == len(chain.rules)
        if view is result.payload:
            for name, table in view.tables.items():
                for chain in table.chains.values():
                    got = parsed.tables[name].chains[chain.name].rules
                    assert [_shape(r) for r in got] == [_shape(r) for r in chain.rules]


@pytest.mark.parametrize("case", CASES)
def test_model_renders_the_text_payload(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``compile --format restore`` writes text without the model (the golden test checks
    that); the model the other commands use must render to the very same payload."""
    result = compiled(case, monkeypatch)
    assert render_restore(result.payload) == (GOLDEN / case / "expected.restore").read_text()
