"""Golden text reports of the hand-edited dumps (regenerate with NETPROXY_REGEN=1, then read
the diff: every line must be what the spec and the dump say)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from netproxy.doctor import diagnose
from netproxy.doctor.report import to_text
from netproxy.parser import parse_rules

DATA = Path(__file__).resolve().parent / "data" / "doctor"
GOLDEN = DATA / "golden"
CASES = sorted(p.stem for p in DATA.glob("*.rules"))
NODE_IP = "192.168.0.10"
"""node-1's address, so the node ports are walked too."""


@pytest.mark.parametrize("case", CASES)
def test_text_report(case: str) -> None:
    source = f"{case}.rules"
    report = diagnose(parse_rules((DATA / source).read_text(), source=source), local_ips=[NODE_IP])
    text = to_text(report)
    golden = GOLDEN / f"{case}.txt"
    if os.environ.get("NETPROXY_REGEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.is_file(), f"no golden for {case}: run with NETPROXY_REGEN=1"
    assert text == golden.read_text()


NFT_CASES = sorted(p.stem for p in DATA.glob("nft-*.nft"))
"""kube-proxy's nftables table of the example cluster, hand-edited (node 192.168.0.11)."""


@pytest.mark.parametrize("case", NFT_CASES)
def test_nftables_text_report(case: str) -> None:
    from netproxy.doctor.nftables import diagnose_nft
    from netproxy.parser.nftables import parse_nft_text

    source = f"{case}.nft"
    report = diagnose_nft(parse_nft_text((DATA / source).read_text(), source=source),
                          local_ips=["192.168.0.11"])
    text = to_text(report)
    golden = GOLDEN / f"{case}.txt"
    if os.environ.get("NETPROXY_REGEN") == "1":
        golden.write_text(text)
    assert golden.is_file(), f"no golden for {case}: run with NETPROXY_REGEN=1"
    assert text == golden.read_text()


def test_nftables_cases_present() -> None:
    assert NFT_CASES == ["nft-missing-masquerade", "nft-open-firewall-lost-affinity", "nft-uneven-shares"]
