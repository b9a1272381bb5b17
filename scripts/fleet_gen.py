#!/usr/bin/env python3
"""Generate a fleet for ``netproxy audit``: N nodes of one cluster with M Services, each node's
``iptables-save`` dump compiled for that node, and faults injected at known places.

    python scripts/fleet_gen.py --nodes 8 --services 40 --endpoints 4 -o fleet/
    netproxy audit fleet/cluster.json --nodes fleet/nodes/

Writes ``cluster.json`` (Nodes, a KubeProxyConfiguration, Services, EndpointSlices: the
Services of ``scripts/synth_cluster.py``, endpoints spread over the nodes), ``nodes/NODE.rules``
and ``faults.json``, the list of injected faults with the node and Service ports each one
touches. The faults (``--faults none`` leaves them out), each on its own node:

* ``endpoint-missing``: the node's rules were compiled without one endpoint of a Service;
* ``stale-chain``: an endpoint chain of a Service that nothing jumps to;
* ``share-changed``: the first probability of a Service's KUBE-SVC chain is 0.5;
* ``frozen``: the node's rules are those of an older state of the cluster (5% of the Services
  had other endpoints), as when its kube-proxy stopped syncing;
* ``other-mode``: the node runs kube-proxy in nftables mode (its file is ``nft list table``'s
  view of the kube-proxy table compiled for it, so it is right for the API state, in the wrong
  mode);
* ``truncated``: the dump ends in the middle of the nat table.

``--snapshots N`` writes the last N nodes without a fault as node snapshots (``netproxy
snapshot``'s format) in files named ``host-K.snap``, so that the node's name comes from the
snapshot's hostname section.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import synth_cluster  # noqa: E402

from netproxy.chainnames import endpoint_chain, service_chain  # noqa: E402
from netproxy.commands.cluster_options import settings_for  # noqa: E402
from netproxy.compiler import compile_cluster  # noqa: E402
from netproxy.k8s.loader import load_inputs  # noqa: E402
from netproxy.render import render_save  # noqa: E402

FAULTS = ("endpoint-missing", "stale-chain", "share-changed", "frozen", "other-mode", "truncated")
FROZEN_PERCENT = 5.0


def node_names(count: int) -> list[str]:
    width = max(3, len(str(count - 1)))
    return [f"node-{k:0{width}d}" for k in range(count)]


def _node_object(name: str, k: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": f"zone-{k % 3}"}},
            "spec": {"podCIDRs": [f"10.{128 + k // 256}.{k % 256}.0/24"]},
            "status": {"addresses": [{"type": "InternalIP", "address": f"192.168.{k // 250}.{k % 250 + 1}"},
                                     {"type": "Hostname", "address": name}]}}


def cluster_objects(names: list[str], services: int, endpoints: int, seed: int,
                    change_percent: float = 0.0) -> list[dict[str, Any]]:
    """The fleet's objects; endpoint ``k`` of Service ``i`` runs on a node fixed by (i, k)."""
    objects = synth_cluster.generate(services, endpoints, seed, change_percent)
    out: list[dict[str, Any]] = [_node_object(name, k) for k, name in enumerate(names)]
    out.append({"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
                "clusterCIDR": synth_cluster.CLUSTER_CIDR})
    for obj in objects:
        if obj["kind"] == "EndpointSlice":
            i = int(obj["metadata"]["name"].split("-")[1])
            for k, ep in enumerate(obj["endpoints"]):
                ep["nodeName"] = names[(i * 7919 + k * 104729 + seed) % len(names)]
            out.append(obj)
        elif obj["kind"] == "Service":
            out.append(obj)
    return out


def _write_cluster(objects: list[dict[str, Any]], path: Path) -> None:
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects},
                               separators=(",", ":")), encoding="utf-8")


def compile_node(cluster_path: Path, node: str) -> str:
    """The node's ``iptables-save`` view, compiled on its own (no sharing between nodes)."""
    cluster = load_inputs([str(cluster_path)])
    params: dict[str, Any] = {"inputs": (str(cluster_path),), "hostname_override": node,
                              "family": "ipv4"}
    return render_save(compile_cluster(cluster, settings_for(params, cluster)).save)


