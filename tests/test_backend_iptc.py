"""The python-iptables backend: same end state as iptables-restore, live counters, nft refusal."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_backend_apply import V1, V2

from netproxy.backend import netns, xtables
from netproxy.backend.engine import RestoreBackend, apply_state, cleanup
from netproxy.backend.iptc_backend import IptcBackend
from netproxy.backend.savetext import comparable, split_saved
from netproxy.errors import BackendError

pytestmark = pytest.mark.netns

COUNTED = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-COUNT - [0:0]
-A OUTPUT -j KUBE-COUNT
-A KUBE-COUNT -d 127.0.0.1/32 -p udp -m udp --dport 9 -j ACCEPT
-A KUBE-COUNT -d 127.0.0.1/32 -p udp -m udp --dport 10 -j ACCEPT
COMMIT
"""


@pytest.fixture
def spaces() -> Iterator[netns.Namespaces]:
    with netns.Namespaces("iptc") as made:
        yield made


def test_iptc_reaches_the_same_state_as_restore(spaces: netns.Namespaces) -> None:
    by_iptc = IptcBackend.open(spaces.make(), variant="legacy", family="ipv4")
    by_restore = RestoreBackend(spaces.make(), xtables.resolve("legacy"))
    for backend in (by_iptc, by_restore):
        apply_state(backend, split_saved(V1))
        apply_state(backend, split_saved(V2))
    assert not apply_state(by_iptc, split_saved(V2)).changed
    reference = comparable(by_restore.read())
    assert comparable(RestoreBackend(by_iptc.netns, xtables.resolve("legacy")).read()) == reference
    # and libiptc's own reading prints what iptables-legacy-save prints
    assert comparable(by_iptc.read()) == reference
    cleanup(by_iptc)
    assert "KUBE-" not in by_iptc.read()


def test_iptc_reads_live_counters(spaces: netns.Namespaces) -> None:
    name = spaces.make()
    backend = IptcBackend.open(name, variant="legacy", family="ipv4")
    apply_state(backend, split_saved(COUNTED))
    netns.run(name, ["ip", "link", "set", "lo", "up"])
    send = "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); [s.sendto(b'x', ('127.0.0.1', 10)) for _ in range(3)]"
    netns.run(name, ["python3", "-c", send])
    lines = [ln for ln in backend.read(counters=True).splitlines() if "KUBE-COUNT -d" in ln]
    assert lines[0].startswith("[0:0] ")
    assert lines[1].startswith("[3:87] ")  # 3 packets of 20 (IP) + 8 (UDP) + 1 bytes


def test_iptc_failure_rolls_back(spaces: netns.Namespaces) -> None:
    backend = IptcBackend.open(spaces.make(), variant="legacy", family="ipv4")
    apply_state(backend, split_saved(V1))
    before = comparable(backend.read())
    broken = V2.replace("-j KUBE-SEP-CCCCCCCCCCCCCCCC", "-j KUBE-SEP-MISSING")
    with pytest.raises(BackendError, match="namespace unchanged.*KUBE-SEP-MISSING"):
        apply_state(backend, split_saved(broken))
    assert comparable(backend.read()) == before


def test_iptc_refuses_nft(spaces: netns.Namespaces) -> None:
    name = spaces.make()
    with pytest.raises(BackendError) as err:
        IptcBackend.open(name, variant="nft", family="ipv4")
    assert "cannot see" in str(err.value) and "\n" not in str(err.value)
    apply_state(RestoreBackend(name, xtables.resolve("nft")), split_saved(V1))
    with pytest.raises(BackendError, match="uses iptables-nft"):
        IptcBackend.open(name, variant="auto", family="ipv4")


def test_iptc_reads_back_exactly_what_it_applied(spaces: netns.Namespaces) -> None:
    """A compiled cluster applied through libiptc reads back (through libiptc) as the very
    lines the planner compares, so a re-read finds nothing to change."""
    import subprocess
    import sys

    from conftest import REPO

    compiled = subprocess.run([sys.executable, "-m", "netproxy", "compile", str(REPO / "fixtures" / "example-cluster"),
                               "--format", "save"], capture_output=True, text=True, check=True).stdout
    backend = IptcBackend.open(spaces.make(), variant="legacy", family="ipv4")
    assert apply_state(backend, split_saved(compiled)).changed
    again = apply_state(backend, split_saved(compiled), reread=True)
    assert again.state_from == "read" and not again.changed
    legacy = RestoreBackend(backend.netns, xtables.resolve("legacy"))
    assert comparable(backend.read()) == comparable(legacy.read())
