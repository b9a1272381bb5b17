"""KubeProxyConfiguration decoding: kube-proxy's defaults, every modelled field, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from netproxy.errors import InputError
from netproxy.k8s.config import KubeProxyConfig, config_from_document, load_config

HEAD = {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration"}


def test_defaults_are_kube_proxys() -> None:
    cfg = config_from_document(dict(HEAD), "x")
    assert cfg == KubeProxyConfig()
    assert (cfg.masquerade_bit, cfg.masquerade_all, cfg.localhost_nodeports, cfg.detect_local_mode,
            cfg.nodeport_addresses, cfg.tcp_be_liberal, cfg.cluster_cidrs) == (
        14, False, True, "ClusterCIDR", (), False, ())


def test_every_field() -> None:
    cfg = config_from_document({
        **HEAD, "hostnameOverride": "node-9", "clusterCIDR": "10.244.0.0/16, fd00::/48",
        "detectLocalMode": "InterfaceNamePrefix",
        "detectLocal": {"bridgeInterface": "cbr0", "interfaceNamePrefix": "veth"},
        "iptables": {"masqueradeBit": 3, "masqueradeAll": True, "localhostNodePorts": False},
        "nodePortAddresses": ["192.168.0.0/24"], "conntrack": {"tcpBeLiberal": True},
    }, "x")
    assert cfg.hostname_override == "node-9"
    assert cfg.cluster_cidrs == ("10.244.0.0/16", "fd00::/48")
    assert (cfg.detect_local_mode, cfg.bridge_interface, cfg.interface_name_prefix) == (
        "InterfaceNamePrefix", "cbr0", "veth")
    assert (cfg.masquerade_bit, cfg.masquerade_all, cfg.localhost_nodeports) == (3, True, False)
    assert cfg.nodeport_addresses == ("192.168.0.0/24",) and cfg.tcp_be_liberal


def test_flags_override_and_validate() -> None:
    cfg = KubeProxyConfig(cluster_cidrs=("10.1.0.0/16",))
    assert cfg.with_changes(cluster_cidrs=("10.2.0.0/16",), masquerade_all=None).cluster_cidrs == ("10.2.0.0/16",)
    with pytest.raises(InputError, match="--iptables-masquerade-bit: must be 0-31"):
        cfg.with_changes(masquerade_bit=32)
    with pytest.raises(InputError, match="at most one CIDR per IP family"):
        cfg.with_changes(cluster_cidrs=("10.1.0.0/16", "10.2.0.0/16"))


@pytest.mark.parametrize("doc, message", [
    ({"apiVersion": "v1"}, "apiVersion: expected kubeproxy.config.k8s.io/v1alpha1"),
    ({"detectLocalMode": "Guess"}, "detectLocalMode: unknown mode 'Guess'"),
    ({"detectLocalMode": "InterfaceNamePrefix"}, "detectLocal.interfaceNamePrefix: required"),
    ({"iptables": {"masqueradeBit": "14"}}, "iptables.masqueradeBit: must be int"),
    ({"iptables": {"masqueradeAll": "yes"}}, "iptables.masqueradeAll: must be bool"),
    ({"iptables": "fast"}, "iptables.masqueradeBit: must be a mapping"),
    ({"nodePortAddresses": ["10.0.0.0/40"]}, "nodePortAddresses: invalid CIDR '10.0.0.0/40'"),
    ({"nodePortAddresses": [7]}, "nodePortAddresses[0]: must be a string"),
    ({"clusterCIDR": "banana"}, "clusterCIDR: invalid CIDR 'banana'"),
    ({"mode": "ipvs"}, "mode: proxy mode 'ipvs' is not modelled"),
    ({"nftables": {"masqueradeBit": 40}}, "nftables.masqueradeBit: must be 0-31"),
    ({"featureGates": {"KubeProxyNFTablesLocalhostNodePorts": "yes"}},
     "featureGates.KubeProxyNFTablesLocalhostNodePorts: must be true or false"),
])
def test_errors_name_the_field(doc: dict, message: str) -> None:
    with pytest.raises(InputError) as info:
        config_from_document({**HEAD, **doc}, "kp.yaml, document 1")
    assert str(info.value).startswith("kp.yaml, document 1: ")
    assert message in str(info.value)


def test_load_config_file(tmp_path: Path) -> None:
    path = tmp_path / "kp.yaml"
    path.write_text("# comment\napiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
                    "clusterCIDR: 10.244.0.0/16\n")
    assert load_config(str(path)).cluster_cidrs == ("10.244.0.0/16",)
    path.write_text("apiVersion: v1\nkind: ConfigMap\n")
    with pytest.raises(InputError, match="expected one KubeProxyConfiguration document, found 0"):
        load_config(str(path))
