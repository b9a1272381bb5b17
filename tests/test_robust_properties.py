"""Property-based robustness: random clusters compile, read back and trace consistently;
mutated objects, dumps, node snapshots and captures end in a clean exit, never a traceback or a hang.

Runs with a fixed seed (``derandomize``) and a small budget in CI; a longer run:

    NETPROXY_HYPOTHESIS_EXAMPLES=2000 python3 -m pytest -q tests/test_robust_properties.py

A clean exit is 0, 1 or 2; with 2 the last line on stderr is one ``netproxy: ...`` message.
Every command runs in this process (``netproxy.cli.main``), so any exception other than the
CLI's own exit is a failure with its traceback.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_node_snapshot import snapshot_text

from netproxy.cli import main

from conftest import DUMPS, FIXTURES

EXAMPLES = int(os.environ.get("NETPROXY_HYPOTHESIS_EXAMPLES", "20"))
"""Examples per property; CI keeps the default (the whole file in well under a minute)."""

BUDGET = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                  print_blob=True)

pytestmark = pytest.mark.timeout(300)


def run(*args: str) -> tuple[int, str, str]:
    """``netproxy ARGS`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code: Any = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            result = main(list(args))
            code = result if isinstance(result, int) else 0
        except SystemExit as exit_:
            code = exit_.code if exit_.code is not None else 0
    return int(code), out.getvalue(), err.getvalue()


def assert_clean(code: int, err: str, args: tuple[str, ...]) -> None:
    allowed = (0, 1, 2, 3) if args[0] == "trace" else (0, 1, 2)  # trace: 3 = UNKNOWN outcomes
    assert code in allowed, (code, args, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    if code == 2:
        lines = [line for line in err.splitlines()
                 if not line.startswith(("netproxy: note:", "netproxy: warning:"))]
        assert len(lines) == 1 and lines[0].startswith("netproxy: "), (args, err[-3000:])
        assert len(lines[0]) < 1000, lines[0][:300]


def run_clean(*args: str) -> tuple[int, str, str]:
    code, out, err = run(*args)
    assert_clean(code, err, args)
    return code, out, err


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="np-robust-") as folder:
        yield Path(folder)


# --- random clusters: compile, parse back, trace ---------------------------------------------

_names = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)


@st.composite
def clusters(draw: Any) -> tuple[list[dict[str, Any]], list[tuple[str, int, str, list[str]]]]:
    """Objects of a random one-node cluster, and per service port what a pod reaching it
    should get: (cluster IP, port, protocol, ready endpoint addresses as "ip:port")."""
    objects: list[dict[str, Any]] = [{
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
        "spec": {"podCIDRs": ["10.244.1.0/24"]},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.11"}]}}]
    expected = []
    names = draw(st.lists(_names, min_size=1, max_size=4, unique=True))
    for i, name in enumerate(names):
        svc_type = draw(st.sampled_from(["ClusterIP", "NodePort"]))
        ports = draw(st.lists(st.tuples(st.integers(1, 65535), st.sampled_from(["TCP", "UDP"])),
                              min_size=1, max_size=2, unique=True))
        cluster_ip = f"10.96.{i}.{draw(st.integers(1, 254))}"
        spec: dict[str, Any] = {
            "type": svc_type, "clusterIP": cluster_ip, "selector": {"app": name},
            "sessionAffinity": draw(st.sampled_from(["None", "ClientIP"])),
            "ports": [{"name": f"p{j}", "port": port, "protocol": proto, "targetPort": 8000 + j,
                       **({"nodePort": 30000 + 10 * i + j} if svc_type == "NodePort" else {})}
                      for j, (port, proto) in enumerate(ports)]}
        objects.append({"apiVersion": "v1", "kind": "Service",
                        "metadata": {"name": name, "namespace": "ns"}, "spec": spec})
        endpoints = draw(st.lists(st.tuples(st.integers(2, 250), st.booleans()), max_size=5,
                                  unique_by=lambda e: e[0]))
        objects.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-x", "namespace": "ns",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": [{"name": f"p{j}", "port": 8000 + j, "protocol": proto}
                      for j, (_port, proto) in enumerate(ports)],
            "endpoints": [{"addresses": [f"10.244.{2 + i}.{host}"], "nodeName": "node-2",
                           "conditions": {"ready": ready}} for host, ready in endpoints]})
        for j, (port, proto) in enumerate(ports):
            ready = sorted(f"10.244.{2 + i}.{host}:{8000 + j}" for host, ok in endpoints if ok)
            expected.append((cluster_ip, port, proto.lower(), ready))
    return objects, expected


@BUDGET
@given(clusters())
def test_random_clusters_compile_read_back_and_trace(case: Any) -> None:
    from netproxy.parser import parse_rules
    from netproxy.render import render_save
    from netproxy.trace.engine import Tracer
    from netproxy.trace.packet import Packet

    objects, expected = case
    with scratch() as folder:
        path = folder / "cluster.json"
        path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
        code, save, err = run_clean("compile", str(path))
        assert code == 0, err
        code, restore, err = run_clean("compile", str(path), "--format", "restore")
        assert code == 0, err
    ruleset = parse_rules(save, strict=True)
    assert render_save(ruleset) == save  # parse back: the same text
    assert not parse_rules(restore, strict=True).problems
    tracer = Tracer(ruleset, local_ips=["192.168.0.11"], pod_cidrs=["10.244.0.0/16"])
    for cluster_ip, port, proto, ready in expected:
        result = tracer.trace(Packet(dst=cluster_ip, src="10.244.1.7", dport=port, proto=proto))
        assert abs(sum(o.probability for o in result.outcomes) - 1) < 1e-9
        reached = sorted(o.dnat for o in result.outcomes if o.dnat)
        assert reached == ready, (cluster_ip, port, [str(o) for o in result.outcomes])
        if ready:  # every endpoint an equal share
            for o in result.outcomes:
                assert abs(o.probability - 1 / len(ready)) < 1e-6
        else:  # kube-proxy rejects connections to a Service without endpoints
            assert {o.verdict for o in result.outcomes} == {"REJECT"}


# --- mutated objects -------------------------------------------------------------------------

HOSTILE: list[Any] = [
    None, True, 0, -1, 65536, 2**70, 1.5, float("nan"), "", " ", "80", "8x", "\u00b2", "\u0663",
    "web\nx", "a\rb", "web\ud800", "caf\u00e9", "x" * 5000, "fe80::1%eth0", "10.0.0.0/33",
    "10.0.0.1", "::1", "None", "Local", "NodePort", "ClientIP", [], {}, [None], [[[[[]]]]],
    {"a": {"b": {"c": []}}}, ["10.0.0.1"], [{"ip": 5}], "\x00", "-", "--", "*", "&a",
]

_SEED_OBJECTS: list[dict[str, Any]] = [
    doc for path in sorted((FIXTURES / "example-cluster").glob("*.yaml"))
    for doc in yaml.safe_load_all(path.read_text()) if doc]


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        out.extend(_paths(value, (*prefix, key)))
    return out


def mutate_objects(rng: random.Random, docs: list[dict[str, Any]], count: int) -> list[Any]:
    docs = copy.deepcopy(docs)
    for _ in range(count):
        paths = _paths(docs)
        *parents, last = rng.choice(paths)
        node: Any = docs
        for key in parents:
            node = node[key]
        roll = rng.random()
        if isinstance(node, dict) and roll < 0.2:
            del node[last]
        elif isinstance(node, dict) and roll < 0.3:
            node[last + "x" if isinstance(last, str) else last] = node.pop(last)  # a typo
        else:
            node[last] = copy.deepcopy(rng.choice(HOSTILE))
    return docs


@BUDGET
@given(st.randoms(use_true_random=False), st.integers(1, 4), st.sampled_from(["json", "yaml"]),
       st.booleans())
def test_mutated_objects_end_cleanly(rng: random.Random, count: int, fmt: str, strict: bool) -> None:
    docs = mutate_objects(rng, _SEED_OBJECTS, count)
    with scratch() as folder:
        path = folder / f"cluster.{fmt}"
        if fmt == "json":
            path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs},
                                       allow_nan=True))
        else:
            path.write_text(yaml.safe_dump_all(docs, allow_unicode=rng.random() < 0.5))
        args = ["compile", str(path), *(["--strict"] if strict else [])]
        run_clean(*args)
        run_clean(*args, "--format", "restore")
        run_clean("trace", str(path), "--src", "10.244.2.50", "--dst", "10.96.100.10",
                  "--dport", "80", "--brief")


@BUDGET
@given(st.binary(max_size=200), st.integers(0, 10_000), st.sampled_from(["yaml", "json"]))
def test_object_files_with_bytes_spliced_in(junk: bytes, at: int, fmt: str) -> None:
    text = (FIXTURES / "example-cluster" / "services.yaml").read_bytes()
    if fmt == "json":
        text = json.dumps(list(yaml.safe_load_all(text))).encode()
    at %= len(text) + 1
    with scratch() as folder:
        path = folder / f"cluster.{fmt}"
        path.write_bytes(text[:at] + junk + text[at:])
        run_clean("compile", str(path))


@BUDGET
@given(st.integers(1, 9), st.integers(1, 9), st.sampled_from(["name", "targetPort", "selector"]))
def test_yaml_aliases_end_cleanly_and_quickly(levels: int, width: int, where: str) -> None:
    anchors = ['  l0: &l0 ["lol"]'] + [
        f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    top = f"*l{levels}"
    lines = ["apiVersion: v1", "kind: Service", "x-anchors:", *anchors, "metadata:",
             f"  name: {top if where == 'name' else 'web'}", "spec:", "  clusterIP: 10.96.0.5",
             f"  selector: {{app: {top if where == 'selector' else 'web'}}}", "  ports:",
             f"  - {{port: 80, targetPort: {top if where == 'targetPort' else 8080}}}"]
    with scratch() as folder:
        path = folder / "aliases.yaml"
        path.write_text("\n".join(lines) + "\n")
        start = time.monotonic()
        code, _out, err = run_clean("compile", str(path))
        assert time.monotonic() - start < 20 and len(err) < 2000
        assert code == 2  # a list where a string belongs, or too many values


@BUDGET
@given(st.integers(1, 5000), st.sampled_from(["[", '{"a": ']))
def test_deep_json_ends_cleanly(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    with scratch() as folder:
        path = folder / "deep.json"
        path.write_text('{"kind": "Service", "metadata": ' + opener * depth + "1" * (opener != "[")
                        + closer * depth + "}")
        assert run_clean("compile", str(path))[0] == 2


# --- mutated dumps ---------------------------------------------------------------------------

SEED_DUMPS = ["01-minik8s-flannel-docker.rules", "06-eks-awsvpccni-affinity.rules",
              "08-k3s-docker-save-c-counters.rules", "13-kubeproxy16-externalip-docker-redacted.rules"]

HOSTILE_WORDS = ["*NAT", "*\u00e9", "COMMIT", ":KUBE-X - [0:0]", "-A", "-j", "--dport", "!", "\"",
                 "'", "\\", "-c 1x 2", "[1:x]", "\u00b2", "\u0663", "fe80::1%eth0", "10.0.0.0/99",
                 "x" * 3000, "-m comment --comment " + "c " * 500, "\x00", "\udce9", "-m", "--"]


def _dump_lines(name: str) -> list[str]:
    path = DUMPS / name
    if not path.exists():
        pytest.skip("real-world dumps not present beside the project")
    return path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()


def mutate_dump(rng: random.Random, lines: list[str], count: int) -> list[str]:
    lines = list(lines)
    for _ in range(count):
        i = rng.randrange(len(lines) + 1)
        roll = rng.random()
        if roll < 0.2 and i < len(lines):
            del lines[i]
        elif roll < 0.3 and i < len(lines):
            lines.insert(i, lines[i])
        elif roll < 0.4:
            del lines[i:]  # truncated
        elif roll < 0.7 and i < len(lines):
            words = lines[i].split(" ")
            k = rng.randrange(len(words))
            words[k] = rng.choice(HOSTILE_WORDS)
            lines[i] = " ".join(words)
        elif i < len(lines):
            cut = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:cut] + rng.choice(HOSTILE_WORDS) + lines[i][cut:]
        else:
            lines.append(rng.choice(HOSTILE_WORDS))
    return lines


@BUDGET
@given(st.randoms(use_true_random=False), st.sampled_from(SEED_DUMPS), st.integers(1, 5))
def test_mutated_dumps_end_cleanly(rng: random.Random, name: str, count: int) -> None:
    original = DUMPS / name
    lines = mutate_dump(rng, _dump_lines(name), count)
    with scratch() as folder:
        path = folder / "node.rules"
        path.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape") + b"\n")
        run_clean("trace", "--rules", str(path), "--src", "10.244.1.5", "--dst", "10.96.0.1",
                  "--dport", "443")
        run_clean("diff", str(original), str(path))
        run_clean("doctor", "--rules", str(path), "--brief")


# --- mutated node snapshots -----------------------------------------------------------------

SNAPSHOT_WORDS = ["### ip -j addr", "### end", "# netproxy node snapshot v2", "{", "}", "[", "]",
                  '"dst": "10.0.0.0/99"', '"prefixlen": "x"', '"table": 300000000000', "null",
                  '"type": "bogus"', "### no such section", "\u00b2", "\udce9"]


@BUDGET
@given(st.randoms(use_true_random=False), st.integers(1, 5))
def test_mutated_snapshots_end_cleanly(rng: random.Random, count: int) -> None:
    """A snapshot cut short, with sections lost, repeated or reordered, or with broken JSON
    inside: every command that reads it ends cleanly."""
    lines = snapshot_text().splitlines()
    for _ in range(count):
        lines = lines or [""]  # a mutation may have cut it all
        i = rng.randrange(len(lines))
        roll = rng.random()
        if roll < 0.4:
            lines = mutate_dump(rng, lines, 1)
        elif roll < 0.7:
            cut = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:cut] + rng.choice(SNAPSHOT_WORDS) + lines[i][cut:]
        else:
            lines.insert(i, rng.choice(SNAPSHOT_WORDS))
    with scratch() as folder:
        path = folder / "node.snap"
        path.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape") + b"\n")
        run_clean("trace", "--rules", str(path), "--src", "10.244.1.5", "--dst", "10.96.0.1",
                  "--dport", "443")
        run_clean("trace", "--rules", str(path), "--from", "node", "--dst", "10.9.3.3")
        run_clean("diff", str(path), str(path))
        run_clean("doctor", "--rules", str(path), "--brief")


# --- mutated captures -------------------------------------------------------------------------

def _capture() -> bytes:
    scapy = pytest.importorskip("scapy.all")
    with scratch() as folder:
        path = folder / "seed.pcap"
        scapy.wrpcap(str(path), [
            scapy.Ether() / scapy.IP(src="10.244.1.5", dst="10.96.0.1") / scapy.TCP(sport=40000, dport=443, flags="S"),
            scapy.Ether() / scapy.IP(src="10.244.1.5", dst="10.96.0.10") / scapy.UDP(sport=5353, dport=53),
            scapy.Ether() / scapy.IPv6(src="fd00::5", dst="fd00::1") / scapy.TCP(dport=80),
            scapy.Ether() / scapy.IP(src="10.244.1.5", dst="10.96.0.1") / scapy.ICMP()])
        return path.read_bytes()


@settings(BUDGET, max_examples=max(5, EXAMPLES // 4))  # each example imports and runs scapy's reader
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
       st.integers(0, 10_000))
def test_mutated_captures_end_cleanly(flips: list[tuple[int, int]], keep: int) -> None:
    data = bytearray(_capture())
    for at, value in flips:
        data[at % len(data)] = value
    rules = DUMPS / SEED_DUMPS[0]
    if not rules.exists():
        pytest.skip("real-world dumps not present beside the project")
    with scratch() as folder:
        path = folder / "c.pcap"
        path.write_bytes(bytes(data[:keep % (len(data) + 1)]))
        run_clean("trace", "--rules", str(rules), "--pcap", str(path))
