"""The node snapshot: one greppable text file with everything a trace needs from a node.

Format (version 2, documented in docs/snapshot.md; version 1 files, without the neighbour,
bridge forwarding and VRF sections, are still read)::

    # netproxy node snapshot v2
    # key: value                      (header: producer, taken, netns; informative)
    ### hostname
    node-1
    ### iptables-save (legacy)
    ...the command's output, verbatim...
    ### end

Every section starts with a ``### NAME`` line; a body line that itself starts with ``###``
is written with a leading backslash. ``### notes`` lists, one per line, what could not be
collected (``ipset save: ipset: not found``); a required section may be absent only when a
note names it. ``### end`` closes a whole file: a file without it was cut short.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netproxy.errors import InputError
from netproxy.netfilter.model import Ruleset
from netproxy.textsafe import cut

MAGIC = "# netproxy node snapshot"
VERSION = 2
READS = (1, 2)
"""Versions this reader reads (version 2 added :data:`V2_SECTIONS` and more sysctls)."""
HEADER = f"{MAGIC} v{VERSION}"

IPTABLES_SECTIONS = {
    ("ipv4", "legacy"): "iptables-save (legacy)",
    ("ipv6", "legacy"): "ip6tables-save (legacy)",
    ("ipv4", "nft"): "iptables-save (nft)",
    ("ipv6", "nft"): "ip6tables-save (nft)",
}
"""Rules sections: present for the variants that hold rules."""
NFT = "nft list ruleset"
IPSET = "ipset save"
ADDR = "ip -j addr"
ROUTES = {"ipv4": "ip -4 -j route show table all", "ipv6": "ip -6 -j route show table all"}
RULES = {"ipv4": "ip -4 -j rule", "ipv6": "ip -6 -j rule"}
LINK = "ip -j link"
VRF = "ip -j -d link show type vrf"
NEIGH = "ip -j neigh show"
FDB = "bridge -j fdb show"
V2_SECTIONS = (VRF, NEIGH, FDB)
SYSCTL = "sysctl"
HOSTNAME = "hostname"
VERSIONS = "versions"
NOTES = "notes"
END = "end"

CONF_SYSCTLS = ("rp_filter", "accept_local", "src_valid_mark")
"""The ``net.ipv4.conf`` sysctls of the source check, recorded for ``all``, ``default`` and
each interface."""
SYSCTLS = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding",
           "net.ipv4.conf.all.route_localnet", "net.ipv4.conf.all.rp_filter",
           "net.ipv4.conf.default.rp_filter", "net.bridge.bridge-nf-call-iptables",
           "net.bridge.bridge-nf-call-ip6tables", "net.ipv4.conf.all.accept_local",
           "net.ipv4.conf.default.accept_local", "net.ipv4.conf.all.src_valid_mark",
           "net.ipv4.conf.default.src_valid_mark")
"""The sysctls recorded (``key = value`` lines; absent keys are noted), then each
interface's :data:`CONF_SYSCTLS` (:func:`conf_key`), one name after the other."""


def conf_key(dev: str, name: str = "rp_filter") -> str:
    """The sysctl key of an interface's ``net.ipv4.conf`` value, spelled as ``sysctl`` does
    (a dot in the interface name becomes a slash: ``net.ipv4.conf.eth0/100.rp_filter``)."""
    return f"net.ipv4.conf.{dev.replace('.', '/')}.{name}"


REQUIRED = (HOSTNAME, VERSIONS, ADDR, ROUTES["ipv4"], ROUTES["ipv6"], RULES["ipv4"],
            RULES["ipv6"], LINK, SYSCTL, NOTES)
"""Sections every snapshot has, unless a note says the tool was missing."""
OPTIONAL = (*IPTABLES_SECTIONS.values(), NFT, IPSET)
JSON_SECTIONS = (ADDR, *ROUTES.values(), *RULES.values(), LINK, *V2_SECTIONS)
ORDER = (HOSTNAME, VERSIONS, *IPTABLES_SECTIONS.values(), NFT, IPSET, ADDR, ROUTES["ipv4"],
         ROUTES["ipv6"], RULES["ipv4"], RULES["ipv6"], LINK, VRF, NEIGH, FDB, SYSCTL, NOTES)
"""The order producers write the sections in."""


