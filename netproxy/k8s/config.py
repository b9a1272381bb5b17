"""``KubeProxyConfiguration`` (``kubeproxy.config.k8s.io/v1alpha1``) with kube-proxy's defaults.

Only the settings that change iptables rules are kept. Flags override these values in
:mod:`netproxy.commands.cluster_options`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from netproxy.errors import InputError
from netproxy.k8s.decode import fail
from netproxy.k8s.ipaddr import parse_cidr
from netproxy.textsafe import shown

API_VERSION = "kubeproxy.config.k8s.io/v1alpha1"
PROXY_MODES = ("iptables", "nftables")
DETECT_LOCAL_MODES = ("ClusterCIDR", "NodeCIDR", "BridgeInterface", "InterfaceNamePrefix")


@dataclass(frozen=True, slots=True)
class KubeProxyConfig:
    """The rule-relevant part of kube-proxy's configuration (defaults = kube-proxy's)."""

    hostname_override: str = ""
    cluster_cidrs: tuple[str, ...] = ()
    detect_local_mode: str = "ClusterCIDR"
    bridge_interface: str = ""
    interface_name_prefix: str = ""
    masquerade_bit: int = 14
    masquerade_all: bool = False
    localhost_nodeports: bool = True
    nodeport_addresses: tuple[str, ...] = ()
    tcp_be_liberal: bool = False
    mode: str = "iptables"
    nftables_masquerade_bit: int = 14
    feature_gates: tuple[tuple[str, bool], ...] = ()
    source: str = field(default="", compare=False)

    def with_changes(self, **changes: Any) -> KubeProxyConfig:
        """A copy with ``changes`` applied (``None`` values are ignored) and validated."""
        updated = replace(self, **{k: v for k, v in changes.items() if v is not None})
        validate(updated, "", FLAG_NAMES)
        return updated


def split_cidrs(text: str) -> tuple[str, ...]:
    """kube-proxy's comma-separated CIDR list (``--cluster-cidr``, ``clusterCIDR``)."""
    return tuple(p.strip() for p in text.split(",") if p.strip())


FLAG_NAMES = {
    "mode": "--proxy-mode", "detectLocalMode": "--detect-local-mode",
    "detectLocal.bridgeInterface": "--pod-bridge-interface",
    "detectLocal.interfaceNamePrefix": "--pod-interface-name-prefix",
    "clusterCIDR": "--cluster-cidr", "iptables.masqueradeBit": "--iptables-masquerade-bit",
    "nodePortAddresses": "--nodeport-addresses",
}
"""Configuration fields and the kube-proxy flags that set them (for messages about flags)."""


def validate(cfg: KubeProxyConfig, where: str, names: dict[str, str] | None = None) -> None:
    """Reject settings kube-proxy itself would refuse to start with.

    Errors name ``where`` and the config field, or the flag from ``names`` when given.
    """
    def err(path: str, message: str) -> InputError:
        return fail(where, names.get(path, path) if names else path, message)

    if cfg.mode not in PROXY_MODES:
        raise err("mode", f"proxy mode {shown(cfg.mode)} is not modelled (netproxy compiles "
                   "iptables and nftables mode)")
    if cfg.detect_local_mode not in DETECT_LOCAL_MODES:
        raise err("detectLocalMode", f"unknown mode {shown(cfg.detect_local_mode)} "
                   f"(want {', '.join(DETECT_LOCAL_MODES)})")
    if cfg.detect_local_mode == "BridgeInterface" and not cfg.bridge_interface:
        raise err("detectLocal.bridgeInterface", "required when detectLocalMode is BridgeInterface")
    if cfg.detect_local_mode == "InterfaceNamePrefix" and not cfg.interface_name_prefix:
        raise err("detectLocal.interfaceNamePrefix",
                   "required when detectLocalMode is InterfaceNamePrefix")
    for cidr in cfg.cluster_cidrs:
        if parse_cidr(cidr) is None:
            raise err("clusterCIDR", f"invalid CIDR {shown(cidr)}")
    families = [parse_cidr(c).version for c in cfg.cluster_cidrs]  # type: ignore[union-attr]
    if len(families) > 2 or len(set(families)) != len(families):
        raise err("clusterCIDR", "at most one CIDR per IP family")
    if not 0 <= cfg.masquerade_bit <= 31:
        raise err("iptables.masqueradeBit", f"must be 0-31, not {cfg.masquerade_bit}")
    if not 0 <= cfg.nftables_masquerade_bit <= 31:
        raise err("nftables.masqueradeBit", f"must be 0-31, not {cfg.nftables_masquerade_bit}")
    for addr in cfg.nodeport_addresses:
        if addr == "primary":
            if len(cfg.nodeport_addresses) != 1:
                raise err("nodePortAddresses", "'primary' must be the only entry")
        elif parse_cidr(addr) is None:
            raise err("nodePortAddresses", f"invalid CIDR {shown(addr)}")


