"""netproxy diff --behaviour (probe packets through both rulesets) and --expected (compiled
cluster objects against a node's dump)."""

from __future__ import annotations

from pathlib import Path

import pytest

from netproxy.cli import main
from netproxy.diff import diff_rulesets
from netproxy.diff.behaviour import compare_behaviour, frontends, pod_source
from netproxy.diff.load import load_ruleset

DATA = Path(__file__).resolve().parent / "data" / "diff"
NODE = ["--hostname-override", "node-1", "--cluster-cidr", "10.244.0.0/16"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(["diff", *args])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def behaviour(new: str):
    old_rules = load_ruleset(str(DATA / "base.rules"))
    new_rules = load_ruleset(str(DATA / f"{new}.rules"))
    report = diff_rulesets(old_rules, new_rules)
    compare_behaviour(report, old_rules, new_rules)
    return report


def test_probes_cover_every_frontend_and_source():
    rules = load_ruleset(str(DATA / "base.rules"))
    assert sorted((f.dst, f.proto, f.port) for f in frontends(rules)) == [
        ("", "tcp", 30080), ("10.96.10.10", "tcp", 80), ("10.96.20.20", "tcp", 8080)]
    assert pod_source([rules], "ipv4") == "10.244.0.250"
    assert behaviour("shuffled").probes == 9  # 3 frontends x pod, node, outside


def test_text_different_but_behaviour_equal(capsys):
    report = behaviour("endpoints-swapped")
    assert not report.text_equivalent
    assert report.behaviour == [] and report.equivalent
    code, out, _ = run(capsys, "--behaviour", str(DATA / "base.rules"), str(DATA / "endpoints-swapped.rules"))
    assert code == 0
    assert "behaviour: same outcomes for all 9 probes" in out
    assert out.splitlines()[-1] == "equivalent (differences above do not change behaviour)"
    code, _, _ = run(capsys, str(DATA / "base.rules"), str(DATA / "endpoints-swapped.rules"))
    assert code == 1  # without --behaviour the text model decides


def test_removed_endpoint_changes_cluster_ip_outcomes():
    report = behaviour("endpoint-removed")
    probes = {p.probe: p for p in report.behaviour or []}
    p = probes["tcp 10.96.10.10:80 from pod 10.244.0.250"]
    assert p.old == ["50.00% ACCEPT DNAT 10.244.1.5:8080", "50.00% ACCEPT DNAT 10.244.2.7:8080"]
    assert p.new == ["100.00% ACCEPT DNAT 10.244.1.5:8080"]
    # echo is untouched
    assert not [k for k in probes if "10.96.20.20" in k or "30080" in k]


def test_forgotten_chain_shows_as_undecidable_share():
    report = behaviour("partial-forgot")
    probes = {p.probe: p for p in report.behaviour or []}
    p = probes["tcp 10.96.20.20:8080 from pod 10.244.0.250"]
    assert any(line.startswith("33.33% UNKNOWN") and "KUBE-SEP-F5QH6TV4YGLZK6ZP" in line for line in p.new)
    # From outside, echo's node port only reaches its local endpoint: unchanged.
    assert "tcp node port 192.0.2.10:30080 from outside 203.0.113.77" not in probes


def test_other_programs_rules_can_change_behaviour():
    report = behaviour("docker-changed")
    assert report.behaviour == []  # DOCKER-USER drops 192.168/16, no probe comes from there


def test_expected_matches_the_spec_example(capsys):
    code, out, _ = run(capsys, "--expected", str(DATA / "cluster.yaml"), *NODE, "--no-nfacct",
                       str(DATA / "base.rules"))
    assert code == 0, out
    assert out.splitlines()[0] == f"--- expected (compiled from {DATA / 'cluster.yaml'})"


def test_expected_reports_what_the_node_lacks(capsys):
    # With nfacct available kube-proxy writes two rules the example node does not have.
    code, out, _ = run(capsys, "--expected", str(DATA / "cluster.yaml"), *NODE, str(DATA / "base.rules"))
    assert code == 1
    assert ("      - -A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name  "
            "ct_state_invalid_dropped_pkts -j DROP") in out.splitlines()
    code, out, _ = run(capsys, "--expected", str(DATA / "cluster.yaml"), *NODE, "--no-nfacct",
                       "--behaviour", str(DATA / "stale-sep.rules"))
    assert code == 0  # a stale chain changes no outcome
    assert "! stale in new: nat KUBE-SEP-C2JQYSXHMAEDJ7T5" in out


def test_expected_needs_a_dump(capsys):
    code, _, err = run(capsys, "--expected", str(DATA / "cluster.yaml"))
    assert code == 2 and "--expected needs" in err


def _compiled(path: str):
    from netproxy.commands.cluster_options import build_ruleset

    return build_ruleset({"inputs": (path,), "hostname_override": "node-1",
                          "cluster_cidr": "10.244.0.0/16", "family": "ipv4"})


def test_load_balancer_facts(tmp_path):
    cluster = (DATA / "lb-cluster.yaml").read_text()
    before = tmp_path / "before.yaml"
    after = tmp_path / "after.yaml"
    before.write_text(cluster)
    after.write_text(cluster.replace("198.51.100.0/24", "192.0.2.0/24")
                     .replace("timeoutSeconds: 10800", "timeoutSeconds: 600")
                     .replace("  externalTrafficPolicy: Local\n  healthCheckNodePort: 32100\n", ""))
    old, new = _compiled(str(before)), _compiled(str(after))
    empty = diff_rulesets(load_ruleset(str(DATA / "base.rules")), old, scope="kube")
    shop = next(g for g in empty.groups if g.title == "prod/shop:https tcp")
    got = [f"{f.sign} {f.text}" for f in shop.facts]
    assert "+ frontend loadbalancer IP 203.0.113.40:443 -> FW" in got
    assert "+ frontend loadbalancer IP 203.0.113.40:443 (filter) -> DROP (source not allowed)" in got
    assert "+ frontend health check node port 32100 (filter) -> ACCEPT" in got
    assert "+ endpoint 10.244.0.7:8443 (local, 100.00%)" in got
    assert "+ source range 198.51.100.0/24" in got
    assert "+ session affinity ClientIP 10800s" in got
    assert "+ externalTrafficPolicy Local" in got
    report = diff_rulesets(old, new)
    got = [f"{f.sign} {f.text}" for f in report.groups[0].facts]
    assert "- source range 198.51.100.0/24" in got and "+ source range 192.0.2.0/24" in got
    assert "~ session affinity ClientIP 10800s -> ClientIP 600s" in got
    assert "~ externalTrafficPolicy Local -> Cluster" in got
    assert "- endpoint 10.244.0.7:8443 (local, was 100.00%)" in got
    assert "- frontend health check node port 32100 (filter) -> ACCEPT" in got


def test_probes_of_changed_services_only(capsys):
    code, out, _ = run(capsys, "--behaviour", "--probes", "changed", "--brief",
                       str(DATA / "base.rules"), str(DATA / "endpoint-removed.rules"))
    assert code == 1
    assert "behaviour: 3 of 3 probes differ (frontends of the changed services)" in out
    # A change outside the services can change any outcome: every frontend is probed.
    code, out, _ = run(capsys, "--behaviour", "--probes", "changed",
                       str(DATA / "base.rules"), str(DATA / "docker-changed.rules"))
    assert code == 0 and "behaviour: same outcomes for all 9 probes\n" in out


def test_ipv6_endpoint_removed(tmp_path):
    from netproxy.commands.cluster_options import build_ruleset

    cluster = (DATA / "v6-cluster.yaml").read_text()
    after = tmp_path / "after.yaml"
    after.write_text(cluster.replace('  - addresses: ["fd00:244:1::7"]\n    nodeName: node-2\n'
                                     '    conditions: {ready: true}\n', ""))
    params = {"hostname_override": "node-1", "cluster_cidr": "fd00:244::/56", "family": "ipv6"}
    old = build_ruleset({**params, "inputs": (str(DATA / "v6-cluster.yaml"),)})
    new = build_ruleset({**params, "inputs": (str(after),)})
    assert old.family == new.family == "ipv6"
    report = diff_rulesets(old, new)
    got = [f"{f.sign} {f.text}" for f in report.groups[0].facts]
    assert report.groups[0].title == "default/web6:http tcp"
    assert "- endpoint [fd00:244:1::7]:8080 (cluster, was 50.00%)" in got
    compare_behaviour(report, old, new)
    probes = {p.probe: p for p in report.behaviour or []}
    pod = probes["tcp [fd00:96::10]:80 from pod fd00:244::fa"]
    assert pod.old == ["50.00% ACCEPT DNAT [fd00:244:1::7]:8080", "50.00% ACCEPT DNAT [fd00:244::5]:8080"]
    assert pod.new == ["100.00% ACCEPT DNAT [fd00:244::5]:8080"]
