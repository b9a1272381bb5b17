"""netproxy diff on the real-world dumps beside the project and on old kube-proxy layouts."""

from __future__ import annotations

from pathlib import Path

import pytest

from netproxy.diff import diff_rulesets
from netproxy.diff.behaviour import compare_behaviour
from netproxy.diff.load import load_ruleset
from netproxy.netfilter.model import Ruleset
from netproxy.parser import parse_rules
from netproxy.render import render_save

from conftest import DUMPS

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "diff"
ALL = sorted(DUMPS.glob("*.rules"))

needs_dumps = pytest.mark.skipif(not ALL, reason="real-world dumps not present beside the project")


def _reordered(ruleset: Ruleset) -> Ruleset:
    """The same ruleset with chains declared in reverse and the KUBE-SERVICES rules sorted by
    destination (rules for one destination keep their order; the tail rule stays last)."""
    for table in ruleset.tables.values():
        table.chains = dict(reversed(list(table.chains.items())))
        services = table.chains.get("KUBE-SERVICES")
        if services is not None:
            def key(rule):
                dst = rule.builtin("destination")
                return (dst is not None, dst.args[0] if dst is not None else "")
            # descending, stable: one destination's rules keep their order, the tail stays last
            services.rules = sorted(services.rules, key=key, reverse=True)
    return ruleset


@needs_dumps
@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name[:2])
def test_dump_equals_itself_rewritten(path: Path) -> None:
    original = load_ruleset(str(path))
    resaved = parse_rules(render_save(original), source="resaved", family=original.family)
    report = diff_rulesets(original, resaved)
    assert report.groups == [] and report.equivalent
    reordered = _reordered(load_ruleset(str(path)))
    report = diff_rulesets(original, reordered)
    assert report.groups == [], [g.title for g in report.groups]


@needs_dumps
def test_same_node_before_and_after_the_cni() -> None:
    # 03 is the node before Weave was installed, 02 after (and after the DNS pods started).
    before = load_ruleset(str(DUMPS / "03-kubeadm111-nocni-docker.rules"))
    after = load_ruleset(str(DUMPS / "02-kubeadm111-weave-docker.rules"))
    report = diff_rulesets(before, after)
    groups = {g.title: g for g in report.groups}
    api = [f"{f.sign} {f.text}" for f in groups["default/kubernetes:https tcp"].facts]
    assert "- endpoint 192.168.50.101:6443 (cluster, was 100.00%)" in api
    assert "+ endpoint 192.168.1.241:6443 (cluster, 100.00%)" in api
    dns = [f"{f.sign} {f.text}" for f in groups["kube-system/kube-dns:dns udp"].facts]
    assert dns[:3] == [
        "- frontend cluster IP 10.96.0.10:53 (filter) -> REJECT (no endpoints)",
        "+ frontend cluster IP 10.96.0.10:53 -> SVC",
        "+ endpoint 10.32.0.2:53 (cluster, 50.00%)",
    ]
    assert "+ masquerade in KUBE-SERVICES for cluster IP 10.96.0.10:53 [! -s 10.32.0.0/12]" in dns
    forward = [f"{f.sign} {f.text}" for f in groups["filter FORWARD"].facts]
    assert forward == ["~ policy of filter FORWARD: DROP -> ACCEPT"]
    assert groups["nat WEAVE"].kind == "other" and groups["nat WEAVE"].status == "changed"
    assert report.summary["services_changed"] == 3
    compare_behaviour(report, before, after)
    probes = {p.probe: p for p in report.behaviour or []}
    from_node = probes["udp 10.96.0.10:53 from the node"]
    assert from_node.old == ["100.00% REJECT"]
    assert from_node.new == ["50.00% ACCEPT DNAT 10.32.0.2:53 masquerade",
                             "50.00% ACCEPT DNAT 10.32.0.3:53 masquerade"]


@needs_dumps
def test_affinity_and_seven_way_split_are_read() -> None:
    eks = load_ruleset(str(DUMPS / "06-eks-awsvpccni-affinity.rules"))
    empty = parse_rules("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", source="empty")
    report = diff_rulesets(empty, eks, scope="kube")
    groups = {g.title: [f"{f.sign} {f.text}" for f in g.facts] for g in report.groups}
    assert "+ session affinity ClientIP 10800s" in groups["default/kubernetes:https tcp"]
    hello = [f for f in groups["default/hello tcp"] if f.startswith("+ endpoint")]
    assert len(hello) == 7 and all(f.endswith("(cluster, 14.29%)") for f in hello)


def test_old_layout_local_endpoint_lost_and_source_range_added() -> None:
    before = load_ruleset(str(DATA / "old-xlb.rules"))
    after = load_ruleset(str(DATA / "old-xlb-after.rules"))
    report = diff_rulesets(before, after)
    assert [f"{f.sign} {f.text}" for f in report.groups[0].facts] == [
        "- endpoint 10.244.0.11:8443 (local, was 100.00%)",
        "+ source range 192.0.2.0/24",
    ]
    compare_behaviour(report, before, after)
    probes = {p.probe: p for p in report.behaviour or []}
    outside = probes["tcp node port 192.0.2.10:30443 from outside 203.0.113.77"]
    assert outside.old == ["100.00% ACCEPT DNAT 10.244.0.11:8443"]
    assert outside.new == ["100.00% DROP"]  # KUBE-MARK-DROP, then filter KUBE-FIREWALL


def test_old_layout_facts() -> None:
    rules = load_ruleset(str(DATA / "old-xlb.rules"))
    empty = parse_rules("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", source="empty")
    report = diff_rulesets(empty, rules)
    assert [f"{f.sign} {f.text}" for f in report.groups[0].facts] == [
        "+ frontend cluster IP 10.96.70.70:443 -> SVC",
        "+ frontend loadbalancer IP 198.51.100.70:443 -> FW",
        "+ frontend node port 30443 -> XLB",
        "+ endpoint 10.244.0.11:8443 (cluster, 50.00%)",
        "+ endpoint 10.244.1.12:8443 (cluster, 50.00%)",
        "+ endpoint 10.244.0.11:8443 (local, 100.00%)",
        "+ masquerade in KUBE-SERVICES for cluster IP 10.96.70.70:443 [! -s 10.244.0.0/16]",
        "+ masquerade in XLB [--src-type LOCAL]",
        "+ externalTrafficPolicy Local",
        "+ internalTrafficPolicy Cluster",
    ]