class _Compiler:
    """Compiles many nodes of one cluster file (loads it once)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cluster = load_inputs([str(path)])

    def node(self, name: str) -> str:
        params: dict[str, Any] = {"inputs": (str(self.path),), "hostname_override": name,
                                  "family": "ipv4"}
        return render_save(compile_cluster(self.cluster, settings_for(params, self.cluster)).save)


def _find_all(text: str, needle: str) -> list[int]:
    out, at = [], text.find(needle)
    while at >= 0:
        out.append(at)
        at = text.find(needle, at + 1)
    return out


def _svc(i: int) -> tuple[str, str]:
    return f"ns-{i % 50:02d}", f"svc-{i:05d}"


def _plain_services(services: int) -> list[int]:
    """ClusterIP services with one port and no affinity (simple to reason about)."""
    return [i for i in range(services) if i % 20 in (0, 1, 4, 6, 8, 10, 11, 14, 15, 16, 18)]


def nft_text(cluster_path: Path, node: str) -> str:
    """The node's ``nft list table ip kube-proxy`` view in nftables mode (kube-proxy 1.37)."""
    from netproxy.commands.nftables_options import NftFlags, nftables_text

    cluster = load_inputs([str(cluster_path)])
    params: dict[str, Any] = {"inputs": (str(cluster_path),), "hostname_override": node,
                              "family": "ipv4"}
    return nftables_text(params, cluster, "list", NftFlags(None, None, None, ()))


def snapshot_text(hostname: str, dump: str) -> str:
    """A node snapshot holding ``dump`` as its legacy iptables-save section."""
    from netproxy.node import snapshot as snap

    body = {snap.HOSTNAME: hostname + "\n",
            snap.VERSIONS: "iptables: iptables v1.8.9 (legacy)\n",
            snap.IPTABLES_SECTIONS[("ipv4", "legacy")]: snap.escape_body(dump),
            snap.ADDR: "[]\n", snap.ROUTES["ipv4"]: "[]\n", snap.ROUTES["ipv6"]: "[]\n",
            snap.RULES["ipv4"]: "[]\n", snap.RULES["ipv6"]: "[]\n", snap.LINK: "[]\n",
            **{name: "[]\n" for name in snap.V2_SECTIONS},
            snap.SYSCTL: "net.ipv4.ip_forward = 1\n", snap.NOTES: ""}
    parts = [snap.HEADER + "\n", "# producer: scripts/fleet_gen.py\n"]
    for name in snap.ORDER:
        if name in body:
            parts.append(f"### {name}\n{body[name]}")
    parts.append(f"### {snap.END}\n")
    return "".join(parts)


