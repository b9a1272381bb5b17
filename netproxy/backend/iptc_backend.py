"""The python-iptables backend: libiptc in-process, one commit per table, live counters.

It walks the same payload the restore backend would send, line by line, but edits the
tables through libiptc and commits each table once. libiptc only knows the legacy
(``ip_tables``) tables; asked to work on iptables-nft it refuses in one line.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netproxy.backend import xtables
from netproxy.backend.nsthread import run_in_netns
from netproxy.backend.plan import Plan
from netproxy.errors import BackendError
from netproxy.netfilter.model import Option, Rule, Ruleset

_NO_QUOTE = frozenset("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_QUOTED_OPTIONS = frozenset({"comment", "log-prefix", "nflog-prefix"})
_BUILTIN_ATTR = {"source": "src", "destination": "dst", "in-interface": "in_interface",
                 "out-interface": "out_interface", "protocol": "protocol"}


def _iptc() -> Any:
    try:
        import iptc
    except Exception as exc:  # missing library or libiptc
        raise BackendError(f"python-iptables (iptc) is not usable here: {exc}") from None
    return iptc


def _quote(value: str) -> str:
    if value and all(c in _NO_QUOTE for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'") + '"'


def _address(value: str, family: str) -> str | None:
    """libiptc's ``addr/netmask`` → ``addr/len``; ``None`` for 'any'."""
    addr, _, mask = value.partition("/")
    net = ipaddress.ip_network(f"{addr}/{mask or ('32' if family == 'ipv4' else '128')}", strict=False)
    if net.prefixlen == 0:
        return None
    return f"{net.network_address}/{net.prefixlen}"


def _params(params: dict[str, list[str]], quoted: bool) -> list[str]:
    words: list[str] = []
    for name, values in params.items():
        vals = list(values)
        if vals and vals[0] == "!":
            words.append("!")
            vals = vals[1:]
        words.append(f"--{name}")
        if name == "nfacct-name":  # libxt_nfacct prints the name after two spaces
            vals = [" " + v for v in vals]
        words.extend(_quote(v) if quoted and name in _QUOTED_OPTIONS else v for v in vals)
    return words


def rule_line(chain: str, rule: Any, family: str) -> str:
    """One libiptc rule in ``iptables-save`` spelling."""
    words = [f"-A {chain}"]
    for attr, flag in (("src", "-s"), ("dst", "-d")):
        value = getattr(rule, attr)
        neg = value.startswith("!")
        shown = _address(value.lstrip("!"), family)
        if shown is not None:
            words += (["!"] if neg else []) + [flag, shown]
    for attr, flag in (("in_interface", "-i"), ("out_interface", "-o"), ("protocol", "-p")):
        value = getattr(rule, attr)
        if value and value not in ("all", "ip"):
            neg = value.startswith("!")
            words += (["!"] if neg else []) + [flag, value.lstrip("!")]
    for match in rule.matches:
        words += ["-m", match.name, *_params(match.get_all_parameters(), True)]
    target = rule.target
    if target is not None and target.name:
        words += ["-g" if getattr(target, "goto", False) else "-j", target.name]
        words += _params(target.get_all_parameters(), True)
    return " ".join(words)


