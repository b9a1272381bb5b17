"""apply / save / cleanup round trips in real namespaces, on iptables-legacy and iptables-nft."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from netproxy.backend import netns, xtables
from netproxy.backend.engine import RestoreBackend, apply_state, cleanup
from netproxy.backend.savetext import comparable, split_saved, strip_counters
from netproxy.errors import BackendError

pytestmark = pytest.mark.netns

V1 = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-SERVICES - [0:0]
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-SERVICES -d 10.96.0.20/32 -p tcp -m comment --comment "default/empty has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-AAAAAAAAAAAAAAAA - [0:0]
:KUBE-SEP-BBBBBBBBBBBBBBBB - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-WEBWEBWEBWEBWEBW - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SEP-AAAAAAAAAAAAAAAA -s 10.244.1.5/32 -m comment --comment "default/web:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-AAAAAAAAAAAAAAAA -p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination 10.244.1.5:8080
-A KUBE-SEP-BBBBBBBBBBBBBBBB -s 10.244.2.7/32 -m comment --comment "default/web:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-BBBBBBBBBBBBBBBB -p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination 10.244.2.7:8080
-A KUBE-SERVICES -d 10.96.10.10/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-WEBWEBWEBWEBWEBW
-A KUBE-SVC-WEBWEBWEBWEBWEBW -m comment --comment "default/web:http -> 10.244.1.5:8080" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-AAAAAAAAAAAAAAAA
-A KUBE-SVC-WEBWEBWEBWEBWEBW -m comment --comment "default/web:http -> 10.244.2.7:8080" -j KUBE-SEP-BBBBBBBBBBBBBBBB
COMMIT
"""

# web's second endpoint replaced: one SEP chain gone, one new, the SVC chain rewritten.
V2 = (
    V1.replace("BBBBBBBBBBBBBBBB", "CCCCCCCCCCCCCCCC")
    .replace("10.244.2.7", "10.244.3.3")
    .replace(":KUBE-FORWARD - [0:0]\n", "")
    .replace('-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD\n', "")
    .replace('-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT\n', "")
)

OTHER_SOFTWARE = [
    ["-t", "nat", "-N", "DOCKER"],
    ["-t", "nat", "-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"],
    ["-t", "nat", "-A", "DOCKER", "-i", "docker0", "-j", "RETURN"],
    ["-t", "filter", "-A", "FORWARD", "-o", "docker0", "-j", "ACCEPT"],
]


@pytest.fixture
def spaces() -> Iterator[netns.Namespaces]:
    with netns.Namespaces("bk") as made:
        yield made


def _backend(spaces: netns.Namespaces, variant: str, *, other: bool = True) -> RestoreBackend:
    name = spaces.make()
    backend = RestoreBackend(name, xtables.resolve(variant))
    if other:
        for args in OTHER_SOFTWARE:
            netns.run(name, [f"iptables-{variant}", *args])
    return backend


def _saved(backend: RestoreBackend) -> str:
    return strip_counters(backend.read())


def _other_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("-A") and "KUBE-" not in ln]


@pytest.mark.parametrize("variant", ["legacy", "nft"])
def test_apply_is_exact_idempotent_and_keeps_other_rules(spaces: netns.Namespaces, variant: str) -> None:
    backend = _backend(spaces, variant)
    others = _other_lines(_saved(backend))
    assert len(others) == 3
    first = apply_state(backend, split_saved(V1))
    assert first.changed and first.counts["chains_written"] == 8
    saved = split_saved(_saved(backend))
    wanted = split_saved(V1)
    for table in ("filter", "nat"):
        for name, chain in wanted[table].items():
            got = [r for r in saved[table][name].rules if "KUBE-" in r or name.startswith("KUBE-")]
            assert got == chain.rules, (table, name)
    assert _other_lines(_saved(backend)) == others
    before = _saved(backend)
    again = apply_state(backend, split_saved(V1))
    assert not again.changed and again.counts["payload_lines"] == 0
    assert _saved(backend) == before


