"""``nft list ruleset`` text (nft 0.9 to 1.1; with ``-a`` handles, ``-s``, counters) to the
nftables model.

Lenient mode keeps what it does not know: an unreadable statement becomes ``{"unknown":
TEXT}`` in its rule (the tracer says UNKNOWN there), an unreadable table item is skipped, and
either is recorded as a problem with line and column. Strict mode raises
:class:`~netproxy.errors.ParseError` naming line and column instead.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from netproxy.errors import ParseError
from netproxy.netfilter.model import Problem
from netproxy.netfilter.nft import (
    NftChain,
    NftElement,
    NftFlowtable,
    NftObject,
    NftRule,
    NftRuleset,
    NftSet,
    NftTable,
    priority_value,
)
from netproxy.parser.nftables.lexer import COMMENT, HANDLE, NL, PUNCT, STRING, WORD, Token, tokenize
from netproxy.parser.nftables.refs import check_references
from netproxy.parser.nftables.values import BITMASK_KEYS, normal, parse_time, word_value

FAMILIES = frozenset({"ip", "ip6", "inet", "arp", "bridge", "netdev"})
PAYLOAD_PROTOCOLS = frozenset({"ip", "ip6", "tcp", "udp", "udplite", "sctp", "dccp", "icmp",
                               "icmpv6", "th", "ether", "vlan", "arp", "ah", "esp", "comp",
                               "igmp"})
META_BARE = frozenset({"mark", "iif", "oif", "iifname", "oifname", "iiftype", "oiftype", "skuid",
                       "skgid", "nfproto", "l4proto", "pkttype", "cpu", "iifgroup", "oifgroup",
                       "cgroup", "rtclassid"})
EXPRESSIONS = PAYLOAD_PROTOCOLS | META_BARE | {"meta", "ct", "fib", "numgen", "jhash", "symhash",
                                              "socket", "osf", "rt", "ipsec", "exthdr",
                                              "tunnel"}
"""Words that start an expression (the left side of a match, mangle or vmap)."""
CT_DIR_KEYS = frozenset({"saddr", "daddr", "proto-src", "proto-dst", "l3proto", "protocol",
                         "bytes", "packets", "avgpkt", "zone", "id"})
OPS = {"==": "==", "!=": "!=", "<": "<", ">": ">", "<=": "<=", ">=": ">=", "eq": "==",
       "ne": "!=", "lt": "<", "gt": ">", "le": "<=", "ge": ">="}
BINOPS = {"&": "&", "and": "&", "|": "|", "or": "|", "^": "^", "xor": "^", "<<": "<<",
          "lshift": "<<", ">>": ">>", "rshift": ">>"}
VERDICTS = frozenset({"accept", "drop", "return", "continue"})
NAT = frozenset({"dnat", "snat"})
NAT_FLAGS = frozenset({"random", "fully-random", "persistent", "netmap"})
SERVICES = {"ssh": 22, "domain": 53, "bootps": 67, "bootpc": 68, "http": 80, "https": 443,
            "dhcpv6-client": 546, "dhcpv6-server": 547, "mdns": 5353}
"""Fallback when the system has no services database."""
NOOP_XT_TARGETS = frozenset({"CHECKSUM"})
"""xt targets nft prints as a comment that change nothing the tracer models."""


class _Unknown(Exception):
    """A statement the parser does not know, raised at its first token."""

    def __init__(self, token: Token, message: str) -> None:
        super().__init__(message)
        self.token = token
        self.message = message


class TextParser:
    """Recursive descent over the token list of a whole listing."""

    def __init__(self, text: str, source: str, strict: bool) -> None:
        self.lines = text.splitlines()
        self.toks = tokenize(text)
        self.i = 0
        self.source = source
        self.strict = strict
        self.ruleset = NftRuleset(source=source)

    # ------------------------------------------------------------------ plumbing

    def peek(self, ahead: int = 0) -> Token | None:
        j = self.i + ahead
        return self.toks[j] if j < len(self.toks) else None

    def take(self) -> Token:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def problem(self, tok: Token | None, message: str) -> None:
        line = tok.line if tok is not None else len(self.lines)
        column = tok.column if tok is not None else 0
        if self.strict:
            raise ParseError(message, source=self.source, line=line, column=column)
        self.ruleset.problems.append(Problem(line, column, message))

    def skip_item(self) -> None:
        """Skip to the end of the line, or past a block that starts on it."""
        self.through_block(line_end=True)

    def through_block(self, *, line_end: bool = False) -> bool:
        """Take tokens until the braces opened among them close (a stray ``}`` included),
        or, with ``line_end``, until a line ends outside braces; False when the tokens run
        out first."""
        depth = 0
        while self.i < len(self.toks):
            tok = self.take()
            if tok.kind == PUNCT and tok.value == "{":
                depth += 1
            elif tok.kind == PUNCT and tok.value == "}":
                depth -= 1
                if depth <= 0:
                    return True
            elif line_end and tok.kind == NL and depth == 0:
                return True
        return False

    def is_word(self, tok: Token | None, *values: str) -> bool:
        return tok is not None and tok.kind == WORD and (not values or tok.value in values)

    def is_punct(self, tok: Token | None, value: str) -> bool:
        return tok is not None and tok.kind == PUNCT and tok.value == value

    def name(self) -> str:
        tok = self.peek()
        if tok is None or tok.kind not in (WORD, STRING):
            raise _Unknown(tok or self.toks[-1], "a name is missing")
        self.i += 1
        return tok.value

    def skip_blank(self) -> None:
        while self.i < len(self.toks) and self.toks[self.i].kind in (NL, COMMENT):
            self.i += 1

    # ------------------------------------------------------------------ structure

    def block(self, what: str, item: Callable[[Token], None]) -> None:
        """The items of a ``{ ... }`` block (table, chain, set, map, flowtable) up to its
        closing brace: blank lines, comments and ``;`` are skipped, ``item`` reads one item
        from its first token on; an item it cannot read is reported (raised in strict
        mode) and skipped to the end of its line."""
        while True:
            tok = self.peek()
            if tok is None:
                self.problem(None, f"{what} is not closed ('}}' missing)")
                return
            if tok.kind in (NL, COMMENT) or self.is_punct(tok, ";"):
                self.i += 1
                continue
            if self.is_punct(tok, "}"):
                self.i += 1
                return
            try:
                item(tok)
            except _Unknown as err:
                self.problem(err.token, err.message)
                self.skip_item()

    def parse(self) -> NftRuleset:
        while True:
            self.skip_blank()
            tok = self.peek()
            if tok is None:
                return self.ruleset
            if self.is_word(tok, "table"):
                self.table()
            else:
                self.problem(tok, f"expected 'table', found {tok.value!r}")
                self.skip_item()

    def table(self) -> None:
        start = self.take()
        first = self.peek()
        second = self.peek(1)
        family = "ip"
        if (self.is_word(first, *FAMILIES) and second is not None
                and second.kind in (WORD, STRING)):
            family = self.take().value
        try:
            name = self.name()
        except _Unknown as err:
            self.problem(err.token, "table without a name")
            self.skip_item()
            return
        table = self.ruleset.table(family, name)
        table.line = start.line
        if not self.is_punct(self.peek(), "{"):
            self.problem(self.peek(), "expected '{' after the table name")
            self.skip_item()
            return
        self.i += 1
        self.block(f"table {family} {name}", lambda tok: self.table_item(table, tok))

    def table_item(self, table: NftTable, tok: Token) -> None:
        self.i += 1
        if tok.kind == HANDLE:
            table.handle = int(tok.value)
            return
        word = tok.value if tok.kind == WORD else ""
        if word == "comment":
            table.comment = self.string()
        elif word == "flags":
            table.flags = tuple(self.word_list())
        elif word == "chain":
            self.chain(table, tok)
        elif word in ("set", "map"):
            self.set(table, tok, word)
        elif word == "flowtable":
            self.flowtable(table, tok)
        elif word in ("counter", "quota", "limit", "ct", "secmark", "synproxy", "tunnel"):
            self.object(table, tok, word)
        else:
            raise _Unknown(tok, f"unknown table item {tok.value!r}")

    def string(self) -> str:
        tok = self.peek()
        if tok is None or tok.kind not in (STRING, WORD):
            raise _Unknown(tok or self.toks[-1], "a string is missing")
        self.i += 1
        return tok.value

    def word_list(self) -> list[str]:
        """``a,b,c`` (the commas are separate tokens)."""
        out = [self.name()]
        while self.is_punct(self.peek(), ","):
            self.i += 1
            out.append(self.name())
        return out

    def open_block(self) -> int | None:
        if not self.is_punct(self.peek(), "{"):
            raise _Unknown(self.peek() or self.toks[-1], "expected '{'")
        self.i += 1
        tok = self.peek()
        if tok is not None and tok.kind == HANDLE:
            self.i += 1
            return int(tok.value)
        return None

    def chain(self, table: NftTable, start: Token) -> None:
        name = self.name()
        chain = table.chains.get(name)
        if chain is None:
            chain = table.chains[name] = NftChain(name, line=start.line)
        chain.handle = self.open_block()
        self.block(f"chain {name}", lambda tok: self.chain_item(table, chain, tok))

    def chain_item(self, table: NftTable, chain: NftChain, tok: Token) -> None:
        if self.is_word(tok, "type") and self.is_word(self.peek(2), "hook"):
            self.base_chain(chain, table.family)
        elif self.is_word(tok, "policy"):
            self.i += 1
            chain.policy = self.name()
        elif self.is_word(tok, "comment") and self.peek(1) is not None and \
                self.peek(2) is not None and self.peek(2).kind == NL:  # type: ignore[union-attr]
            self.i += 1
            chain.comment = self.string()
        elif self.is_word(tok, "...", "....", "…"):
            raise _Unknown(tok, f"listing cut short ({tok.value!r})")
        else:
            chain.rules.append(self.rule())

    def base_chain(self, chain: NftChain, family: str) -> None:
        self.i += 1
        chain.type = self.name()
        self.i += 1  # hook
        chain.hook = self.name()
        while True:
            tok = self.peek()
            if tok is None or tok.kind == NL or self.is_punct(tok, "}"):
                break
            self.i += 1
            if self.is_punct(tok, ";"):
                continue
            if tok.value == "device":
                chain.device = self.name()
            elif tok.value == "devices":
                chain.device = ",".join(self.devices())
            elif tok.value == "priority":
                chain.priority, chain.priority_text = self.priority(family)
            elif tok.value == "policy":
                chain.policy = self.name()
            else:
                raise _Unknown(tok, f"unknown base chain property {tok.value!r}")
        if chain.priority is None:
            raise _Unknown(self.peek() or self.toks[-1], f"base chain {chain.name} has no priority")

    def devices(self) -> list[str]:
        if self.is_word(self.peek(), "="):
            self.i += 1
        if not self.is_punct(self.peek(), "{"):
            return [self.name()]
        self.i += 1
        out: list[str] = []
        while not self.is_punct(self.peek(), "}"):
            tok = self.take()
            if tok.kind in (WORD, STRING):
                out.append(tok.value)
        self.i += 1
        return out

    def priority(self, family: str) -> tuple[int, str | None]:
        tok = self.take()
        text = tok.value
        base = priority_value(text, family)
        if base is None:
            try:
                return int(text), None
            except ValueError:
                raise _Unknown(tok, f"unknown priority {text!r}") from None
        sign = self.peek()
        if self.is_word(sign, "+", "-"):
            self.i += 1
            off = self.take()
            try:
                delta = int(off.value)
            except ValueError:
                raise _Unknown(off, f"bad priority offset {off.value!r}") from None
            text = f"{text} {sign.value} {delta}"  # type: ignore[union-attr]
            base += delta if sign.value == "+" else -delta  # type: ignore[union-attr]
        return base, text

    def set(self, table: NftTable, start: Token, kind: str) -> None:
        name = self.name()
        nset = table.sets[name] = NftSet(name, kind, line=start.line)
        nset.handle = self.open_block()
        self.block(f"{kind} {name}", lambda tok: self.set_item(nset, tok))

    def set_item(self, nset: NftSet, tok: Token) -> None:
        self.i += 1
        word = tok.value
        if word == "type":
            key, data = self.type_spec()
            nset.type = tuple(key)
            nset.map_type = " . ".join(data) if data else None
        elif word == "typeof":
            nset.typeof = self.rest_of_line()
        elif word == "flags":
            nset.flags = tuple(sorted(self.word_list()))
        elif word == "timeout":
            nset.timeout = self.time()
        elif word == "gc-interval":
            self.time()
        elif word == "size":
            nset.size = int(self.take().value)
        elif word == "policy":
            nset.policy = self.name()
        elif word == "comment":
            nset.comment = self.string()
        elif word in ("auto-merge", "counter"):
            pass
        elif word == "elements":
            if self.is_word(self.peek(), "="):
                self.i += 1
            nset.elements.extend(self.elements())
        else:
            raise _Unknown(tok, f"unknown {nset.kind} property {word!r}")

    def type_spec(self) -> tuple[list[str], list[str]]:
        key = [self.name()]
        data: list[str] = []
        target = key
        while True:
            tok = self.peek()
            if self.is_word(tok, "."):
                self.i += 1
                target.append(self.name())
            elif self.is_word(tok, ":"):
                self.i += 1
                target = data
                target.append(self.name())
            else:
                return key, data

    def rest_of_line(self) -> str:
        words = []
        while self.peek() is not None and self.peek().kind != NL:  # type: ignore[union-attr]
            words.append(self.take().value)
        return " ".join(words)

    def time(self) -> float:
        tok = self.take()
        value = parse_time(tok.value)
        if value is None:
            raise _Unknown(tok, f"bad time {tok.value!r}")
        return value

    def elements(self) -> list[NftElement]:
        """``{ key [timeout T] [expires T] [comment "c"] [: value], ... }``"""
        if not self.is_punct(self.peek(), "{"):
            raise _Unknown(self.peek() or self.toks[-1], "expected '{' before the elements")
        start = self.i + 1
        if self.through_block():
            return _RuleParser(self, self.toks[start:self.i - 1], NftRule([])).elements()
        raise _Unknown(self.toks[start - 1], "element list is not closed")

    def flowtable(self, table: NftTable, start: Token) -> None:
        name = self.name()
        ft = table.flowtables[name] = NftFlowtable(name, line=start.line)
        ft.handle = self.open_block()
        self.block(f"flowtable {name}", lambda tok: self.flowtable_item(table, ft, tok))

    def flowtable_item(self, table: NftTable, ft: NftFlowtable, tok: Token) -> None:
        self.i += 1
        if tok.value == "hook":
            ft.hook = self.name()
        elif tok.value == "priority":
            ft.priority, _ = self.priority(table.family)
        elif tok.value == "devices":
            ft.devices = tuple(self.devices())

    def object(self, table: NftTable, start: Token, kind: str) -> None:
        if kind == "ct":
            kind = "ct " + self.name()
        name = self.name()
        obj = NftObject(kind, name, line=start.line)
        table.objects.append(obj)
        obj.handle = self.open_block()
        depth = 1
        words: list[str] = []
        while depth:
            tok = self.peek()
            if tok is None:
                self.problem(None, f"{kind} {name} is not closed")
                return
            self.i += 1
            if self.is_punct(tok, "{"):
                depth += 1
            elif self.is_punct(tok, "}"):
                depth -= 1
            elif tok.kind in (WORD, STRING):
                words.append(tok.value)
        for key, value in zip(words[::2], words[1::2], strict=False):
            obj.values[key] = word_value(value)

    # ------------------------------------------------------------------ rules

    def rule(self) -> NftRule:
        """One rule: the tokens up to the end of its line (or the chain's closing brace)."""
        start = self.i
        depth = 0
        while self.i < len(self.toks):
            tok = self.toks[self.i]
            if tok.kind == PUNCT and tok.value == "{":
                depth += 1
            elif tok.kind == PUNCT and tok.value == "}":
                if depth == 0:
                    break
                depth -= 1
            elif tok.kind == NL and depth == 0:
                break
            self.i += 1
        toks = self.toks[start:self.i]
        first, last = toks[0].line, toks[-1].line
        text = " ".join(line.strip() for line in self.lines[first - 1:last])
        if "# handle" in text:
            text = text[:text.index("# handle")].rstrip()
        rule = NftRule([], line=first, text=text)
        _RuleParser(self, toks, rule).parse()
        rule.exprs = [normal(s) for s in rule.exprs]
        return rule


class _RuleParser:
    """Statements of one rule; a statement it cannot read ends the rule as ``unknown``."""

    def __init__(self, outer: TextParser, toks: list[Token], rule: NftRule) -> None:
        self.outer = outer
        self.rule = rule
        # Handles and trailing comments are taken off first; they can follow anything.
        self.toks: list[Token] = []
        for tok in toks:
            if tok.kind == HANDLE:
                rule.handle = int(tok.value)
            elif tok.kind == COMMENT:
                name = tok.value.split()[0] if tok.value.split() else ""
                rule.exprs.append({"xt": {"type": "target", "name": name}})
                if name not in NOOP_XT_TARGETS:
                    outer.problem(tok, f"xt target {name!r} (printed as a comment) is not modelled")
            else:
                self.toks.append(tok)
        self.i = 0

    def peek(self, ahead: int = 0) -> Token | None:
        j = self.i + ahead
        return self.toks[j] if j < len(self.toks) else None

    def take(self) -> Token:
        if self.i >= len(self.toks):
            raise _Unknown(self.toks[-1], "the rule ends too early")
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def word(self, ahead: int = 0) -> str:
        tok = self.peek(ahead)
        return tok.value if tok is not None and tok.kind == WORD else ""

    def parse(self) -> None:
        xt_first = list(self.rule.exprs)
        self.rule.exprs = []
        while self.i < len(self.toks):
            tok = self.toks[self.i]
            try:
                stmt = self.statement()
            except _Unknown as err:
                rest = self.toks[self.i:] if err.token not in self.toks else \
                    self.toks[self.toks.index(err.token):]
                rest = self._take_comment(rest)
                if self.outer.strict:
                    raise ParseError(err.message, source=self.outer.source, line=err.token.line,
                                     column=err.token.column) from None
                self.outer.ruleset.problems.append(
                    Problem(err.token.line, err.token.column, err.message))
                self.rule.exprs.append({"unknown": " ".join(
                    f'"{t.value}"' if t.kind == STRING else t.value for t in rest)})
                break
            if stmt is not None:
                self.rule.exprs.append(stmt)
            elif self.i < len(self.toks) and self.toks[self.i] is tok:
                self.i += 1
        self.rule.exprs.extend(xt_first)

    def _take_comment(self, rest: list[Token]) -> list[Token]:
        if len(rest) >= 2 and rest[-2].kind == WORD and rest[-2].value == "comment" \
                and rest[-1].kind == STRING:
            self.rule.comment = rest[-1].value
            return rest[:-2]
        return rest

    def statement(self) -> Any:
        tok = self.take()
        w = tok.value if tok.kind == WORD else ""
        nxt = self.peek()
        if w == "comment" and nxt is not None and nxt.kind == STRING:
            self.rule.comment = self.take().value
            return None
        if w in VERDICTS:
            return {w: None}
        if w in ("jump", "goto"):
            return {w: {"target": self.name()}}
        if w == "counter":
            if self.word() == "name":
                self.i += 1
                return {"counter": self.name()}
            if self.word() == "packets" and self.word(2) == "bytes":
                self.i += 1
                packets = int(self.take().value)
                self.i += 1
                return {"counter": {"packets": packets, "bytes": int(self.take().value)}}
            return {"counter": None}
        if w in NAT:
            return self.nat(w)
        if w == "masquerade" or w == "redirect":
            return self.masq(w)
        if w == "reject":
            return self.reject()
        if w == "notrack":
            return {"notrack": None}
        if w in ("update", "add", "delete") and self.word().startswith("@"):
            return self.set_update(w)
        if w == "log":
            return self.options("log", {"prefix", "level", "flags", "group", "snaplen",
                                        "queue-threshold"})
        if w == "limit":
            return self.limit()
        if w == "quota":
            return self.quota()
        if w == "queue":
            return self.options("queue", {"num", "flags", "to"}, flags={"bypass", "fanout"})
        if w == "flow" and self.word() in ("add", "offload"):
            self.i += 1
            return {"flow": {"op": "add", "flowtable": self.name()}}
        if w == "xt" and self.word() in ("match", "target"):
            kind = self.take().value
            name = self.take().value
            if kind == "target" and name in NOOP_XT_TARGETS:
                return {"xt": {"type": "target", "name": name}}
            message = (f"xt {kind} {name!r} (an iptables extension nft could not translate) "
                       "is not modelled")
            self.outer.problem(tok, message)  # strict: raises here
            return {"unknown": f'xt {kind} "{name}"'}
        if w not in EXPRESSIONS:
            raise _Unknown(tok, f"unknown statement {tok.value!r}")
        self.i -= 1
        left = self.expression()
        nxt = self.peek()
        if nxt is None:
            raise _Unknown(tok, "expression without a value to compare")
        if self.word() == "set":
            self.i += 1
            return {"mangle": {"key": left, "value": self.expression()}}
        if self.word() == "vmap":
            self.i += 1
            return {"vmap": {"key": left, "data": self.value()}}
        op = OPS.get(self.word())
        if op is not None:
            self.i += 1
            right = self.rhs()
        elif self.word(1) == "/":  # "tcp flags syn / fin,syn,rst,ack": masked comparison
            right = self.value()
            self.i += 1
            return {"match": {"op": "==", "left": {"&": [left, self.rhs()]}, "right": right}}
        else:
            right = self.rhs()
            op = "=="
            if _bitmask(left) and not isinstance(right, dict):
                op = "in"
        if isinstance(left, dict) and "payload" in left and left["payload"]["field"] in (
                "sport", "dport"):
            right = _ports(right)
        return {"match": {"op": op, "left": left, "right": right}}

    def name(self) -> str:
        tok = self.take()
        if tok.kind not in (WORD, STRING):
            raise _Unknown(tok, "a name is missing")
        return tok.value

    # expressions -------------------------------------------------------------------

    def expression(self) -> Any:
        """A left-hand expression with binary operators and concatenation, or a value."""
        parts = [self.binop(self.primary())]
        while self.word() == ".":
            self.i += 1
            parts.append(self.binop(self.primary()))
        if len(parts) > 1:
            flat: list[Any] = []
            for p in parts:
                flat.extend(p["concat"] if isinstance(p, dict) and "concat" in p else [p])
            return {"concat": flat}
        expr = parts[0]
        if self.word() == "map":
            self.i += 1
            return {"map": {"key": expr, "data": self.value()}}
        return expr

    def binop(self, expr: Any) -> Any:
        while self.word() in BINOPS:
            op = BINOPS[self.take().value]
            expr = {op: [expr, self.primary()]}
        return expr

    def primary(self) -> Any:
        tok = self.take()
        w = tok.value if tok.kind == WORD else ""
        if w in PAYLOAD_PROTOCOLS and self.word() and self.word() not in OPS \
                and self.word() not in ("set", "vmap", "."):
            field = self.take().value
            if field in ("option", "exthdr"):
                raise _Unknown(tok, f"{w} {field} expressions are not modelled")
            return {"payload": {"protocol": w, "field": field}}
        if w == "meta":
            return {"meta": {"key": self.name()}}
        if w in META_BARE:
            return {"meta": {"key": w}}
        if w == "ct":
            return self.ct(tok)
        if w == "fib":
            return self.fib(tok)
        if w == "numgen":
            mode = self.name()
            if self.take().value != "mod":
                raise _Unknown(tok, "numgen without mod")
            out: dict[str, Any] = {"mode": mode, "mod": int(self.take().value), "offset": 0}
            if self.word() == "offset":
                self.i += 1
                out["offset"] = int(self.take().value)
            return {"numgen": out}
        if w in ("jhash", "symhash"):
            return self.hash(w)
        if w in ("socket", "osf", "rt", "ipsec", "exthdr", "tunnel"):
            raise _Unknown(tok, f"{w} expressions are not modelled")
        self.i -= 1
        return self.value()

    def hash(self, kind: str) -> Any:
        """``jhash EXPR mod N [seed S] [offset O]``, ``symhash mod N [offset O]``."""
        out: dict[str, Any] = {}
        if kind == "jhash":
            out["expr"] = self.expression()
        tok = self.take()
        if tok.value != "mod":
            raise _Unknown(tok, f"{kind} without mod")
        out["mod"] = self.number()
        while self.word() in ("seed", "offset"):
            name = self.take().value
            out[name] = self.number()
        return {kind: out}

    def number(self) -> int:
        tok = self.take()
        value = word_value(tok.value)
        if not isinstance(value, int):
            raise _Unknown(tok, f"expected a number, found {tok.value!r}")
        return value

    def ct(self, tok: Token) -> Any:
        key = self.name()
        if key in ("original", "reply"):
            direction = key
            key = self.name()
            if key in ("ip", "ip6"):  # nft's JSON spells it {"key": "ip saddr"}
                field = self.name()
                if field not in ("saddr", "daddr"):
                    raise _Unknown(tok, f"ct {direction} {key} {field} is not known")
                return {"ct": {"key": f"{key} {field}", "dir": direction}}
            if key not in CT_DIR_KEYS:
                raise _Unknown(tok, f"ct {direction} {key} is not known")
            return {"ct": {"key": key, "dir": direction}}
        return {"ct": {"key": key}}

    def fib(self, tok: Token) -> Any:
        flags = [self.name()]
        while self.word() == ".":
            self.i += 1
            flags.append(self.name())
        result = self.name()
        if result not in ("oif", "oifname", "type"):
            raise _Unknown(tok, f"fib result {result!r} is not known")
        return {"fib": {"result": result, "flags": flags}}

    def elements(self) -> list[NftElement]:
        """The elements of a set or map listing (between its braces)."""
        out: list[NftElement] = []
        while self.i < len(self.toks):
            tok = self.toks[self.i]
            if tok.kind == NL or (tok.kind == PUNCT and tok.value == ","):
                self.i += 1
                continue
            elem = NftElement(self.concat_value(), line=tok.line, column=tok.column)
            while True:
                w = self.word()
                if w == "timeout" or w == "expires":
                    self.i += 1
                    tt = self.take()
                    seconds = parse_time(tt.value)
                    if seconds is None:
                        raise _Unknown(tt, f"bad time {tt.value!r}")
                    setattr(elem, w, seconds)
                elif w == "comment":
                    self.i += 1
                    elem.comment = self.take().value
                elif w == "counter":
                    self.i += 1
                    if self.word() == "packets":
                        self.i += 4
                elif w == ":":
                    self.i += 1
                    elem.value = normal(self._map_value())
                else:
                    break
            elem.key = normal(elem.key)
            out.append(elem)
        return out

    def comma(self) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == PUNCT and tok.value == ","

    def rhs(self) -> Any:
        value = self.concat_value()
        if not self.comma():
            return value
        values = [value]
        while self.comma():
            self.i += 1
            values.append(self.concat_value())
        return values

    def concat_value(self) -> Any:
        parts = [self.value()]
        while self.word() == ".":
            self.i += 1
            parts.append(self.value())
        return parts[0] if len(parts) == 1 else {"concat": parts}

    def value(self) -> Any:
        tok = self.take()
        if tok.kind == STRING:
            return tok.value
        if tok.kind == PUNCT and tok.value == "{":
            return self.anonymous_set()
        if tok.kind != WORD:
            raise _Unknown(tok, f"expected a value, found {tok.value!r}")
        if tok.value in ("exists", "missing"):
            return tok.value == "exists"
        return word_value(tok.value)

    def anonymous_set(self) -> Any:
        items: list[Any] = []
        while True:
            tok = self.peek()
            if tok is None:
                raise _Unknown(self.toks[-1], "anonymous set is not closed")
            if tok.kind == NL or (tok.kind == PUNCT and tok.value == ","):
                self.i += 1
                continue
            if tok.kind == PUNCT and tok.value == "}":
                self.i += 1
                return {"set": items}
            key = self.concat_value()
            if self.word() == ":":
                self.i += 1
                items.append([key, self._map_value()])
            else:
                items.append(key)

    def _map_value(self) -> Any:
        w = self.word()
        if w in ("jump", "goto"):
            self.i += 1
            return {w: {"target": self.name()}}
        if w in VERDICTS:
            self.i += 1
            return {w: None}
        return self.concat_value()

    # statements --------------------------------------------------------------------

    def nat(self, kind: str) -> Any:
        out: dict[str, Any] = {}
        if self.word() in ("ip", "ip6"):
            out["family"] = self.take().value
        if self.word() == "addr" and self.word(1) == "." and self.word(2) == "port":
            self.i += 3  # "addr . port": the map's data is an address and a port
        if self.word() == "to":
            self.i += 1
        tok = self.peek()
        if tok is None:
            raise _Unknown(self.toks[-1], f"{kind} without a destination")
        if tok.kind == WORD and (tok.value.startswith(":") or ":" in tok.value
                                 and not _is_v6_word(tok.value)):
            self.i += 1
            addr, port = _split_addr_port(tok.value)
            if addr is not None:
                out["addr"] = addr
            if port is not None:
                out["port"] = port
        else:
            target = self.expression()
            if isinstance(target, dict) and "concat" in target and len(target["concat"]) == 2:
                out["addr"], out["port"] = target["concat"]
            else:
                out["addr"] = target
        flags = self.flags()
        if flags:
            out["flags"] = flags
        return {kind: out}

    def flags(self) -> list[str]:
        out: list[str] = []
        while self.word() in NAT_FLAGS:
            out.append(self.take().value)
            if self.comma():
                self.i += 1
        return out

    def masq(self, kind: str) -> Any:
        out: dict[str, Any] = {}
        if self.word() == "to":
            self.i += 1
            tok = self.take()
            _, port = _split_addr_port(tok.value if tok.value.startswith(":") else ":" + tok.value)
            out["port"] = port
        flags = self.flags()
        if flags:
            out["flags"] = flags
        return {kind: out or None}

    def reject(self) -> Any:
        if self.word() != "with":
            return {"reject": None}
        self.i += 1
        kind = self.name()
        if kind == "tcp":
            self.name()  # reset
            return {"reject": {"type": "tcp reset"}}
        if self.word() == "type":
            self.i += 1
        return {"reject": {"type": kind, "expr": self.name()}}

    def set_update(self, op: str) -> Any:
        ref = self.take().value
        tok = self.take()
        if tok.kind != PUNCT or tok.value != "{":
            raise _Unknown(tok, f"expected '{{' after {op} {ref}")
        elem = self.expression()
        timeout = None
        if self.word() == "timeout":
            self.i += 1
            tt = self.take()
            timeout = parse_time(tt.value)
        end = self.take()
        if end.kind != PUNCT or end.value != "}":
            raise _Unknown(end, f"expected '}}' to close the {op} element")
        if timeout is not None:
            elem = {"elem": {"val": elem, "timeout": timeout}}
        return {"set": {"op": op, "elem": elem, "set": ref}}

    def options(self, kind: str, keyed: set[str], flags: set[str] | None = None) -> Any:
        out: dict[str, Any] = {}
        while True:
            w = self.word()
            tok = self.peek()
            if w in keyed:
                self.i += 1
                out[w] = self.value()
            elif flags and w in flags:
                self.i += 1
                out.setdefault("flags", []).append(w)
            elif tok is not None and tok.kind == WORD and w not in keyed and kind == "log" \
                    and w in ("all",):
                self.i += 1
            else:
                return {kind: out or None}

    def limit(self) -> Any:
        tok = self.take()
        if tok.value != "rate":
            raise _Unknown(tok, "limit without rate")
        out: dict[str, Any] = {"inv": False}
        if self.word() == "over":
            self.i += 1
            out["inv"] = True
        first = self.take().value
        if "/" not in first:
            unit = self.take().value
            first = f"{first} {unit}"
        amount, _, per = first.partition("/")
        parts = amount.split()
        out["rate"] = int(parts[0])
        if len(parts) > 1:
            out["rate_unit"] = parts[1]
        out["per"] = per
        if self.word() == "burst":
            self.i += 1
            out["burst"] = int(self.take().value)
            if self.word() in ("packets", "bytes", "kbytes", "mbytes"):
                out["burst_unit"] = self.take().value
        return {"limit": out}

    def quota(self) -> Any:
        if self.word() == "name":
            self.i += 1
            return {"quota": self.name()}
        out: dict[str, Any] = {"inv": False}
        if self.word() in ("over", "until"):
            out["inv"] = self.take().value == "over"
        out["val"] = int(self.take().value)
        out["val_unit"] = self.take().value
        if self.word() == "used":
            self.i += 1
            out["used"] = int(self.take().value)
            out["used_unit"] = self.take().value
        return {"quota": out}


def _ports(value: Any) -> Any:
    """Service names (``ssh``, which nft 0.9 printed) as port numbers, as nft's JSON has them."""
    if isinstance(value, str) and not value.startswith("@"):
        try:
            return socket.getservbyname(value)
        except OSError:
            return SERVICES.get(value, value)
    if isinstance(value, list):
        return [_ports(v) for v in value]
    if isinstance(value, dict) and "set" in value:
        return {"set": [_ports(v) for v in value["set"]]}
    if isinstance(value, dict) and "range" in value:
        return {"range": [_ports(v) for v in value["range"]]}
    return value


def _bitmask(expr: Any) -> bool:
    if not isinstance(expr, dict):
        return False
    if "ct" in expr:
        return ("ct", expr["ct"].get("key")) in BITMASK_KEYS
    if "payload" in expr:
        return (expr["payload"]["protocol"], expr["payload"]["field"]) in BITMASK_KEYS
    return False


def _is_v6_word(text: str) -> bool:
    return text.count(":") >= 2 and not text.startswith("[")


def _split_addr_port(text: str) -> tuple[Any, Any]:
    """``A:P``, ``A``, ``:P``, ``[v6]:P``, with ranges (``:1024-65535``)."""
    if text.startswith("["):
        addr, _, port = text[1:].partition("]")
        port = port[1:] if port.startswith(":") else ""
    elif text.count(":") == 1:
        addr, _, port = text.partition(":")
    else:
        addr, port = text, ""
    return (word_value(addr) if addr else None), (word_value(port) if port else None)


def parse_nft_text(text: str, *, source: str = "<nft>", strict: bool = False,
                   references: bool = True) -> NftRuleset:
    """Parse an ``nft list ruleset`` listing; ``references``: check that the sets and chains
    rules refer to are there (off for listings read together, checked across them)."""
    ruleset = TextParser(text, source, strict).parse()
    if references:
        check_references(ruleset, strict)
    return ruleset
