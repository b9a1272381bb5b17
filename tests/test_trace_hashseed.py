"""`netproxy trace` prints the same bytes whatever Python's hash seed.

A packet sequence whose walks fork on facts the tracer cannot know keeps one state per case;
the order of those states, of the facts each holds and so of the cases a summary splits into
must not follow the hash order of sets and frozensets, which changes from run to run
(PYTHONHASHSEED). Each trace runs in its own interpreter under several seeds; text, --brief and
--json must be byte-identical.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

SEEDS = ("0", "1", "2", "3")
FORMATS = (("--brief",), (), ("--json",))
IPVS_RULES = REPO / "tests" / "data" / "trace" / "ipvs-unknown-sets.rules"

# A DNS query to a cluster IP, its reply, and the query again: the reply and the repeat are
# traced in every case the query forked into.
QUERY_REPLY_REPEAT = """\
src={client} dst=10.96.0.10 dport=53 proto=udp sport=1000 state=auto
src=10.96.0.10 dst={client} sport=53 dport=1000 proto=udp state=auto
src={client} dst=10.96.0.10 dport=53 proto=udp sport=1000 state=auto
"""


def _outputs(args: list[str]) -> dict[tuple[str, tuple[str, ...]], str]:
    """stdout of ``netproxy trace ARGS FORMAT`` for every seed and format, run side by side."""
    procs = {}
    for seed in SEEDS:
        env = dict(os.environ, PYTHONHASHSEED=seed)
        for fmt in FORMATS:
            procs[(seed, fmt)] = subprocess.Popen(
                [sys.executable, "-m", "netproxy", "trace", *args, *fmt], cwd=REPO, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = {}
    for key, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, (key, stderr.decode())
        out[key] = stdout.decode()
    return out


def _check_same(out: dict[tuple[str, tuple[str, ...]], str]) -> None:
    for fmt in FORMATS:
        first = out[(SEEDS[0], fmt)]
        for seed in SEEDS[1:]:
            assert out[(seed, fmt)] == first, (
                f"trace {' '.join(fmt) or '(text)'} differs between PYTHONHASHSEED="
                f"{SEEDS[0]} and {seed}")


def _conditional(out: dict[tuple[str, tuple[str, ...]], str]) -> None:
    """The traces really split into cases (the thing whose order is checked)."""
    brief = out[(SEEDS[0], ("--brief",))]
    answers = [line.split(", NEW: ")[-1].split(", ESTABLISHED: ")[-1]
               for line in brief.splitlines() if line[:1].isdigit()]
    assert len(answers) == 3, brief
    assert all(a.startswith(("if ", "depends on ")) for a in answers), brief
    doc = json.loads(out[(SEEDS[0], ("--json",))])
    assert len(doc["packets"]) == 3
    assert all(any(o.get("assumes") for o in p["outcomes"]) for p in doc["packets"])


def test_same_output_under_every_hash_seed(tmp_path: Path) -> None:
    packets = tmp_path / "packets.txt"
    packets.write_text(QUERY_REPLY_REPEAT.format(client="172.16.0.9"))
    out = _outputs([str(IPVS_RULES), "--packets", str(packets)])
    _conditional(out)
    _check_same(out)


@pytest.mark.parametrize("name", ["11-cilium-ipvs-docker-broken-dnat",
                                  "12-calico-vxlan-ipvs-nat"])
def test_same_output_under_every_hash_seed_on_ipvs_dumps(dumps_dir: Path, tmp_path: Path,
                                                         name: str) -> None:
    packets = tmp_path / "packets.txt"
    packets.write_text(QUERY_REPLY_REPEAT.format(client="10.244.0.5"))
    out = _outputs([str(dumps_dir / f"{name}.rules"), "--packets", str(packets)])
    _conditional(out)
    _check_same(out)