def is_snapshot(text: str) -> bool:
    """Does ``text`` (or its first line) start a node snapshot?"""
    return text.startswith(MAGIC)


def escape_body(text: str) -> str:
    """A command's output as a section body: lines starting with ``###`` get a backslash."""
    if "###" not in text:
        return text
    return "\n".join("\\" + line if line.startswith("###") else line
                     for line in text.split("\n"))


@dataclass(slots=True)
class Section:
    name: str
    line: int
    """Line number of the ``### NAME`` header in the file."""
    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")

    def numbered(self) -> str:
        """The body preceded by blank lines, so parsers' line numbers are the file's."""
        return "\n" * self.line + self.text


class NodeContext:
    """A node as a snapshot recorded it. Parsed parts are built on first use."""

    def __init__(self, source: str, header: dict[str, str], sections: dict[str, Section],
                 version: int = VERSION) -> None:
        self.source = source
        self.version = version
        """The format version of the file (1: no neighbour, bridge forwarding or VRF
        sections)."""
        self.header = header
        self.sections = sections
        self.notes: list[str] = list(sections[NOTES].lines if NOTES in sections else [])
        self.notes = [n for n in self.notes if n.strip()]
        self.hostname = (sections[HOSTNAME].lines[0].strip()
                         if HOSTNAME in sections and sections[HOSTNAME].lines else "")
        self.versions: dict[str, str] = {}
        for line in sections[VERSIONS].lines if VERSIONS in sections else []:
            tool, sep, text = line.partition(":")
            if sep:
                self.versions[tool.strip()] = text.strip()
        self.sysctls: dict[str, str] = {}
        if SYSCTL in sections:
            sec = sections[SYSCTL]
            for n, line in enumerate(sec.lines, sec.line + 1):
                if not line.strip():
                    continue
                key, sep, value = line.partition("=")
                if not sep:
                    raise InputError(f"section '{SYSCTL}': expected 'key = value', got "
                                     f"{line[:60]!r}", where=f"{source}:{n}")
                self.sysctls[key.strip()] = value.strip()
        self._json: dict[str, Any] = {}
        self._rulesets: dict[str, Ruleset] = {}
        self._ipsets: dict[str, Any] | None = None
        self._ipset_notes: list[str] = []
        self._routers: dict[str, Any] = {}
        self.ruleset_notes: dict[str, list[str]] = {}
        """Per family: which variant :meth:`ruleset` chose when two held rules."""
        for name in JSON_SECTIONS:  # wrong JSON is found at once, not in the middle of a trace
            if name in sections:
                self.json(name)

    # ------------------------------------------------------------------ raw parts

    def json(self, name: str) -> Any:
        """The parsed JSON of section ``name`` (``[]`` when the tool was missing)."""
        if name in self._json:
            return self._json[name]
        sec = self.sections.get(name)
        if sec is None:
            value: Any = []
        else:
            text = sec.text.strip()
            try:
                value = json.loads(text) if text else []
            except json.JSONDecodeError as err:
                raise InputError(f"section '{name}': bad JSON: {err.msg} (its line {err.lineno}, "
                                 f"column {err.colno})",
                                 where=f"{self.source}:{sec.line + err.lineno}") from None
            if not isinstance(value, list):
                raise InputError(f"section '{name}': expected a JSON list",
                                 where=f"{self.source}:{sec.line + 1}")
        self._json[name] = value
        return value

    @property
    def nft_ruleset(self) -> str | None:
        """The ``nft list ruleset`` section, preceded by blank lines so that the line numbers
        a parser gives its rules and elements are the snapshot file's (None when absent)."""
        sec = self.sections.get(NFT)
        return sec.numbered() if sec is not None else None

    def rules_sections(self, family: str) -> list[Section]:
        """The iptables sections of ``family`` present (legacy first)."""
        return [self.sections[name] for (fam, _), name in IPTABLES_SECTIONS.items()
                if fam == family and name in self.sections]

    # ------------------------------------------------------------------ rules

    def default_family(self) -> str:
        """ipv4 unless only the ipv6 sections hold rules."""
        if not self._holds_rules("ipv4") and self._holds_rules("ipv6"):
            return "ipv6"
        return "ipv4"

    def _holds_rules(self, family: str) -> bool:
        return any(any(line.startswith("-A ") for line in s.lines)
                   for s in self.rules_sections(family))

    def ruleset(self, family: str | None = None, *, strict: bool = False,
                backend: str | None = None) -> Ruleset:
        """The iptables ruleset of ``family``: of ``backend`` (``legacy`` or ``nft``) when
        given, else the variant holding kube-proxy's chains, else the one with the most
        rules (an empty ruleset when no section of the family holds rules)."""
        from netproxy.parser import parse_rules

        fam = family or self.default_family()
        key = f"{fam}:{strict}:{backend}"
        found = self._rulesets.get(key)
        if found is not None:
            return found
        candidates = self.rules_sections(fam)
        if backend is not None:
            name = IPTABLES_SECTIONS.get((fam, backend))
            if name is None:
                raise InputError(f"unknown iptables variant {backend!r} (legacy or nft)")
            candidates = [s for s in candidates if s.name == name]
        if not candidates:
            ruleset = Ruleset(family=fam, source=f"{self.source} (no {fam} iptables rules)")
        else:
            def weight(sec: Section) -> tuple[bool, int]:
                rules = [ln for ln in sec.lines if ln.startswith("-A ")]
                return (any(" KUBE-" in ln for ln in rules), len(rules))

            best = max(candidates, key=weight)
            for other in candidates if backend is None else ():
                count = weight(other)[1]
                if other is not best and count:
                    self.ruleset_notes.setdefault(fam, []).append(
                        f"the snapshot's '{other.name}' also holds {count} "
                        f"rule{'' if count == 1 else 's'}, "
                        f"not read: '{best.name}' holds "
                        + ("kube-proxy's chains" if weight(best)[0] else "more rules"))
            ruleset = parse_rules(best.numbered(), source=self.source, family=fam, strict=strict)
            ruleset.source = self.source
        self._rulesets[key] = ruleset
        return ruleset

    # ------------------------------------------------------------------ sets, addresses

    def ipsets(self) -> dict[str, Any] | None:
        """ipset contents by name (None when ``ipset save`` was not collected). Sets of a
        type the tracer cannot model are left out and noted."""
        if self._ipsets is not None or IPSET not in self.sections:
            return self._ipsets
        from netproxy.trace.ipsets import parse_ipsets

        sec = self.sections[IPSET]
        chunks: dict[str, list[tuple[int, str]]] = {}
        order: list[str] = []
        for n, line in enumerate(sec.lines, sec.line + 1):
            words = line.split()
            if len(words) >= 2 and words[0] in ("create", "add"):
                if words[1] not in chunks:
                    chunks[words[1]] = []
                    order.append(words[1])
                chunks[words[1]].append((n, line))
        sets: dict[str, Any] = {}
        for name in order:
            lines = chunks[name]
            text = "\n".join(line for _, line in lines)
            try:
                sets.update(parse_ipsets(text, f"{self.source} ({IPSET}, set {name})"))
            except InputError as err:
                self._ipset_notes.append(f"ipset {name} (line {lines[0][0]}) not read: "
                                         f"{err.message}; its matches stay undecided")
        self._ipsets = sets
        return sets

    @property
    def ipset_notes(self) -> list[str]:
        self.ipsets()
        return self._ipset_notes

    def addresses(self, family: str, dev: str | None = None) -> list[str]:
        """The node's own addresses of ``family`` (every interface, loopback included; only
        those of interface ``dev`` when given)."""
        from netproxy.node.routing import RouteDataError, addresses_from_json

        try:
            return [a.text for a in addresses_from_json(self.json(ADDR), family, "addresses")
                    if dev is None or a.dev == dev]
        except RouteDataError as err:
            raise self._error(ADDR, str(err)) from None

    def router(self, family: str) -> Any:
        """The :class:`netproxy.node.routing.Router` of ``family``."""
        found = self._routers.get(family)
        if found is not None:
            return found
        from netproxy.node.routing import (
            RouteDataError,
            Router,
            addresses_from_json,
            routes_from_json,
            rules_from_json,
        )

        forwarding_key = ("net.ipv4.ip_forward" if family == "ipv4"
                          else "net.ipv6.conf.all.forwarding")
        value = self.sysctls.get(forwarding_key)
        forwarding = None if value is None else value != "0"
        name = ADDR
        try:
            addresses = addresses_from_json(self.json(ADDR), family, "addresses")
            name = ROUTES[family]
            routes = routes_from_json(self.json(name), family, "routes")
            name = RULES[family]
            rules = rules_from_json(self.json(name), family, "policy rules")
        except RouteDataError as err:
            raise self._error(name, str(err)) from None
        router = Router(family, routes, rules, addresses, forwarding=forwarding)
        router.bridging = self._bridging(family)
        router.ports = self._ports()
        if VRF in self.sections:
            router.set_vrfs(self._vrfs())
        if NEIGH in self.sections and FDB in self.sections:
            router.set_l2(self._neighbours(family), self._fdb())
        if family == "ipv4":
            router.set_rp_filter(self._conf_values("rp_filter"))
            for name in ("accept_local", "src_valid_mark"):
                values = self._conf_values(name)
                if values:  # snapshots before format v2 do not record them
                    router.set_conf(name, values)
        self._routers[family] = router
        return router

    def _bridging(self, family: str) -> tuple[bool | None, frozenset[str] | None, str]:
        key = ("net.bridge.bridge-nf-call-iptables" if family == "ipv4"
               else "net.bridge.bridge-nf-call-ip6tables")
        value = self.sysctls.get(key)
        if value is not None:
            calls: bool | None = value != "0"
            why = f"{key} = {value}"
        elif any(note == f"{SYSCTL}: {key} is not present" for note in self.notes):
            calls, why = False, f"{key} is not present (br_netfilter is not loaded)"
        else:
            calls, why = None, ""
        masters = frozenset(self._ports()) if LINK in self.sections else None
        return calls, masters, why

    def _ports(self) -> dict[str, tuple[str, ...]]:
        """Each interface that has ports (``master`` in ``ip -j link``), with its ports."""
        out: dict[str, list[str]] = {}
        for link in self.json(LINK) if LINK in self.sections else []:
            if isinstance(link, dict) and link.get("master") and link.get("ifname"):
                out.setdefault(str(link["master"]), []).append(str(link["ifname"]))
        return {k: tuple(v) for k, v in out.items()}

    def _entries(self, name: str, needs: tuple[str, ...],
                 what: str) -> list[tuple[int, dict[str, Any]]]:
        """The JSON entries of section ``name`` with their numbers; an entry without the
        keys ``needs`` is a one-line error naming the section (empty objects, which
        iproute2 prints for filtered-out links, are skipped)."""
        out = []
        for n, item in enumerate(self.json(name), 1):
            if isinstance(item, dict) and not item:
                continue
            if not isinstance(item, dict) or any(not isinstance(item.get(k), str)
                                                  for k in needs):
                missing = next((k for k in needs if not isinstance(item, dict)
                                or not isinstance(item.get(k), str)), needs[0])
                raise self._error(name, f"entry {n}: not {what} (no {missing})")
            out.append((n, item))
        return out

    def _vrfs(self) -> dict[str, str]:
        """The VRF devices and their routing tables."""
        out: dict[str, str] = {}
        for n, item in self._entries(VRF, ("ifname",), "a link"):
            info = item.get("linkinfo")
            data = info.get("info_data") if isinstance(info, dict) else None
            if not isinstance(info, dict) or info.get("info_kind") != "vrf":
                continue
            table = data.get("table") if isinstance(data, dict) else None
            if table is None:
                raise self._error(VRF, f"entry {n} ({item['ifname']}): a vrf without a table")
            from netproxy.node.routing import table_name

            out[item["ifname"]] = table_name(table)
        return out

    def _neighbours(self, family: str) -> dict[tuple[str, str], str]:
        """(device, address) -> MAC of the node's neighbours of ``family`` (entries without
        a link-layer address, such as FAILED ones, are left out)."""
        out: dict[tuple[str, str], str] = {}
        for _n, item in self._entries(NEIGH, ("dst", "dev"), "a neighbour"):
            mac = item.get("lladdr")
            if not isinstance(mac, str) or (":" in item["dst"]) != (family == "ipv6"):
                continue
            out[(item["dev"], item["dst"])] = mac.lower()
        return out

    def _fdb(self) -> dict[tuple[str, str], str]:
        """(bridge, MAC) -> the bridge port it is behind (learned and static entries;
        the bridge's own and its ports' own addresses, ``permanent``, are left out)."""
        out: dict[tuple[str, str], str] = {}
        for _n, item in self._entries(FDB, ("mac", "ifname"), "a forwarding entry"):
            master = item.get("master")
            state = item.get("state")
            if not isinstance(master, str) or state == "permanent" or "self" in (
                    item.get("flags") or ()):
                continue
            out.setdefault((master, item["mac"].lower()), item["ifname"])
        return out

    def _conf_values(self, name: str) -> dict[str, int]:
        """The ``net.ipv4.conf.*.NAME`` values recorded: ``all``, ``default`` and per
        interface (rp_filter: 0 off, 1 strict, 2 loose)."""
        out: dict[str, int] = {}
        tail = f".{name}"
        for key, value in self.sysctls.items():
            if key.startswith("net.ipv4.conf.") and key.endswith(tail):
                dev = key[len("net.ipv4.conf."):-len(tail)].replace("/", ".")
                if value.strip().isdigit():
                    out[dev] = int(value)
        return out

    def has_routes(self, family: str) -> bool:
        return bool(self.json(ROUTES[family]))

    def _error(self, name: str, message: str) -> InputError:
        sec = self.sections.get(name)
        where = f"{self.source}:{sec.line + 1}" if sec is not None else self.source
        return InputError(f"section '{name}': {message}", where=where)


