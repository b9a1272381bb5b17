"""Golden cases: tests/golden/compile/<case>/ holds inputs, flags and expected outputs.

Regenerate with ``python scripts/regen_compile_goldens.py`` and review the diff by eye.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from netproxy.cli import cli

GOLDEN = Path(__file__).resolve().parent / "golden" / "compile"
CASES = sorted(p.parent.name for p in GOLDEN.glob("*/flags"))


def compile_case(case: str, fmt: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    folder = GOLDEN / case
    monkeypatch.chdir(folder)
    args = shlex.split((folder / "flags").read_text())
    result = CliRunner().invoke(cli, ["compile", *args, "--format", fmt], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result.stdout, result.stderr


@pytest.mark.parametrize("fmt", ["save", "restore"])
@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = compile_case(case, fmt, monkeypatch)
    assert out == (GOLDEN / case / f"expected.{fmt}").read_text()
    stderr_file = GOLDEN / case / "expected.stderr"
    assert err == (stderr_file.read_text() if stderr_file.exists() else "")


def test_every_case_has_both_formats() -> None:
    assert len(CASES) >= 20
    for case in CASES:
        assert (GOLDEN / case / "expected.save").is_file(), case
        assert (GOLDEN / case / "expected.restore").is_file(), case
