"""How netproxy diff reads its inputs: each once (a snapshot parsed once, whatever the diff
asks of it), and kube-proxy's nftables tables read into the Service model once for the text
diff and the behaviour probes together."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_diff_nft import compile_variants
from test_node_snapshot import snapshot_text

from netproxy.cli import main
from netproxy.diff import nftdiff
from netproxy.diff.load import is_listing, load_listing, load_ruleset, open_side
from netproxy.node import snapshot as node_snapshot

DATA = Path(__file__).resolve().parent / "data" / "diff"


@pytest.fixture(scope="module")
def listings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return compile_variants(tmp_path_factory.mktemp("nft-load"))


def _count(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[int]:
    calls = [0]
    real = getattr(module, name)

    def counted(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(["diff", *args])
    return int(exc.value.code or 0), capsys.readouterr().out


def test_snapshots_are_parsed_once_each(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        listings: dict[str, Path]) -> None:
    snaps = []
    for name in ("base", "endpoint-replaced"):
        snap = tmp_path / f"{name}.snap"
        snap.write_text(snapshot_text(nft_list_ruleset=listings[name].read_text(), notes=""))
        snaps.append(str(snap))
    calls = _count(monkeypatch, node_snapshot, "parse_snapshot")
    code, out = run(capsys, "--brief", *snaps)
    assert code == 1 and "    + endpoint 10.244.3.12:8080 (cluster, 33.33%)\n" in out
    assert calls[0] == 2
    # an iptables-mode snapshot against an nftables-mode one (the migration question) too
    dump = tmp_path / "before.snap"
    dump.write_text(snapshot_text())
    calls[0] = 0
    code, _ = run(capsys, "--behaviour", str(dump), snaps[0])
    assert code in (0, 1) and calls[0] == 2


def test_behaviour_reads_each_table_once(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch,
                                         listings: dict[str, Path]) -> None:
    calls = _count(monkeypatch, nftdiff, "build_nft_view")
    code, out = run(capsys, "--behaviour", "--brief", str(listings["base"]), str(listings["endpoint-replaced"]))
    assert code == 1 and "behaviour: 6 of " in out
    assert calls[0] == 2  # one kube-proxy table in each listing, each read once


def test_sides_are_told_apart(tmp_path: Path, listings: dict[str, Path]) -> None:
    assert is_listing(str(listings["base"]))
    assert not is_listing(str(DATA / "base.rules"))
    assert not is_listing(str(tmp_path / "missing.nft"))
    iptables_snap = tmp_path / "ipt.snap"
    iptables_snap.write_text(snapshot_text())
    side = open_side(str(iptables_snap))
    assert not side.is_listing and side.snapshot is not None
    assert load_ruleset(side).tables.keys() == load_ruleset(str(iptables_snap)).tables.keys()
    listing = load_listing(str(listings["base"]))
    assert listing.source == str(listings["base"]) and ("ip", "kube-proxy") in listing.tables


def test_behaviour_on_dumps_asks_the_text_diff_views(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from netproxy.diff.identity import KubeView

    made = [0]
    real = KubeView.__init__

    def counted(self: KubeView, ruleset: object) -> None:
        made[0] += 1
        real(self, ruleset)  # type: ignore[arg-type]

    monkeypatch.setattr(KubeView, "__init__", counted)
    code, out = run(capsys, "--behaviour", "--probes", "changed", "--brief",
                    str(DATA / "base.rules"), str(DATA / "endpoint-removed.rules"))
    assert code == 1 and "behaviour: " in out
    assert made[0] == 2  # one view of each dump, for the text diff and the probes alike
