"""Read Kubernetes objects from files, directories or stdin (YAML or JSON).

Accepts single objects, multi-document YAML, ``kind: List`` (what ``kubectl get -o yaml``
prints) and typed lists (``ServiceList``, ``EndpointSliceList``, ...). Kinds netproxy does not
model are skipped with a note; the caller decides where notes go (the CLI prints them on
stderr).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netproxy.errors import InputError
from netproxy.k8s.decode import (
    common_service,
    decode_endpoint_slice_known,
    decode_endpoints,
    decode_node,
    decode_service,
    decode_service_cidr,
)
from netproxy.k8s.fields import unknown_fields
from netproxy.k8s.mirror import mirror_endpoints
from netproxy.k8s.objects import EndpointSlice, Node, Service
from netproxy.textsafe import shown

SUFFIXES = (".yaml", ".yml", ".json")
_API_VERSIONS = {"Endpoints": (None, "v1"), "Node": (None, "v1")}
SERVICE_CIDR_APIS = ("networking.k8s.io/v1", "networking.k8s.io/v1beta1")


@dataclass(slots=True)
class Cluster:
    """Everything read from the inputs, in input order."""

    services: list[Service] = field(default_factory=list)
    slices: list[EndpointSlice] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    configs: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    """KubeProxyConfiguration documents found among the inputs, with their source."""
    warnings: list[str] = field(default_factory=list)
    """Fields the API does not have (typos), one line each with file, document and path."""
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
    """The text of file ``name`` (``-`` is stdin); unreadable files are input errors.

    Both are read as bytes and decoded as UTF-8 (what Kubernetes objects are), whatever the
    locale: standard input under a C locale would otherwise smuggle undecodable bytes in.
    """
    where = "<stdin>" if name == "-" else name
    try:
        if name == "-":
            from netproxy.inputs.stdin import read_stdin  # once, shared with input sniffing

            return _utf8_only(read_stdin(), where)
        with open(name, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror or err}", where=where) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _not_utf8(data.count(b"\n", 0, err.start) + 1, data[err.start], err.start, where) from None


def _utf8_only(text: str, where: str) -> str:
    """``text`` (read with undecodable bytes kept as surrogates) when it was all UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        char = ord(text[err.start])
        byte = char - 0xDC00 if 0xDC80 <= char <= 0xDCFF else char
        raise _not_utf8(text.count("\n", 0, err.start) + 1, byte, err.start, where) from None
    return text


def _not_utf8(line: int, byte: int, offset: int, where: str) -> InputError:
    return InputError(f"cannot read: not UTF-8 text (line {line}, byte 0x{byte:02x} at offset "
                      f"{offset}); Kubernetes objects are UTF-8", where=where)


