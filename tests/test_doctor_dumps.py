"""The doctor over every real dump; the expected findings were checked by hand against the rules.

Why each dump fails (every failure is a real problem of the node):

* 00: ``default/my-nginx`` is hand-made: its KUBE-SVC name is not the hash of its name, it
  jumps to an endpoint chain of ``default/hostnames``, and it has a node port but no cluster-IP
  rule.
* 03, 08, 10: Services without endpoints (kube-proxy's own REJECT for them is info, not a
  second failure).
* 09 (kube-proxy ~1.1 with flannel): flannel's ``POSTROUTING -s 10.2.0.0/16 -j FLANNEL`` and
  ``FLANNEL -d 10.2.0.0/16 -j ACCEPT`` accept pod-to-pod traffic before kube-proxy's
  masquerade rule, so a pod reaching itself through its Service is not masqueraded (the
  apiserver endpoint is outside the pod range and is fine).
* 10: CentOS's stock ``FORWARD -j REJECT --reject-with icmp-host-prohibited`` comes before
  flannel's ACCEPT, so every pod's connection to ``default/kubernetes`` is rejected (and it
  would be rejected by INPUT's REJECT too if the apiserver were this node).
* 11 (IPVS mode): filter REJECTs of iptables mode are still hooked into INPUT, FORWARD and
  OUTPUT and refuse three Services whatever IPVS has; the unused iptables-mode chains (with
  malformed DNAT lines) are left over from the mode switch: info, not failures.

Warnings (exit code 0):

* 03, 08: a pod's connection to the apiserver is dropped by the FORWARD policy if the apiserver
  is another machine, and passes if it is this node (a control-plane node): the dump cannot say.
* 13: the apiserver's endpoint chain is empty, in a dump whose addresses were redacted by hand.

12 (IPVS mode) has only info: seven unused iptables-mode Service chains, six of them named by
the hash of a common Service port.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_doctor_checks import failures

from netproxy.doctor import Report, diagnose
from netproxy.doctor.report import FAILED, INFO, WARNING, to_failed_only, to_json, to_text
from netproxy.parser import read_rules

NO_ENDPOINTS = {"endpoints"}
APISERVER_MAYBE_LOCAL = {"default/kubernetes:https": {"walk-split"}}

EXPECTED: dict[str, dict[str, set[str]]] = {
    "00-seed-hostnames": {"default/my-nginx": {"entry", "chain-names"}},
    "01-minik8s-flannel-docker": {},
    "02-kubeadm111-weave-docker": {},
    "03-kubeadm111-nocni-docker": {
        "kube-system/kube-dns:dns": NO_ENDPOINTS, "kube-system/kube-dns:dns-tcp": NO_ENDPOINTS},
    "04-k3s-pi-kuberouter-nft": {},
    "05-k3s-pi-kuberouter-nft-v6": {},
    "06-eks-awsvpccni-affinity": {},
    "07-kubeadm122-flannel-docker-libvirt": {},
    "08-k3s-docker-save-c-counters": {
        "kube-system/kube-dns:dns": NO_ENDPOINTS, "kube-system/kube-dns:dns-tcp": NO_ENDPOINTS,
        "kube-system/kube-dns:metrics": NO_ENDPOINTS, "kube-system/metrics-server:https": NO_ENDPOINTS},
    "09-coreos-2016-flannel-kubeproxy11": {
        "default/redis-master": {"walk-hairpin"}, "kube-system/kube-dns:dns": {"walk-hairpin"},
        "kube-system/kube-dns:dns-tcp": {"walk-hairpin"}},
    "10-centos7-flannel-docker-libvirt-reject": {
        "default/kubernetes:https": {"walk-split"},
        **{name: NO_ENDPOINTS for name in (
            "ingress-nginx/ingress-nginx-controller-admission:https-webhook",
            "ingress-nginx/ingress-nginx-controller:http", "ingress-nginx/ingress-nginx-controller:https",
            "jenkins/jenkins-agent:agent-listener", "jenkins/jenkins:http", "kube-system/kube-dns:dns",
            "kube-system/kube-dns:dns-tcp", "kube-system/kube-dns:metrics")}},
    "11-cilium-ipvs-docker-broken-dnat": {
        "cattle-prometheus/access-grafana:http": {"reject"},
        "cattle-prometheus/access-prometheus:nginx-http": {"reject"},
        "default/nginx-demo": {"reject"}},
    "12-calico-vxlan-ipvs-nat": {},
    "13-kubeproxy16-externalip-docker-redacted": {},
}

WARNINGS: dict[str, dict[str, set[str]]] = {
    "03-kubeadm111-nocni-docker": APISERVER_MAYBE_LOCAL,
    "08-k3s-docker-save-c-counters": APISERVER_MAYBE_LOCAL,
    "13-kubeproxy16-externalip-docker-redacted": {"default/kubernetes:https": {"endpoint-dnat"}},
}


def warnings(report: Report) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for svc in report.services:
        found = {f.check for f in svc.findings if f.status == WARNING}
        if found:
            out[svc.name] = found
    return out


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_findings_on_real_dump(dumps_dir: Path, name: str) -> None:
    report = diagnose(read_rules(dumps_dir / f"{name}.rules"))
    assert failures(report) == EXPECTED[name]
    assert warnings(report) == WARNINGS.get(name, {})
    assert report.exit_code == (1 if EXPECTED[name] else 0)
    problem_lines = to_failed_only(report).splitlines()
    assert len(problem_lines) == len(set(EXPECTED[name]) | set(WARNINGS.get(name, {})))
    assert to_text(report).startswith("netproxy doctor: ")
    assert "[n/a ]" not in to_text(report, brief=True)
    assert to_json(report).startswith("{")


def test_every_dump_has_an_expectation(dumps_dir: Path) -> None:
    assert {p.stem for p in dumps_dir.glob("*.rules")} == set(EXPECTED)


def test_flannel_accept_is_quoted_as_the_reason(dumps_dir: Path) -> None:
    report = diagnose(read_rules(dumps_dir / "09-coreos-2016-flannel-kubeproxy11.rules"),
                      service="default/redis-master")
    walk = next(f for f in report.services[0].findings if f.check == "walk-hairpin")
    assert walk.summary == "10.2.3.2 -> 11.1.2.87:6379 -> 10.2.3.2:6379 leaves without masquerade"
    assert [(r.chain, r.rule.line) for r in walk.rules][-2:] == [("POSTROUTING", 23), ("FLANNEL", 26)]
    # The kubernetes Service's endpoint is outside the pod range: masqueraded.
    ok = diagnose(read_rules(dumps_dir / "09-coreos-2016-flannel-kubeproxy11.rules"),
                  service="default/kubernetes")
    assert next(f for f in ok.services[0].findings if f.check == "walk-hairpin").status == "passed"


def test_leftover_chains_of_ipvs_mode(dumps_dir: Path) -> None:
    report = diagnose(read_rules(dumps_dir / "11-cilium-ipvs-docker-broken-dnat.rules"))
    mode = next(f for f in report.node if f.check == "proxy-mode")
    assert mode.status == INFO
    assert mode.summary == ("IPVS mode: Services are balanced by IPVS, these rules only mark and "
                            "filter; unused iptables-mode chains of 7 Service port(s) are left from "
                            "a mode switch")
    assert "kube-system/kube-dns:dns (KUBE-SVC-TCOU7JCQXEZGVUNU, KUBE-SEP-MU7PO7VX34QPS5HP)" in mode.details[0]
    assert "kube-system/kube-dns:dns" not in {s.name for s in report.services}
    reject = next(f for f in report.services[2].findings if f.check == "reject")
    assert report.services[2].name == "default/nginx-demo"
    assert (reject.status, reject.summary) == (
        FAILED, "REJECT for 192.168.26.207:80, 100.20.30.43:80 left from iptables mode")
    endpoints = next(f for f in report.services[2].findings if f.check == "endpoints")
    assert endpoints.summary.startswith("IPVS mode: endpoints are in IPVS")


def test_ipvs_node_without_leftover_failures(dumps_dir: Path) -> None:
    report = diagnose(read_rules(dumps_dir / "12-calico-vxlan-ipvs-nat.rules"))
    assert report.exit_code == 0 and report.services == []
    mode = next(f for f in report.node if f.check == "proxy-mode")
    assert "default/kubernetes:https (KUBE-SVC-NPX46M4PTMTKRN6Y)" in mode.details[0]
    assert "a Service port not named in the dump (KUBE-SVC-WWRFY3PZ7W3FGMQW)" in mode.details[0]
    assert mode.details[1].startswith("13 endpoint chain(s) left from iptables mode: KUBE-SEP-2QTYKTXAEZZXTHRU")


def test_pod_connection_rejected_before_flannel_accept(dumps_dir: Path) -> None:
    """Issue: doctor passed default/kubernetes while every pod's connection to it is rejected."""
    report = diagnose(read_rules(dumps_dir / "10-centos7-flannel-docker-libvirt-reject.rules"),
                      service="default/kubernetes")
    walk = next(f for f in report.services[0].findings if f.check == "walk-split")
    assert walk.status == FAILED
    assert walk.summary == "from a pod (10.1.0.5): 100.00% ends REJECT after DNAT to 192.168.1.5:6443"
    assert (walk.rules[-1].chain, walk.rules[-1].rule.line) == ("FORWARD", 107)
    # --cluster-cidr gives the pod network when the rules do not.
    flagged = diagnose(read_rules(dumps_dir / "10-centos7-flannel-docker-libvirt-reject.rules"),
                       service="default/kubernetes", pod_cidrs=["10.1.128.0/17"])
    assert next(f for f in flagged.services[0].findings if f.check == "walk-split").summary.startswith(
        "from a pod (10.1.128.5): ")


