"""compile says what it assumed: unknown fields, several Nodes, empty inputs, a family no
Service has."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from netproxy.errors import InputError
from netproxy.k8s.fields import unknown_fields
from netproxy.k8s.loader import load_inputs

from conftest import FIXTURES, REPO

EXAMPLE = FIXTURES / "example-cluster"


def compile_(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netproxy", "compile", *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO, env={**os.environ})


def _typo(tmp_path: Path, old: str, new: str, source: Path = EXAMPLE / "services.yaml") -> Path:
    text = source.read_text()
    assert old in text
    path = tmp_path / source.name
    path.write_text(text.replace(old, new, 1))
    return path


def test_unknown_service_field_is_a_warning_naming_file_document_and_path(tmp_path: Path) -> None:
    path = _typo(tmp_path, "sessionAffinity: ClientIP", "sesionAffinity: ClientIP")
    result = compile_(str(path), str(EXAMPLE / "node.yaml"))
    assert result.returncode == 0, result.stderr
    assert (f"netproxy: warning: {path}, document 1, items[5]: spec.sesionAffinity: unknown field"
            in result.stderr)
    strict = compile_(str(path), str(EXAMPLE / "node.yaml"), "--strict")
    assert strict.returncode == 2 and strict.stdout == ""
    assert strict.stderr.strip() == (f"netproxy: {path}, document 1, items[5]: spec.sesionAffinity: "
                                     "unknown field (not in the Service API; a typo?)")


def test_unknown_config_field_in_config_file_and_among_inputs(tmp_path: Path) -> None:
    config = _typo(tmp_path, "clusterCIDR:", "clusterCIRD:", EXAMPLE / "kube-proxy-config.yaml")
    services = str(EXAMPLE / "services.yaml")
    for args in (["--config", str(config), services], [str(config), services]):
        result = compile_(*args)
        assert result.returncode == 0, result.stderr
        assert f"{config}, document 1: clusterCIRD: unknown field" in result.stderr
        strict = compile_(*args, "--strict")
        assert strict.returncode == 2
        assert "clusterCIRD: unknown field (not in the KubeProxyConfiguration API" in strict.stderr


def test_real_dump_fields_are_known() -> None:
    """What kubectl prints for real objects (status, managedFields, hints, targetRef, ...)."""
    svc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "a", "namespace": "b", "uid": "u", "resourceVersion": "1",
                        "creationTimestamp": "t", "annotations": {"x": "y"}, "managedFields": [{}]},
           "spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "ipFamilyPolicy": "SingleStack",
                    "internalTrafficPolicy": "Cluster", "allocateLoadBalancerNodePorts": True,
                    "ports": [{"name": "h", "port": 80, "targetPort": 80, "appProtocol": "http"}],
                    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}}},
           "status": {"loadBalancer": {"ingress": [{"ip": "1.1.1.1", "ipMode": "VIP", "ports": []}]}}}
    assert unknown_fields(svc, "Service") == []
    eps = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "a"},
           "addressType": "IPv4", "ports": [{"port": 1}],
           "endpoints": [{"addresses": ["1.1.1.1"], "targetRef": {"kind": "Pod"}, "zone": "z",
                          "hints": {"forZones": [{"name": "z"}]},
                          "conditions": {"ready": True, "serving": True, "terminating": False}}]}
    assert unknown_fields(eps, "EndpointSlice") == []
    bad = copy.deepcopy(eps)
    bad["endpoints"].append({"addresses": ["1.1.1.2"], "conditions": {"redy": True}, "nodname": "n"})
    bad["ports"][0]["portt"] = 1
    assert unknown_fields(bad, "EndpointSlice") == [
        "endpoints[1].nodname", "endpoints[1].conditions.redy", "ports[0].portt"]
    node = yaml.safe_load((EXAMPLE / "node.yaml").read_text())
    node["status"].update(capacity={}, nodeInfo={}, conditions=[], images=[])
    assert unknown_fields(node, "Node") == []
    node["spec"]["podCIRDs"] = []
    assert unknown_fields(node, "Node") == ["spec.podCIRDs"]


def test_kinds_without_a_schema_and_odd_shapes_are_left_to_the_decoder() -> None:
    assert unknown_fields({"kind": "ConfigMap", "data": {}}, "ConfigMap") == []
    odd: dict[str, Any] = {"kind": "Service", "spec": {"ports": ["x", {"prot": 1}]}, "status": []}
    assert unknown_fields(odd, "Service") == ["spec.ports[1].prot"]


def test_several_nodes_need_a_hostname_override(tmp_path: Path) -> None:
    node = yaml.safe_load((EXAMPLE / "node.yaml").read_text())
    docs = [node] + [{**copy.deepcopy(node), "metadata": {"name": f"node-{i}"}} for i in (2, 3)]
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(yaml.safe_dump_all(docs))
    services = str(EXAMPLE / "services.yaml")
    result = compile_(str(nodes), services)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == (
        "netproxy: 3 Nodes among the inputs (node-1, node-2, node-3): say which one to compile "
        "for with --hostname-override NAME (or hostnameOverride in the KubeProxyConfiguration)")
    assert compile_(str(nodes), services, "--hostname-override", "node-2").returncode == 0
    assert compile_(str(nodes), services, str(EXAMPLE / "kube-proxy-config.yaml")).returncode == 0


@pytest.mark.parametrize("content", ["", "# only a comment\n", "---\n---\n", "[]"])
def test_an_empty_input_is_an_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / ("empty.json" if content == "[]" else "empty.yaml")
    path.write_text(content)
    result = compile_(str(path), str(EXAMPLE))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"netproxy: {path}: holds no Kubernetes objects "
                                     "(an empty file, or only comments?)")
    with pytest.raises(InputError, match="holds no Kubernetes objects"):
        load_inputs([str(path)])


def test_a_family_no_service_has_is_said() -> None:
    result = compile_(str(EXAMPLE), "--family", "ipv6")
    assert result.returncode == 0
    assert ("netproxy: warning: no Service among the inputs has an ipv6 address: the ipv6 rules "
            "hold only kube-proxy's base chains (the Services are ipv4: --family ipv4)") in result.stderr
    assert "no Service" not in compile_(str(EXAMPLE)).stderr


def _renamed(doc: dict[str, Any], seed: int) -> dict[str, Any]:
    """``doc`` with one key somewhere renamed, as a typo would."""
    import random

    rng = random.Random(seed)
    new = copy.deepcopy(doc)
    dicts: list[dict[str, Any]] = []
    stack: list[Any] = [new]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            dicts.append(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    target = rng.choice([d for d in dicts if d])
    key = rng.choice(list(target))
    target[key + "x"] = target.pop(key)
    return new


def test_the_fast_paths_certify_only_objects_without_unknown_fields() -> None:
    """An object the decoder's fast path takes is never checked field by field again, so the
    fast path must refuse every object with an unknown field (and take the common ones)."""
    from test_load_speed_paths import LB, SLICE, SVC

    from netproxy.k8s.decode import common_service, decode_endpoint_slice_known

    for base in (SVC, LB):
        assert common_service(copy.deepcopy({**base, "kind": "Service"}), "f") is not None
    assert decode_endpoint_slice_known(copy.deepcopy(SLICE), "f")[1]
    for seed in range(300):
        for base, kind in ((SVC, "Service"), (LB, "Service"), (SLICE, "EndpointSlice")):
            doc = _renamed({**base, "kind": kind}, seed)
            if not unknown_fields(doc, kind):
                continue  # renamed inside labels or a selector: not a field
            try:
                if kind == "Service":
                    assert common_service(doc, "f") is None, doc
                else:
                    assert not decode_endpoint_slice_known(doc, "f")[1], doc
            except InputError:
                pass  # the rename broke a required field: an error either way
