"""Network namespaces: create, check, delete, and run commands inside them.

Every function here touches only a named namespace (``/run/netns/NAME``). The host's own
namespace is recognised by comparing namespace inodes, so ``apply`` can refuse it.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

from netproxy.errors import BackendError

NETNS_DIR = Path("/run/netns")
STATE_DIR = Path(os.environ.get("NETPROXY_STATE_DIR", "/run/netproxy"))
"""Where apply keeps its record of what it last wrote into each namespace."""
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_counter = itertools.count(1)


def unique_name(purpose: str) -> str:
    """A namespace name unique to this process and call: ``np-<purpose>-<pid>-<n>``."""
    return f"np-{purpose}-{os.getpid()}-{next(_counter)}"


def check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise BackendError(f"invalid network namespace name {name!r}")


def path(name: str) -> Path:
    check_name(name)
    return NETNS_DIR / name


def exists(name: str) -> bool:
    return path(name).exists()


def _inode(p: str | Path) -> tuple[int, int] | None:
    try:
        st = os.stat(p)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def is_host(name: str) -> bool:
    """True when namespace ``name`` is the host's own (that of PID 1 or of this process)."""
    mine = _inode(path(name))
    return mine is not None and mine in {_inode("/proc/1/ns/net"), _inode("/proc/self/ns/net")}


def require(name: str, *, allow_host: bool = False) -> None:
    """Fail with one line unless ``name`` exists and (unless allowed) is not the host's own."""
    ip_tool()
    if not exists(name):
        raise BackendError(f"network namespace {name!r} does not exist (see 'ip netns list')")
    if is_host(name) and not allow_host:
        raise BackendError(
            f"network namespace {name!r} is the host's own namespace; refusing "
            "(pass --allow-host-netns to change the host's firewall)"
        )


def ip_tool() -> str:
    found = shutil.which("ip")
    if found is None:
        raise BackendError("the 'ip' tool (iproute2) is not installed")
    return found


def create(name: str) -> None:
    check_name(name)
    if exists(name):
        raise BackendError(f"network namespace {name!r} already exists")
    run_host([ip_tool(), "netns", "add", name])


def delete(name: str) -> None:
    """Delete namespace ``name`` if it exists (no error when it is already gone)."""
    if exists(name):
        subprocess.run([ip_tool(), "netns", "delete", name], capture_output=True, check=False)
    forget_records(name)


def forget_records(name: str) -> None:
    """Drop apply's records of namespace ``name`` (the namespace is gone or re-created)."""
    check_name(name)
    for stale in STATE_DIR.glob(f"{name}@*.json"):
        stale.unlink(missing_ok=True)


def run_host(argv: Sequence[str], *, input_text: str | None = None) -> str:
    """Run a host command (only ``ip`` calls that name our namespaces use this)."""
    proc = subprocess.run(list(argv), input=input_text, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise BackendError(f"{' '.join(argv)}: {msg[-1] if msg else f'exit {proc.returncode}'}")
    return proc.stdout


def exec_argv(name: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs ``argv`` inside namespace ``name``."""
    check_name(name)
    return [ip_tool(), "netns", "exec", name, *argv]


def run(
    name: str,
    argv: Sequence[str],
    *,
    input_text: str | None = None,
    check: bool = True,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside namespace ``name``; on failure raise with the last stderr line."""
    proc = subprocess.run(
        exec_argv(name, argv),
        input=input_text,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if proc.returncode < 0:
        raise ToolCrashed(name, argv[0], -proc.returncode)
    if check and proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        last = msg[-1] if msg else f"exit {proc.returncode}"
        raise BackendError(f"netns {name}: {' '.join(argv)}: {last}")
    return proc


class ToolCrashed(BackendError):
    """A kernel tool died of a signal (a crash, or killed: out of memory, a timeout)."""

    def __init__(self, netns_name: str, tool: str, signum: int, doing: str = "") -> None:
        self.netns_name, self.tool, self.signum, self.doing = netns_name, tool, signum, doing
        try:
            sig = signal.Signals(signum).name
        except ValueError:
            sig = f"signal {signum}"
        verb = {signal.SIGKILL: "was killed", signal.SIGTERM: "was stopped",
                signal.SIGINT: "was interrupted"}.get(signum, "crashed")  # type: ignore[call-overload]
        why = ", out of memory?" if signum == signal.SIGKILL else ""
        self.short = f"{os.path.basename(tool)} {verb} ({sig}{why})"
        super().__init__(f"{self.short}{' ' + doing if doing else ''}", where=f"netns {netns_name}")

    def doing_this(self, doing: str) -> ToolCrashed:
        """The same error saying what the tool was doing ("reading 124,700 chains")."""
        return ToolCrashed(self.netns_name, self.tool, self.signum, doing)


class Namespaces:
    """Namespaces made on demand and all deleted on ``close()`` (use as a context manager)."""

    def __init__(self, purpose: str = "tmp") -> None:
        self.purpose = purpose
        self.made: list[str] = []

    def make(self, purpose: str | None = None) -> str:
        name = unique_name(purpose or self.purpose)
        create(name)
        self.made.append(name)
        return name

    def close(self) -> None:
        for name in reversed(self.made):
            delete(name)
        self.made.clear()

    def __enter__(self) -> Namespaces:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
