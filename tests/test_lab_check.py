"""lab up / check / down on the example cluster: the kernel must agree with the tracer.

The cluster covers ClusterIP (TCP and UDP), NodePort (node IP and localhost), LoadBalancer
with source ranges, externalTrafficPolicy Local, session affinity and a service without
endpoints.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from netproxy.backend import netns
from netproxy.backend.lab.topology import Lab, teardown

from conftest import REPO

pytestmark = pytest.mark.netns

CLUSTER = REPO / "fixtures" / "example-cluster"


def netproxy(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netproxy", *args], capture_output=True, text=True,
                          timeout=timeout)


def _lab_namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


@pytest.mark.parametrize("variant", ["nft", "legacy"])
def test_lab_check_agrees_with_the_tracer(tmp_path: Path, variant: str) -> None:
    state = tmp_path / "lab.json"
    up = netproxy("lab", "up", str(CLUSTER), "--iptables", variant, "--state", str(state))
    prefix = json.loads(state.read_text())["prefix"] if state.exists() else None
    try:
        assert up.returncode == 0, up.stderr
        checked = netproxy("lab", "check", "--state", str(state), "--json", "--count", "40")
        report = json.loads(checked.stdout)
        failed = [(name, s["source"], s["checks"]) for name, e in report["frontends"].items()
                  for s in e["sources"] if not s["ok"]]
        assert not failed, failed
        assert checked.returncode == 0
        assert report["agreement"] == 1.0 and report["groups"] >= 40
        fe = report["frontends"]
        kinds = {name.split()[1] for name in fe}
        assert kinds >= {"cluster-ip", "node-port", "localhost-node-port", "load-balancer"}

        def source(name: str, kind: str, src: str | None = None) -> dict:
            return next(s for s in fe[name]["sources"] if s["source"] == kind and (src is None or s["src"] == src))

        # a service without endpoints is rejected (connection refused) from everywhere
        nothing = fe["shop/legacy-db:postgres cluster-ip 10.96.100.50:5432/tcp"]
        assert all(s["observed"] == {"refused": 40} for s in nothing["sources"])
        # LoadBalancer source ranges: inside a range reaches both endpoints, outside times out
        lb = "shop/checkout:https load-balancer 203.0.113.10:443/tcp"
        assert set(source(lb, "external", "198.51.100.10")["observed"]) == {"10.244.2.20:8443", "10.244.3.20:8443"}
        assert source(lb, "external", "100.64.0.10")["observed"] == {"timeout": 2}
        # externalTrafficPolicy Local: external clients reach only the node-local endpoint
        etp = source("shop/ingress:http node-port 192.168.0.11:30081/tcp", "external")
        assert etp["observed"] == {"10.244.1.30:8080": 40}
        # session affinity: one client sticks to one endpoint
        sticky = source("shop/cart:grpc cluster-ip 10.96.100.40:9000/tcp", "pod")
        assert len(sticky["observed"]) == 1
        # UDP as well as TCP
        dns = source("kube-system/kube-dns:dns cluster-ip 10.96.0.10:53/udp", "pod")
        assert set(dns["observed"]) == {"10.244.1.2:53", "10.244.2.3:53"}
        # masquerading as predicted: an external client's ClusterIP traffic is masqueraded
        ext = source("shop/frontend:http cluster-ip 10.96.100.10:80/tcp", "external")
        assert ext["checks"]["masquerade"]["ok"]
        # the kernel's own rule path (xtables-monitor on nft, nfnetlink_log on legacy)
        assert report["kernel_paths"]["sampled"] >= 5
        assert report["kernel_paths"]["agree"] == report["kernel_paths"]["sampled"]
    finally:
        down = netproxy("lab", "down", "--state", str(state))
        if prefix:
            assert not _lab_namespaces(prefix), down.stderr
    assert not state.exists()


def test_down_removes_what_a_failed_up_made(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "lab.json", prefix=netns.unique_name("lab-fail"))
    try:
        lab.make_ns("node")
        lab.make_ns("p0")
        lab.state["namespaces"].append(f"{lab.prefix}-never-made")  # recorded, then crashed
    finally:
        removed = teardown(json.loads((tmp_path / "lab.json").read_text()))
    assert sorted(removed) == sorted([f"{lab.prefix}-node", f"{lab.prefix}-p0"])
    assert not _lab_namespaces(lab.prefix)


def test_check_without_a_lab_is_one_line(tmp_path: Path) -> None:
    proc = netproxy("lab", "check", "--state", str(tmp_path / "none.json"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no lab is up" in proc.stderr
