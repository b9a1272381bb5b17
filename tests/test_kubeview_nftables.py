"""The nftables reader of kube-proxy's table (netproxy.kubeview.nftables).

The strongest check: compile a cluster in both modes, read the iptables rules with the
iptables reader and the nftables table with the nftables reader, and get the same Service
ports, frontends, endpoints and shares (``kubeview.reading``). Then what only nftables has
(affinity sets, hairpin elements, firewall ranges, nodeport-ips, stale and dangling objects),
real listings, and a listing that also holds iptables-nft tables.
"""

from __future__ import annotations

import shlex
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner

from netproxy.cli import cli
from netproxy.kubeview import build_view
from netproxy.kubeview.model import NftRef
from netproxy.kubeview.nftables import build_nft_view, chain_kind, parse_base
from netproxy.kubeview.reading import reading
from netproxy.parser import parse_rules
from netproxy.parser.nftables import parse_nft, parse_nft_text

GOLDEN = Path(__file__).resolve().parent / "golden" / "compile-nftables"
NFT_ONLY = ("--feature-gates", "--single-endpoint-dnat", "--kube-proxy-version", "--existing-rules")
DIFFERENT = {
    "long-names": "nftables cuts names at 240 characters and comments at 128 bytes",
    "shared-keys": "two Services on one external IP:port: a map keeps one element per key",
}
"""Cases whose two modes say different things by design (each has a test of its own)."""
BOTH_MODES = sorted(
    p.parent.name for p in GOLDEN.glob("*/flags")
    if "--proxy-mode nftables" in p.read_text() and not any(f in p.read_text() for f in NFT_ONLY)
    and "--family dual" not in p.read_text() and p.parent.name not in DIFFERENT)


