"""lab up --proxy-mode nftables / check / down on the example cluster: kube-proxy's nftables
table loaded into the lab's node, real traffic to every frontend, and the kernel's own rule
path (nft monitor trace) compared with the tracer's hop by hop."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from netproxy.backend.lab.nfttrace import parse_trace
from netproxy.backend.lab.topology import teardown

from conftest import REPO

CLUSTER = REPO / "fixtures" / "example-cluster"

MONITOR = """\
trace id 0a ip np-trace out packet: oif "lo" ip saddr 127.0.0.1 ip daddr 127.0.0.1 tcp dport 30080 tcp flags == syn
trace id 0a ip np-trace out rule ip saddr 127.0.0.1 meta nftrace set 1 (verdict continue)
trace id 0a ip kube-proxy nat-output rule jump services (verdict jump services)
trace id 0a ip kube-proxy nat-output policy accept meta mark 0x00004000
trace id 0b ip np-trace pre packet: iif "lo" ip saddr 127.0.0.1 ip daddr 127.0.0.1 tcp dport 30080 tcp flags == syn
trace id 0b ip kube-proxy filter-input rule ct state new jump nodeport-endpoints-check (verdict jump nodeport-endpoints-check)
trace id 0b ip kube-proxy filter-input verdict continue
trace id 0c ip np-trace pre packet: iif "lo" ip saddr 127.0.0.1 ip daddr 127.0.0.1 tcp dport 30080 tcp flags == ack
trace id 0c ip kube-proxy filter-input policy accept
"""


def test_parse_trace_follows_one_packet_and_its_loopback_reentry() -> None:
    hops = [(h.table, h.chain, h.text) for h in parse_trace(MONITOR)]
    assert hops == [("kube-proxy", "nat-output", "jump services"),
                    ("kube-proxy", "nat-output", "policy accept"),
                    ("kube-proxy", "filter-input", "ct state new jump nodeport-endpoints-check")]


def netproxy(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netproxy", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.netns
def test_lab_in_nftables_mode_agrees_with_the_kernel(tmp_path: Path) -> None:
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed (scripts/setup.sh installs nftables)")
    state = tmp_path / "lab.json"
    prefix = f"np-lab-nft-{os.getpid()}"
    up = netproxy("lab", "up", str(CLUSTER), "--proxy-mode", "nftables", "--state", str(state),
                  "--prefix", prefix)
    try:
        assert up.returncode == 0, up.stderr
        assert "(nftables, 170 operations)" in up.stdout
        node = f"{prefix}-node"
        tables = subprocess.run(["ip", "netns", "exec", node, "nft", "list", "tables"],
                                capture_output=True, text=True).stdout
        assert tables.split() == ["table", "ip", "kube-proxy"]
        checked = netproxy("lab", "check", "--state", str(state), "--json", "--count", "30",
                           "--kernel-paths", "12")
        report = json.loads(checked.stdout)
        failed = [(name, s["source"], s["checks"]) for name, e in report["frontends"].items()
                  for s in e["sources"] if not s["ok"]]
        assert not failed, failed
        assert checked.returncode == 0 and report["agreement"] == 1.0
        assert report["kernel_paths"]["sampled"] >= 8
        assert report["kernel_paths"]["agree"] == report["kernel_paths"]["sampled"]
        fe = report["frontends"]
        # nftables mode does not forward NodePorts on localhost: nothing listens there
        local = fe["shop/frontend:http localhost-node-port 127.0.0.1:30080/tcp"]["sources"]
        assert local[0]["observed"] == {"refused": 30}
        # a client outside the LoadBalancer's source ranges is dropped before DNAT
        lb = fe["shop/checkout:https load-balancer 203.0.113.10:443/tcp"]["sources"]
        assert {s["src"]: s["observed"] for s in lb}["100.64.0.10"] == {"timeout": 2}
        paths = [s["kernel_path"] for e in fe.values() for s in e["sources"] if s["kernel_path"]]
        assert any("kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips"
                   in p["kernel"] for p in paths)
    finally:
        down = netproxy("lab", "down", "--state", str(state))
        if state.exists():
            teardown(json.loads(state.read_text()))
    assert down.returncode == 0, down.stderr
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in left


@pytest.mark.netns
def test_lab_check_both_modes_confirms_the_migration_report(tmp_path: Path) -> None:
    """A second node address (192.0.2.11, beside the Node's 192.168.0.11), a ServiceCIDR:
    every difference the lab can show, in the kernel, each as netproxy migrate names it."""
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed (scripts/setup.sh installs nftables)")
    state = tmp_path / "lab.json"
    prefix = f"np-lab-both-{os.getpid()}"
    up = netproxy("lab", "up", str(CLUSTER), "--iptables", "nft", "--state", str(state),
                  "--prefix", prefix, "--local-ip", "192.0.2.11", "--service-cidr",
                  "10.96.0.0/16")
    try:
        assert up.returncode == 0, up.stderr
        checked = netproxy("lab", "check", "--state", str(state), "--proxy-mode", "both",
                           "--json", "--count", "20", "--kernel-paths", "4")
        report = json.loads(checked.stdout)
        for mode in ("iptables", "nftables"):
            assert report[mode]["agreement"] == 1.0, mode
        migration = report["migration"]
        assert checked.returncode == 0 and migration["findings"] == 0
        assert migration["confirmed"] == migration["groups"] >= 50
        rows = migration["changed"]
        assert all(row["kernel_agrees"] and row["rules_as_compiled"] for row in rows)
        by_key: dict[str, list[dict]] = {}
        for row in rows:
            by_key.setdefault(row["expected"], []).append(row)
        assert {k: len(v) for k, v in by_key.items()} == {
            "nodeport-addresses": 9, "localhost-nodeports": 3, "cluster-ip-other-ports": 2,
            "unallocated-service-ips": 1, "hairpin-local-endpoints-only": 1}
        # NodePorts on the second address: forwarded in iptables mode; in nftables mode
        # (nodePortAddresses 'primary') nothing listens there
        for row in by_key["nodeport-addresses"] + by_key["localhost-nodeports"]:
            assert row["observed"]["nftables"] == {"refused": 20}
            assert "refused" not in row["observed"]["iptables"]
        assert all(" 192.0.2.11:" in row["group"] for row in by_key["nodeport-addresses"])
        # a port the ClusterIP does not serve: sent on unchanged (no answer) -> rejected
        for row in by_key["cluster-ip-other-ports"]:
            assert row["observed"] == {"iptables": {"timeout": 2}, "nftables": {"refused": 20}}
        # an unallocated service address: sent on unchanged (answered beyond the node) ->
        # dropped
        (unalloc,) = by_key["unallocated-service-ips"]
        assert unalloc["observed"] == {"iptables": {"10.96.16.225:80": 20},
                                       "nftables": {"timeout": 2}}
        # kube-dns's endpoint of node-2 connecting to its own Service: when sent back to
        # itself, masqueraded in iptables mode (it answers); not in nftables mode, where it
        # gets a packet from its own address and drops it
        (hair,) = by_key["hairpin-local-endpoints-only"]
        assert hair["group"].endswith("from endpoint 10.244.2.3")
        assert set(hair["observed"]["iptables"]) == {"10.244.1.2:53", "10.244.2.3:53"}
        assert set(hair["observed"]["nftables"]) == {"10.244.1.2:53", "timeout"}
        # this node's endpoint (10.244.1.2) is masqueraded back to itself in both modes
        assert not [r for r in rows if r["group"].endswith("from endpoint 10.244.1.2")]
        # the lab is back in its own mode: iptables rules, no nftables table of kube-proxy
        node = f"{prefix}-node"
        tables = subprocess.run(["ip", "netns", "exec", node, "nft", "list", "tables"],
                                capture_output=True, text=True).stdout
        assert "kube-proxy" not in tables
        saved = subprocess.run(["ip", "netns", "exec", node, "iptables-nft-save"],
                               capture_output=True, text=True).stdout
        assert "KUBE-SERVICES" in saved
    finally:
        down = netproxy("lab", "down", "--state", str(state))
        if state.exists():
            teardown(json.loads(state.read_text()))
    assert down.returncode == 0, down.stderr
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert prefix not in left