def parse_documents(text: str, name: str) -> list[Any]:
    """The documents of one file: JSON when it starts with ``{``/``[``, YAML otherwise."""
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"line {err.lineno}: invalid JSON: {err.msg}", where=name) from None
        except RecursionError:
            raise InputError("invalid JSON: nested too deeply (Kubernetes objects are a few "
                             "dozen levels deep at most)", where=name) from None
        return data if isinstance(data, list) else [data]
    import yaml  # only for YAML input: JSON (the fast way for big clusters) starts without it

    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML has it
    try:
        docs = [d for d in yaml.load_all(text, Loader=loader) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise InputError(f"{line}invalid YAML: {shown(problem)[1:-1]}", where=name) from None
    except (UnicodeError, RecursionError) as err:
        what = "not UTF-8 text" if isinstance(err, UnicodeError) else "nested too deeply"
        raise InputError(f"invalid YAML: {what}", where=name) from None
    if "&" in text and _ALIAS(text):
        check_aliases(docs, name)
    return docs


_ALIAS = re.compile(r"(?:^|[\s\[{,])\*[^\s\[\]{},]", re.M).search
"""Where a YAML alias (``*name``) may be: only then are the documents checked for expansion."""

MAX_EXPANDED = 100_000
"""Values an aliased document may expand to (when that is also ten times what is written)."""


def check_aliases(docs: list[Any], name: str) -> None:
    """Refuse documents whose aliases expand them enormously (a "billion laughs" bomb) or
    that contain themselves: anything walking them later would run for minutes."""
    sizes: dict[int, int] = {}  # id of a list or mapping -> values it expands to
    open_: set[int] = set()
    stack: list[tuple[Any, bool]] = [(doc, False) for doc in docs]
    while stack:
        node, closing = stack.pop()
        items = node.values() if node.__class__ is dict else node if node.__class__ is list else None
        if items is None:
            continue
        key = id(node)
        if closing:
            sizes[key] = 1 + sum(sizes.get(id(item), 1) for item in items)
            open_.discard(key)
            if sizes[key] > MAX_EXPANDED and sizes[key] > 10 * len(sizes):
                raise InputError(f"YAML aliases expand to more than {MAX_EXPANDED:,} values from "
                                 f"{len(sizes):,} written: write the values out", where=name)
        elif key in open_:
            raise InputError("a YAML alias refers to the value that contains it", where=name)
        elif key not in sizes:
            open_.add(key)
            stack.append((node, True))
            stack.extend((item, False) for item in items)


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
                prepare: Callable[[str, str], str] | None = None,
                warn: Callable[[str], None] | None = None, strict: bool = False) -> Cluster:
    """Read every input into one :class:`Cluster`; notes and warnings also go to ``note``
    and ``warn`` when given. ``prepare(text, name)`` may check or repair each file's text
    before it is parsed. An input without any object is an error; so is, with ``strict``, a
    field the object's API does not have (else it is a warning)."""
    cluster = Cluster()
    for name in expand_paths(inputs):
        display = "<stdin>" if name == "-" else name
        text = read_text(name)
        if prepare is not None:
            text = prepare(text, display)
        docs = parse_documents(text, display)
        if not docs:
            raise InputError("holds no Kubernetes objects (an empty file, or only comments?)",
                             where=display)
        for obj, where in _objects(docs, display):
            _add(cluster, obj, where, strict)
    _mirror_legacy(cluster)
    if note is not None:
        for text in cluster.notes:
            note(text)
    if warn is not None:
        for text in cluster.warnings:
            warn(text)
    return cluster


def check_fields(obj: dict[str, Any], kind: str, where: str, strict: bool) -> list[str]:
    """Warnings for the fields of ``obj`` its API does not have; with ``strict``, an error."""
    unknown = unknown_fields(obj, kind)
    if unknown and strict:
        raise InputError(f"{unknown[0]}: unknown field (not in the {kind} API; a typo?)", where=where)
    return [f"{where}: {path}: unknown field, ignored (not in the {kind} API; a typo? "
            "--strict makes this an error)" for path in unknown]


def _add(cluster: Cluster, obj: dict[str, Any], where: str, strict: bool = False) -> None:
    kind = obj.get("kind")
    api = obj.get("apiVersion")
    if not isinstance(kind, str) or not kind:
        raise InputError("kind: missing", where=where)
    if kind in ("Endpoints", "Node", "KubeProxyConfiguration") and (
            kind == "KubeProxyConfiguration" or api in _API_VERSIONS[kind]):
        cluster.warnings += check_fields(obj, kind, where, strict)  # few objects: no fast path
    if kind == "Service" and api in (None, "v1"):
        svc = common_service(obj, where)  # the fast path: fields certified known
        if svc is None:
            cluster.warnings += check_fields(obj, kind, where, strict)
            svc = decode_service(obj, where)
        cluster.services.append(svc)
        if svc.type in ("NodePort", "LoadBalancer"):
            _note_missing_node_ports(cluster, svc, obj, where)
    elif kind == "EndpointSlice" and api in (None, "discovery.k8s.io/v1"):
        if strict:  # an unknown field is refused before a bad value is
            check_fields(obj, kind, where, strict)
        eps, certified = decode_endpoint_slice_known(obj, where)
        if not certified:
            cluster.warnings += check_fields(obj, kind, where, strict)
        cluster.slices.append(eps)
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