def _compile(folder: Path, args: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(folder)
    result = CliRunner().invoke(cli, ["compile", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def both_modes(case: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """(iptables-save text, nft list text) of one golden case's cluster."""
    folder = GOLDEN / case
    args = shlex.split((folder / "flags").read_text())
    nft = _compile(folder, args, monkeypatch)
    for flag in ("--proxy-mode", "--service-cidr"):  # --service-cidr: nftables mode only
        while flag in args:
            i = args.index(flag)
            args = args[:i] + args[i + 2:]
    ipt = _compile(folder, args, monkeypatch)
    return ipt, nft


def test_cases_cover_the_layouts() -> None:
    for case in ("etp-local", "itp-local", "session-affinity", "loadbalancer-source-ranges",
                 "no-endpoints", "external-ips", "ipv6", "protocols-multiport", "example-cluster"):
        assert case in BOTH_MODES


@pytest.mark.parametrize("case", BOTH_MODES)
def test_same_reading_as_the_iptables_reader(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ipt_text, nft_text = both_modes(case, monkeypatch)
    family = "ipv6" if "table ip6 kube-proxy" in nft_text else "ipv4"
    ipt = build_view(parse_rules(ipt_text, source="ipt", family=family))
    nft = build_nft_view(parse_nft_text(nft_text, source="nft", strict=True), family)
    assert nft.mode == "nftables"
    assert sorted(nft.services) == sorted(ipt.services)
    for key, svc in nft.services.items():
        assert reading(svc) == reading(ipt.services[key]), key
    if ipt.pod_cidrs:  # with --masquerade-all only nftables' short-circuit rules name them
        assert nft.pod_cidrs == ipt.pod_cidrs
    assert not nft.dangling and not nft.stale_chains and not nft.stale_sets and not nft.unattached


def test_example_cluster_in_detail(monkeypatch: pytest.MonkeyPatch) -> None:
    _, text = both_modes("example-cluster", monkeypatch)
    view = build_nft_view(parse_nft_text(text, source="nft", strict=True))
    front = view.services[("shop/frontend:http", "tcp")]
    assert front.chains == {"SVC": "service-SFDBSQB2-shop/frontend/tcp/http",
                            "EXT": "external-SFDBSQB2-shop/frontend/tcp/http"}
    assert front.shares("SVC") == {f"10.244.{n}.10:8080": Fraction(1, 3) for n in (1, 2, 3)}
    assert [(a.kind, a.ip, a.port) for a in front.addresses] == [
        ("cluster-ip", "10.96.100.10", 80), ("node-port", None, 30080)]
    element = front.addresses[0].ref
    assert isinstance(element, NftRef) and element.set == "service-ips" and element.family == "ip"
    assert element.text == ("element service-ips { 10.96.100.10 . tcp . 80 : "
                            "goto service-SFDBSQB2-shop/frontend/tcp/http }")
    assert element.line > 0 and element.jump == front.chains["SVC"]
    assert [r.comment for r in front.masq_rules] == ["masquerade"]
    assert [r.text for r in front.hairpins] == [
        "element hairpin-connections { 10.244.1.10 . 10.244.1.10 . tcp . 8080 }"]
    checkout = view.services[("shop/checkout:https", "tcp")]
    assert checkout.source_ranges == ["203.0.113.10", "192.168.0.0/16", "198.51.100.0/24"]
    assert ("lb-ip", "203.0.113.10", 443) in [(a.kind, a.ip, a.port) for a in checkout.addresses]
    assert [r.set for r in checkout.firewall_rules if isinstance(r, NftRef)][0] == "firewall-ips"
    cart = view.services[("shop/cart:grpc", "tcp")]
    assert len(cart.affinity) == 2 and cart.affinity_timeout == 10800
    assert len(cart.affinity_sets) == 2 and all(s.set.startswith("affinity-") for s in cart.affinity_sets
                                                if isinstance(s, NftRef) and s.set)
    assert sorted(cart.endpoints) == sorted(j.sep for j in cart.jumps)
    assert all(sep.affinity_sets for sep in cart.endpoints.values())
    legacy = view.services[("shop/legacy-db:postgres", "tcp")]
    assert not legacy.chains and len(legacy.rejects) == 1
    assert legacy.rejects[0].comment == "shop/legacy-db:postgres"
    assert view.nodeport_ips == ["192.168.0.11"] and view.masquerade_mark == 0x4000
    ingress = view.services[("shop/ingress:http", "tcp")]
    assert ingress.shares("SVL") == {"10.244.1.30:8080": 1}


def test_names() -> None:
    assert parse_base("SFDBSQB2-shop/frontend/tcp/http") == ("shop/frontend:http", "tcp", None)
    assert parse_base("LAZWMU44-default/echo/tcp/") == ("default/echo", "tcp", None)
    assert parse_base("U7E2ET36-testing/service/tcp/http__fd80.abcd.12..a1b2.c3d4.e5f6.9999/80") == (
        "testing/service:http", "tcp", "[fd80:abcd:12::a1b2:c3d4:e5f6:9999]:80")
    assert parse_base("6TYTIU4K-shop/front/tcp/https__10.244.0.8/8443")[2] == "10.244.0.8:8443"
    assert parse_base("ABCDEFGH-ns/" + "x" * 230 + "...") == ("ns/" + "x" * 230 + "...", "?", None)
    assert parse_base("ABCDEFGH-ns/n/tcp/" + "p" * 200 + "...") == ("ns/n:" + "p" * 200 + "...", "tcp", None)
    assert parse_base("ABCDEFGH-ns/n/udp/p__fd00.10.244...") == ("ns/n:p", "udp", None)
    assert parse_base("services") is None and parse_base("ABC-ns/n/tcp/p") is None
    assert chain_kind("local-LAZWMU44-default/echo/tcp/") == ("SVL", "LAZWMU44-default/echo/tcp/")
    assert chain_kind("services") is None and chain_kind("reject-chain") is None


def test_old_layout_real_listing(dumps_dir: Path) -> None:
    """k3s, about v1.31-v1.33: endpoint chain per endpoint, mark-for-masquerade, numgen vmap."""
    listing = parse_nft((dumps_dir / "nft" / "01-k3s-pi-kubeproxy-nft-complete.nft").read_text(),
                        source="01")
    view = build_nft_view(listing)
    hello = view.services[("riset/hellopod-np-svc", "tcp")]
    shares = hello.shares("SVC")
    assert len(shares) == 9 and set(shares.values()) == {Fraction(1, 9)}
    assert ("node-port", None, 30000) in [(a.kind, a.ip, a.port) for a in hello.addresses]
    assert all(sep.masq and sep.dnat for sep in hello.endpoints.values())  # old hairpin rule
    assert len(hello.masq_rules) == 2  # external chain and the off-cluster cluster-IP rule
    assert view.pod_cidrs == ["10.42.0.0/16"]
    assert view.nodeport_ips == ["10.34.4.246"] and view.masquerade_mark == 0x4000
    no_eps = [s for s in view.services.values() if s.rejects]
    assert no_eps and all(not s.jumps for s in no_eps)
    assert not view.other_mode


def test_trimmed_listings_name_what_is_missing(dumps_dir: Path) -> None:
    """04 and 05 were trimmed by hand: 05's service-ips points at a chain not in the listing."""
    after = build_nft_view(parse_nft((dumps_dir / "nft" / "05-kubeadm136-pi-kubeproxy-nft-trimmed-after-pod-replace.nft")
                                     .read_text(), source="05"))
    missing = [target for _, target in after.dangling]
    assert any(t.startswith("service-2QRHZV4L-") for t in missing)
    before = build_nft_view(parse_nft((dumps_dir / "nft" / "04-kubeadm136-pi-kubeproxy-nft-trimmed.nft")
                                      .read_text(), source="04"))
    assert "@service-nodeports" in [t for _, t in before.dangling]
    assert any(s.jumps and s.hairpins for s in before.services.values())


def test_handles_are_kept(dumps_dir: Path) -> None:
    listing = parse_nft((dumps_dir / "nft" / "02-kubeadm132-flannel-kubeproxy-nft-handles-truncated.nft")
                        .read_text(), source="02")
    view = build_nft_view(listing)
    refs = [j.ref for s in view.services.values() for j in s.jumps]
    assert refs and all(isinstance(r, NftRef) and r.handle is not None for r in refs)


def test_iptables_nft_tables_beside_kube_proxy_are_not_services(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node switched from iptables mode: kube-proxy's old chains in iptables-nft's ip nat."""
    _, text = both_modes("example-cluster", monkeypatch)
    old = ("table ip nat {\n\tchain PREROUTING {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
           '\t\tcounter jump KUBE-SERVICES\n\t}\n\tchain KUBE-SERVICES {\n'
           "\t\tip daddr 10.96.100.10 tcp dport 80 counter jump KUBE-SVC-PY4JZH2ITZYEO4CN\n\t}\n"
           "\tchain KUBE-SVC-PY4JZH2ITZYEO4CN {\n\t\tcounter jump KUBE-SEP-AAAAAAAAAAAAAAAA\n\t}\n"
           "\tchain KUBE-SEP-AAAAAAAAAAAAAAAA {\n\t\tmeta l4proto tcp counter dnat to 10.244.9.9:8080\n\t}\n}\n")
    alone = build_nft_view(parse_nft_text(text, source="nft", strict=True))
    mixed = build_nft_view(parse_nft_text(old + text, source="mixed", strict=True))
    assert {k: reading(s) for k, s in mixed.services.items()} == \
        {k: reading(s) for k, s in alone.services.items()}
    assert mixed.other_mode == ["table ip nat: KUBE-SERVICES, 2 KUBE-SVC/SEP/... chain(s) "
                                "(1 rule(s) in the fixed chains)"]
    ipt = parse_rules("*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\nCOMMIT\n", source="ipt")
    beside = build_nft_view(parse_nft_text(text, source="nft", strict=True), iptables=ipt)
    assert beside.ruleset is ipt and beside.other_mode == [
        "iptables nat: KUBE-SERVICES, KUBE-NODEPORTS (0 rule(s) in the fixed chains)"]


def test_stale_and_dangling_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    _, text = both_modes("example-cluster", monkeypatch)
    text = text.replace(" : goto service-SFDBSQB2-shop/frontend/tcp/http",
                        " : goto service-SFDBSQB2-shop/frontend/tcp/gone")
    text = text.replace("\tchain reject-chain {", "\tset affinity-ZZZZZZZZ-shop/old/tcp/x__10.0.0.1/80 {\n"
                        "\t\ttype ipv4_addr\n\t\tflags dynamic,timeout\n\t\ttimeout 3h\n\t}\n\n"
                        "\tchain reject-chain {")
    view = build_nft_view(parse_nft_text(text, source="nft"))
    assert ("service-SFDBSQB2-shop/frontend/tcp/gone" in [t for _, t in view.dangling])
    assert view.stale_chains == []  # the external chain still goes to the service chain
    assert view.stale_sets == ["affinity-ZZZZZZZZ-shop/old/tcp/x__10.0.0.1/80"]
    gone = view.services[("shop/frontend:gone", "tcp")]
    assert gone.missing_chains == {"SVC": "service-SFDBSQB2-shop/frontend/tcp/gone"}
    front = view.services[("shop/frontend:http", "tcp")]
    assert [a.kind for a in front.addresses] == ["node-port"]


def test_long_names_are_read_as_far_as_kube_proxy_kept_them(monkeypatch: pytest.MonkeyPatch) -> None:
    ipt_text, nft_text = both_modes("long-names", monkeypatch)
    ipt = build_view(parse_rules(ipt_text, source="ipt", family="ipv6"))
    nft = build_nft_view(parse_nft_text(nft_text, source="nft", strict=True), "ipv6")
    assert len(nft.services) == len(ipt.services) == 2
    assert [name.endswith("...") for name, _ in nft.services] == [True, False]  # a cut comment
    for name, protocol in nft.services:
        full = [k for k in ipt.services if k[0].startswith(name.removesuffix("...")) and k[1] == protocol]
        assert len(full) == 1
        assert reading(nft.services[(name, protocol)]) == reading(ipt.services[full[0]])


def test_shared_keys_keep_one_element(monkeypatch: pytest.MonkeyPatch) -> None:
    ipt_text, nft_text = both_modes("shared-keys", monkeypatch)
    ipt = build_view(parse_rules(ipt_text, source="ipt"))
    nft = build_nft_view(parse_nft_text(nft_text, source="nft", strict=True))
    owners = [k for k, s in nft.services.items() if any(a.ip == "192.0.2.50" for a in s.addresses)]
    assert len(owners) == 1
    assert [k for k, s in ipt.services.items() if any(a.ip == "192.0.2.50" for a in s.addresses)] \
        == [("default/a", "tcp"), ("default/b", "tcp")]
