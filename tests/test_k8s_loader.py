"""Loading Kubernetes objects: formats, lists, stdin, directories, mirroring, errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from netproxy.errors import InputError
from netproxy.k8s.loader import load_inputs

SVC = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
       "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]}}
SLICE = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "web-1", "namespace": "default",
                      "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
         "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": False}}]}


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_single_multidoc_list_and_json(tmp_path: Path) -> None:
    import yaml

    multi = write(tmp_path, "multi.yaml", yaml.safe_dump(SVC) + "---\n" + yaml.safe_dump(SLICE) + "---\n")
    lst = write(tmp_path, "list.yaml", yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [SVC, SLICE]}))
    typed = write(tmp_path, "typed.json", json.dumps(
        {"apiVersion": "v1", "kind": "ServiceList",
         "items": [{k: v for k, v in SVC.items() if k != "kind"}]}))
    for path in (multi, lst):
        cluster = load_inputs([path])
        assert [s.name for s in cluster.services] == ["web"]
        assert cluster.slices[0].endpoints[0].ready is False
        assert cluster.slices[0].endpoints[0].serving is True  # nil serving reads as true
        assert cluster.services[0].ports[0].protocol == "TCP"  # API default
    assert [s.name for s in load_inputs([typed]).services] == ["web"]


def test_directory_and_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    (tmp_path / "sub").mkdir()
    write(tmp_path, "sub/a.yaml", yaml.safe_dump(SVC))
    write(tmp_path, "b.json", json.dumps(SLICE))
    write(tmp_path, "notes.txt", "ignored")
    cluster = load_inputs([str(tmp_path)])
    assert (len(cluster.services), len(cluster.slices)) == (1, 1)
    monkeypatch.setattr("sys.stdin", io.StringIO(yaml.safe_dump(SVC)))
    assert load_inputs(["-"]).services[0].source == "<stdin>, document 1"


def test_other_kinds_are_noted(tmp_path: Path) -> None:
    path = write(tmp_path, "pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n")
    notes: list[str] = []
    load_inputs([path], note=notes.append)
    assert notes == [f"{path}, document 1: skipping v1/Pod (not used by kube-proxy's iptables rules)"]


def test_legacy_endpoints_mirrored(tmp_path: Path) -> None:
    import yaml

    eps = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "default"},
           "subsets": [{"addresses": [{"ip": "10.244.0.5", "nodeName": "node-1"}, {"ip": "fd00::5"}],
                        "notReadyAddresses": [{"ip": "10.244.0.6"}],
                        "ports": [{"name": "http", "port": 8080}]}]}
    path = write(tmp_path, "eps.yaml", yaml.safe_dump(SVC) + "---\n" + yaml.safe_dump(eps))
    cluster = load_inputs([path])
    v4 = [s for s in cluster.slices if s.address_type == "IPv4"]
    v6 = [s for s in cluster.slices if s.address_type == "IPv6"]
    assert [(e.addresses[0], e.ready, e.serving, e.terminating, e.node_name) for e in v4[0].endpoints] == [
        ("10.244.0.5", True, True, False, "node-1"), ("10.244.0.6", False, True, False, "")]
    assert v4[0].service_name == "web" and v4[0].ports[0].port == 8080
    assert [e.addresses for e in v6[0].endpoints] == [["fd00::5"]]
    # With an EndpointSlice of its own, the Endpoints object is not mirrored again.
    both = write(tmp_path, "both.yaml", yaml.safe_dump(SLICE) + "---\n" + yaml.safe_dump(eps))
    assert [s.name for s in load_inputs([both]).slices] == ["web-1"]
    # skip-mirror label is honoured
    eps["metadata"]["labels"] = {"endpointslice.kubernetes.io/skip-mirror": "true"}
    skip = write(tmp_path, "skip.yaml", yaml.safe_dump(eps))
    assert load_inputs([skip]).slices == []


def _mutate(obj: dict, path: str, value: object) -> dict:
    import copy

    out = copy.deepcopy(obj)
    node = out
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if value is KeyError:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return out


@pytest.mark.parametrize("obj, path, value, message", [
    (SVC, "spec.clusterIP", "10.96.0.300", "document 2: spec.clusterIP: invalid IP address '10.96.0.300'"),
    (SVC, "spec.ports.0.port", "http", "document 2: spec.ports[0].port: invalid port 'http' (want 1-65535)"),
    (SVC, "spec.ports.0.port", 70000, "document 2: spec.ports[0].port: invalid port 70000"),
    (SVC, "spec.ports.0.port", KeyError, "document 2: spec.ports[0].port: missing"),
    (SVC, "spec.ports.0.protocol", "ICMP", "document 2: spec.ports[0].protocol: unknown protocol 'ICMP'"),
    (SVC, "spec.clusterIP", KeyError, "document 2: spec.clusterIP: missing"),
    (SVC, "metadata.name", KeyError, "document 2: metadata.name: missing"),
    (SVC, "spec.type", "Weird", "document 2: spec.type: unknown service type 'Weird'"),
    (SVC, "spec.externalTrafficPolicy", "Nearby", "document 2: spec.externalTrafficPolicy: unknown traffic policy"),
    (SVC, "spec.loadBalancerSourceRanges", ["10.0.0.0/33"],
     "document 2: spec.loadBalancerSourceRanges[0]: invalid CIDR '10.0.0.0/33'"),
    (SLICE, "endpoints.0.addresses.0", "10.0.0", "document 2: endpoints[0].addresses[0]: invalid IP address"),
    (SLICE, "endpoints.0.addresses", [], "document 2: endpoints[0].addresses: must list at least one address"),
    (SLICE, "endpoints.0.conditions", {"ready": "yes"}, "document 2: endpoints[0].conditions.ready: must be true or false"),
    (SLICE, "addressType", "IPv5", "document 2: addressType: missing or unknown address type 'IPv5'"),
    (SLICE, "ports.0.port", -1, "document 2: ports[0].port: invalid port -1"),
])
def test_bad_objects_name_file_document_and_field(tmp_path: Path, obj: dict, path: str,
                                                   value: object, message: str) -> None:
    import yaml

    bad = _mutate(obj, path, value)
    file = write(tmp_path, "bad.yaml", yaml.safe_dump(SVC if obj is SLICE else SLICE) + "---\n" + yaml.safe_dump(bad))
    with pytest.raises(InputError) as info:
        load_inputs([file])
    text = str(info.value)
    assert text.startswith(f"{file}, document 2: ")
    assert message in text
    assert "\n" not in text


@pytest.mark.parametrize("text, message", [
    ("kind: Service\n  bad: [\n", "line 2: invalid YAML"),
    ('{"kind": "Service",,}', "line 1: invalid JSON"),
    ("- 1\n- 2\n", "document 1: expected a Kubernetes object, got list"),
    ("just a string\n", "document 1: expected a Kubernetes object, got str"),
    ("apiVersion: v1\nmetadata: {name: x}\n", "document 1: kind: missing"),
])
def test_unparsable_files(tmp_path: Path, text: str, message: str) -> None:
    file = write(tmp_path, "f.yaml", text)
    with pytest.raises(InputError, match="^" + str(file).replace(".", r"\.") + r"(, |: )") as info:
        load_inputs([file])
    assert message in str(info.value)


def test_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or directory"):
        load_inputs([str(tmp_path / "missing.yaml")])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no .yaml"):
        load_inputs([str(empty)])
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match="cannot read"):
        load_inputs([str(binary)])


KUBECTL_OUTPUT = """\
apiVersion: v1
items:
- apiVersion: v1
  kind: Service
  metadata:
    annotations:
      kubectl.kubernetes.io/last-applied-configuration: |
        {"apiVersion":"v1","kind":"Service"}
    creationTimestamp: "2024-05-01T10:00:00Z"
    labels: {app: web}
    managedFields:
    - apiVersion: v1
      fieldsType: FieldsV1
      fieldsV1: {f:spec: {}}
      manager: kubectl
      operation: Update
    name: web
    namespace: shop
    resourceVersion: "1234"
    uid: 5b1f3a4e-0000-0000-0000-000000000000
  spec:
    clusterIP: 10.96.0.20
    clusterIPs: [10.96.0.20]
    internalTrafficPolicy: Cluster
    ipFamilies: [IPv4]
    ipFamilyPolicy: SingleStack
    ports:
    - {appProtocol: http, name: http, port: 80, protocol: TCP, targetPort: http}
    selector: {app: web}
    sessionAffinity: None
    type: ClusterIP
  status:
    loadBalancer: {}
