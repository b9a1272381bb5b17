"""Read ``iptables-save`` output and ``iptables-restore`` input into a :class:`Ruleset`.

Handles every table, chain policies and counters, ``-c``/``[n:m]`` rule counters, header,
trailer and warning comments, ``-A``/``-I``/``-N``/``-X``/``-F``/``-P`` lines of restore
payloads, and the ``ip6tables`` flavour. Lenient mode (the default) keeps going past lines it
cannot understand, keeping them as opaque rules and listing them in ``Ruleset.problems``;
strict mode stops at the first one. Every error names the source, line and column.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import chain as _chain
from pathlib import Path

from netproxy.errors import ParseError
from netproxy.gcpause import paused_gc
from netproxy.netfilter import extensions as ext
from netproxy.netfilter.model import BUILTIN_CHAINS, Chain, Problem, Rule, Ruleset, Table
from netproxy.parser.rules import (
    RuleSyntaxError,
    compile_plan,
    parse_rule_words,
)
from netproxy.parser.shapes import STRUCTURAL, bangs, compile_check, long_dashes, shape_key
from netproxy.parser.tokens import TokenError, split_words, split_words_with_columns
from netproxy.textsafe import cut, digits, read_input, shown

_POLICIES = {"ACCEPT", "DROP", "QUEUE", "RETURN", "-"}


def _column(line: str, word: int) -> int:
    try:
        cols = split_words_with_columns(line)
    except TokenError:
        return 1
    return cols[word][1] if 0 <= word < len(cols) else len(line) + 1


_Shape = tuple[int, Callable[[Sequence[str], int], Rule | None], int, int,
               Callable[[Sequence[str]], bool]]


class _Reader:
    def __init__(self, source: str, strict: bool) -> None:
        self.source = source
        self.strict = strict
        self.ruleset = Ruleset(source=source)
        self.table: Table | None = None
        self.header = ""
        # The written order of the current table: (chain, index of its first rule) for every
        # run of rules appended to one chain, the name of every -X line.
        self.order: list[tuple[Chain, int] | str] = []
        self.reordered = False  # -I or -F: the written order no longer maps to the chains
        # shape key -> (long_dashes of the line, the plan's compiled builder, index of the
        # target's word or 0 for none, bangs of the line, the shape's cheap check)
        self.plans: dict[tuple[str | None, ...], _Shape] = {}
        self.guesses: dict[int, list[_Shape]] = {}  # the same, by number of words
        self.jumps: dict[str, set[str]] = {}  # per table: every target name rules were read with

    def fail(self, message: str, line_no: int, column: int = 0) -> None:
        """Stop (strict) or record the problem (lenient)."""
        if self.strict:
            raise ParseError(message, source=self.source, line=line_no, column=column)
        self.ruleset.problems.append(Problem(line_no, column, message))

    def fatal(self, message: str, line_no: int, column: int = 0) -> ParseError:
        return ParseError(message, source=self.source, line=line_no, column=column)

    def read(self, text: str, progress: Callable[[int], None] | None = None) -> Ruleset:
        plans = self.plans
        guesses = self.guesses
        found: _Shape | None
        chain_from = _chain.from_iterable
        split = split_words
        structural = STRUCTURAL.get
        order_append = self.order.append
        last: Chain | None = None  # the chain the previous hot-path rule went to
        chains: dict[str, Chain] | None = None  # the current table's chains (None: no table)
        builtin: tuple[str, ...] = ()  # the current table's built-in chains
        no_table: set[str] = set()
        jumps_add = no_table.add
        for line_no, line in enumerate(chain_from(map(str.splitlines, _pieces(text, progress=progress))), 1):
            if line[:3] == "-A " and chains is not None:
                # Hot path: a rule whose shape was parsed before (see parser.shapes). The
                # common one-comment line is split inline; anything else goes to split_words.
                # ``dashes`` is how many "--" the words hold, counted on the line where no
                # "--" can cross a word boundary.
                if '"' not in line and "'" not in line:
                    words = line.split()
                    dashes = line.count("--")
                else:
                    parts = line.split('"')
                    if len(parts) == 3 and parts[0][-1:] == " " and parts[2][:1] in (" ", "") \
                            and "\\" not in line and "'" not in line:
                        words = parts[0].split()
                        words.append(parts[1])
                        words += parts[2].split()
                        dashes = line.count("--")
                    else:
                        try:
                            words = split(line)
                        except TokenError:
                            words = []  # rule_line below reports it with its column
                        dashes = " ".join(words).count("--")
                # First the shapes seen with as many words, by their cheap check; then the key.
                # (Every plan was made from a line of two words or more: words[1] is safe.)
                for found in guesses.get(len(words), ()):
                    if found[0] == dashes and found[4](words) and line.count("!") == found[3]:
                        break
                else:
                    found = plans.get(tuple(map(structural, words)))  # shape_key, inlined
                    if found is not None and found[0] != dashes:
                        found = None
                if found is not None:
                    chain = chains.get(words[1])
                    if chain is not None:
                        rule = found[1](words, line_no)
                        if rule is not None:
                            if chain is not last:
                                order_append((chain, len(chain.rules)))
                                last = chain
                            chain.rules.append(rule)
                            if found[2]:
                                jumps_add(words[found[2]])
                            continue
            elif line[:1] == ":" and line[-8:] == " - [0:0]" and chains is not None:
                # Hot path: a new user chain, as iptables-save prints it.
                name = line[1:-8]
                if " " not in name and name not in chains and name not in builtin:
                    chains[name] = Chain(name, None, (0, 0), [], line_no)
                    continue
            last = None  # the general path may write rules too
            line = line.strip()
            if not line:
                continue
            first = line[0]
            if first == "#":
                if line_no <= 2 and "ip6tables" in line:
                    self.header = line
                continue
            if first == "-" or first == "[":
                self.rule_line(line, line_no)
            elif first == ":":
                self.chain_line(line, line_no)
            elif first == "*":
                self.finish_table()
                name = line[1:].strip()
                if name not in BUILTIN_CHAINS:
                    # fatal also when lenient: every line up to its COMMIT would be guesswork
                    raise self.fatal(f"unknown table {shown(name)} (iptables has "
                                     f"{', '.join(BUILTIN_CHAINS)})", line_no, 2)
                self.table = self.ruleset.table(name)
            elif line == "COMMIT":
                if self.table is None:
                    self.fail("COMMIT outside a table", line_no, 1)
                self.finish_table()
                self.table = None
            else:
                self.fail(f"cannot read line: {line[:60]!r}", line_no, 1)
            if self.table is not None:
                chains, builtin = self.table.chains, BUILTIN_CHAINS[self.table.name]
                jumps_add = self.jumps.setdefault(self.table.name, set()).add
            else:
                chains = None
        if self.table is not None:
            self.fail(f"table {shown(self.table.name)} has no COMMIT", line_no_end(text))
            self.finish_table()
        self.check_jumps()
        self.ruleset.family = infer_family(self.ruleset, self.header)
        return self.ruleset

    def finish_table(self) -> None:
        """Keep the written order of a table's rules when it is not simply chain by chain."""
        table, order, reordered = self.table, self.order[:], self.reordered
        self.order.clear()
        self.reordered = False
        if table is None or reordered:
            return
        # Chain by chain in declaration order is what rendering does by default.
        rank = {name: k for k, name in enumerate(table.chains)}
        interleaved = False
        last = -1
        previous: Chain | None = None
        for entry in order:
            if isinstance(entry, str):
                interleaved = True  # a -X between rules
                break
            if entry[0] is previous:
                continue  # one run cut in two by a line the general path read
            previous = entry[0]
            now = rank.get(previous.name, -1)
            if now <= last:
                interleaved = True
                break
            last = now
        if not (interleaved or table.deleted):
            return
        # Run k of a chain ends where its next run starts, the last one at the chain's end.
        ends: dict[int, int] = {}
        following: dict[str, int] = {}
        for k in range(len(order) - 1, -1, -1):
            entry = order[k]
            if not isinstance(entry, str):
                chain, start = entry
                ends[k] = following.get(chain.name, len(chain.rules))
                following[chain.name] = start
        writes: list[tuple[str, Rule | None]] = []
        for k, entry in enumerate(order):
            if isinstance(entry, str):
                writes.append((entry, None))
                continue
            chain, start = entry
            writes.extend((chain.name, rule) for rule in chain.rules[start:ends[k]])
        table.writes = writes

    def chain_line(self, line: str, line_no: int) -> None:
        table = self.table
        if table is not None and line.endswith(" - [0:0]"):
            name = line[1:-8]
            if " " not in name and name not in table.chains \
                    and name not in BUILTIN_CHAINS.get(table.name, ()):
                table.chains[name] = Chain(name, None, (0, 0), [], line_no)
                return
        if self.table is None:
            raise self.fatal("chain declared outside a table (missing '*table' line)", line_no, 1)
        parts = line[1:].split()
        if not parts:
            raise self.fatal("chain line without a name", line_no, 2)
        name = parts[0]
        policy = parts[1] if len(parts) > 1 else "-"
        if policy not in _POLICIES:
            self.fail(f"unknown policy {shown(policy)} for chain {cut(name)}", line_no, len(name) + 3)
        counters = None
        if len(parts) > 2:
            counters = _counters(parts[2])
            if counters is None:
                self.fail(f"invalid counters {shown(parts[2])}", line_no)
        builtin = name in BUILTIN_CHAINS.get(self.table.name, ())
        chain = self.table.chains.get(name)
        if chain is None:
            chain = self.table.chains[name] = Chain(name)
        chain.policy = (policy if policy != "-" else "ACCEPT") if builtin else None
        chain.counters = counters
        chain.line = line_no

    def rule_line(self, line: str, line_no: int) -> None:
        try:
            words = split_words(line)
        except TokenError as err:
            self.fail(str(err), line_no, err.column)
            self.keep_opaque(line, line_no)
            return
        counters = None
        if words[0].startswith("["):
            counters = _counters(words[0])
            if counters is None:
                self.fail(f"invalid counters {shown(words[0])}", line_no, 1)
            words = words[1:]
            if not words:
                self.fail("counters without a rule", line_no, 1)
                return
        if self.table is None:
            raise self.fatal("rule outside a table (missing '*table' line)", line_no, 1)
        cmd = words[0]
        if cmd in ("-X", "--delete-chain", "-F", "--flush", "-N", "--new-chain", "-Z", "--zero"):
            self.chain_command(cmd, words, line, line_no)
            return
        if cmd in ("-P", "--policy"):
            if len(words) < 3:
                raise self.fatal("-P needs a chain and a policy", line_no, 1)
            self.table.chain(words[1]).policy = words[2]
            return
        if cmd not in ("-A", "--append", "-I", "--insert"):
            self.fail(f"unsupported command {shown(cmd)}", line_no, 1)
            return
        if len(words) < 2:
            raise self.fatal(f"{cmd} needs a chain name", line_no, 1)
        chain_name = words[1]
        start = 2
        position = None
        if cmd in ("-I", "--insert") and len(words) > 2 and digits(words[2]):
            position = int(words[2]) - 1
            start = 3
        chain = self.table.chains.get(chain_name)
        if chain is None and chain_name in BUILTIN_CHAINS.get(self.table.name, ()):
            chain = self.table.chain(chain_name)
        elif chain is None:
            self.fail(f"chain {shown(chain_name)} was not declared", line_no, _column(line, 1))
            chain = self.table.chain(chain_name)
        try:
            rule, problems, plan = parse_rule_words(words, start, strict=self.strict)
            if plan is not None and counters is None and not problems and start == 2:
                key = shape_key(words)
                entry = (long_dashes(words), compile_plan(plan), max(plan.target, 0), bangs(words),
                         compile_check(key, plan.target))
                self.plans[key] = entry
                self.guesses.setdefault(len(words), []).append(entry)
        except RuleSyntaxError as err:
            column = _column(line, err.word + (1 if counters is not None else 0))
            if self.strict:
                raise self.fatal(str(err), line_no, column) from None
            self.ruleset.problems.append(Problem(line_no, column, str(err)))
            rule = Rule(line=line_no, opaque=line)
        else:
            shift = 1 if counters is not None else 0
            for p in problems:
                self.ruleset.problems.append(Problem(line_no, _column(line, p.word + shift), p.message))
            rule.line = line_no
            if counters is not None:
                rule.counters = counters
        if rule.target is not None:
            self.jumps.setdefault(self.table.name, set()).add(rule.target.name)
        if cmd in ("-I", "--insert"):
            chain.rules.insert(position if position is not None else 0, rule)
            self.reordered = True
        else:
            self.note_append(chain)
            chain.rules.append(rule)

    def note_append(self, chain: Chain) -> None:
        """Record, before a rule is appended to ``chain``, where a new run of rules begins."""
        order = self.order
        if not order or isinstance(order[-1], str) or order[-1][0] is not chain:
            order.append((chain, len(chain.rules)))

    def keep_opaque(self, line: str, line_no: int) -> None:
        if self.table is None:
            return
        words = line.split()
        if len(words) > 1 and words[0] in ("-A", "--append"):
            chain = self.table.chain(words[1])
            self.note_append(chain)
            chain.rules.append(Rule(line=line_no, opaque=line))

    def chain_command(self, cmd: str, words: list[str], line: str, line_no: int) -> None:
        assert self.table is not None
        name = words[1] if len(words) > 1 else ""
        if cmd in ("-X", "--delete-chain"):
            if not name:
                raise self.fatal("-X needs a chain name", line_no, 1)
            self.table.chains.pop(name, None)
            self.table.deleted.append(name)
            self.order.append(name)
        elif cmd in ("-N", "--new-chain"):
            if not name:
                raise self.fatal("-N needs a chain name", line_no, 1)
            self.table.chain(name)
        elif cmd in ("-F", "--flush"):
            chains = [self.table.chains[name]] if name in self.table.chains else (
                [] if name else list(self.table.chains.values()))
            for chain in chains:
                chain.rules.clear()
            self.reordered = True  # the runs recorded so far no longer hold those rules

    def check_jumps(self) -> None:
        for table in self.ruleset.tables.values():
            # Every rule's target is among the names seen while reading (flushed rules' too);
            # only when one of those is missing are the rules themselves looked at.
            names = self.jumps.get(table.name, ())
            missing = {n for n in names if n not in table.chains and ext.target(n) is None}
            if not missing:
                continue
            for chain in table.chains.values():
                for rule in chain.rules:
                    if rule.target is not None and rule.target.name in missing:
                        self.fail(
                            f"rule in {table.name}/{cut(chain.name)} jumps to {shown(rule.target.name)}, "
                            "which is neither a declared chain nor a known target",
                            rule.line,
                        )