def test_apiserver_on_this_node_decides_the_warning(dumps_dir: Path) -> None:
    rules = read_rules(dumps_dir / "08-k3s-docker-save-c-counters.rules")
    unsure = diagnose(rules, service="default/kubernetes")
    walk = next(f for f in unsure.services[0].findings if f.check == "walk-split")
    assert walk.status == WARNING and "if it is this node's own address" in walk.summary
    local = diagnose(rules, service="default/kubernetes", local_ips=["10.0.20.5"])
    assert next(f for f in local.services[0].findings if f.check == "walk-split").status == "passed"


def test_counters_are_quoted(dumps_dir: Path) -> None:
    report = diagnose(read_rules(dumps_dir / "08-k3s-docker-save-c-counters.rules"),
                      service="kube-system/kube-dns:dns")
    reject = next(f for f in report.services[0].findings if f.check == "reject")
    assert reject.status == INFO
    assert reject.details == ["filter:96: this REJECT matched 0 packet(s) (0 bytes) since its "
                              "counters were last zeroed"]
    assert '"packets": 0' in to_json(report)


def test_empty_endpoint_chain(dumps_dir: Path) -> None:
    report = diagnose(read_rules(dumps_dir / "13-kubeproxy16-externalip-docker-redacted.rules"))
    by_name = {s.name: {f.check: f for f in s.findings} for s in report.services}
    dnat = by_name["default/kubernetes:https"]["endpoint-dnat"]
    assert dnat.status == WARNING
    assert dnat.summary.startswith("cannot check KUBE-SEP-UPD7ND2TPNSDBE6L: it is empty")
    entry = by_name["default/ares-k29-bindapp:dns-udp-53"]["entry"]
    assert entry.status == INFO
    assert entry.summary == ("cannot check external IP x.x.x.x:53: redacted in the dump; the rest "
                             "pass: cluster IP 10.24.138.29:53, external IP 10.5.6.29:53")


def test_affinity_and_seven_way_split(dumps_dir: Path) -> None:
    report = diagnose(read_rules(dumps_dir / "06-eks-awsvpccni-affinity.rules"))
    by_name = {s.name: {f.check: f for f in s.findings} for s in report.services}
    assert by_name["default/hello"]["probabilities"].summary == (
        "KUBE-SVC-TWVLBX4WCEZSIVWL: 7 ways, 14.29% each")
    assert by_name["default/hello"]["walk-split"].status == "passed"
    assert by_name["default/kubernetes:https"]["probabilities"].status == "passed"