def parse_snapshot(text: str, source: str = "<snapshot>") -> NodeContext:
    """Read a snapshot's text; one-line errors name the file, line and section."""
    lines = text.split("\n")
    first = lines[0] if lines else ""
    if not first.startswith(MAGIC):
        raise InputError(f"not a node snapshot (the first line is not '{HEADER}')",
                         where=f"{source}:1")
    version = first[len(MAGIC):].strip()
    if version not in {f"v{v}" for v in READS}:
        raise InputError(f"snapshot format {cut(version) or '(none)'} is not supported (this "
                         f"netproxy reads {' and '.join(f'v{v}' for v in READS)})",
                         where=f"{source}:1")
    header: dict[str, str] = {}
    sections: dict[str, Section] = {}
    current: Section | None = None
    ended = False
    for n, line in enumerate(lines[1:], 2):
        if line.startswith("### "):
            name = line[4:].strip()
            if name == END:
                ended = True
                break
            if name in sections:
                raise InputError(f"section '{name}' appears twice (first at line "
                                 f"{sections[name].line})", where=f"{source}:{n}")
            if name not in ORDER or (version == "v1" and name in V2_SECTIONS):
                raise InputError(f"unknown section '{cut(name)}'" + (
                    f" (a {version} snapshot)" if name in ORDER else ""), where=f"{source}:{n}")
            current = sections[name] = Section(name, n)
            continue
        if current is None:
            if line.startswith("# "):
                key, sep, value = line[2:].partition(":")
                if sep:
                    header[key.strip()] = value.strip()
            elif line.strip():
                raise InputError("text before the first section", where=f"{source}:{n}")
            continue
        current.lines.append(line[1:] if line.startswith("\\###") else line)
    if not ended:
        last = f" (the last section is '{current.name}')" if current is not None else ""
        raise InputError(f"snapshot is truncated: no '### {END}' line{last}",
                         where=f"{source}:{len(lines)}")
    for sec in sections.values():  # the producers end every body with one newline
        if sec.lines and sec.lines[-1] == "":
            sec.lines.pop()
    notes = "\n".join(sections[NOTES].lines) if NOTES in sections else ""
    for name in (*REQUIRED, *(V2_SECTIONS if version != "v1" else ())):
        if name not in sections and (name == NOTES or name not in notes):
            raise InputError(f"section '{name}' is missing (and no note says why)",
                             where=source)
    return NodeContext(source, header, sections, int(version[1:]))


def read_snapshot(path: str | Path) -> NodeContext:
    """Read the snapshot at ``path`` (``-`` for standard input)."""
    from netproxy.textsafe import read_input

    try:
        text, source = read_input(path)
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror or err}", where=str(path)) from None
    return parse_snapshot(text, source)


def ruleset_of(path: str | Path, family: str | None = None, *, strict: bool = False) -> Ruleset:
    """The iptables ruleset of ``family`` in the snapshot at ``path``."""
    return read_snapshot(path).ruleset(family, strict=strict)
