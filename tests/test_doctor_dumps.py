"""The doctor over every real dump; the expected findings were checked by hand against the rules.

Why each dump fails:

* 00: ``default/my-nginx`` is hand-made: its KUBE-SVC name is not the hash of its name, it
  jumps to an endpoint chain of ``default/hostnames``, and it has a node port but no cluster-IP
  rule.
* 03, 08, 10, 11: Services without endpoints, answered by filter REJECT rules.
* 09 (kube-proxy ~1.1 with flannel): flannel's ``POSTROUTING -s 10.2.0.0/16 -j FLANNEL`` and
  ``FLANNEL -d 10.2.0.0/16 -j ACCEPT`` accept pod-to-pod traffic before kube-proxy's
  masquerade rule, so a pod reaching itself through its Service is not masqueraded (the
  apiserver endpoint is outside the pod range and is fine).
* 11 (IPVS mode): the iptables-mode KUBE-SVC chains are left over (nothing jumps to them) and
  their DNAT rules are malformed in the dump.
* 12 (IPVS mode): empty left-over KUBE-SVC chains.
* 13: ``x.x.x.x`` redactions are not addresses; the apiserver endpoint chain is empty.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_doctor_checks import failures

from netproxy.doctor import diagnose
from netproxy.doctor.report import to_json, to_text
from netproxy.parser import read_rules

REJECTED = {"endpoints", "reject"}
LEFTOVER = {"entry", "endpoint-dnat"}

EXPECTED: dict[str, dict[str, set[str]]] = {
    "00-seed-hostnames": {"default/my-nginx": {"entry", "chain-names"}},
    "01-minik8s-flannel-docker": {},
    "02-kubeadm111-weave-docker": {},
    "03-kubeadm111-nocni-docker": {
        "kube-system/kube-dns:dns": REJECTED, "kube-system/kube-dns:dns-tcp": REJECTED},
    "04-k3s-pi-kuberouter-nft": {},
    "05-k3s-pi-kuberouter-nft-v6": {},
    "06-eks-awsvpccni-affinity": {},
    "07-kubeadm122-flannel-docker-libvirt": {},
    "08-k3s-docker-save-c-counters": {
        "kube-system/kube-dns:dns": REJECTED, "kube-system/kube-dns:dns-tcp": REJECTED,
        "kube-system/kube-dns:metrics": REJECTED, "kube-system/metrics-server:https": REJECTED},
    "09-coreos-2016-flannel-kubeproxy11": {
        "default/redis-master": {"walk-hairpin"}, "kube-system/kube-dns:dns": {"walk-hairpin"},
        "kube-system/kube-dns:dns-tcp": {"walk-hairpin"}},
    "10-centos7-flannel-docker-libvirt-reject": {
        name: REJECTED for name in (
            "ingress-nginx/ingress-nginx-controller-admission:https-webhook",
            "ingress-nginx/ingress-nginx-controller:http", "ingress-nginx/ingress-nginx-controller:https",
            "jenkins/jenkins-agent:agent-listener", "jenkins/jenkins:http", "kube-system/kube-dns:dns",
            "kube-system/kube-dns:dns-tcp", "kube-system/kube-dns:metrics")},
    "11-cilium-ipvs-docker-broken-dnat": {
        "cattle-prometheus/access-grafana:http": REJECTED,
        "cattle-prometheus/access-prometheus:nginx-http": REJECTED,
        "default/nginx-demo": REJECTED,
        **{name: LEFTOVER for name in (
            "default/kubernetes:https", "kube-system/kube-dns-upstream:dns",
            "kube-system/kube-dns-upstream:dns-tcp", "kube-system/kube-dns:dns",
            "kube-system/kube-dns:dns-tcp", "kube-system/kube-dns:metrics", "kube-system/metrics-server")}},
    "12-calico-vxlan-ipvs-nat": {
        f"<unknown {h}>": {"entry"} for h in (
            "ERIFXISQEP7F7OF4", "I24EZXP75AX5E7TU", "JD5MR3NA4I4DYORP", "NPX46M4PTMTKRN6Y",
            "RK657RLKDNVNU64O", "TCOU7JCQXEZGVUNU", "WWRFY3PZ7W3FGMQW")},
    "13-kubeproxy16-externalip-docker-redacted": {
        "default/ares-k29-bindapp:dns-tcp-53": {"entry"},
        "default/ares-k29-bindapp:dns-udp-53": {"entry"},
        "default/kubernetes:https": {"endpoint-dnat"}},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_findings_on_real_dump(dumps_dir: Path, name: str) -> None:
    report = diagnose(read_rules(dumps_dir / f"{name}.rules"))
    assert failures(report) == EXPECTED[name]
    assert report.exit_code == (1 if EXPECTED[name] else 0)
    assert to_text(report).startswith("netproxy doctor: ")
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
    report = diagnose(read_rules(dumps_dir / "11-cilium-ipvs-docker-broken-dnat.rules"),
                      service="kube-system/kube-dns:dns")
    entry = next(f for f in report.services[0].findings if f.check == "entry")
    assert entry.summary == "no KUBE-SERVICES or KUBE-NODEPORTS rule leads to this Service port"
    assert entry.details == ["no rule jumps to KUBE-SVC-TCOU7JCQXEZGVUNU: the chain is not in use"]
    dnat = next(f for f in report.services[0].findings if f.check == "endpoint-dnat")
    assert dnat.summary == ("KUBE-SEP-MU7PO7VX34QPS5HP: DNAT rule unreadable "
                            "(line 128: option --to-destination needs 1 argument(s))")


def test_empty_endpoint_chain(dumps_dir: Path) -> None:
    report = diagnose(read_rules(dumps_dir / "13-kubeproxy16-externalip-docker-redacted.rules"),
                      service="default/kubernetes:https")
    dnat = next(f for f in report.services[0].findings if f.check == "endpoint-dnat")
    assert dnat.summary == "KUBE-SEP-UPD7ND2TPNSDBE6L has no DNAT rule (it is empty)"


def test_affinity_and_seven_way_split(dumps_dir: Path) -> None:
    report = diagnose(read_rules(dumps_dir / "06-eks-awsvpccni-affinity.rules"))
    by_name = {s.name: {f.check: f for f in s.findings} for s in report.services}
    assert by_name["default/hello"]["probabilities"].summary == (
        "KUBE-SVC-TWVLBX4WCEZSIVWL: 7 ways, 14.29% each")
    assert by_name["default/hello"]["walk-split"].status == "passed"
    assert by_name["default/kubernetes:https"]["probabilities"].status == "passed"
