"""Decode Kubernetes objects (plain dicts from YAML/JSON) into :mod:`netproxy.k8s.objects`.

Applies the API server's defaults and validates the fields kube-proxy depends on. Every error
is an :class:`~netproxy.errors.InputError` naming the source (file and document) and the field
path, e.g. ``svc.yaml, document 2: spec.ports[0].port: ...``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from netproxy.errors import InputError
from netproxy.k8s.fields import known
from netproxy.k8s.ipaddr import all_canonical_ipv4, canonical_ip, is_canonical_ipv4, parse_cidr
from netproxy.k8s.objects import (
    Endpoint,
    EndpointPort,
    EndpointSlice,
    LoadBalancerIngress,
    Node,
    Service,
    ServicePortSpec,
)
from netproxy.textsafe import cut, digits, shown

T = TypeVar("T")

PROTOCOLS = ("TCP", "UDP", "SCTP")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")

DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?").fullmatch
"""RFC 1123 label: namespaces, port names."""
DNS1035_LABEL = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?").fullmatch
"""RFC 1035 label: Service names."""
_SUBDOMAIN = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*").fullmatch
_TARGET_PORT = re.compile(r"[a-z0-9](?:-?[a-z0-9]){0,14}").fullmatch
"""A ``targetPort`` string: a port number or an IANA service name (at most 15 characters)."""


def is_subdomain(text: str) -> bool:
    """Whether ``text`` is a DNS-1123 subdomain (Node, EndpointSlice and Endpoints names)."""
    return len(text) <= 253 and _SUBDOMAIN(text) is not None


_NAME_RULES: dict[str, tuple[Callable[[str], object], str]] = {
    "label": (DNS_LABEL, "a DNS-1123 label: at most 63 lowercase letters, digits and '-', "
                         "starting and ending with a letter or digit"),
    "service": (DNS1035_LABEL, "a DNS-1035 label: at most 63 lowercase letters, digits and '-', "
                               "starting with a letter and ending with a letter or digit"),
    "subdomain": (is_subdomain, "a DNS-1123 subdomain: "
                  "at most 253 characters, dot-separated lowercase letters, digits and '-'"),
}
"""The API server's rules for object names (``NameIsDNS...`` in its validation)."""


def check_name(value: str, source: str, path: str, rule: str) -> str:
    """``value`` when it is a valid name of kind ``rule`` (see :data:`_NAME_RULES`)."""
    match, what = _NAME_RULES[rule]
    if not match(value):
        raise fail(source, path, f"invalid name {shown(value)} (the API server requires {what})")
    return value


def fail(source: str, path: str, message: str) -> InputError:
    """The one-line error for field ``path`` of the object read from ``source``."""
    return InputError(f"{path}: {message}" if path else message, where=source)


