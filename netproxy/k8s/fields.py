"""The fields each kind of object may have: unknown ones are reported, as kubectl's strict field
validation and kube-proxy's strict decoding of its configuration do.

A typo (``sesionAffinity``, ``clusterCIRD``) is otherwise silently ignored and the default is
used, which is the kind of quiet assumption netproxy must not make. A schema is a mapping from
field name to the schema of its value: another mapping (an object whose fields are known),
``[schema]`` (a list of such objects) or ``None`` (anything: maps of names, opaque objects,
scalars). Every field of the API's version is listed, also those kube-proxy does not read, and
fields that older API versions had, so that real dumps of older clusters pass.

Services and EndpointSlices are certified by the decoder's fast paths (which compare each
level's keys with :func:`known`); :func:`unknown_fields` walks only the other objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

Schema = dict[str, Any]

_OBJECT_META: Schema = dict.fromkeys((
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields", "clusterName",
    "initializers"))

_TOP = ("apiVersion", "kind")

SERVICE: Schema = {
    **dict.fromkeys(_TOP), "metadata": _OBJECT_META,
    "spec": {
        **dict.fromkeys((
            "selector", "clusterIP", "clusterIPs", "type", "externalIPs", "sessionAffinity",
            "loadBalancerIP", "loadBalancerSourceRanges", "externalName", "externalTrafficPolicy",
            "healthCheckNodePort", "publishNotReadyAddresses", "ipFamilies", "ipFamilyPolicy",
            "allocateLoadBalancerNodePorts", "loadBalancerClass", "internalTrafficPolicy",
            "trafficDistribution", "topologyKeys", "ipFamily")),
        "ports": [dict.fromkeys(("name", "protocol", "appProtocol", "port", "targetPort", "nodePort"))],
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": None}},
    },
    "status": {
        "conditions": None,
        "loadBalancer": {"ingress": [dict.fromkeys(("ip", "hostname", "ipMode", "ports"))]},
    },
}

ENDPOINT_SLICE: Schema = {
    **dict.fromkeys(_TOP), "metadata": _OBJECT_META, "addressType": None,
    "endpoints": [{
        **dict.fromkeys(("addresses", "hostname", "targetRef", "nodeName", "zone", "topology",
                         "deprecatedTopology")),
        "conditions": dict.fromkeys(("ready", "serving", "terminating")),
        "hints": dict.fromkeys(("forZones", "forNodes")),
    }],
    "ports": [dict.fromkeys(("name", "protocol", "port", "appProtocol"))],
}

_ENDPOINT_ADDRESS: Schema = dict.fromkeys(("ip", "hostname", "nodeName", "targetRef"))
ENDPOINTS: Schema = {
    **dict.fromkeys(_TOP), "metadata": _OBJECT_META,
    "subsets": [{"addresses": [_ENDPOINT_ADDRESS], "notReadyAddresses": [_ENDPOINT_ADDRESS],
                 "ports": [dict.fromkeys(("name", "port", "protocol", "appProtocol"))]}],
}

NODE: Schema = {
    **dict.fromkeys(_TOP), "metadata": _OBJECT_META,
    "spec": dict.fromkeys(("podCIDR", "podCIDRs", "providerID", "unschedulable", "taints",
                           "configSource", "externalID")),
    "status": {
        **dict.fromkeys(("capacity", "allocatable", "phase", "conditions", "daemonEndpoints",
                         "nodeInfo", "images", "volumesInUse", "volumesAttached", "config",
                         "runtimeHandlers", "features", "declaredFeatures")),
        "addresses": [dict.fromkeys(("type", "address"))],
    },
}

_SYNC = ("syncPeriod", "minSyncPeriod")
KUBE_PROXY_CONFIGURATION: Schema = {
    **dict.fromkeys(_TOP),
    **dict.fromkeys((
        "featureGates", "clientConnection", "logging", "hostnameOverride", "bindAddress",
        "healthzBindAddress", "metricsBindAddress", "bindAddressHardFail", "enableProfiling",
        "showHiddenMetricsForVersion", "mode", "winkernel", "clusterCIDR", "nodePortAddresses",
        "oomScoreAdj", "configSyncPeriod", "portRange", "udpIdleTimeout", "windowsRunAsService",
        "detectLocalMode", "resourceContainer", "ipv6DualStack", "linux")),
    "iptables": dict.fromkeys(("masqueradeBit", "masqueradeAll", "localhostNodePorts", *_SYNC)),
    "ipvs": dict.fromkeys(("scheduler", "excludeCIDRs", "strictARP", "tcpTimeout", "tcpFinTimeout",
                           "udpTimeout", *_SYNC)),
    "nftables": dict.fromkeys(("masqueradeBit", "masqueradeAll", *_SYNC)),
    "conntrack": dict.fromkeys(("maxPerCore", "min", "tcpEstablishedTimeout", "tcpCloseWaitTimeout",
                                "tcpBeLiberal", "udpTimeout", "udpStreamTimeout")),
    "detectLocal": dict.fromkeys(("bridgeInterface", "interfaceNamePrefix")),
}

SCHEMAS: dict[str, Schema] = {"Service": SERVICE, "EndpointSlice": ENDPOINT_SLICE,
                              "Endpoints": ENDPOINTS, "Node": NODE,
                              "KubeProxyConfiguration": KUBE_PROXY_CONFIGURATION}

class _Shape(NamedTuple):
    """A schema made ready for checking: its field names, and the fields with a schema."""

    known: frozenset[str]
    nested: tuple[tuple[str, _Shape, bool], ...]  # (field, its shape, whether a list of them)


def _shape(schema: Schema) -> _Shape:
    nested = tuple((key, _shape(sub[0] if sub.__class__ is list else sub), sub.__class__ is list)
                   for key, sub in schema.items() if sub is not None)
    return _Shape(frozenset(schema), nested)


_SHAPES = {kind: _shape(schema) for kind, schema in SCHEMAS.items()}


def unknown_fields(obj: dict[str, Any], kind: str) -> list[str]:
    """The paths of the fields of ``obj`` (a ``kind`` object) its API version does not have."""
    shape = _SHAPES.get(kind)
    if shape is None or _clean(obj, shape):
        return []
    return list(_unknown(obj, shape, ""))


def known(kind: str, *path: str) -> frozenset[str]:
    """The field names of the object at ``path`` in a ``kind`` (for the decoders' fast paths,
    which compare an object's keys with them and so certify its fields known)."""
    shape = _SHAPES[kind]
    for key in path:
        shape = next(sub for name, sub, _ in shape.nested if name == key)
    return shape.known


def _clean(obj: dict[str, Any], shape: _Shape) -> bool:
    """Whether ``obj`` has only known fields: the quick answer for the common case, without
    building paths; the items of a list are answered all at once."""
    if not obj.keys() <= shape.known:
        return False
    for key, sub, is_list in shape.nested:
        value = obj.get(key)
        if value.__class__ is dict:
            if is_list or not _clean(value, sub):
                return False
        elif value.__class__ is list and value and is_list and not _clean_items(value, sub):
            return False
    return True


def _clean_items(items: list[Any], shape: _Shape) -> bool:
    try:
        names = set().union(*map(dict.keys, items))  # TypeError: an item is no mapping
    except TypeError:
        return False
    if not names <= shape.known:
        return False
    for key, sub, is_list in shape.nested:
        if key not in names:
            continue
        children = [item.get(key) for item in items]
        if is_list:
            if not all(c.__class__ is not list or not c or _clean_items(c, sub) for c in children):
                return False
        elif sub.nested:
            if not all(c is None or c.__class__ is dict and _clean(c, sub) for c in children):
                return False
        else:
            try:  # a flat object in every item: one union of all their fields
                if not set().union(*map(dict.keys, filter(None, children))) <= sub.known:
                    return False
            except TypeError:
                return False
    return True


def _unknown(obj: dict[str, Any], shape: _Shape, prefix: str) -> Iterator[str]:
    """The paths of the unknown fields of ``obj`` and of the objects in it."""
    keys = obj.keys()
    if not keys <= shape.known:
        for key in sorted(keys - shape.known, key=str):
            yield f"{prefix}{key}"
    for key, sub, is_list in shape.nested:
        value = obj.get(key)
        if value.__class__ is dict and not is_list:
            yield from _unknown(value, sub, f"{prefix}{key}.")
        elif value.__class__ is list and is_list:
            for i, item in enumerate(value):
                if item.__class__ is dict:
                    yield from _unknown(item, sub, f"{prefix}{key}[{i}].")
