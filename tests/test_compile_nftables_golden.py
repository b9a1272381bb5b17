"""nftables-mode golden cases: tests/golden/compile-nftables/<case>/ holds inputs, flags and
the expected ``nft list table`` view (expected.list) and ``nft -f`` transaction
(expected.transaction). Regenerate with ``python scripts/regen_compile_goldens.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from goldencompile import GOLDEN_ROOT, cases, check_case, check_formats
from goldencompile import compile_case as compile_in

GOLDEN = GOLDEN_ROOT / "compile-nftables"
CASES = cases(GOLDEN)
SPEC = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "kube-proxy-nftables.md"


def compile_case(case: str, fmt: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    return compile_in(GOLDEN, case, fmt, monkeypatch)


@pytest.mark.parametrize("fmt", ["list", "transaction"])
@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    check_case(GOLDEN, case, fmt, monkeypatch)


def test_every_case_has_both_formats() -> None:
    assert "spec-worked-example" in CASES
    check_formats(GOLDEN, ("list", "transaction"))


def spec_transaction() -> str:
    """§10.2 of the spec with its two elided runs written out."""
    text = SPEC.read_text()
    block = text.split("### 10.2", 1)[1].split("```", 2)[1].strip("\n").split("\n")
    out: list[str] = []
    for line in block:
        if line.startswith("  … (same add/delete pair"):
            for name in ("filter-output-pre-dnat", "filter-input", "filter-forward", "filter-output",
                         "nat-prerouting", "nat-output", "nat-postrouting"):
                out += [f"add chain ip kube-proxy {name}", f"delete chain ip kube-proxy {name}"]
        elif line.startswith("  … (same four lines"):
            for p in ("udp", "sctp"):
                out += [f"add chain ip kube-proxy localhost-nodeport-reject-{p}",
                        f"delete chain ip kube-proxy localhost-nodeport-reject-{p}",
                        f"add counter ip kube-proxy localhost-nodeport-rejected-{p}",
                        f"delete counter ip kube-proxy localhost-nodeport-rejected-{p}"]
        elif not line.startswith("     "):  # the continuation of the first elision note
            out.append(line)
    return "\n".join(out) + "\n"


def test_spec_worked_example_byte_for_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    if not SPEC.is_file():
        pytest.skip(f"spec not found at {SPEC}")
    expected = spec_transaction()
    assert expected.count("\n") == 138  # the spec: "138 operations"
    out, _ = compile_case("spec-worked-example", "transaction", monkeypatch)
    assert out == expected


@pytest.mark.parametrize("case", CASES)
def test_list_view_reads_back_with_the_nft_parser(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The list view reads strictly with netproxy's own nft parser (a node's listing and ours
    go through the same reader), with the chains, rule counts and sets the compiler built."""
    import netproxy.commands.nftables_options as nft_command
    from netproxy.compiler.nftables import Table
    from netproxy.parser.nftables import parse_nft

    path = GOLDEN / case / "expected.list"
    parsed = parse_nft(path.read_text(), source=str(path), strict=True)
    assert parsed.problems == []

    built: list[Table] = []
    build = nft_command.nftables_tables

    def record(*args: object, **kwargs: object) -> list[Table]:
        tables = build(*args, **kwargs)  # type: ignore[arg-type]
        built.extend(tables)
        return tables

    monkeypatch.setattr(nft_command, "nftables_tables", record)
    compile_case(case, "list", monkeypatch)
    assert [t.family for t in built] == [family for family, _ in parsed.tables]
    for table in built:
        listed = parsed.table(table.family, "kube-proxy")
        assert list(listed.chains) == list(table.chains)
        assert [len(c.rules) for c in listed.chains.values()] == [len(c.rules) for c in table.chains.values()]
        assert sorted(listed.sets) == sorted(n for n, c in table.containers.items() if c.kind != "counter")