def _map(value: Any, source: str, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(source, path, f"must be a mapping, not {type(value).__name__}")
    return value


def _list(value: Any, source: str, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail(source, path, f"must be a list, not {type(value).__name__}")
    return value


def _str(value: Any, source: str, path: str, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise fail(source, path, f"must be a string, not {shown(value)}")
    return value


def _labels(meta: dict[str, Any], source: str) -> dict[str, str]:
    return _string_map(meta.get("labels"), source, "metadata.labels")


def _common_string_map(value: Any) -> dict[str, str] | None:
    """A copy of labels or a selector whose keys and values are all strings, else None."""
    if value.__class__ is not dict or not (_all_str(value) and _all_str(value.values())):
        return None
    return dict(value)


def _string_map(value: Any, source: str, path: str) -> dict[str, str]:
    """Labels or a selector: a new mapping of strings (``None`` values read as ``""``, other
    scalars as their text); a list or mapping as a value is an error."""
    out = {}
    for k, v in _map(value, source, path).items():
        if v.__class__ is not str:
            if v is None:
                v = ""
            elif isinstance(v, list | dict):
                raise fail(source, f"{path}.{cut(str(k))}", f"must be a string, not {shown(v)}")
            else:
                v = str(v)
        out[k if k.__class__ is str else str(k)] = v
    return out


def _int(value: Any, source: str, path: str, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise fail(source, path, f"invalid {what} {shown(value)} (want {low}-{high})")
    if isinstance(value, str):
        if not digits(value):
            raise fail(source, path, f"invalid {what} {shown(value)} (want {low}-{high})")
        value = int(value)
    if not low <= value <= high:
        raise fail(source, path, f"invalid {what} {value} (want {low}-{high})")
    return value


def _bool(value: Any, source: str, path: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise fail(source, path, f"must be true or false, not {shown(value)}")
    return value


def _ip(value: Any, source: str, path: str) -> str:
    if value.__class__ is str and is_canonical_ipv4(value):
        return value  # the common case; canonical_ip would accept it as well
    text = _str(value, source, path)
    if canonical_ip(text) is None:
        raise fail(source, path, f"invalid IP address {shown(text)}")
    return text


def _all_str(values: Iterable[Any]) -> bool:
    """Whether every item is a string (``join`` checks them in C)."""
    try:
        "".join(values)
    except TypeError:
        return False
    return True


def _strs(value: Any, source: str, path: str) -> list[str]:
    """A list of strings (``None`` items read as ``""``); a new list.

    The indexed paths of the items are only built when an item is not a string, for
    :func:`_str` to name it (or to read ``None`` as ``""``).
    """
    if value.__class__ is list and _all_str(value):
        return value[:]
    return [_str(v, source, f"{path}[{i}]") for i, v in enumerate(_list(value, source, path))]


def _ip_list(value: Any, source: str, path: str) -> list[str]:
    """A list of IP addresses, checked item by item in order; a new list."""
    if value.__class__ is list and all_canonical_ipv4(value):
        return value[:]  # one match for the whole list: the common case
    return [_ip(v, source, f"{path}[{i}]") for i, v in enumerate(_list(value, source, path))]


def _check_ips(values: list[str], source: str, path: str) -> None:
    """Every string of ``values`` (the list at ``path``) must be an IP address."""
    if values and all_canonical_ipv4(values):
        return  # one match for the whole list: the common case
    for i, ip in enumerate(values):
        _ip(ip, source, f"{path}[{i}]")


def _protocol(value: Any, source: str, path: str) -> str:
    proto = _str(value, source, path, "TCP")
    if proto not in PROTOCOLS:
        raise fail(source, path, f"unknown protocol {shown(proto)} (want TCP, UDP or SCTP)")
    return proto


def metadata(doc: dict[str, Any], source: str, rule: str = "subdomain") -> tuple[str, str, dict[str, Any]]:
    """``(namespace, name, metadata)``; the namespace defaults to ``default`` like kubectl.

    The name must pass the API server's rule for the kind (``rule``, see :func:`check_name`),
    the namespace is a DNS-1123 label: a name with a newline or a quote never reaches
    kube-proxy, and would break the comments of the rules written for it.
    """
    meta = _map(doc.get("metadata"), source, "metadata")
    name = _str(meta.get("name"), source, "metadata.name")
    if not name:
        raise fail(source, "metadata.name", "missing")
    check_name(name, source, "metadata.name", rule)
    namespace = _str(meta.get("namespace"), source, "metadata.namespace") or "default"
    check_name(namespace, source, "metadata.namespace", "label")
    return namespace, name, meta


def decode_service(doc: dict[str, Any], source: str) -> Service:
    """A ``v1`` Service with API defaults; invalid IPs, ports or policies are errors."""
    svc = _common_service(doc, source)
    return svc if svc is not None else _checked_service(doc, source)


def common_service(doc: dict[str, Any], source: str) -> Service | None:
    """The Service when the fast path decodes it, which also certifies that it has no field
    the API lacks (else None: :func:`decode_service` and an unknown-field check decide)."""
    return _common_service(doc, source)


# The fields of the common shapes (netproxy.k8s.fields): a fast path takes an object only
# when its keys are among them, so an object it decodes has no unknown field.
_SVC = known("Service")
_SVC_META = known("Service", "metadata")
_SVC_SPEC = known("Service", "spec")
_SVC_PORT = known("Service", "spec", "ports")
_SVC_AFFINITY = known("Service", "spec", "sessionAffinityConfig")
_SVC_CLIENT_IP = known("Service", "spec", "sessionAffinityConfig", "clientIP")
_SVC_STATUS = known("Service", "status")
_SVC_LB = known("Service", "status", "loadBalancer")
_SVC_INGRESS = known("Service", "status", "loadBalancer", "ingress")
_SLICE = known("EndpointSlice")
_SLICE_META = known("EndpointSlice", "metadata")
_SLICE_PORT = known("EndpointSlice", "ports")
_ENDPOINT = known("EndpointSlice", "endpoints")
_CONDITIONS = known("EndpointSlice", "endpoints", "conditions")


_COMMON_TYPES = {"ClusterIP": "", "NodePort": "Cluster", "LoadBalancer": "Cluster"}
"""The types :func:`_common_service` decodes, with their default external traffic policy."""


def _common_service(doc: dict[str, Any], source: str) -> Service | None:
    """The Service when every field the decoder reads has its common form, else None.

    Common forms: mappings where mappings belong, a name, a ClusterIP/NodePort/LoadBalancer
    type, a cluster IP that is a canonical IPv4 address (or ``None``, headless), known
    families, policies and affinity, ports of the common shape (:func:`_common_service_port`),
    valid source ranges, and fields left out. For such a document :func:`_checked_service`
    raises nothing and returns an equal Service; it runs for every other document, to name
    the bad field. Nothing here raises.
    """
    meta = doc.get("metadata")
    spec = doc.get("spec")
    if (meta.__class__ is not dict or spec.__class__ is not dict or not doc.keys() <= _SVC
            or not meta.keys() <= _SVC_META or not spec.keys() <= _SVC_SPEC):
        return None
    name = meta.get("name")
    namespace = meta.get("namespace")
    labels = {} if meta.get("labels") is None else _common_string_map(meta["labels"])
    svc_type = spec.get("type", "ClusterIP")
    if (name.__class__ is not str or not DNS1035_LABEL(name)
            or not (namespace is None or namespace.__class__ is str and DNS_LABEL(namespace))
            or labels is None
            or svc_type.__class__ is not str or svc_type not in _COMMON_TYPES):
        return None
    selector = spec.get("selector")
    if selector is not None:
        selector = _common_string_map(selector)
        if selector is None:
            return None
    addresses = _common_cluster_ips(spec)
    families = _common_families(spec.get("ipFamilies"))
    ports = _common_ports(spec.get("ports"), svc_type)
    external_ips = _common_ip_list(spec.get("externalIPs"))
    ranges = _common_ranges(spec.get("loadBalancerSourceRanges"))
    external = _common_policy(spec.get("externalTrafficPolicy"), _COMMON_TYPES[svc_type])
    internal = _common_policy(spec.get("internalTrafficPolicy"), "Cluster")
    hc = spec.get("healthCheckNodePort", 0)
    affinity = spec.get("sessionAffinity", "None")
    timeout = _common_timeout(spec.get("sessionAffinityConfig"))
    distribution = spec.get("trafficDistribution", "")
    ingress = _common_ingress(doc.get("status"))
    if (addresses is None or families is None or ports is None or external_ips is None
            or ranges is None or external is None or internal is None or timeout is None
            or ingress is None
            or hc.__class__ is not int or not 0 <= hc <= 65535
            or affinity.__class__ is not str or affinity not in ("None", "ClientIP")
            or distribution.__class__ is not str):
        return None
    return Service(
        namespace or "default", name, type=svc_type, cluster_ip=addresses[0],
        cluster_ips=addresses[1], ip_families=families, ports=ports, external_ips=external_ips,
        lb_ingress=ingress, lb_source_ranges=ranges, external_traffic_policy=external,
        internal_traffic_policy=internal, health_check_node_port=hc, session_affinity=affinity,
        affinity_timeout=timeout,
        selector=selector, labels=labels, traffic_distribution=distribution, source=source)


def _common_cluster_ips(spec: dict[str, Any]) -> tuple[str, list[str]] | None:
    """``(clusterIP, clusterIPs)`` when ``clusterIP`` is set and every address is an IP."""
    cluster_ip = spec.get("clusterIP")
    cluster_ips = spec.get("clusterIPs")
    if cluster_ip.__class__ is not str or not (cluster_ip == "None" or is_canonical_ipv4(cluster_ip)):
        return None  # unset (taken from clusterIPs), not canonical, or an error
    if cluster_ips is None:
        return cluster_ip, [cluster_ip]
    if cluster_ips.__class__ is not list or not _all_str(cluster_ips):
        return None
    if cluster_ip != "None" and not (
            cluster_ips == [cluster_ip] or all(canonical_ip(ip) for ip in cluster_ips)):
        return None  # headless services do not check clusterIPs
    return cluster_ip, cluster_ips[:] or [cluster_ip]


def _common_families(value: Any) -> list[str] | None:
    if value is None:
        return []
    if value.__class__ is not list:
        return None
    for family in value:
        if family.__class__ is not str or family not in ("IPv4", "IPv6"):
            return None
    return value[:]


def _each(value: Any, convert: Callable[[Any], T | None]) -> list[T] | None:
    """``convert`` applied to every item of a list (``None``: no list, the empty one), or
    ``None`` when ``value`` is no list or an item does not convert."""
    if value is None:
        return []
    if value.__class__ is not list:
        return None
    out = []
    for raw in value:
        item = convert(raw)
        if item is None:
            return None
        out.append(item)
    return out


def _common_ports(value: Any, svc_type: str) -> list[ServicePortSpec] | None:
    return _each(value, lambda raw: _common_service_port(raw, svc_type))


def _common_ip_list(value: Any) -> list[str] | None:
    if value is None:
        return []
    return value[:] if value.__class__ is list and all_canonical_ipv4(value) else None


def _common_range(raw: Any) -> str | None:
    if raw.__class__ is not str or parse_cidr(raw.strip()) is None:
        return None
    return str(raw.strip())


def _common_ranges(value: Any) -> list[str] | None:
    return _each(value, _common_range)


def _common_policy(value: Any, default: str) -> str | None:
    if value is None:
        return default
    if value.__class__ is not str:
        return None
    policy = value or default
    return policy if policy in ("Cluster", "Local", "") else None


def _common_timeout(value: Any) -> int | None:
    """``sessionAffinityConfig.clientIP.timeoutSeconds``, 10800 when unset."""
    if value is None:
        return 10800
    if value.__class__ is not dict or not value.keys() <= _SVC_AFFINITY:
        return None
    client = value.get("clientIP")
    if client is None:
        return 10800
    if client.__class__ is not dict or not client.keys() <= _SVC_CLIENT_IP:
        return None
    timeout = client.get("timeoutSeconds")
    if timeout is None:
        return 10800
    return timeout if timeout.__class__ is int and 1 <= timeout <= 86400 else None


def _common_ingress(status: Any) -> list[LoadBalancerIngress] | None:
    """``status.loadBalancer.ingress`` when every entry has the common shape."""
    if status is None:
        return []
    if status.__class__ is not dict or not status.keys() <= _SVC_STATUS:
        return None
    lb = status.get("loadBalancer")
    if lb is None:
        return []
    if lb.__class__ is not dict or not lb.keys() <= _SVC_LB:
        return None
    return _each(lb.get("ingress"), _common_lb_ingress)


def _checked_service(doc: dict[str, Any], source: str) -> Service:
    """:func:`decode_service` field by field, raising for the first bad one."""
    namespace, name, meta = metadata(doc, source, "service")
    spec = _map(doc.get("spec"), source, "spec")
    svc = Service(namespace, name, source=source, labels=_labels(meta, source))
    svc.type = _str(spec.get("type"), source, "spec.type", "ClusterIP")
    if svc.type not in SERVICE_TYPES:
        raise fail(source, "spec.type", f"unknown service type {shown(svc.type)}")
    if svc.type == "ExternalName":
        return svc
    svc.cluster_ip = _str(spec.get("clusterIP"), source, "spec.clusterIP")
    cluster_ips = _strs(spec.get("clusterIPs"), source, "spec.clusterIPs")
    if not svc.cluster_ip and cluster_ips:
        svc.cluster_ip = cluster_ips[0]
    if not svc.cluster_ip:
        raise fail(source, "spec.clusterIP",
                   "missing (use the object as the API server returns it, or clusterIP: None)")
    if svc.cluster_ip != "None":
        _ip(svc.cluster_ip, source, "spec.clusterIP")
        _check_ips(cluster_ips, source, "spec.clusterIPs")
    svc.cluster_ips = cluster_ips or [svc.cluster_ip]
    svc.ip_families = _strs(spec.get("ipFamilies"), source, "spec.ipFamilies")
    for i, fam in enumerate(svc.ip_families):
        if fam not in ("IPv4", "IPv6"):
            raise fail(source, f"spec.ipFamilies[{i}]", f"unknown IP family {shown(fam)}")
    selector = spec.get("selector")
    svc.selector = None if selector is None else _string_map(selector, source, "spec.selector")
    for i, raw in enumerate(_list(spec.get("ports"), source, "spec.ports")):
        svc.ports.append(_service_port(raw, svc.type, source, i))
    svc.external_ips = _ip_list(spec.get("externalIPs"), source, "spec.externalIPs")
    for i, raw in enumerate(_list(spec.get("loadBalancerSourceRanges"), source,
                                  "spec.loadBalancerSourceRanges")):
        text = (raw if raw.__class__ is str
                else _str(raw, source, f"spec.loadBalancerSourceRanges[{i}]")).strip()
        if parse_cidr(text) is None:
            raise fail(source, f"spec.loadBalancerSourceRanges[{i}]", f"invalid CIDR {shown(text)}")
        svc.lb_source_ranges.append(text)
    external = spec.get("externalTrafficPolicy")
    svc.external_traffic_policy = _policy(external, source, "spec.externalTrafficPolicy",
                                          "Cluster" if svc.type in ("NodePort", "LoadBalancer") else "")
    svc.internal_traffic_policy = _policy(spec.get("internalTrafficPolicy"), source,
                                          "spec.internalTrafficPolicy", "Cluster")
    hc = spec.get("healthCheckNodePort")
    svc.health_check_node_port = 0 if hc in (None, 0) else _int(
        hc, source, "spec.healthCheckNodePort", 1, 65535, "port")
    svc.session_affinity = _str(spec.get("sessionAffinity"), source, "spec.sessionAffinity", "None")
    if svc.session_affinity not in ("None", "ClientIP"):
        raise fail(source, "spec.sessionAffinity", f"unknown session affinity {shown(svc.session_affinity)}")
    cfg = _map(_map(spec.get("sessionAffinityConfig"), source, "spec.sessionAffinityConfig")
               .get("clientIP"), source, "spec.sessionAffinityConfig.clientIP")
    timeout = cfg.get("timeoutSeconds")
    if timeout is not None:
        svc.affinity_timeout = _int(timeout, source, "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                                    1, 86400, "timeout")
    svc.traffic_distribution = _str(spec.get("trafficDistribution"), source, "spec.trafficDistribution")
    status = _map(doc.get("status"), source, "status")
    lb = _map(status.get("loadBalancer"), source, "status.loadBalancer")
    for i, raw in enumerate(_list(lb.get("ingress"), source, "status.loadBalancer.ingress")):
        svc.lb_ingress.append(_lb_ingress(raw, source, i))
    return svc


def _lb_ingress(raw: Any, source: str, index: int) -> LoadBalancerIngress:
    """Entry ``index`` of ``status.loadBalancer.ingress``; strings in the common shape are
    taken as they are (an empty or canonical IPv4 ``ip``), anything else is checked field by
    field by :func:`_lb_ingress_checked`."""
    entry = _common_lb_ingress(raw)
    if entry is not None:
        return entry
    return _lb_ingress_checked(raw, source, f"status.loadBalancer.ingress[{index}]")


def _common_lb_ingress(raw: Any) -> LoadBalancerIngress | None:
    if raw.__class__ is not dict or not raw.keys() <= _SVC_INGRESS:
        return None
    ip = raw.get("ip")
    mode = raw.get("ipMode")
    host = raw.get("hostname")
    if ((ip is None or ip.__class__ is str and (not ip or is_canonical_ipv4(ip)))
            and (mode is None or mode.__class__ is str)
            and (host is None or host.__class__ is str)):
        return LoadBalancerIngress(ip or "", mode or "", host or "")
    return None


def _lb_ingress_checked(raw: Any, source: str, path: str) -> LoadBalancerIngress:
    entry = _map(raw, source, path)
    ip = _str(entry.get("ip"), source, path + ".ip")
    if ip:
        _ip(ip, source, path + ".ip")
    return LoadBalancerIngress(ip, _str(entry.get("ipMode"), source, path + ".ipMode"),
                               _str(entry.get("hostname"), source, path + ".hostname"))


def _policy(value: Any, source: str, path: str, default: str) -> str:
    policy = _str(value, source, path, default) or default
    if policy not in ("Cluster", "Local", ""):
        raise fail(source, path, f"unknown traffic policy {shown(policy)} (want Cluster or Local)")
    return policy


def _service_port(raw: Any, svc_type: str, source: str, index: int) -> ServicePortSpec:
    """Entry ``index`` of ``spec.ports``.

    The common shape (integer ports in range, a string name, a known protocol, a node port
    when the type needs one) is decoded without building field paths; everything else goes to
    :func:`_service_port_checked`, which names the bad field.
    """
    port = _common_service_port(raw, svc_type)
    if port is not None:
        return port
    return _service_port_checked(raw, svc_type, source, f"spec.ports[{index}]")


def _common_service_port(raw: Any, svc_type: str) -> ServicePortSpec | None:
    """The port when it has the common shape (see :func:`_service_port`), else None."""
    if raw.__class__ is not dict or not raw.keys() <= _SVC_PORT:
        return None
    port = raw.get("port")
    node_port = raw.get("nodePort")
    name = raw.get("name")
    protocol = raw.get("protocol")
    if (port.__class__ is int and 1 <= port <= 65535
            and (node_port.__class__ is int and 1 <= node_port <= 65535
                 or node_port is None and svc_type != "NodePort")
            and (name is None or name.__class__ is str and (not name or DNS_LABEL(name)))
            and (protocol is None or protocol.__class__ is str and protocol in PROTOCOLS)):
        target = raw.get("targetPort")
        if target is None:
            target = ""
        elif target.__class__ is int and 1 <= target <= 65535:
            target = str(target)
        elif target.__class__ is not str or not _TARGET_PORT(target):
            return None
        return ServicePortSpec(name or "", protocol or "TCP", port, node_port or 0, target)
    return None


def _service_port_checked(raw: Any, svc_type: str, source: str, path: str) -> ServicePortSpec:
    entry = _map(raw, source, path)
    if "port" not in entry:
        raise fail(source, path + ".port", "missing")
    port = _int(entry.get("port"), source, path + ".port", 1, 65535, "port")
    node_port = 0
    if entry.get("nodePort") not in (None, 0):
        node_port = _int(entry["nodePort"], source, path + ".nodePort", 1, 65535, "port")
    return ServicePortSpec(
        name=_port_name(entry.get("name"), source, path + ".name"),
        protocol=_protocol(entry.get("protocol"), source, path + ".protocol"),
        port=port,
        node_port=node_port,
        target_port=_target_port(entry.get("targetPort"), source, path + ".targetPort"),
    )


def _port_name(value: Any, source: str, path: str) -> str:
    name = _str(value, source, path)
    return check_name(name, source, path, "label") if name else name


def _target_port(value: Any, source: str, path: str) -> str:
    """``targetPort``: a number 1-65535 or a port name, as text (``""`` when unset; the API
    server reads 0 and ``""`` as unset too)."""
    if value is None or value == "" or value.__class__ is int and value == 0:
        return ""
    if value.__class__ is str and _TARGET_PORT(value):
        return value
    if value.__class__ is str and not digits(value):
        raise fail(source, path, f"invalid port name {shown(value)} (the API server requires "
                   "at most 15 lowercase letters, digits and single '-')")
    return str(_int(value, source, path, 1, 65535, "port"))


def decode_endpoint_slice(doc: dict[str, Any], source: str) -> EndpointSlice:
    """A ``discovery.k8s.io/v1`` EndpointSlice, conditions defaulted the way kube-proxy reads them."""
    return decode_endpoint_slice_known(doc, source)[0]


def decode_endpoint_slice_known(doc: dict[str, Any], source: str) -> tuple[EndpointSlice, bool]:
    """:func:`decode_endpoint_slice`, and whether its fast paths certify that the slice has no
    field the API lacks (when not, an unknown-field check decides)."""
    namespace, name, meta = metadata(doc, source, "subdomain")
    certified = doc.keys() <= _SLICE and meta.keys() <= _SLICE_META
    labels = _labels(meta, source)
    address_type = _str(doc.get("addressType"), source, "addressType")
    if address_type not in ("IPv4", "IPv6", "FQDN"):
        raise fail(source, "addressType", f"missing or unknown address type {shown(address_type)}")
    eps = EndpointSlice(namespace, name, labels.get("kubernetes.io/service-name", ""),
                        address_type, labels=labels, source=source)
    for i, raw in enumerate(_list(doc.get("ports"), source, "ports")):
        eps.ports.append(_endpoint_port(raw, source, i))
        certified = certified and raw.keys() <= _SLICE_PORT
    check_ips = address_type != "FQDN"
    raws = _list(doc.get("endpoints"), source, "endpoints")
    fast = _common_endpoints(raws)
    if fast is not None and (not check_ips or _valid_ips(fast[1])):
        eps.endpoints = fast[0]
    else:
        # Some entry is unusual: every entry field by field, naming the bad one.
        eps.endpoints = [_endpoint_checked(raw, check_ips, source, f"endpoints[{i}]")
                         for i, raw in enumerate(raws)]
        certified = False
    return eps, certified


def _endpoint_port(raw: Any, source: str, index: int) -> EndpointPort:
    """Entry ``index`` of an EndpointSlice's ``ports``; the common shape without field paths."""
    if raw.__class__ is dict:
        port = raw.get("port")
        name = raw.get("name")
        protocol = raw.get("protocol")
        if ((port is None or port.__class__ is int and 1 <= port <= 65535)
                and (name is None or name.__class__ is str and (not name or DNS_LABEL(name)))
                and (protocol is None or protocol.__class__ is str and protocol in PROTOCOLS)):
            return EndpointPort(name or "", protocol or "TCP", port or 0)
    path = f"ports[{index}]"
    entry = _map(raw, source, path)
    port = entry.get("port")
    return EndpointPort(
        name=_port_name(entry.get("name"), source, path + ".name"),
        protocol=_protocol(entry.get("protocol"), source, path + ".protocol"),
        port=0 if port is None else _int(port, source, path + ".port", 1, 65535, "port"),
    )


def _names(raw: Any, source: str, path: str) -> frozenset[str]:
    out = []
    for i, item in enumerate(_list(raw, source, path)):
        out.append(_str(_map(item, source, f"{path}[{i}]").get("name"), source, f"{path}[{i}].name"))
    return frozenset(out)


_NONE: frozenset[str] = frozenset()
_new_tuple = tuple.__new__


def _common_endpoints(raws: list[Any]) -> tuple[list[Endpoint], list[str]] | None:
    """The endpoints and their addresses when every entry has the common shape, else None.

    The common shape: a mapping with exactly one address (a string), conditions that are
    unset or a mapping of flags (true, false or unset), a string or unset node name and zone,
    and no hints. For such an entry :func:`_endpoint_checked` would return exactly this tuple
    once its address is known to be an IP (the caller checks the addresses, all at once).
    """
    out = []
    addresses = []
    for raw in raws:
        if raw.__class__ is not dict:
            return None
        addrs = raw.get("addresses")
        cond = raw.get("conditions")
        if cond.__class__ is dict:
            ready, serving, terminating = cond.get("ready"), cond.get("serving"), cond.get("terminating")
        elif cond is None:
            ready = serving = terminating = None
        else:
            return None
        node = raw.get("nodeName")
        zone = raw.get("zone")
        # Only known fields: as many keys as fields read here (no hashing), or all in the schema.
        if (len(raw) != 1 + (cond is not None) + (node is not None) + (zone is not None)
                and not raw.keys() <= _ENDPOINT
                or cond is not None and len(cond) != (ready is not None) + (serving is not None)
                + (terminating is not None) and not cond.keys() <= _CONDITIONS):
            return None
        if (addrs.__class__ is not list or len(addrs) != 1 or raw.get("hints") is not None
                or not (ready is True or ready is False or ready is None)
                or not (serving is True or serving is False or serving is None)
                or not (terminating is False or terminating is True or terminating is None)
                or not (node is None or node.__class__ is str)
                or not (zone is None or zone.__class__ is str)):
            return None
        address = addrs[0]
        if address.__class__ is not str:
            return None
        addresses.append(address)
        out.append(_new_tuple(Endpoint, (addrs, ready is not False, serving is not False,
                                         terminating is True, node or "", zone or "", _NONE, _NONE)))
    return out, addresses


def _valid_ips(addresses: list[str]) -> bool:
    """Whether every address is an IP (canonical IPv4 ones checked all at once)."""
    if addresses and all_canonical_ipv4(addresses):
        return True
    return all(canonical_ip(address) is not None for address in addresses)


def _endpoint_checked(raw: Any, check_ips: bool, source: str, path: str) -> Endpoint:
    entry = _map(raw, source, path)
    addresses = [_str(a, source, f"{path}.addresses[{j}]")
                 for j, a in enumerate(_list(entry.get("addresses"), source, path + ".addresses"))]
    if not addresses:
        raise fail(source, path + ".addresses", "must list at least one address")
    if check_ips:
        for j, addr in enumerate(addresses):
            if canonical_ip(addr) is None:
                raise fail(source, f"{path}.addresses[{j}]", f"invalid IP address {shown(addr)}")
    cond = _map(entry.get("conditions"), source, path + ".conditions")
    hints = _map(entry.get("hints"), source, path + ".hints")
    return Endpoint(
        addresses=addresses,
        ready=_bool(cond.get("ready"), source, path + ".conditions.ready", True),
        serving=_bool(cond.get("serving"), source, path + ".conditions.serving", True),
        terminating=_bool(cond.get("terminating"), source, path + ".conditions.terminating", False),
        node_name=_str(entry.get("nodeName"), source, path + ".nodeName"),
        zone=_str(entry.get("zone"), source, path + ".zone"),
        zone_hints=_names(hints.get("forZones"), source, path + ".hints.forZones"),
        node_hints=_names(hints.get("forNodes"), source, path + ".hints.forNodes"),
    )


def decode_endpoints(doc: dict[str, Any], source: str) -> tuple[str, str, dict[str, str], list[Any]]:
    """A legacy ``v1`` Endpoints: ``(namespace, name, labels, subsets)`` after validation."""
    namespace, name, meta = metadata(doc, source, "subdomain")
    subsets = _list(doc.get("subsets"), source, "subsets")
    for i, raw in enumerate(subsets):
        subset = _map(raw, source, f"subsets[{i}]")
        for key in ("addresses", "notReadyAddresses"):
            for j, addr in enumerate(_list(subset.get(key), source, f"subsets[{i}].{key}")):
                entry = _map(addr, source, f"subsets[{i}].{key}[{j}]")
                _ip(entry.get("ip"), source, f"subsets[{i}].{key}[{j}].ip")
                _str(entry.get("nodeName"), source, f"subsets[{i}].{key}[{j}].nodeName")
        for j, port in enumerate(_list(subset.get("ports"), source, f"subsets[{i}].ports")):
            entry = _map(port, source, f"subsets[{i}].ports[{j}]")
            _int(entry.get("port"), source, f"subsets[{i}].ports[{j}].port", 1, 65535, "port")
            _protocol(entry.get("protocol"), source, f"subsets[{i}].ports[{j}].protocol")
            _port_name(entry.get("name"), source, f"subsets[{i}].ports[{j}].name")
    return namespace, name, _labels(meta, source), subsets


def decode_node(doc: dict[str, Any], source: str) -> Node:
    """A ``v1`` Node: name, labels, ``status.addresses`` and ``spec.podCIDRs``."""
    meta = _map(doc.get("metadata"), source, "metadata")
    name = _str(meta.get("name"), source, "metadata.name")
    if not name:
        raise fail(source, "metadata.name", "missing")
    check_name(name, source, "metadata.name", "subdomain")
    node = Node(name, labels=_labels(meta, source), source=source)
    spec = _map(doc.get("spec"), source, "spec")
    cidrs = _list(spec.get("podCIDRs"), source, "spec.podCIDRs")
    if not cidrs and spec.get("podCIDR"):
        cidrs = [spec["podCIDR"]]
    for i, raw in enumerate(cidrs):
        text = _str(raw, source, f"spec.podCIDRs[{i}]")
        if parse_cidr(text) is None:
            raise fail(source, f"spec.podCIDRs[{i}]", f"invalid CIDR {shown(text)}")
        node.pod_cidrs.append(text)
    status = _map(doc.get("status"), source, "status")
    for i, raw in enumerate(_list(status.get("addresses"), source, "status.addresses")):
        entry = _map(raw, source, f"status.addresses[{i}]")
        node.addresses.append((_str(entry.get("type"), source, f"status.addresses[{i}].type"),
                               _str(entry.get("address"), source, f"status.addresses[{i}].address")))
    return node


def decode_service_cidr(doc: dict[str, Any], source: str) -> list[str]:
    """The CIDRs of a ``networking.k8s.io`` ServiceCIDR (``spec.cidrs``), printed canonically."""
    metadata(doc, source)
    spec = _map(doc.get("spec") or {}, source, "spec")
    out = []
    for i, text in enumerate(_strs(spec.get("cidrs"), source, "spec.cidrs")):
        net = parse_cidr(text)
        if net is None:
            raise fail(source, f"spec.cidrs[{i}]", f"invalid CIDR {text!r}")
        out.append(str(net))
    return out