@pytest.mark.parametrize("variant", ["legacy", "nft"])
def test_partial_reapply_equals_full_apply(spaces: netns.Namespaces, variant: str) -> None:
    partial = _backend(spaces, variant)
    apply_state(partial, split_saved(V1))
    result = apply_state(partial, split_saved(V2))
    # only the new SEP chain and the rewritten SVC chain, the stale SEP and KUBE-FORWARD go
    assert result.counts["chains_written"] == 2
    assert result.counts["chains_deleted"] == 2
    assert result.counts["builtin_chains_fixed"] == 1
    full = _backend(spaces, variant)
    apply_state(full, split_saved(V2), full=True)
    assert _saved(partial) == _saved(full)
    assert "KUBE-SEP-BBBBBBBBBBBBBBBB" not in _saved(partial)


@pytest.mark.parametrize("variant", ["legacy", "nft"])
def test_rejected_ruleset_leaves_namespace_unchanged(spaces: netns.Namespaces, variant: str) -> None:
    backend = _backend(spaces, variant)
    apply_state(backend, split_saved(V1))
    before = _saved(backend)
    # filter (first table) is fine and would commit; nat then fails on a missing chain
    broken = V2.replace("-j KUBE-SEP-CCCCCCCCCCCCCCCC", "-j KUBE-SEP-MISSING")
    with pytest.raises(BackendError) as err:
        apply_state(backend, split_saved(broken))
    message = str(err.value)
    assert "\n" not in message
    assert "namespace unchanged" in message
    assert "-j KUBE-SEP-MISSING" in message
    assert "chain KUBE-SVC-WEBWEBWEBWEBWEBW" in message
    assert _saved(backend) == before


@pytest.mark.parametrize("variant", ["legacy", "nft"])
def test_cleanup_removes_only_owned_rules(spaces: netns.Namespaces, variant: str) -> None:
    backend = _backend(spaces, variant)
    others = _other_lines(_saved(backend))
    apply_state(backend, split_saved(V1))
    result = cleanup(backend)
    assert result.counts["chains_deleted"] == 8
    text = _saved(backend)
    assert "KUBE-" not in text
    assert _other_lines(text) == others
    assert ":DOCKER - [0:0]" in text
    assert not cleanup(backend).changed


def test_variants_do_not_see_each_other(spaces: netns.Namespaces) -> None:
    backend = _backend(spaces, "legacy", other=False)
    apply_state(backend, split_saved(V1))
    nft_view = RestoreBackend(backend.netns, xtables.resolve("nft"))
    assert "KUBE-" not in nft_view.read()


def test_missing_namespace_and_host_namespace_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BackendError, match="does not exist"):
        netns.require(f"np-missing-{id(monkeypatch)}")
    # a name that resolves to the host's own namespace inode is refused
    monkeypatch.setattr(netns, "path", lambda name: netns.Path("/proc/self/ns/net"))
    with pytest.raises(BackendError, match="host's own namespace"):
        netns.require("np-looks-like-host")
    netns.require("np-looks-like-host", allow_host=True)


@pytest.mark.parametrize("variant", ["legacy", "nft"])
def test_record_is_used_only_while_the_kernel_is_unchanged(spaces: netns.Namespaces, variant: str) -> None:
    backend = _backend(spaces, variant)
    assert apply_state(backend, split_saved(V1)).state_from == "read"
    second = apply_state(backend, split_saved(V2))
    assert second.state_from == "record" and second.counts["chains_written"] == 2
    # another tool edits an owned chain behind netproxy's back: the record no longer counts
    netns.run(backend.netns, [f"iptables-{variant}", "-t", "nat", "-A", "KUBE-MARK-MASQ", "-j", "RETURN"])
    third = apply_state(backend, split_saved(V2))
    assert third.state_from == "read" and third.counts["chains_written"] == 1
    reference = _backend(spaces, variant)
    apply_state(reference, split_saved(V2))
    assert _saved(backend) == _saved(reference)


@pytest.mark.parametrize("variant", ["legacy", "nft"])
def test_whole_table_rewrite_only_without_other_software(spaces: netns.Namespaces, variant: str) -> None:
    alone = _backend(spaces, variant, other=False)
    first = apply_state(alone, split_saved(V1))
    assert not first.noflush  # nothing else in the tables: rewritten whole
    shared = _backend(spaces, variant)
    assert apply_state(shared, split_saved(V1)).noflush
    assert apply_state(alone, split_saved(V2)).noflush  # few chains change: --noflush
    apply_state(shared, split_saved(V2))
    kube_only = [ln for ln in comparable(shared.read()).splitlines() if ln.startswith("-A") and "KUBE-" in ln]
    assert kube_only == [ln for ln in comparable(alone.read()).splitlines() if ln.startswith("-A")]