- addressType: IPv4
  apiVersion: discovery.k8s.io/v1
  endpoints:
  - addresses: [10.244.1.7]
    conditions: {ready: true, serving: true, terminating: false}
    nodeName: node-1
    targetRef: {kind: Pod, name: web-7d9c, namespace: shop, uid: 11111111-2222}
    zone: zone-a
  kind: EndpointSlice
  metadata:
    generateName: web-
    labels:
      endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
      kubernetes.io/service-name: web
    name: web-x7k2p
    namespace: shop
    ownerReferences:
    - {apiVersion: v1, blockOwnerDeletion: true, controller: true, kind: Service, name: web, uid: 5b1f}
  ports:
  - {appProtocol: http, name: http, port: 8080, protocol: TCP}
- apiVersion: v1
  kind: Endpoints
  metadata: {name: web, namespace: shop}
  subsets:
  - addresses: [{ip: 10.244.1.7, nodeName: node-1}]
    ports: [{name: http, port: 8080, protocol: TCP}]
kind: List
metadata:
  resourceVersion: ""
"""


def test_kubectl_get_output(tmp_path: Path) -> None:
    cluster = load_inputs([write(tmp_path, "kubectl.yaml", KUBECTL_OUTPUT)])
    (svc,) = cluster.services
    assert (svc.namespace, svc.name, svc.ports[0].target_port) == ("shop", "web", "http")
    assert [s.name for s in cluster.slices] == ["web-x7k2p"]  # Endpoints not mirrored again
    ep = cluster.slices[0].endpoints[0]
    assert (ep.addresses, ep.node_name, ep.zone, ep.ready) == (["10.244.1.7"], "node-1", "zone-a", True)