@dataclass(slots=True)
class IptcBackend:
    netns: str
    family: str = "ipv4"

    @property
    def label(self) -> str:
        return "python-iptables (legacy)"

    @property
    def variant(self) -> str:
        return "legacy"

    @property
    def supports_replace(self) -> bool:
        return False

    @classmethod
    def open(cls, name: str, *, variant: str, family: str) -> IptcBackend:
        if variant == "nft" or (variant == "auto" and _has_nft_rules(name, family)):
            raise BackendError(
                f"--backend iptc drives only iptables-legacy tables; netns {name} uses iptables-nft, "
                "which python-iptables cannot see (use --backend restore)"
            )
        _iptc()
        return cls(name, family)

    def _classes(self) -> tuple[Any, Any]:
        iptc = _iptc()
        return (iptc.Table6, iptc.Rule6) if self.family == "ipv6" else (iptc.Table, iptc.Rule)

    def read(self, *, counters: bool = False, table: str | None = None) -> str:
        return run_in_netns(self.netns, lambda: self._read(counters, table))

    def _read(self, counters: bool, only: str | None) -> str:
        table_cls, _ = self._classes()
        names_file = "ip6_tables_names" if self.family == "ipv6" else "ip_tables_names"
        try:
            loaded = Path(f"/proc/thread-self/net/{names_file}").read_text().split()
        except OSError:
            loaded = []
        out: list[str] = []
        for tname in [t for t in loaded if only is None or t == only]:
            table = table_cls(tname, autocommit=False)
            table.refresh()
            chains = list(table.chains)
            builtin = [c for c in chains if c.is_builtin()]
            user = sorted((c for c in chains if not c.is_builtin()), key=lambda c: c.name.encode())
            out.append(f"*{tname}")
            for chain in builtin + user:
                pol = chain.get_policy().name if chain.is_builtin() else "-"
                pk, by = chain.get_counters() if chain.is_builtin() else (0, 0)
                out.append(f":{chain.name} {pol} [{pk}:{by}]")
            for chain in builtin + user:
                for rule in chain.rules:
                    line = rule_line(chain.name, rule, self.family)
                    if counters:
                        pk, by = rule.get_counters()
                        line = f"[{pk}:{by}] {line}"
                    out.append(line)
            out.append("COMMIT")
        return "".join(line + "\n" for line in out)

    def send(self, plan: Plan, desired: Ruleset | None) -> xtables.RestoreFailure | None:
        return run_in_netns(self.netns, lambda: self._send(plan))

    def _send(self, plan: Plan) -> xtables.RestoreFailure | None:
        """Interpret the payload like iptables-restore --noflush, committing per table."""
        from netproxy.parser import rule_from_args
        from netproxy.parser.tokens import split_words

        table_cls, rule_cls = self._classes()
        table: Any = None
        chains: dict[str, Any] = {}
        for number, line in enumerate(plan.lines, 1):
            try:
                if line.startswith("*"):
                    table = table_cls(line[1:], autocommit=False)
                    table.refresh()
                    chains = {c.name: c for c in table.chains}
                elif line.startswith(":"):
                    name = line[1:].split(" ", 1)[0]
                    if name in chains:
                        chains[name].flush()
                    else:
                        chains[name] = table.create_chain(name)
                elif line == "COMMIT":
                    table.commit()
                    table.refresh()
                    table = None
                elif line.startswith("-X "):
                    name = line[3:].strip()
                    table.delete_chain(name)
                    chains.pop(name, None)
                else:
                    words = split_words(line)
                    cmd, cname = words[0], words[1]
                    chain = chains[cname]
                    if cmd == "-D":
                        self._delete(chain, "-A " + line[3:])
                        continue
                    pos = int(words[2]) - 1 if cmd == "-I" else None
                    args = words[3:] if cmd == "-I" else words[2:]
                    rule = self._to_iptc(rule_from_args(args), rule_cls)
                    if pos is None:
                        chain.append_rule(rule)
                    else:
                        chain.insert_rule(rule, position=pos)
            except Exception as exc:  # libiptc / xtables / parser errors → restore-like failure
                if table is not None:
                    table.refresh()  # drop the uncommitted edits of this table
                return xtables.RestoreFailure(number, str(exc).strip("b'\""))
        return None

    def _delete(self, chain: Any, saved_line: str) -> None:
        for rule in chain.rules:
            if rule_line(chain.name, rule, self.family) == saved_line:
                chain.delete_rule(rule)
                return
        raise BackendError(f"rule to delete not found: {saved_line}")

    def _to_iptc(self, rule: Rule, rule_cls: Any) -> Any:
        """A rule-model rule → a python-iptables rule (options in written order)."""
        out = rule_cls()
        match: Any = None
        pending: list[Option] = []
        for opt in rule.matches:
            if not opt.module:
                attr = _BUILTIN_ATTR.get(opt.name)
                if attr is None:
                    raise BackendError(f"unsupported built-in match -{opt.name}")
                setattr(out, attr, ("!" if opt.negated else "") + opt.value)
            elif not opt.name:
                match = out.create_match(opt.module)
            else:
                if match is None or match.name != opt.module:
                    pending.append(opt)
                    continue
                match.set_parameter(opt.name, (["!"] if opt.negated else []) + list(opt.args))
        if pending:
            raise BackendError(f"option --{pending[0].name} without its -m {pending[0].module}")
        if rule.target is None:
            out.create_target("")  # no -j: the empty standard target, packets continue
        else:
            target = out.create_target(rule.target.name, goto=rule.target.goto)
            for opt in rule.target.options:
                target.set_parameter(opt.name, (["!"] if opt.negated else []) + list(opt.args))
        return out


def _has_nft_rules(name: str, family: str) -> bool:
    """Whether the namespace holds iptables-nft tables (which libiptc cannot see)."""
    tools = xtables.Xtables("nft", family)
    try:
        text = xtables.save(name, tools)
    except BackendError:
        return False
    return any(line.startswith("*") for line in text.splitlines())
