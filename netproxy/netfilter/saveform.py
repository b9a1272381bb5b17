"""The canonical form of a rule: what ``iptables-save`` prints after the rule was loaded.

``iptables-restore`` accepts many spellings of one rule; the kernel keeps only its meaning and
``iptables-save`` prints it back in one fixed order and spelling. :func:`to_saved` reproduces
that, so the compiler can show a node's ``iptables-save`` view and the differ can compare rules
written in different ways.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import itemgetter
from typing import cast

from netproxy.netfilter import extensions as ext
from netproxy.netfilter.model import Option, Rule, Target
from netproxy.netfilter.values import (
    parse_mark,
    saved_address,
    saved_ctstate,
    saved_mark,
    saved_probability,
)

SaveOptions = dict[str, object]

PROTOCOL_NAMES = {"6": "tcp", "17": "udp", "132": "sctp", "1": "icmp", "58": "ipv6-icmp",
                  "icmpv6": "ipv6-icmp", "all": "all", "0": "all"}
"""How ``iptables-save`` names a protocol given by number or alias (lower case)."""

_ALL_ONES_MASK = {"ipv4": "255.255.255.255", "ipv6": "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}


def _value(opt: Option, args: tuple[str, ...]) -> Option:
    return opt if args == opt.args else opt._replace(args=args)


def _builtin(opt: Option, family: str) -> Option:
    if opt.name in ("source", "destination") and opt.args:
        try:
            return _value(opt, (saved_address(opt.args[0], family),))
        except ValueError:
            return opt  # kept as written: the tracer reports it as undecidable
    if opt.name == "protocol" and opt.args:
        proto = opt.args[0].lower()
        return _value(opt, (PROTOCOL_NAMES.get(proto, proto),))
    return opt


def _match_option(opt: Option, family: str) -> Option:
    name, args = opt.name, opt.args
    if not args:
        return opt
    try:
        if name == "mark" and opt.module in ("mark", "connmark"):
            return _value(opt, (saved_mark(args[0]),))
        if name == "ctstate" or (name == "state" and opt.module == "state"):
            return _value(opt, (saved_ctstate(args[0]),))
        if name == "probability":
            return _value(opt, (saved_probability(args[0]),))
        if name in ("src-type", "dst-type"):
            return _value(opt, (args[0].upper(),))
    except ValueError:
        return opt
    return opt


def _recent_defaults(options: list[Option], family: str, iptables_version: tuple[int, ...]) -> list[Option]:
    names = {o.name for o in options}
    out = list(options)
    if "name" not in names:
        out.append(Option("recent", "name", ("DEFAULT",)))
    if "rsource" not in names and "rdest" not in names:
        out.append(Option("recent", "rsource"))
    mask = next((o for o in out if o.name == "mask"), None)
    # iptables 1.8.9 (legacy and nft, checked by running them) still prints the all-ones
    # mask; only later releases drop it.
    if iptables_version >= (1, 8, 10):
        if mask is not None and mask.args and mask.args[0] == _ALL_ONES_MASK[family]:
            out.remove(mask)
    elif mask is None:
        out.append(Option("recent", "mask", (_ALL_ONES_MASK[family],)))
    return out


def saved_target(target: Target | None, family: str) -> Target | None:
    """The target as ``iptables-save`` prints it (``MARK`` options as ``--set-xmark``, ``REJECT``
    with its default ``--reject-with``); other targets are returned unchanged."""
    if target is None:
        return None
    fix = _TARGET_FIXES.get(target.name)
    return fix(target, family) if fix else target


def _mark_target(target: Target, family: str) -> Target:
    opts = []
    for o in target.options:
        try:
            if o.name == "or-mark":
                v = parse_mark(o.value)[0]
                o = Option("MARK", "set-xmark", (f"{v:#x}/{v:#x}",))
            elif o.name == "xor-mark":
                v = parse_mark(o.value)[0]
                o = Option("MARK", "set-xmark", (f"{v:#x}/0x0",))
            elif o.name == "and-mark":
                v = parse_mark(o.value)[0]
                o = Option("MARK", "set-xmark", (f"0x0/{(~v) & 0xFFFFFFFF:#x}",))
            elif o.name == "set-mark":
                v, m = parse_mark(o.value)
                o = Option("MARK", "set-xmark", (f"{v:#x}/{(m | v) & 0xFFFFFFFF:#x}",))
            elif o.name == "set-xmark":
                v, m = parse_mark(o.value)
                o = Option("MARK", "set-xmark", (f"{v:#x}/{m:#x}",))
        except ValueError:
            pass
        opts.append(o)
    return Target(target.name, tuple(opts), target.goto)


def _reject_target(target: Target, family: str) -> Target:
    if target.get("reject-with") is not None:
        return target
    default = "icmp6-port-unreachable" if family == "ipv6" else "icmp-port-unreachable"
    return Target(target.name, (*target.options, Option("REJECT", "reject-with", (default,))), target.goto)


_TARGET_FIXES: dict[str, Callable[[Target, str], Target]] = {
    "MARK": _mark_target,
    "REJECT": _reject_target,
}
RESPELLED_TARGETS = frozenset(_TARGET_FIXES)
"""Targets :func:`saved_target` may print differently from how they were written."""


def _sort_key(extension: ext.Extension | None) -> Callable[[Option], int]:
    if extension is None:
        return lambda o: 0
    return lambda o: extension.order(o.name)


_module_and_name = itemgetter(0, 1)

_NEEDS_NORMALIZING = frozenset({
    ("", "source"), ("", "destination"), ("", "protocol"), ("mark", "mark"), ("connmark", "mark"),
    ("conntrack", "ctstate"), ("state", "state"), ("statistic", "probability"),
    ("addrtype", "src-type"), ("addrtype", "dst-type"),
})

_LAYOUTS: dict[tuple[tuple[tuple[str, str], ...], str, tuple[int, ...]], tuple[object, ...] | None] = {}
"""Save-order layout per rule signature (the (module, name) of every item), family and
iptables version: an index into the rule's items (``~index`` where the value needs
normalizing) or an inserted Option (``-m module``, recent's defaults). ``None`` for
signatures the general path handles."""


def normalized(opt: Option, family: str) -> Option:
    """An item's value as the kernel stores and prints it (for the ``~index`` layout entries)."""
    return _builtin(opt, family) if not opt.module else _match_option(opt, family)


_MAY_NORMALIZE = frozenset({"mark", "ctstate", "state", "probability", "src-type", "dst-type"})
"""Option names :func:`_match_option` may respell, whatever their module (the general path)."""


def _layout(signature: tuple[tuple[str, str], ...], family: str,
            iptables_version: tuple[int, ...]) -> tuple[object, ...] | None:
    """The same reordering as the general path of :func:`to_saved`, computed on positions.

    ``recent`` groups gain their default options as inserted entries; only a ``--mask``
    written for iptables >= 1.8.10 (dropped if it is all ones) depends on the values, and
    such signatures get ``None``.
    """
    builtins: list[int] = []
    groups: list[tuple[str, list[int]]] = []
    latest: dict[str, list[int]] = {}
    for i, (module, name) in enumerate(signature):
        if not module:
            builtins.append(i)
        elif not name:
            latest[module] = []
            groups.append((module, latest[module]))
        else:
            group = latest.get(module)
            if group is None:
                group = latest[module] = []
                groups.append((module, group))
            group.append(i)
    general = any(module == "recent" for module, _ in groups)
    builtin_order = ext.BUILTIN_MATCH.order
    builtins.sort(key=lambda i: builtin_order(signature[i][1]))

    def entry(i: int) -> int:
        if signature[i] in _NEEDS_NORMALIZING:
            return ~i
        # with recent, to_saved used to take the general path, which respells more names
        return ~i if general and signature[i][0] and signature[i][1] in _MAY_NORMALIZE else i

    entries: list[object] = [entry(i) for i in builtins]
    for module, positions in groups:
        extension = ext.match(module)
        items: list[int | Option] = [entry(i) for i in positions]
        if module == "recent":
            defaults = _recent_layout_defaults({signature[i][1] for i in positions}, family,
                                               iptables_version)
            if defaults is None:
                return None
            items.extend(defaults)
        if extension is not None:
            items.sort(key=lambda e: extension.order(
                e.name if isinstance(e, Option) else signature[~e if e < 0 else e][1]))
        entries.append(Option(module, "", ()))
        entries.extend(items)
    return tuple(entries)


def _recent_layout_defaults(names: set[str], family: str,
                            iptables_version: tuple[int, ...]) -> list[Option] | None:
    """What :func:`_recent_defaults` appends to a recent group with options ``names``."""
    out = []
    if "name" not in names:
        out.append(Option("recent", "name", ("DEFAULT",)))
    if "rsource" not in names and "rdest" not in names:
        out.append(Option("recent", "rsource"))
    if iptables_version >= (1, 8, 10):
        if "mask" in names:
            return None  # dropped only when it is all ones: depends on the value
    elif "mask" not in names:
        out.append(Option("recent", "mask", (_ALL_ONES_MASK[family],)))
    return out


def save_layout(signature: tuple[tuple[str, str], ...], family: str = "ipv4",
                iptables_version: tuple[int, ...] = (1, 8, 9)) -> tuple[object, ...] | None:
    """The save-order layout of rules whose items have ``signature`` ((module, name) each).

    Entries are an index into the rule's items, ``~index`` where the value needs normalizing
    (:func:`normalized`), or an inserted ``-m module`` :class:`Option`; ``None`` when the
    general path of :func:`to_saved` is needed (a ``recent --mask`` for iptables >= 1.8.10).
    """
    key = (signature, family, iptables_version)
    if key in _LAYOUTS:
        return _LAYOUTS[key]
    layout = _LAYOUTS[key] = _layout(signature, family, iptables_version)
    return layout


def to_saved(rule: Rule, family: str = "ipv4", iptables_version: tuple[int, ...] = (1, 8, 9)) -> Rule:
    """``rule`` in the order and spelling ``iptables-save`` prints it.

    Built-in matches first (``-s -d -i -o -p -f``), then every loaded module in the order it was
    loaded with its options in the module's print order, then the target. Values are printed the
    way the kernel stores them (host addresses get ``/32``, probabilities are rounded to the
    kernel's 31-bit fraction, marks are minimal hex, ...). ``iptables_version`` matters for
    details such as the all-ones ``recent --mask``, which releases after 1.8.9 stopped printing.
    """
    if rule.opaque is not None:
        return rule
    layout = save_layout(tuple(map(_module_and_name, rule.matches)), family, iptables_version)
    if layout is not None:
        matches = rule.matches
        items_fast = tuple([
            entry if isinstance(entry, Option)
            else (matches[entry] if entry >= 0 else normalized(matches[~entry], family))
            for entry in cast(tuple[Option | int, ...], layout)])
        target = saved_target(rule.target, family)
        if items_fast == matches and target is rule.target:
            return rule
        return Rule(items_fast, target, rule.counters, rule.line)
    return saved_general(rule, family, iptables_version)


def saved_general(rule: Rule, family: str = "ipv4",
                  iptables_version: tuple[int, ...] = (1, 8, 9)) -> Rule:
    """:func:`to_saved` option by option, without the per-signature layouts (which must give
    the same result; the tests compare the two)."""
    builtins: list[Option] = []
    groups: list[tuple[str, list[Option]]] = []  # one group per loaded module, in load order
    latest: dict[str, list[Option]] = {}
    for opt in rule.matches:
        if not opt.module:
            builtins.append(_builtin(opt, family))
        elif not opt.name:
            latest[opt.module] = []
            groups.append((opt.module, latest[opt.module]))
        else:
            group = latest.get(opt.module)
            if group is None:  # loaded implicitly (``-p tcp --dport 80``)
                group = latest[opt.module] = []
                groups.append((opt.module, group))
            group.append(_match_option(opt, family))
    builtin_order = ext.BUILTIN_MATCH.order
    builtins.sort(key=lambda o: builtin_order(o.name))
    items: list[Option] = builtins
    for module, options in groups:
        if module == "recent":
            options = _recent_defaults(options, family, iptables_version)
        options.sort(key=_sort_key(ext.match(module)))
        items.append(Option(module, "", ()))
        items.extend(options)
    matches = tuple(items)
    target = saved_target(rule.target, family)
    if matches == rule.matches and target is rule.target:
        return rule
    return Rule(matches, target, rule.counters, rule.line)
