#!/usr/bin/env python3
"""Generate a synthetic, seeded Kubernetes cluster: N Services x E endpoints, a mix of types.

    python scripts/synth_cluster.py --services 10000 --endpoints 10 --seed 1 -o cluster.yaml
    python scripts/synth_cluster.py ... --change-percent 5 -o changed.json

The mix (by service index, reproducible): mostly ClusterIP, plus NodePort, LoadBalancer (some
with loadBalancerSourceRanges), externalTrafficPolicy Local, ClientIP affinity and multi-port
services. The output also holds the node ``node-0`` and a KubeProxyConfiguration, so
``netproxy compile FILE`` works without flags. ``--change-percent P`` gives the same cluster
with P% of the services changed (one endpoint added or removed), for diff/apply benchmarks.
Output is JSON when the file name ends in ``.json`` (faster to load), YAML otherwise.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from typing import Any

import yaml

NODES = 50
LOCAL_NODE = "node-0"
CLUSTER_CIDR = "10.128.0.0/9"


def _cluster_ip(i: int) -> str:
    return f"10.{96 + i // 65536}.{i // 256 % 256}.{i % 256}"


def _pod_ip(k: int) -> str:
    return f"10.{128 + k // 65536}.{k // 256 % 256}.{k % 256}"


def _kind_of(i: int) -> dict[str, Any]:
    """Which features service ``i`` uses (a fixed pattern over 20 services)."""
    slot = i % 20
    return {
        "type": "LoadBalancer" if slot in (3, 13, 17) else "NodePort" if slot in (2, 7, 12) else "ClusterIP",
        "local": slot in (7, 13),
        "ranges": slot == 17,
        "affinity": slot == 5,
        "multiport": slot in (9, 19),
    }


def _service(i: int, kind: dict[str, Any]) -> dict[str, Any]:
    ports: list[dict[str, Any]] = [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]
    if kind["multiport"]:
        ports.append({"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353})
    spec: dict[str, Any] = {"type": kind["type"], "clusterIP": _cluster_ip(i),
                            "clusterIPs": [_cluster_ip(i)], "ipFamilies": ["IPv4"], "ports": ports}
    if kind["type"] != "ClusterIP":
        for j, port in enumerate(ports):
            port["nodePort"] = 30000 + (i * 2 + j) % 2768
        spec["externalTrafficPolicy"] = "Local" if kind["local"] else "Cluster"
    status: dict[str, Any] = {}
    if kind["type"] == "LoadBalancer":
        status = {"loadBalancer": {"ingress": [{"ip": f"203.0.{i // 256 % 256}.{i % 256}", "ipMode": "VIP"}]}}
        if kind["local"]:
            spec["healthCheckNodePort"] = 32000 + i % 700
        if kind["ranges"]:
            spec["loadBalancerSourceRanges"] = ["198.51.100.0/24", "192.168.0.0/16"]
    if kind["affinity"]:
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": 10800}}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": f"svc-{i:05d}", "namespace": f"ns-{i % 50:02d}"},
            "spec": spec, "status": status}


def _slice(i: int, kind: dict[str, Any], count: int, first: int, rng: random.Random) -> dict[str, Any]:
    ports = [{"name": "http", "port": 8080, "protocol": "TCP"}]
    if kind["multiport"]:
        ports.append({"name": "dns", "port": 5353, "protocol": "UDP"})
    endpoints = []
    for k in range(count):
        node = f"node-{rng.randrange(NODES)}"
        endpoints.append({"addresses": [_pod_ip(first + k)], "nodeName": node,
                          "conditions": {"ready": True, "serving": True, "terminating": False}})
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"svc-{i:05d}-x1", "namespace": f"ns-{i % 50:02d}",
                         "labels": {"kubernetes.io/service-name": f"svc-{i:05d}"}},
            "addressType": "IPv4", "ports": ports, "endpoints": endpoints}


def generate(services: int, endpoints: int, seed: int, change_percent: float = 0.0) -> list[dict[str, Any]]:
    """The cluster's objects: a Node, a KubeProxyConfiguration, then Service/EndpointSlice pairs."""
    rng = random.Random(seed)
    changed: set[int] = set()
    if change_percent > 0:
        pick = random.Random(seed * 7919 + 1)
        changed = set(pick.sample(range(services), round(services * change_percent / 100)))
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Node",
         "metadata": {"name": LOCAL_NODE, "labels": {"topology.kubernetes.io/zone": "zone-a"}},
         "spec": {"podCIDRs": ["10.128.0.0/24"]},
         "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.10"},
                                  {"type": "Hostname", "address": LOCAL_NODE}]}},
        {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
         "hostnameOverride": LOCAL_NODE, "clusterCIDR": CLUSTER_CIDR},
    ]
    # Endpoint addresses are allocated with a gap per service so a changed copy never collides.
    stride = endpoints + 1
    for i in range(services):
        kind = _kind_of(i)
        count = endpoints
        if i in changed:
            count = endpoints + 1 if i % 2 == 0 or endpoints <= 1 else endpoints - 1
        slice_rng = random.Random(rng.random())
        objects.append(_service(i, kind))
        objects.append(_slice(i, kind, count, i * stride, slice_rng))
    return objects


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=100)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--change-percent", type=float, default=0.0)
    ap.add_argument("-o", "--output", default="-")
    args = ap.parse_args(argv)
    objects = generate(args.services, args.endpoints, args.seed, args.change_percent)
    doc = {"apiVersion": "v1", "kind": "List", "items": objects}
    if args.output.endswith(".json"):
        text = json.dumps(doc, separators=(",", ":"))
    else:
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        text = yaml.dump(doc, Dumper=dumper, sort_keys=False)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