def generate(out: Path, nodes: int, services: int, endpoints: int, seed: int,
             faults: bool, snapshots: int = 0) -> list[dict[str, Any]]:
    names = node_names(nodes)
    objects = cluster_objects(names, services, endpoints, seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "nodes").mkdir(exist_ok=True)
    cluster_path = out / "cluster.json"
    _write_cluster(objects, cluster_path)
    compiler = _Compiler(cluster_path)
    injected: list[dict[str, Any]] = []
    special: dict[str, str] = {}
    if faults:
        if nodes < len(FAULTS) + 1:
            raise SystemExit(f"--nodes must be at least {len(FAULTS) + 1} to inject the faults")
        plain = _plain_services(services)
        if len(plain) < 3:
            raise SystemExit("--services too small to inject the faults (need 20 or more)")
        step = max(1, nodes // len(FAULTS))
        victims = [names[(1 + j * step) % nodes] for j in range(len(FAULTS))]
        for kind, node, i in zip(FAULTS, victims, [plain[1], plain[2], plain[len(plain) // 2],
                                                    -1, -1, -1], strict=True):
            special[node] = kind
            ns, name = _svc(i) if i >= 0 else ("", "")
            fault: dict[str, Any] = {"kind": kind, "node": node, "services": []}
            if kind == "endpoint-missing":
                changed = copy.deepcopy(objects)
                for obj in changed:
                    if obj["kind"] == "EndpointSlice" and obj["metadata"]["name"] == f"{name}-x1":
                        gone = obj["endpoints"].pop(0)
                        fault["endpoint"] = f"{gone['addresses'][0]}:8080"
                path = out / f".{node}-cluster.json"
                _write_cluster(changed, path)
                text = _Compiler(path).node(node)
                path.unlink()
                fault["services"] = [f"{ns}/{name}:http"]
            elif kind == "stale-chain":
                ghost = "10.127.255.254:8080"
                chain = endpoint_chain(f"{ns}/{name}:http", "tcp", ghost)
                text = compiler.node(node)
                decl = f":{chain} - [0:0]\n"
                rules = (f"-A {chain} -s 10.127.255.254/32 -m comment --comment \"{ns}/{name}:http\" "
                         f"-j KUBE-MARK-MASQ\n"
                         f"-A {chain} -p tcp -m comment --comment \"{ns}/{name}:http\" -m tcp "
                         f"-j DNAT --to-destination {ghost}\n")
                nat = text.index("*nat\n")
                first_rule = text.index("\n-A ", nat) + 1
                text = text[:first_rule] + decl + text[first_rule:]
                commit = text.index("COMMIT\n", nat)
                text = text[:commit] + rules + text[commit:]
                fault["services"] = [f"{ns}/{name}:http"]
                fault["chain"] = chain
            elif kind == "share-changed":
                text = compiler.node(node)
                svc_chain = service_chain(f"{ns}/{name}:http", "tcp")
                at = next(m for m in _find_all(text, f"\n-A {svc_chain} ")
                          if "--probability" in text[m:text.index("\n", m + 1)]) + 1
                end = text.index("\n", at)
                line = text[at:end]
                cut = line.index("--probability ") + len("--probability ")
                value = "0.25000000000" if line[cut:].startswith("0.5000") else "0.50000000000"
                new = line[:cut] + value + line[cut + len(value):]
                text = text[:at] + new + text[end:]
                fault["services"] = [f"{ns}/{name}:http"]
            elif kind == "frozen":
                older = cluster_objects(names, services, endpoints, seed, FROZEN_PERCENT)
                path = out / f".{node}-cluster.json"
                _write_cluster(older, path)
                text = _Compiler(path).node(node)
                path.unlink()
                before = {o["metadata"]["name"]: len(o["endpoints"]) for o in older
                          if o["kind"] == "EndpointSlice"}
                now = {o["metadata"]["name"]: (o["metadata"]["namespace"], len(o["endpoints"]),
                                               len(o["ports"]))
                       for o in objects if o["kind"] == "EndpointSlice"}
                for slice_name, (ns_, count, nports) in sorted(now.items()):
                    if before[slice_name] != count:
                        svc_name = slice_name[:-3]
                        fault["services"].append(f"{ns_}/{svc_name}:http")
                        if nports > 1:
                            fault["services"].append(f"{ns_}/{svc_name}:dns")
            elif kind == "other-mode":
                text = nft_text(cluster_path, node)
            else:  # truncated
                text = compiler.node(node)
                nat = text.index("*nat\n")
                text = text[:nat + (len(text) - nat) // 2]
                text = text[:text.rindex("\n") + 1]
            suffix = ".nft" if kind == "other-mode" else ".rules"
            (out / "nodes" / f"{node}{suffix}").write_text(text, encoding="utf-8")
            injected.append(fault)
    plain = [node for node in names if node not in special]
    as_snapshot = set(plain[len(plain) - snapshots:]) if snapshots > 0 else set()
    for k, node in enumerate(plain):
        if node in as_snapshot:
            (out / "nodes" / f"host-{k}.snap").write_text(
                snapshot_text(node, compiler.node(node)), encoding="utf-8")
        else:
            (out / "nodes" / f"{node}.rules").write_text(compiler.node(node), encoding="utf-8")
    (out / "faults.json").write_text(json.dumps(injected, indent=2) + "\n", encoding="utf-8")
    return injected


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--services", type=int, default=40)
    ap.add_argument("--endpoints", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--faults", choices=["default", "none"], default="default")
    ap.add_argument("--snapshots", type=int, default=0,
                    help="write this many fault-free nodes as node snapshots")
    ap.add_argument("-o", "--output", required=True, help="directory to write the fleet into")
    args = ap.parse_args(argv)
    injected = generate(Path(args.output), args.nodes, args.services, args.endpoints, args.seed,
                        args.faults == "default", args.snapshots)
    print(f"{args.nodes} nodes x {args.services} Services x {args.endpoints} endpoints in "
          f"{args.output} ({len(injected)} faults, see faults.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
