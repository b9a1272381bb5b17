"""Run one iptables variant (legacy or nft) inside a namespace: save and restore.

The variant is chosen per namespace: legacy and nft rules can both live in one namespace,
and each variant's tools see only their own, so mixing them hides rules.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from netproxy.backend import netns
from netproxy.errors import BackendError

VARIANTS = ("legacy", "nft")

_ERROR_LINE = re.compile(r"line:? (\d+)")


@dataclass(frozen=True, slots=True)
class Xtables:
    """The save/restore binaries of one variant and address family."""

    variant: str
    family: str = "ipv4"

    @property
    def prefix(self) -> str:
        return "ip6tables" if self.family == "ipv6" else "iptables"

    @property
    def save_bin(self) -> str:
        return f"{self.prefix}-{self.variant}-save"

    @property
    def restore_bin(self) -> str:
        return f"{self.prefix}-{self.variant}-restore"

    def check_installed(self) -> None:
        for tool in (self.save_bin, self.restore_bin):
            if shutil.which(tool) is None:
                raise BackendError(f"{tool} is not installed (needed for --iptables {self.variant})")


def host_variant() -> str:
    """The variant the host's plain ``iptables`` command uses."""
    tool = shutil.which("iptables")
    if tool is None:
        raise BackendError("iptables is not installed")
    out = subprocess.run([tool, "-V"], capture_output=True, text=True, check=False).stdout
    return "nft" if "nf_tables" in out else "legacy"


def resolve(variant: str, family: str = "ipv4") -> Xtables:
    """``legacy``, ``nft`` or ``auto`` (the host's default) → checked tool set."""
    if variant == "auto":
        variant = host_variant()
    if variant not in VARIANTS:
        raise BackendError(f"unknown iptables variant {variant!r} (use legacy, nft or auto)")
    tools = Xtables(variant, family)
    tools.check_installed()
    return tools


def save(name: str, tools: Xtables, *, counters: bool = False, table: str | None = None) -> str:
    """The namespace's rules as ``iptables-save`` prints them."""
    argv = [tools.save_bin]
    if counters:
        argv.append("-c")
    if table:
        argv += ["-t", table]
    return netns.run(name, argv).stdout


@dataclass(frozen=True, slots=True)
class RestoreFailure:
    """What iptables-restore said when it rejected a payload."""

    line: int
    message: str


def restore(name: str, tools: Xtables, payload: str, *, noflush: bool = True,
            test: bool = False) -> RestoreFailure | None:
    """Feed ``payload`` to ``iptables-restore`` (``--noflush`` unless told otherwise);
    the failure, if it was rejected."""
    argv = [tools.restore_bin, "-w", "60"] + (["--noflush"] if noflush else [])
    if test:
        argv.append("--test")
    try:
        proc = netns.run(name, argv, input_text=payload, check=False)
    except netns.ToolCrashed as crash:
        lines = payload.count("\n")
        raise crash.doing_this(f"loading {lines:,} payload lines") from None
    if proc.returncode == 0:
        return None
    return parse_failure(proc.stderr or proc.stdout)


_LINE_PATTERNS = (
    re.compile(r"^line (\d+): (.*)$"),  # nft: "line 3: RULE_APPEND failed (...): rule in chain X"
    re.compile(r"^Error occurred at line: (\d+)()$"),
    re.compile(r"^\S+: line (\d+) failed:? ?(.*)$"),  # "iptables-restore: line 4 failed[: why]"
)
_VERSION_PREFIX = re.compile(r"^\S+ v[\d.]+(?: \([^)]*\))?:\s*")


def parse_failure(stderr: str) -> RestoreFailure:
    """The failing line number and the most useful message from restore's stderr."""
    line = 0
    reasons: list[str] = []
    for raw in stderr.splitlines():
        text = raw.strip()
        if not text or text.startswith("#") or text.startswith("Try `"):
            continue
        for pattern in _LINE_PATTERNS:
            found = pattern.match(text)
            if found:
                line = line or int(found.group(1))
                if found.group(2):
                    reasons.append(found.group(2))
                break
        else:
            rest = _VERSION_PREFIX.sub("", text)
            if rest:
                reasons.append(rest)
    return RestoreFailure(line, reasons[0] if reasons else "rejected by the kernel (no reason given)")
