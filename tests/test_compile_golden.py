"""Golden cases: tests/golden/compile/<case>/ holds inputs, flags and expected outputs.

Regenerate with ``python scripts/regen_compile_goldens.py`` and review the diff by eye.
"""

from __future__ import annotations

import pytest
from goldencompile import GOLDEN_ROOT, cases, check_case, check_formats

GOLDEN = GOLDEN_ROOT / "compile"
CASES = cases(GOLDEN)


@pytest.mark.parametrize("fmt", ["save", "restore"])
@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    check_case(GOLDEN, case, fmt, monkeypatch)


def test_every_case_has_both_formats() -> None:
    assert len(CASES) >= 20
    check_formats(GOLDEN, ("save", "restore"))
