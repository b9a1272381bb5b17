"""The checklist on compiled rules and on hand-edited dumps of the same node."""

from __future__ import annotations

from pathlib import Path

import pytest

from netproxy.commands.cluster_options import build_ruleset
from netproxy.doctor import Report, diagnose
from netproxy.doctor.report import FAILED, INFO, NOT_APPLICABLE, PASSED
from netproxy.netfilter.model import Ruleset
from netproxy.parser import read_rules

DATA = Path(__file__).resolve().parent / "data" / "doctor"
NODE = {"hostname_override": "node-1", "cluster_cidr": "10.244.0.0/16", "family": "ipv4"}


def compiled(*names: str) -> Ruleset:
    return build_ruleset({"inputs": tuple(str(DATA / n) for n in names), **NODE})


def failures(report: Report) -> dict[str, set[str]]:
    """Failed check ids by Service port name ("" for the node checks)."""
    out: dict[str, set[str]] = {}
    node = {f.check for f in report.node if f.status == FAILED}
    if node:
        out[""] = node
    for svc in report.services:
        failed = {f.check for f in svc.findings if f.status == FAILED}
        if failed:
            out[svc.name] = failed
    return out


def find(report: Report, service: str, check: str):
    for svc in report.services:
        if svc.name == service:
            return next(f for f in svc.findings if f.check == check)
    raise AssertionError(f"no {service} in the report")


def test_compiled_healthy_node_passes_everything() -> None:
    report = diagnose(compiled("healthy.yaml"))
    assert failures(report) == {}
    assert report.exit_code == 0
    assert [s.name for s in report.services] == ["default/echo", "default/web:http"]
    echo = {f.check: f.status for f in report.services[0].findings}
    assert echo["local-endpoints"] == PASSED  # echo has a pod on node-1
    web = {f.check: f.status for f in report.services[1].findings}
    assert web["local-endpoints"] == NOT_APPLICABLE
    assert find(report, "default/web:http", "probabilities").summary == (
        "KUBE-SVC-CDGGSHYLG3RE2FKL: 3 ways, 33.33% each")


def test_compiled_trouble_services_fail_where_they_should() -> None:
    report = diagnose(compiled("healthy.yaml", "trouble.yaml"))
    # idle has no endpoints at all: that fails; kube-proxy's REJECT for it is the consequence.
    assert failures(report) == {"default/idle:http": {"endpoints"}}
    # shop (externalTrafficPolicy Local) has no pod on node-1: dropped here by design.
    shop = find(report, "default/shop:https", "local-endpoints")
    assert shop.status == INFO
    assert shop.summary == ("no local endpoint here: external traffic to this node is dropped, "
                            "by design")
    assert any("KUBE-EXTERNAL-SERVICES" in d for d in shop.details)
    assert shop.details[-1].startswith("health check node port 32000 is open")
    assert {r.chain for r in shop.rules} >= {"KUBE-EXTERNAL-SERVICES", "KUBE-EXT-YBRHFGZD3TRL7I6I"}
    reject = find(report, "default/idle:http", "reject")
    assert reject.status == INFO
    assert reject.summary == ("kube-proxy REJECTs 10.96.40.40:80 because the Service port has no "
                              "endpoints (see endpoints)")
    assert [r.chain for r in reject.rules] == ["KUBE-SERVICES"]
    assert report.exit_code == 1


def test_local_policy_without_local_endpoint_is_not_a_failure() -> None:
    report = diagnose(compiled("healthy.yaml", "trouble.yaml"), service="default/shop",
                      local_ips=["192.168.0.10"])
    assert failures(report) == {}
    assert report.exit_code == 0
    walk = find(report, "default/shop:https", "walk-nodeport")
    assert walk.status == INFO
    assert "no local endpoint here, so external traffic to this node is dropped, by design" in walk.summary


def test_missing_endpoint_chain() -> None:
    report = diagnose(read_rules(DATA / "missing-endpoint-chain.rules"))
    assert failures(report) == {"default/web:http": {"endpoint-dnat"}}
    f = find(report, "default/web:http", "endpoint-dnat")
    assert f.summary == ("KUBE-SVC-CDGGSHYLG3RE2FKL jumps to KUBE-SEP-F7BHZ7WL3PFYMSRY, "
                         "which does not exist")
    assert f.meaning and f.question


def test_uneven_probabilities() -> None:
    report = diagnose(read_rules(DATA / "uneven-probabilities.rules"))
    assert failures(report) == {"default/web:http": {"probabilities", "walk-split"}}
    f = find(report, "default/web:http", "probabilities")
    assert "rule 1 of 3 has probability 0.50000000000, expected 1/3" in f.summary
    assert "shares are 50.00%, 25.00%, 25.00%" in f.details[-1]
    assert [r.rule.line for r in f.rules] == [89, 90, 91]
    walk = find(report, "default/web:http", "walk-split")
    assert walk.summary == ("from a pod (10.244.0.5), the node (192.0.2.10) and outside the pod network "
                            "(198.51.100.7): 10.244.1.5:8080 gets 50.00%, expected 33.33%")


def test_missing_masquerade_rule() -> None:
    report = diagnose(read_rules(DATA / "missing-masquerade.rules"))
    assert failures(report) == {
        "": {"masquerade"},
        "default/echo": {"walk-hairpin"},
        "default/web:http": {"walk-hairpin"},
    }
    node = next(f for f in report.node if f.check == "masquerade")
    assert node.summary == "packets marked 0x4000 are not masqueraded"
    assert node.details == ["mark 0x4000: reaches no MASQUERADE rule"]


