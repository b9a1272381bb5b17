"""Read Kubernetes objects from files, directories or stdin (YAML or JSON).

Accepts single objects, multi-document YAML, ``kind: List`` (what ``kubectl get -o yaml``
prints) and typed lists (``ServiceList``, ``EndpointSliceList``, ...). Kinds netproxy does not
model are skipped with a note; the caller decides where notes go (the CLI prints them on
stderr).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netproxy.errors import InputError
from netproxy.k8s.decode import (
    decode_endpoint_slice,
    decode_endpoints,
    decode_node,
    decode_service,
    decode_service_cidr,
)
from netproxy.k8s.mirror import mirror_endpoints
from netproxy.k8s.objects import EndpointSlice, Node, Service

SUFFIXES = (".yaml", ".yml", ".json")
SERVICE_CIDR_APIS = ("networking.k8s.io/v1", "networking.k8s.io/v1beta1")


@dataclass(slots=True)
class Cluster:
    """Everything read from the inputs, in input order."""

    services: list[Service] = field(default_factory=list)
    slices: list[EndpointSlice] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    configs: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    """KubeProxyConfiguration documents found among the inputs, with their source."""
    legacy_endpoints: list[tuple[str, str, dict[str, str], list[Any], str]] = field(default_factory=list)
    service_cidrs: list[str] = field(default_factory=list)
    """``spec.cidrs`` of the ServiceCIDR objects (networking.k8s.io), canonical, in input order."""
    notes: list[str] = field(default_factory=list)

    def node(self, name: str) -> Node | None:
        for node in self.nodes:
            if node.name == name:
                return node
        return None


def expand_paths(inputs: Iterable[str]) -> list[str]:
    """Files named by ``inputs``: directories are walked (sorted, ``.yaml/.yml/.json`` only)."""
    out: list[str] = []
    for item in inputs:
        if item == "-":
            out.append(item)
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*")
                           if p.is_file() and p.suffix in SUFFIXES)
            if not found:
                raise InputError("directory holds no .yaml, .yml or .json files", where=item)
            out.extend(found)
        elif path.exists():
            out.append(item)
        else:
            raise InputError("no such file or directory", where=item)
    return out


def read_text(name: str) -> str:
    """The text of file ``name`` (``-`` is stdin); unreadable files are input errors."""
    try:
        if name == "-":
            from netproxy.inputs.stdin import read_stdin  # once, shared with input sniffing

            return read_stdin()
        with open(name, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise InputError(f"cannot read: {reason}", where="<stdin>" if name == "-" else name) from None


def parse_documents(text: str, name: str) -> list[Any]:
    """The documents of one file: JSON when it starts with ``{``/``[``, YAML otherwise."""
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"line {err.lineno}: invalid JSON: {err.msg}", where=name) from None
        return data if isinstance(data, list) else [data]
    import yaml  # only for YAML input: JSON (the fast way for big clusters) starts without it

    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML has it
    try:
        return [d for d in yaml.load_all(text, Loader=loader) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise InputError(f"{line}invalid YAML: {problem}", where=name) from None


def _objects(docs: list[Any], name: str) -> Iterator[tuple[dict[str, Any], str]]:
    """The Kubernetes objects of one file's documents, each with where it was read.

    Consumes ``docs``: every object handed out is removed from its list, so that once decoded
    it is freed while still in the cache; freeing the whole parsed tree after the last object
    took a sixth of the time to load a big cluster.
    """
    for i, doc in enumerate(docs, 1):
        docs[i - 1] = None
        where = f"{name}, document {i}"
        if not isinstance(doc, dict):
            raise InputError(f"expected a Kubernetes object, got {type(doc).__name__}", where=where)
        kind = doc.get("kind")
        if isinstance(kind, str) and kind.endswith("List") and "items" in doc:
            items = doc.get("items") or []
            if not isinstance(items, list):
                raise InputError("items: must be a list", where=where)
            for j, item in enumerate(items):
                items[j] = None
                item_where = f"{where}, items[{j}]"
                if not isinstance(item, dict):
                    raise InputError(f"expected a Kubernetes object, got {type(item).__name__}",
                                     where=item_where)
                if "kind" not in item and kind != "List":
                    item = {**item, "kind": kind[: -len("List")]}
                yield item, item_where
        else:
            yield doc, where


def load_inputs(inputs: Iterable[str], *, note: Callable[[str], None] | None = None,
                prepare: Callable[[str, str], str] | None = None) -> Cluster:
    """Read every input into one :class:`Cluster`; notes also go to ``note`` when given.
    ``prepare(text, name)`` may check or repair each file's text before it is parsed."""
    cluster = Cluster()
    for name in expand_paths(inputs):
        display = "<stdin>" if name == "-" else name
        text = read_text(name)
        if prepare is not None:
            text = prepare(text, display)
        docs = parse_documents(text, display)
        for obj, where in _objects(docs, display):
            _add(cluster, obj, where)
    _mirror_legacy(cluster)
    if note is not None:
        for text in cluster.notes:
            note(text)
    return cluster


def _add(cluster: Cluster, obj: dict[str, Any], where: str) -> None:
    kind = obj.get("kind")
    api = obj.get("apiVersion")
    if not isinstance(kind, str) or not kind:
        raise InputError("kind: missing", where=where)
    if kind == "Service" and api in (None, "v1"):
        svc = decode_service(obj, where)
        cluster.services.append(svc)
        if svc.type in ("NodePort", "LoadBalancer"):
            _note_missing_node_ports(cluster, svc, obj, where)
    elif kind == "EndpointSlice" and api in (None, "discovery.k8s.io/v1"):
        cluster.slices.append(decode_endpoint_slice(obj, where))
    elif kind == "Endpoints" and api in (None, "v1"):
        cluster.legacy_endpoints.append((*decode_endpoints(obj, where), where))
    elif kind == "Node" and api in (None, "v1"):
        cluster.nodes.append(decode_node(obj, where))
    elif kind == "ServiceCIDR" and api in (None, *SERVICE_CIDR_APIS):
        for cidr in decode_service_cidr(obj, where):
            if cidr not in cluster.service_cidrs:
                cluster.service_cidrs.append(cidr)
    elif kind == "KubeProxyConfiguration":
        cluster.configs.append((obj, where))
    else:
        label = f"{api}/{kind}" if api else kind
        cluster.notes.append(f"{where}: skipping {label} (not used by kube-proxy's iptables rules)")


def _note_missing_node_ports(cluster: Cluster, svc: Service, obj: dict[str, Any],
                             where: str) -> None:
    """A note for ports the API server would have given a nodePort: kube-proxy writes no
    NodePort rule for them (a LoadBalancer with ``allocateLoadBalancerNodePorts: false`` is
    normal and gets no note)."""
    if svc.type == "LoadBalancer" and (obj.get("spec") or {}).get("allocateLoadBalancerNodePorts") is False:
        return
    for i, port in enumerate(svc.ports):
        if not port.node_port:
            cluster.notes.append(f"{where}: spec.ports[{i}].nodePort: missing for a {svc.type} "
                                 "service; kube-proxy writes no NodePort rule for this port")


def _mirror_legacy(cluster: Cluster) -> None:
    """Convert legacy Endpoints for services that have no EndpointSlice of their own.

    In a real cluster the EndpointSlice controller (selector services) or the mirroring
    controller (selector-less services) has already written slices; when the input carries
    them we use them, otherwise we mirror the Endpoints ourselves.
    """
    with_slices = {(s.namespace, s.service_name) for s in cluster.slices}
    for namespace, name, labels, subsets, where in cluster.legacy_endpoints:
        if (namespace, name) in with_slices:
            continue
        cluster.slices.extend(mirror_endpoints(namespace, name, labels, subsets, where))


def env_hostname() -> str:
    """The host name kube-proxy would use without ``--hostname-override`` (lowercased)."""
    return os.uname().nodename.lower()
