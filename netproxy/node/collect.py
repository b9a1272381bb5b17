"""Collect a node snapshot by running the node's own tools (read-only)."""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

from netproxy import __version__
from netproxy.errors import BackendError
from netproxy.node import snapshot as snap

_COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (snap.NFT, ("nft", "list", "ruleset")),
    (snap.IPSET, ("ipset", "save")),
    (snap.ADDR, ("ip", "-j", "addr")),
    (snap.ROUTES["ipv4"], ("ip", "-4", "-j", "route", "show", "table", "all")),
    (snap.ROUTES["ipv6"], ("ip", "-6", "-j", "route", "show", "table", "all")),
    (snap.RULES["ipv4"], ("ip", "-4", "-j", "rule")),
    (snap.RULES["ipv6"], ("ip", "-6", "-j", "rule")),
    (snap.LINK, ("ip", "-j", "link")),
    (snap.VRF, ("ip", "-j", "-d", "link", "show", "type", "vrf")),
    (snap.NEIGH, ("ip", "-j", "neigh", "show")),
    (snap.FDB, ("bridge", "-j", "fdb", "show")),
)
_VERSIONS = (("kernel", ("uname", "-r")), ("ip", ("ip", "-V")), ("iptables", ("iptables", "-V")),
             ("iptables-legacy", ("iptables-legacy", "-V")),
             ("iptables-nft", ("iptables-nft", "-V")), ("nft", ("nft", "--version")),
             ("ipset", ("ipset", "--version")))
_SAVERS = {("ipv4", "legacy"): "iptables-legacy-save", ("ipv6", "legacy"): "ip6tables-legacy-save",
           ("ipv4", "nft"): "iptables-nft-save", ("ipv6", "nft"): "ip6tables-nft-save"}


class Collector:
    """Runs commands on the host or inside network namespace ``netns``."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self.notes: list[str] = []
        if netns is not None and not Path("/run/netns", netns).exists():
            raise BackendError(f"no network namespace {netns!r} (see 'ip netns list')")
        if netns is not None and shutil.which("ip") is None:
            raise BackendError("--netns needs iproute2's 'ip' command")

    def run(self, section: str, argv: Sequence[str]) -> str | None:
        """The command's output, or None (and a note naming ``section``) when it fails."""
        tool = argv[0]
        if shutil.which(tool) is None:
            self.notes.append(f"{section}: {tool}: not found")
            return None
        full = (["ip", "netns", "exec", self.netns, *argv] if self.netns is not None
                else list(argv))
        try:
            proc = subprocess.run(full, capture_output=True, text=True, errors="surrogateescape",
                                  check=False, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as err:
            self.notes.append(f"{section}: {tool} failed: {err}")
            return None
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[0]
            self.notes.append(f"{section}: {tool} failed: {first}")
            return None
        return proc.stdout

    def sysctls(self) -> str:
        lines = []
        for key in snap.SYSCTLS:
            value = self.run(snap.SYSCTL, ["cat", "/proc/sys/" + key.replace(".", "/")])
            if value is None:
                self.notes[-1] = f"{snap.SYSCTL}: {key} is not present"
                continue
            lines.append(f"{key} = {value.strip()}\n")
        # Each interface's own values of the source check (rp_filter: the larger of it and
        # "all" applies; accept_local, src_valid_mark: either being on).
        for name in snap.CONF_SYSCTLS:
            found = self.run(snap.SYSCTL, ["sh", "-c",
                                           f"grep -H . /proc/sys/net/ipv4/conf/*/{name}"])
            if found is None:
                self.notes.pop()  # no interface has it (an old kernel): nothing to record
            for line in (found or "").splitlines():
                path, _, value = line.partition(":")
                dev = path.removeprefix("/proc/sys/net/ipv4/conf/").removesuffix(f"/{name}")
                if dev not in ("all", "default") and value.strip():
                    lines.append(f"{snap.conf_key(dev, name)} = {value.strip()}\n")
        return "".join(lines)


def _body(text: str) -> str:
    text = snap.escape_body(text)
    return text if not text or text.endswith("\n") else text + "\n"


def collect(netns: str | None = None) -> str:
    """The snapshot text of the host, or of namespace ``netns``."""
    c = Collector(netns)
    sections: dict[str, str] = {}
    sections[snap.HOSTNAME] = socket.gethostname() + "\n"
    versions = []
    for name, argv in _VERSIONS:
        if shutil.which(argv[0]) is None:
            continue
        out = c.run(snap.VERSIONS, argv)
        if out is not None and out.strip():
            versions.append(f"{name}: {out.strip().splitlines()[0]}\n")
        elif out is None:
            c.notes.pop()  # a tool without a version flag: just not listed
    sections[snap.VERSIONS] = "".join(versions)
    any_rules = False
    for (family, variant), section in snap.IPTABLES_SECTIONS.items():
        tool = _SAVERS[(family, variant)]
        if shutil.which(tool) is None:
            # iptables before 1.8 has only the plain name, and it is legacy.
            plain = "iptables-save" if family == "ipv4" else "ip6tables-save"
            if variant != "legacy" or shutil.which(plain) is None:
                c.notes.append(f"{section}: {tool}: not found")
                continue
            tool = plain
        out = c.run(section, [tool])
        if out is None:
            continue
        if any(line.startswith("*") for line in out.splitlines()):
            sections[section] = out
            any_rules = True
        else:
            c.notes.append(f"{section}: no rules")
    if not any_rules:
        c.notes.append("iptables: no rules in any variant")
    for section, command_argv in _COMMANDS:
        out = c.run(section, command_argv)
        if out is not None:
            sections[section] = out
    sections[snap.SYSCTL] = c.sysctls()
    sections[snap.NOTES] = "".join(f"{n}\n" for n in c.notes)
    taken = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out_lines = [f"{snap.HEADER}\n", f"# producer: netproxy {__version__}\n", f"# taken: {taken}\n"]
    if netns is not None:
        out_lines.append(f"# netns: {netns}\n")
    if os.geteuid() != 0:
        out_lines.append("# user: not root (rules may be unreadable)\n")
    for name in snap.ORDER:
        if name in sections:
            out_lines.append(f"### {name}\n")
            out_lines.append(_body(sections[name]))
    out_lines.append(f"### {snap.END}\n")
    return "".join(out_lines)
