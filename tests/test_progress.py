"""Progress on stderr only on a terminal (checked through a pty), and the helper itself."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from netproxy.progress import Progress

REPO = Path(__file__).resolve().parents[1]
CLUSTER = str(REPO / "fixtures" / "example-cluster")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETPROXY_PROGRESS")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def run_on_pty(args: list[str], **env: str) -> tuple[int, str, str]:
    """Run netproxy with stderr on a pseudo-terminal (stdout piped): (code, stdout, stderr)."""
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "netproxy", *args], stdout=subprocess.PIPE,
                            stderr=slave, cwd=REPO, env=_env(**env))
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    out = proc.stdout.read().decode() if proc.stdout else ""
    code = proc.wait(timeout=120)
    return code, out, b"".join(chunks).decode(errors="replace")


def run_piped(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netproxy", *args], capture_output=True, text=True,
                          cwd=REPO, env=_env(**env), timeout=120)


@pytest.fixture
def node_rules(tmp_path: Path) -> Path:
    path = tmp_path / "node-1.rules"
    subprocess.run([sys.executable, "-m", "netproxy", "compile", CLUSTER, "-o", str(path)],
                   check=True, cwd=REPO, env=_env())
    return path


def test_doctor_shows_progress_on_a_terminal(node_rules: Path) -> None:
    code, out, err = run_on_pty(["doctor", "--rules", str(node_rules)], NETPROXY_PROGRESS_DELAY="0")
    assert code in (0, 1) and "passed" in out
    assert f"\r\x1b[Knetproxy: parsing {node_rules}: " in err
    assert "\r\x1b[Knetproxy: checking Service ports: 1/8 Service ports (12%), 0s left" in err
    assert err.endswith("\r\x1b[K")  # the line is cleared at the end


def test_nothing_when_piped(node_rules: Path) -> None:
    proc = run_piped(["doctor", "--rules", str(node_rules)], NETPROXY_PROGRESS_DELAY="0")
    assert proc.returncode in (0, 1) and "passed" in proc.stdout and proc.stderr == ""
    proc = run_piped(["compile", CLUSTER], NETPROXY_PROGRESS_DELAY="0")
    assert proc.returncode == 0 and proc.stderr == ""


def test_compile_shows_its_stages_on_a_terminal() -> None:
    code, out, err = run_on_pty(["compile", CLUSTER], NETPROXY_PROGRESS_DELAY="0")
    assert code == 0 and "KUBE-SERVICES" in out
    assert "netproxy: compile: reading the cluster objects (0s so far)" in err


@pytest.mark.parametrize("flags", [[], ["--format", "restore"], ["--proxy-mode", "nftables"]])
def test_compile_counts_the_service_ports_it_writes(flags: list[str]) -> None:
    code, out, err = run_on_pty(["compile", CLUSTER, *flags], NETPROXY_PROGRESS_DELAY="0")
    assert code == 0 and out
    assert "netproxy: compile: writing the rules of 7 Services, service ports: 0/8 (0%)" in err


def test_quick_work_shows_nothing_even_on_a_terminal(node_rules: Path) -> None:
    code, _, err = run_on_pty(["doctor", "--rules", str(node_rules)])
    assert code in (0, 1) and err == ""


def test_helper_draws_done_total_and_time_left() -> None:
    stream = Tty()
    bar = Progress("parsing x", 4_000_000, unit="bytes", stream=stream)
    bar.delay = 0
    bar.update(1_000_000)
    assert stream.getvalue() == "\r\x1b[Knetproxy: parsing x: 1.0/4.0 MB (25%), 0s left"
    bar.close()
    assert stream.getvalue().endswith("\r\x1b[K")


def test_helper_is_silent_off_a_terminal() -> None:
    stream = io.StringIO()
    with Progress("x", 10, stream=stream) as bar:
        bar.delay = 0
        bar.update(5)
    assert stream.getvalue() == ""


def test_helper_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETPROXY_PROGRESS", "0")
    stream = Tty()
    with Progress("x", 10, stream=stream) as bar:
        bar.delay = 0
        bar.update(5)
    assert stream.getvalue() == ""
