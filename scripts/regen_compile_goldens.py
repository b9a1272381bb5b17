#!/usr/bin/env python3
"""Regenerate the compile golden files: tests/golden/compile/<case>/expected.{save,restore}
(iptables mode) and tests/golden/compile-nftables/<case>/expected.{list,transaction}.

    python scripts/regen_compile_goldens.py            # every case
    python scripts/regen_compile_goldens.py etp-local  # some cases (looked up in both)

Each case folder holds ``flags`` (the ``netproxy compile`` arguments, inputs included,
relative to the folder) and the expected outputs; ``expected.stderr`` is written when the
command prints notes. Review every changed file against the kube-proxy spec before
committing: regenerating only records what the compiler does now.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests" / "golden"
FORMATS = {TESTS / "compile": ("save", "restore"), TESTS / "compile-nftables": ("list", "transaction")}


def run_case(case: Path, fmt: str) -> tuple[str, str]:
    args = shlex.split((case / "flags").read_text())
    proc = subprocess.run([sys.executable, "-m", "netproxy", "compile", *args, "--format", fmt],
                          cwd=case, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{case.name} ({fmt}): exit {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout, proc.stderr


def main(argv: list[str]) -> int:
    cases = [(golden, case) for golden in FORMATS for case in sorted(p.parent for p in golden.glob("*/flags"))
             if not argv or case.name in argv]
    for golden, case in cases:
        changed = []
        for fmt in FORMATS[golden]:
            out, err = run_case(case, fmt)
            target = case / f"expected.{fmt}"
            if not target.exists() or target.read_text() != out:
                target.write_text(out)
                changed.append(target.name)
            stderr_file = case / "expected.stderr"
            if err:
                if not stderr_file.exists() or stderr_file.read_text() != err:
                    stderr_file.write_text(err)
                    changed.append(stderr_file.name)
            elif stderr_file.exists():
                stderr_file.unlink()
                changed.append(f"-{stderr_file.name}")
        print(f"{golden.name}/{case.name}: {'updated ' + ', '.join(changed) if changed else 'unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
