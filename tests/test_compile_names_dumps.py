"""kube-proxy's chain-name hash checked against real nodes: every KUBE-SEP DNAT rule and every
"<svc> cluster IP" jump in the real-world dumps must carry the name our hash gives."""

from __future__ import annotations

import re

import pytest

from netproxy.chainnames import endpoint_chain, service_chain

from conftest import DUMPS

DNAT = re.compile(r'^-A (KUBE-SEP-[A-Z2-7]{16}) -p (tcp|udp|sctp) -m comment --comment "?([^" ]+)"? '
                  r'(?:-m recent --set --name \S+ (?:--mask \S+ )?--rsource )?-m \2 -j DNAT '
                  r'--to-destination (\S+)$')
CLUSTER_IP = re.compile(r'^-A KUBE-SERVICES -d \S+ -p (tcp|udp|sctp) -m comment --comment '
                        r'"([^" ]+) cluster IP" -m \1 --dport \d+ -j (KUBE-SVC-[A-Z2-7]{16})$')


def dump_lines() -> list[str]:
    if not DUMPS.is_dir():
        pytest.skip("real-world dumps not present beside the project")
    return [line for path in sorted(DUMPS.glob("*.rules"))
            for line in path.read_text(errors="replace").splitlines()]


def test_endpoint_chain_names_match_real_nodes() -> None:
    checked = 0
    for line in dump_lines():
        found = DNAT.match(line)
        if found:
            chain, proto, spn, endpoint = found.groups()
            assert endpoint_chain(spn, proto, endpoint) == chain, line
            checked += 1
    assert checked >= 20


def test_service_chain_names_match_real_nodes() -> None:
    checked = 0
    for line in dump_lines():
        found = CLUSTER_IP.match(line)
        if found:
            proto, spn, chain = found.groups()
            assert service_chain(spn, proto) == chain, line
            checked += 1
    assert checked >= 10