def _get(doc: dict[str, Any], where: str, path: str, kind: type, default: Any) -> Any:
    value: Any = doc
    for part in path.split("."):
        if value is None:
            break
        if not isinstance(value, dict):
            raise fail(where, path, "must be a mapping")
        value = value.get(part)
    if value is None:
        return default
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise fail(where, path, f"must be {kind.__name__}, not {shown(value)}")
    return value


def config_from_document(doc: dict[str, Any], where: str) -> KubeProxyConfig:
    """Decode one ``KubeProxyConfiguration`` document."""
    if doc.get("kind") != "KubeProxyConfiguration":
        raise fail(where, "kind", f"expected KubeProxyConfiguration, got {shown(doc.get('kind'))}")
    if doc.get("apiVersion") != API_VERSION:
        raise fail(where, "apiVersion", f"expected {API_VERSION}, got {shown(doc.get('apiVersion'))}")
    npa = _get(doc, where, "nodePortAddresses", list, [])
    for i, item in enumerate(npa):
        if not isinstance(item, str):
            raise fail(where, f"nodePortAddresses[{i}]", f"must be a string, not {shown(item)}")
    cfg = KubeProxyConfig(
        hostname_override=_get(doc, where, "hostnameOverride", str, ""),
        cluster_cidrs=split_cidrs(_get(doc, where, "clusterCIDR", str, "")),
        detect_local_mode=_get(doc, where, "detectLocalMode", str, "") or "ClusterCIDR",
        bridge_interface=_get(doc, where, "detectLocal.bridgeInterface", str, ""),
        interface_name_prefix=_get(doc, where, "detectLocal.interfaceNamePrefix", str, ""),
        masquerade_bit=_get(doc, where, "iptables.masqueradeBit", int, 14),
        masquerade_all=(_get(doc, where, "iptables.masqueradeAll", bool, False)
                        or _get(doc, where, "linux.masqueradeAll", bool, False)
                        or _get(doc, where, "nftables.masqueradeAll", bool, False)),
        localhost_nodeports=_get(doc, where, "iptables.localhostNodePorts", bool, True),
        nodeport_addresses=tuple(npa),
        tcp_be_liberal=_get(doc, where, "conntrack.tcpBeLiberal", bool, False),
        mode=_get(doc, where, "mode", str, "") or "iptables",
        nftables_masquerade_bit=_get(doc, where, "nftables.masqueradeBit", int, 14),
        feature_gates=_feature_gates(_get(doc, where, "featureGates", dict, {}), where),
        source=where,
    )
    validate(cfg, where)
    return cfg


def _feature_gates(gates: dict[str, Any], where: str) -> tuple[tuple[str, bool], ...]:
    for name, value in gates.items():
        if not isinstance(value, bool):
            raise fail(where, f"featureGates.{name}", f"must be true or false, not {value!r}")
    return tuple(sorted(gates.items()))


def parse_feature_gates(text: str, where: str = "--feature-gates") -> tuple[tuple[str, bool], ...]:
    """kube-proxy's ``--feature-gates A=true,B=false``."""
    gates: dict[str, bool] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or value.lower() not in ("true", "false"):
            raise InputError(f"{part!r} is not NAME=true or NAME=false", where=where)
        gates[name.strip()] = value.lower() == "true"
    return tuple(sorted(gates.items()))


def load_config(path: str, *, strict: bool = False,
                warn: Callable[[str], None] | None = None) -> KubeProxyConfig:
    """Read ``--config FILE`` (YAML or JSON, one KubeProxyConfiguration document); unknown
    fields go to ``warn`` (with ``strict``: the first is an error)."""
    from netproxy.k8s.loader import check_fields, parse_documents, read_text

    docs = parse_documents(read_text(path), path)
    configs = [(d, f"{path}, document {i}") for i, d in enumerate(docs, 1)
               if isinstance(d, dict) and d.get("kind") == "KubeProxyConfiguration"]
    if len(configs) != 1:
        raise InputError(f"expected one KubeProxyConfiguration document, found {len(configs)}",
                         where=path)
    for text in check_fields(configs[0][0], "KubeProxyConfiguration", configs[0][1], strict):
        if warn is not None:
            warn(text)
    return config_from_document(*configs[0])
