"""The compile golden cases' harness, shared by both modes: ``tests/golden/<folder>/<case>/``
holds the inputs, ``flags`` (the compile command line) and ``expected.<format>`` (and
``expected.stderr`` when compile warns)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from netproxy.cli import cli

GOLDEN_ROOT = Path(__file__).resolve().parent / "golden"


def cases(folder: Path) -> list[str]:
    """The cases of a golden folder: each subfolder with a ``flags`` file."""
    return sorted(p.parent.name for p in folder.glob("*/flags"))


def compile_case(folder: Path, case: str, fmt: str,
                 monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """``netproxy compile FLAGS --format FMT`` run in the case's folder: (stdout, stderr)."""
    where = folder / case
    monkeypatch.chdir(where)
    args = shlex.split((where / "flags").read_text())
    result = CliRunner().invoke(cli, ["compile", *args, "--format", fmt], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result.stdout, result.stderr


def check_case(folder: Path, case: str, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The case compiles to its ``expected.FMT``, warning exactly ``expected.stderr``."""
    out, err = compile_case(folder, case, fmt, monkeypatch)
    assert out == (folder / case / f"expected.{fmt}").read_text()
    stderr_file = folder / case / "expected.stderr"
    assert err == (stderr_file.read_text() if stderr_file.exists() else "")


def check_formats(folder: Path, formats: tuple[str, str]) -> None:
    """Every case has an expected file for each format."""
    for case in cases(folder):
        for fmt in formats:
            assert (folder / case / f"expected.{fmt}").is_file(), (case, fmt)
