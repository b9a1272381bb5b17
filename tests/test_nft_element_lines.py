"""A set or map element's own place in a listing: its line and column (nft prints big sets one
element per line and small ones several per line), kept by the parser and shown wherever an
element is referred to (the doctor's text and JSON, parse problems), the set's line only where
the listing has none (nft -j)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netproxy.cli import main
from netproxy.errors import ParseError
from netproxy.kubeview.nftables import build_nft_view
from netproxy.parser.nftables import parse_nft

from conftest import FIXTURES

LISTING = """table ip t {
\tset few {
\t\ttype ipv4_addr
\t\telements = { 10.0.0.1, 10.0.0.2,
\t\t\t     10.0.0.3 }
\t}
\tmap many {
\t\ttype ipv4_addr : verdict
\t\telements = { 10.0.1.1 : goto c,
\t\t\t     10.0.1.2 : goto gone }
\t}
\tchain c {
\t}
}
"""


def test_elements_keep_their_line_and_column() -> None:
    listing = parse_nft(LISTING, source="t.nft")
    table = listing.table("ip", "t")
    assert [(str(e.key), e.line, e.column) for e in table.sets["few"].elements] == [
        ("10.0.0.1", 4, 16), ("10.0.0.2", 4, 26), ("10.0.0.3", 5, 9)]
    assert [(e.line, e.column) for e in table.sets["many"].elements] == [(9, 16), (10, 9)]
    # the problem of the element pointing nowhere is at the element, not at its map
    assert [(p.line, p.column) for p in listing.problems] == [(10, 9)]
    with pytest.raises(ParseError) as err:
        parse_nft(LISTING, source="t.nft", strict=True)
    assert str(err.value).startswith("t.nft:10:9: ip t: element of many refers to chain 'gone'")


def test_positions_do_not_make_elements_differ() -> None:
    moved = LISTING.replace("10.0.0.2,\n\t\t\t     10.0.0.3", "10.0.0.2, 10.0.0.3")
    a = parse_nft(LISTING).table("ip", "t").sets["few"].elements
    b = parse_nft(moved).table("ip", "t").sets["few"].elements
    assert a == b and a[2].line != b[2].line


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lines") / "node.nft"
    try:
        main(["compile", str(FIXTURES / "example-cluster"), "--proxy-mode", "nftables", "-o", str(out)])
    except SystemExit as exc:
        assert not exc.code
    return out


def test_refs_point_at_the_element(compiled: Path) -> None:
    text = compiled.read_text()
    view = build_nft_view(parse_nft(text, source=str(compiled)))
    lines = text.splitlines()
    seen = 0
    for port in view.services.values():
        for address in port.addresses:
            ref = address.ref
            if ref.set is None:
                continue
            line = lines[ref.line - 1]
            assert ref.column is not None
            key = str(ref.element.key if not isinstance(ref.element.key, dict)  # type: ignore[union-attr]
                      else ref.element.key["concat"][0])  # type: ignore[union-attr,index]
            assert line[ref.column - 1:].startswith(key), (line, ref.column, key)
            seen += 1
    assert seen > 8


def test_json_listing_falls_back_to_the_sets_line() -> None:
    data = {"nftables": [
        {"table": {"family": "ip", "name": "kube-proxy"}},
        {"map": {"family": "ip", "table": "kube-proxy", "name": "no-endpoint-services",
                 "type": ["ipv4_addr", "inet_proto", "inet_service"], "map": "verdict",
                 "elem": [[{"concat": ["10.96.0.5", "tcp", 80]}, {"goto": {"target": "reject-chain"}}]]}},
        {"chain": {"family": "ip", "table": "kube-proxy", "name": "reject-chain"}},
    ]}
    view = build_nft_view(parse_nft(json.dumps(data), source="x.json"))
    (port,) = view.services.values()
    (ref,) = port.rejects
    assert ref.column is None and ref.line == ref.set_line  # type: ignore[union-attr]


def test_doctor_shows_the_elements_line_and_column(compiled: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["doctor", str(compiled), "--service", "shop/legacy-db", "--json"])
    data = json.loads(capsys.readouterr().out)
    refs = [r for s in data["services"] for c in s["checks"] for r in c["rules"]
            if r.get("set") == "no-endpoint-services"]
    lines = compiled.read_text().splitlines()
    assert refs
    for ref in refs:
        assert lines[ref["line"] - 1][ref["column"] - 1:].startswith("10.96.100.50 . tcp . 5432")
    with pytest.raises(SystemExit):
        main(["doctor", str(compiled), "--service", "shop/legacy-db", "--brief"])
    out = capsys.readouterr().out
    ref = refs[0]
    assert f"ip kube-proxy:{ref['line']}:{ref['column']} element no-endpoint-services {{ 10.96.100.50" in out


def test_trace_notes_the_elements_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    listing = tmp_path / "t.nft"
    listing.write_text(LISTING)
    with pytest.raises(SystemExit):
        main(["trace", "--rules", str(listing), "--src", "10.0.0.9", "--dst", "10.0.1.2",
              "--dport", "80", "--brief"])
    err = capsys.readouterr().err
    assert f"netproxy: note: {listing}:10:9: ip t: element of many refers to chain 'gone'" in err
