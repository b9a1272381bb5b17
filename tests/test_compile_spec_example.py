"""Byte-exactness against the kube-proxy spec's worked example (§9.2 payload, §9.4 save view),
and the verified chain-name hashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from netproxy.chainnames import (
    endpoint_chain,
    port_proto_hash,
    port_proto_hash_reference,
    service_chain,
)
from netproxy.commands.cluster_options import load_cluster, settings_for
from netproxy.compiler import compile_payload, proxy_model, save_view
from netproxy.render import render_restore, render_save

HERE = Path(__file__).resolve().parent
SPEC = HERE / "golden" / "compile-spec"
INPUTS = HERE / "golden" / "compile" / "spec-worked-example" / "inputs"
PARAMS = {"inputs": (str(INPUTS),), "hostname_override": "node-1", "cluster_cidr": "10.244.0.0/16",
          "node_ips": ("192.168.0.10",), "nfacct": False, "random_fully": True, "family": "ipv4"}


def web_first() -> tuple[str, str]:
    cluster = load_cluster(PARAMS)
    settings = settings_for(PARAMS, cluster)
    model = proxy_model(cluster, settings)
    assert [str(s.name) for s in model.service_ports] == ["default/echo", "default/web:http"]
    model.service_ports.reverse()  # the spec's assumed Go map order: web, then echo
    payload = compile_payload(model, settings)
    return render_restore(payload), render_save(save_view(payload))


def test_restore_payload_byte_exact() -> None:
    assert web_first()[0] == (SPEC / "worked-example-web-first.restore").read_text()


def test_save_view_byte_exact() -> None:
    assert web_first()[1] == (SPEC / "worked-example-web-first.save").read_text()


@pytest.mark.parametrize("text, proto, expected", [
    ("default/web:http", "tcp", "CDGGSHYLG3RE2FKL"),
    ("ns1/svc1:p80", "tcp", "XPGD46QRK7WJZT7O"),
    ("ns2/svc2:p80", "tcp", "GNZBNJ2PO5MGZ6GT"),
    ("default/echo", "tcp", "HV6DMF63W6MGLRDE"),
])
def test_verified_service_hashes(text: str, proto: str, expected: str) -> None:
    assert port_proto_hash(text, proto) == expected
    assert service_chain(text, proto) == "KUBE-SVC-" + expected


@pytest.mark.parametrize("spn, ep, expected", [
    ("ns1/svc1:p80", "10.180.0.1:80", "KUBE-SEP-SXIVWICOYRO3J4NJ"),
    ("default/web:http", "10.244.1.5:8080", "KUBE-SEP-AFGSLHOD2HFNCBX4"),
    ("default/web:http", "10.244.2.7:8080", "KUBE-SEP-2RIJ5GIYXEFH6G4D"),
    ("default/web:http", "10.244.3.3:8080", "KUBE-SEP-5KYHQA6S7JV2SJHX"),
    ("default/echo", "10.244.0.5:5678", "KUBE-SEP-D67JQUDAKRP7USVT"),
])
def test_verified_endpoint_hashes(spn: str, ep: str, expected: str) -> None:
    assert endpoint_chain(spn, "tcp", ep) == expected


def test_fast_hash_equals_reference() -> None:
    for i in range(2000):
        spn = f"ns-{i}/svc-{i * 7919 % 1000}:p{i}"
        assert port_proto_hash(spn, "udp", f"[fd00::{i:x}]:53") == port_proto_hash_reference(
            spn, "udp", f"[fd00::{i:x}]:53")
