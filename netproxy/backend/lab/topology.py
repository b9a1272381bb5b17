"""Build and tear down the lab's namespaces and links; every name is recorded first.

Layout (``P`` = the run's prefix, e.g. ``np-lab-4242``):

* ``P-node``: the node. Rules applied, forwarding on (sysctls set inside it only), node IPs
  and 198.51.100.1/24 on ``ext0``, 169.254.1.1 on every pod link, a host route per pod.
* ``P-ext``: the external client (198.51.100.10 plus one address per LB source range); it
  also answers, by a TCP echo, for the addresses in ``spec.beyond`` (where traffic the node
  sends on unchanged ends up).
* ``P-cli``: a client pod inside the pod network.
* ``P-pN``: one namespace per endpoint address, running the echo server.

Links are veth pairs created directly between lab namespaces (``ip -n``), never in the
host's namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from netproxy.backend import netns
from netproxy.backend.lab.spec import (
    EXTERNAL_CLIENT,
    NODE_EXTERNAL,
    NODE_GATEWAY,
    LabSpec,
)
from netproxy.errors import BackendError
from netproxy.fileio import write_atomic

ECHO_MODULE = "netproxy.backend.echo"


def ip(ns: str, *args: str) -> None:
    netns.run_host([netns.ip_tool(), "-n", ns, *args])


def _sysctl(ns: str, key: str, value: str, *, if_present: bool = False) -> None:
    """Set a sysctl inside lab namespace ``ns`` (through /proc/sys, in that namespace);
    ``if_present``: skip it where the kernel has no such sysctl in a namespace."""
    path = f"/proc/sys/{key.replace('.', '/')}"
    guard = f"[ ! -e {path} ] || " if if_present else ""
    netns.run(ns, ["sh", "-c", f"{guard}echo {value} > {path}"])


class Lab:
    """A lab being built or torn down; ``state`` is saved after every namespace it makes."""

    def __init__(self, state_path: Path, prefix: str | None = None) -> None:
        self.state_path = state_path
        self.prefix = prefix or f"np-lab-{os.getpid()}"
        self.state: dict[str, Any] = {"prefix": self.prefix, "namespaces": [], "pids": []}

    def save(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.state_path, json.dumps(self.state, indent=1))

    def make_ns(self, suffix: str) -> str:
        name = f"{self.prefix}-{suffix}"
        self.state["namespaces"].append(name)
        self.save()  # recorded before it exists, so 'down' finds it even after a crash
        netns.create(name)
        ip(name, "link", "set", "lo", "up")
        return name

    def build(self, spec: LabSpec) -> None:
        node = self.make_ns("node")
        self.state["node"] = node
        _sysctl(node, "net.ipv4.ip_forward", "1")
        _sysctl(node, "net.ipv4.conf.all.route_localnet", "1" if spec.localhost_nodeports else "0")
        _sysctl(node, "net.ipv4.icmp_ratelimit", "0")  # every REJECT gets its ICMP error
        # ... also past the namespace's global ICMP budget (per namespace since Linux 6.12;
        # at 1,000/s with a burst of 50 it loses about one UDP reject in a hundred)
        for key, value in (("net.ipv4.icmp_msgs_per_sec", "100000"),
                           ("net.ipv4.icmp_msgs_burst", "10000")):
            _sysctl(node, key, value, if_present=True)
        ext = self.make_ns("ext")
        self.state["external"] = ext
        ip(node, "link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns", ext)
        for addr in spec.node_ips:
            ip(node, "addr", "add", f"{addr}/32", "dev", "ext0")
        ip(node, "addr", "add", f"{NODE_EXTERNAL}/24", "dev", "ext0")
        ip(node, "link", "set", "ext0", "up")
        ip(ext, "addr", "add", f"{EXTERNAL_CLIENT}/24", "dev", "eth0")
        for extra in spec.external_sources:
            if extra != EXTERNAL_CLIENT:
                ip(ext, "addr", "add", f"{extra}/32", "dev", "eth0")
                ip(node, "route", "add", f"{extra}/32", "via", EXTERNAL_CLIENT, "dev", "ext0")
        ip(ext, "link", "set", "eth0", "up")
        ip(ext, "route", "add", "default", "via", NODE_EXTERNAL)
        for there in spec.beyond:
            ip(ext, "route", "add", "local", f"{there.ip}/32", "dev", "lo")
            self._start_echo(ext, there.ip, there.tcp, [])
        ip(node, "route", "add", "default", "via", EXTERNAL_CLIENT, "dev", "ext0", "src", spec.node_ips[0])
        client = self.make_ns("cli")
        self.state["pod_client"] = client
        self._pod_link(node, client, "pc", spec.pod_client)
        pods: dict[str, str] = {}
        for i, pod in enumerate(spec.pods):
            name = self.make_ns(f"p{i}")
            self._pod_link(node, name, f"p{i}", pod.ip)
            pods[pod.ip] = name
            self._start_echo(name, pod.ip, pod.tcp, pod.udp)
        self.state["pods"] = pods
        self.state["interfaces"] = {"external": "ext0", "pod_client": "pc"}
        self.save()

    def _pod_link(self, node: str, pod_ns: str, node_if: str, addr: str) -> None:
        ip(node, "link", "add", node_if, "type", "veth", "peer", "name", "eth0", "netns", pod_ns)
        ip(node, "addr", "add", f"{NODE_GATEWAY}/32", "dev", node_if)
        ip(node, "link", "set", node_if, "up")
        ip(node, "route", "add", f"{addr}/32", "dev", node_if)
        ip(pod_ns, "addr", "add", f"{addr}/32", "dev", "eth0")
        ip(pod_ns, "link", "set", "eth0", "up")
        ip(pod_ns, "route", "add", NODE_GATEWAY, "dev", "eth0", "scope", "link")
        ip(pod_ns, "route", "add", "default", "via", NODE_GATEWAY, "dev", "eth0")

    def _start_echo(self, ns: str, addr: str, tcp: list[int], udp: list[int]) -> None:
        argv = netns.exec_argv(ns, [sys.executable, "-m", ECHO_MODULE, "--address", addr,
                                    "--tcp", ",".join(map(str, tcp)), "--udp", ",".join(map(str, udp))])
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        self.state["pids"].append(proc.pid)
        self.save()
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "ready":
            err = proc.stderr.read().strip().splitlines() if proc.stderr else []
            raise BackendError(f"echo server in {ns} did not start: {err[-1] if err else 'no output'}")
        proc.stdout.close()


def teardown(state: dict[str, Any]) -> list[str]:
    """Stop the echo servers and delete every namespace the lab recorded; what was removed."""
    removed: list[str] = []
    for pid in state.get("pids", []):
        if _is_echo(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 3
    for pid in state.get("pids", []):
        while _is_echo(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _is_echo(pid):
            os.killpg(pid, signal.SIGKILL)
    for name in reversed(state.get("namespaces", [])):
        if netns.exists(name):
            netns.delete(name)
            removed.append(name)
        else:
            netns.forget_records(name)
    return removed


def _is_echo(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return ECHO_MODULE.encode() in cmdline
