"""The declarative table of known iptables matches and targets.

One table serves the parser (which option belongs to which module, how many arguments it
takes, its other spellings), the renderer (the order ``iptables-save`` prints options in is
the order they are listed here), the tracer (what it knows how to evaluate) and the differ.

Option specs are written compactly as ``"name:N|alias|alias"``: ``"dport:1|destination-port"``
is option ``--dport`` taking one argument, also spelled ``--destination-port``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class OptionSpec:
    name: str
    nargs: int
    """Number of arguments; -1 means "all following words that do not start with ``-``"."""
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Extension:
    name: str
    kind: str  # "match" or "target"
    options: tuple[OptionSpec, ...]

    def lookup(self, spelling: str) -> OptionSpec | None:
        return _LOOKUP[(self.kind, self.name)].get(spelling)

    def order(self, name: str) -> int:
        """Position of option ``name`` in the save print order (unknown options last)."""
        return _ORDER[(self.kind, self.name)].get(name, 1_000)


def _spec(text: str) -> OptionSpec:
    names, _, rest = text.partition(":")
    nargs_text, _, alias_text = rest.partition("|")
    main, *aliases = names.split("|")
    extra = tuple(a for a in alias_text.split("|") if a)
    return OptionSpec(main, int(nargs_text or 0), tuple(aliases) + extra)


def _ext(kind: str, name: str, *specs: str) -> Extension:
    return Extension(name, kind, tuple(_spec(s) for s in specs))


BUILTIN_MATCH = _ext(
    "match",
    "",
    "source:1|s|src",
    "destination:1|d|dst",
    "in-interface:1|i",
    "out-interface:1|o",
    "protocol:1|p",
    "fragment:0|f",
)
"""Built-in matches in the order ``iptables-save`` prints them."""

_PORTS = ("sport:1|source-port", "dport:1|destination-port")

MATCHES: dict[str, Extension] = {
    e.name: e
    for e in (
        _ext("match", "comment", "comment:1"),
        _ext("match", "tcp", *_PORTS, "tcp-option:1", "tcp-flags:2", "syn:0"),
        _ext("match", "udp", *_PORTS),
        _ext("match", "sctp", *_PORTS, "chunk-types:2"),
        _ext("match", "udplite", *_PORTS),
        _ext("match", "dccp", *_PORTS, "dccp-types:1", "dccp-option:1"),
        _ext("match", "icmp", "icmp-type:1"),
        _ext("match", "icmp6", "icmpv6-type:1"),
        _ext("match", "ipv6-icmp", "icmpv6-type:1"),
        _ext("match", "mark", "mark:1"),
        _ext("match", "connmark", "mark:1"),
        _ext(
            "match",
            "conntrack",
            "ctstate:1",
            "ctproto:1",
            "ctorigsrc:1",
            "ctorigdst:1",
            "ctreplsrc:1",
            "ctrepldst:1",
            "ctorigsrcport:1",
            "ctorigdstport:1",
            "ctreplsrcport:1",
            "ctrepldstport:1",
            "ctstatus:1",
            "ctexpire:1",
            "ctdir:1",
        ),
        _ext("match", "state", "state:1"),
        _ext("match", "addrtype", "src-type:1", "dst-type:1", "limit-iface-in:0", "limit-iface-out:0"),
        _ext("match", "statistic", "mode:1", "probability:1", "every:1", "packet:1"),
        _ext(
            "match",
            "recent",
            "set:0",
            "rcheck:0",
            "update:0",
            "remove:0",
            "seconds:1",
            "reap:0",
            "hitcount:1",
            "rttl:0",
            "name:1",
            "mask:1",
            "rsource:0",
            "rdest:0",
        ),
        _ext("match", "nfacct", "nfacct-name:1"),
        _ext("match", "multiport", "sports:1|source-ports", "dports:1|destination-ports", "ports:1"),
        _ext("match", "iprange", "src-range:1", "dst-range:1"),
        _ext(
            "match",
            "set",
            "match-set:2|set",
            "return-nomatch:0",
            "update-counters:0",
            "update-subcounters:0",
            "packets-eq:1",
            "packets-lt:1",
            "packets-gt:1",
            "bytes-eq:1",
            "bytes-lt:1",
            "bytes-gt:1",
        ),
        _ext(
            "match",
            "physdev",
            "physdev-in:1",
            "physdev-out:1",
            "physdev-is-in:0",
            "physdev-is-out:0",
            "physdev-is-bridged:0",
        ),
        _ext("match", "limit", "limit:1", "limit-burst:1"),
        _ext(
            "match",
            "owner",
            "uid-owner:1",
            "gid-owner:1",
            "suppl-groups:0",
            "socket-exists:0",
        ),
        _ext("match", "mac", "mac-source:1"),
        _ext("match", "pkttype", "pkt-type:1"),
        _ext("match", "length", "length:1"),
        _ext("match", "ttl", "ttl-eq:1", "ttl-gt:1", "ttl-lt:1"),
        _ext("match", "hl", "hl-eq:1", "hl-gt:1", "hl-lt:1"),
        _ext("match", "socket", "transparent:0", "nowildcard:0", "restore-skmark:0"),
        _ext("match", "rpfilter", "loose:0", "validmark:0", "accept-local:0", "invert:0"),
        _ext("match", "devgroup", "src-group:1", "dst-group:1"),
        _ext("match", "cgroup", "path:1", "cgroup:1"),
        _ext("match", "helper", "helper:1"),
        _ext("match", "string", "algo:1", "from:1", "to:1", "string:1", "hex-string:1", "icase:0"),
        _ext("match", "tcpmss", "mss:1"),
        _ext("match", "dscp", "dscp:1", "dscp-class:1"),
        _ext("match", "tos", "tos:1"),
        _ext("match", "connlimit", "connlimit-upto:1", "connlimit-above:1", "connlimit-mask:1",
             "connlimit-saddr:0", "connlimit-daddr:0"),
        _ext("match", "hashlimit", "hashlimit-upto:1", "hashlimit-above:1", "hashlimit-burst:1",
             "hashlimit-mode:1", "hashlimit-srcmask:1", "hashlimit-dstmask:1", "hashlimit-name:1",
             "hashlimit-htable-size:1", "hashlimit-htable-max:1", "hashlimit-htable-expire:1",
             "hashlimit-htable-gcinterval:1", "hashlimit:1"),
        _ext("match", "policy", "dir:1", "pol:1", "strict:0", "reqid:1", "spi:1", "proto:1",
             "mode:1", "tunnel-src:1", "tunnel-dst:1", "next:0"),
        _ext("match", "u32", "u32:1"),
        _ext("match", "bpf", "bytecode:1", "object-pinned:1"),
    )
}

TARGETS: dict[str, Extension] = {
    e.name: e
    for e in (
        _ext("target", "ACCEPT"),
        _ext("target", "DROP"),
        _ext("target", "RETURN"),
        _ext("target", "QUEUE"),
        _ext("target", "REJECT", "reject-with:1"),
        _ext("target", "DNAT", "to-destination:1|to", "random:0", "persistent:0", "random-fully:0"),
        _ext("target", "SNAT", "to-source:1|to", "random:0", "random-fully:0", "persistent:0"),
        _ext("target", "MASQUERADE", "to-ports:1", "random:0", "random-fully:0"),
        _ext("target", "REDIRECT", "to-ports:1", "random:0"),
        _ext("target", "MARK", "set-xmark:1", "set-mark:1", "or-mark:1", "and-mark:1", "xor-mark:1"),
        _ext("target", "CONNMARK", "set-xmark:1", "set-mark:1", "save-mark:0", "restore-mark:0",
             "and-mark:1", "or-mark:1", "xor-mark:1", "mask:1", "nfmask:1", "ctmask:1"),
        _ext("target", "LOG", "log-level:1", "log-prefix:1", "log-tcp-sequence:0",
             "log-tcp-options:0", "log-ip-options:0", "log-uid:0", "log-macdecode:0"),
        _ext("target", "NFLOG", "nflog-group:1", "nflog-prefix:1", "nflog-range:1",
             "nflog-size:1", "nflog-threshold:1"),
        _ext("target", "TRACE"),
        _ext("target", "NOTRACK"),
        _ext("target", "CT", "notrack:0", "helper:1", "ctevents:1", "expevents:1", "zone:1",
             "timeout:1"),
        _ext("target", "CHECKSUM", "checksum-fill:0"),
        _ext("target", "TCPMSS", "set-mss:1", "clamp-mss-to-pmtu:0"),
        _ext("target", "NFQUEUE", "queue-num:1", "queue-balance:1", "queue-bypass:0",
             "fail-open:0", "queue-cpu-fanout:0"),
        _ext("target", "SET", "add-set:2", "del-set:2", "exist:0", "timeout:1", "map-set:2"),
        _ext("target", "DSCP", "set-dscp:1", "set-dscp-class:1"),
        _ext("target", "TOS", "set-tos:1", "and-tos:1", "or-tos:1", "xor-tos:1"),
        _ext("target", "NETMAP", "to:1"),
        _ext("target", "TPROXY", "on-port:1", "on-ip:1", "tproxy-mark:1"),
        _ext("target", "CLASSIFY", "set-class:1"),
    )
}

PROTOCOL_MODULES = {"tcp": "tcp", "udp": "udp", "sctp": "sctp", "icmp": "icmp",
                    "icmpv6": "icmp6", "ipv6-icmp": "icmp6", "udplite": "udplite", "dccp": "dccp"}
"""Modules that ``-p <proto>`` loads implicitly (``-p tcp --dport 80`` without ``-m tcp``)."""

_LOOKUP: dict[tuple[str, str], dict[str, OptionSpec]] = {}
_ORDER: dict[tuple[str, str], dict[str, int]] = {}
for _e in (BUILTIN_MATCH, *MATCHES.values(), *TARGETS.values()):
    _LOOKUP[(_e.kind, _e.name)] = {s: o for o in _e.options for s in (o.name, *o.aliases)}
    _ORDER[(_e.kind, _e.name)] = {o.name: i for i, o in enumerate(_e.options)}

BUILTIN_SHORT = {"source": "s", "destination": "d", "in-interface": "i",
                 "out-interface": "o", "protocol": "p", "fragment": "f"}
"""How ``iptables-save`` spells the built-in matches."""


def match(name: str) -> Extension | None:
    return MATCHES.get(name)


def target(name: str) -> Extension | None:
    return TARGETS.get(name)