def test_missing_hairpin_rule() -> None:
    report = diagnose(read_rules(DATA / "missing-hairpin.rules"))
    assert failures(report) == {"default/echo": {"hairpin", "walk-hairpin"}}
    f = find(report, "default/echo", "hairpin")
    assert f.summary == ("KUBE-SEP-D67JQUDAKRP7USVT has no rule marking packets from 10.244.0.5 "
                         "for masquerade")


def test_old_layout_with_xlb_chains() -> None:
    report = diagnose(read_rules(DATA / "old-xlb.rules"))
    assert failures(report) == {}
    lb = find(report, "default/lb:http", "local-endpoints")
    assert (lb.status, lb.summary) == (
        INFO, "no local endpoint here: external traffic to this node is dropped, by design")
    assert lb.details == ["kube-proxy's DROP rules for it: nat KUBE-XLB-JSLCNGWSGB5JPS5Q"]
    api = {f.check: f.status for f in report.services[0].findings}
    assert report.services[0].name == "default/api:https"
    assert api["local-endpoints"] == PASSED
    assert api["probabilities"] == PASSED
    assert find(report, "default/api:https", "entry").summary == (
        "cluster IP 10.96.60.60:443, node port 30443")
    assert find(report, "default/lb:http", "entry").summary == (
        "cluster IP 10.96.50.50:80, load-balancer IP 203.0.113.20:80, node port 31080")


def test_old_seed_dump_is_judged_even(dumps_dir: Path) -> None:
    report = diagnose(read_rules(dumps_dir / "00-seed-hostnames.rules"))
    probs = find(report, "default/hostnames", "probabilities")
    assert probs.status == PASSED
    assert probs.summary == "KUBE-SVC-NWV5X2332I4OT4T3: 3 ways, 33.33% each"
    hairpin = find(report, "default/hostnames", "hairpin")
    assert hairpin.status == PASSED  # inline -j MARK --set-xmark in the SEP chains
    assert find(report, "default/hostnames", "walk-hairpin").status == PASSED


@pytest.mark.parametrize("selector", ["default/web", "default/web:http", "default/web:80"])
def test_service_selector(selector: str) -> None:
    report = diagnose(compiled("healthy.yaml"), service=selector)
    assert [s.name for s in report.services] == ["default/web:http"]


def test_compiled_ipv6_node() -> None:
    rules = build_ruleset({"inputs": (str(DATA / "ipv6.yaml"),), "hostname_override": "node-1",
                           "cluster_cidr": "fd00:244::/64", "family": "ipv6"})
    report = diagnose(rules)
    assert report.family == "ipv6"
    assert failures(report) == {}
    assert find(report, "default/web6:http", "entry").summary == (
        "cluster IP [fd00:96::10]:80, node port 30680")
    assert find(report, "default/web6:http", "walk-hairpin").status == PASSED
    assert find(report, "default/web6:http", "endpoints").summary == (
        "2 endpoint(s): [fd00:244::5]:8080, [fd00:244::6]:8080")


def test_firewall_drop_outside_kube_proxy_chains_shows_in_the_walk() -> None:
    report = diagnose(read_rules(DATA / "forward-drop.rules"))
    assert failures(report) == {"default/web:http": {"walk-split"}}
    walk = find(report, "default/web:http", "walk-split")
    # From the node the connection does not cross FORWARD; from a pod or a routed client it does.
    assert walk.summary == ("from a pod (10.244.0.5) and outside the pod network (198.51.100.7): "
                            "33.33% ends DROP after DNAT to 10.244.2.7:8080")
    assert walk.details == []
    assert (walk.rules[-1].table, walk.rules[-1].chain, walk.rules[-1].rule.jump) == (
        "filter", "FORWARD", "DROP")


def test_internal_traffic_policy_local() -> None:
    report = diagnose(compiled("internal-local.yaml"))
    assert failures(report) == {}
    assert find(report, "default/cache:redis", "endpoints").status == NOT_APPLICABLE
    drop = find(report, "default/cache:redis", "local-endpoints")
    assert (drop.status, drop.summary) == (
        INFO, "no local endpoint here: traffic from this node is dropped, by design")
    assert drop.details == ["kube-proxy's DROP rules for it: filter KUBE-SERVICES"]
    assert find(report, "default/cache2:redis", "local-endpoints").status == PASSED
    assert find(report, "default/cache2:redis", "walk-split").summary == (
        "10.96.70.71:6379 reaches its one endpoint from a pod, the node and outside the pod network")


def test_node_port_walks_need_the_node_address() -> None:
    rules = compiled("healthy.yaml", "trouble.yaml")
    blind = diagnose(rules)
    assert find(blind, "default/echo", "walk-nodeport").summary == (
        "node address not known (give --node-ip)")
    report = diagnose(rules, local_ips=["192.168.0.10"])
    assert failures(report) == {"default/idle:http": {"endpoints"}}
    echo = find(report, "default/echo", "walk-nodeport")
    assert echo.summary == "192.168.0.10:30080 (Local policy) reaches its one endpoint"
    shop = find(report, "default/shop:https", "walk-nodeport")
    assert (shop.status, shop.summary) == (INFO, (
        "192.168.0.10:30443 (Local policy): no local endpoint here, so external traffic to this "
        "node is dropped, by design"))
    assert (shop.rules[-1].chain, shop.rules[-1].rule.jump) == ("KUBE-EXTERNAL-SERVICES", "DROP")