def _pieces(text: str, size: int = 1 << 20, *,
            progress: Callable[[int], None] | None = None) -> Iterator[str]:
    """``text`` in pieces of about ``size`` characters that end after a newline, so that the
    lines of one piece at a time exist as separate strings rather than all of them at once.
    ``progress(characters read)`` is called before each piece."""
    start, end = 0, len(text)
    while start < end:
        cut = text.find("\n", start + size)
        cut = end if cut < 0 else cut + 1
        if progress is not None:
            progress(start)
        yield text[start:cut]
        start = cut


def _counters(text: str) -> tuple[int, int] | None:
    if not (text.startswith("[") and text.endswith("]")):
        return None
    pkts, _, byts = text[1:-1].partition(":")
    try:
        return int(pkts), int(byts)
    except ValueError:
        return None


def line_no_end(text: str) -> int:
    return text.count("\n") + (0 if text.endswith("\n") else 1)


def infer_family(ruleset: Ruleset, header: str = "") -> str:
    """``ipv6`` if the header says ip6tables or addresses/ICMPv6 show it; else ``ipv4``."""
    if "ip6tables" in header:
        return "ipv6"
    seen = 0
    for table in ruleset.tables.values():
        for chain in table.chains.values():
            if chain.name in ("KUBE-FIREWALL",):
                continue
            for rule in chain.rules:
                for opt in rule.matches:
                    if not opt.module and opt.name in ("source", "destination") and opt.args:
                        return "ipv6" if ":" in opt.args[0] else "ipv4"
                    if opt.module in ("icmp6", "ipv6-icmp") or (
                            opt.name == "protocol" and opt.args and opt.args[0] in ("ipv6-icmp", "icmpv6")):
                        return "ipv6"
                if rule.target is not None and rule.target.name == "REJECT":
                    w = rule.target.get("reject-with")
                    if w is not None and "icmp6" in w.value:
                        return "ipv6"
                seen += 1
                if seen > 5000:
                    return "ipv4"
    return "ipv4"


def parse_rules(text: str, *, source: str = "<input>", family: str | None = None,
                strict: bool = False, progress: Callable[[int], None] | None = None) -> Ruleset:
    """Parse iptables-save / iptables-restore ``text`` into a ruleset; ``progress`` is told
    how many characters have been read, about once a megabyte."""
    # The model is acyclic; the cyclic collector would only rescan the growing heap.
    with paused_gc(freeze=True):
        ruleset = _Reader(source, strict).read(text, progress)
    if family is not None:
        ruleset.family = family
    return ruleset


def read_rules(path: str | Path, *, family: str | None = None, strict: bool = False) -> Ruleset:
    """Read a dump from ``path``; ``-`` reads standard input."""
    try:
        # bytes, also from stdin: an old dump's Latin-1 comment is kept, not a decode error
        text, source = read_input(path)
    except OSError as err:
        raise ParseError(f"cannot read: {err.strerror or err}", source=str(path)) from None
    if text.startswith("# netproxy node snapshot"):
        # A node snapshot (netproxy snapshot): its iptables rules of the family.
        from netproxy.node.snapshot import parse_snapshot

        return parse_snapshot(text, source).ruleset(family, strict=strict)
    return parse_rules(text, source=source, family=family, strict=strict)
