"""One kube-proxy table as a full sync builds it: the ``nft -f`` transaction, line by line,
and the objects the kernel holds afterwards (for the ``nft list table`` view).

The methods are knftables' operations as kube-proxy uses them (``add``/``flush``/``delete``
of tables, chains, sets, maps, counters; ``add rule``; elements through ``ensure_element``,
which behaves like kube-proxy's ``nftElementStorage.ensureElem``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


def go_quote(text: str) -> str:
    """Go's ``%q`` for the printable ASCII that kube-proxy's comments hold."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(slots=True)
class Chain:
    """A chain in the kernel: base-chain header, comment, and rules in listing spelling."""

    name: str
    hook: str = ""
    type: str = ""
    priority: int = 0
    comment: str = ""
    rules: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Container:
    """A set, map or counter in the kernel; elements keyed by their key fields."""

    kind: str
    """``set``, ``map`` or ``counter``."""
    name: str
    type: str = ""
    flags: str = ""
    timeout: int = 0
    comment: str = ""
    elements: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Key text (``a . b``) -> (value text, comment)."""


class Table:
    """kube-proxy's table of one family: the transaction and the resulting kernel state."""

    def __init__(self, family: str) -> None:
        self.family = family
        """``ip`` or ``ip6``."""
        self.prefix = f"{family} kube-proxy"
        self.lines: list[str] = []
        self.comment = ""
        self.chains: dict[str, Chain] = {}
        self.containers: dict[str, Container] = {}
        self.ensured: set[str] = set()
        """Chains ensured in this transaction (kube-proxy's active chains)."""
        self.added_sets: set[str] = set()
        self.touched: dict[str, set[str]] = {}
        """Keys ensured per container in this transaction."""
        # the node's table before the transaction (see existing.py); empty on a fresh node
        self.existing_chains: list[str] = []
        self.existing_sets: list[str] = []
        self.existing_elements: dict[str, set[str]] = {}
        self.before: dict[tuple[str, str], object] | None = None
        """The node's objects before the transaction (``existing.state_of``), None on a
        fresh node."""

    # -- table and chains --------------------------------------------------------------
    def add_table(self, comment: str) -> None:
        self.comment = comment
        self.lines.append(f"add table {self.prefix} {{ comment {go_quote(comment)} ; }}")

    def add_chain(self, name: str, *, type: str = "", hook: str = "", priority: int = 0,
                  comment: str = "") -> None:
        if hook:
            self.lines.append(f"add chain {self.prefix} {name} {{ type {type} hook {hook} "
                              f"priority {priority} ; }}")
        elif comment:
            self.lines.append(f"add chain {self.prefix} {name} {{ comment {go_quote(comment)} ; }}")
        else:
            self.lines.append(f"add chain {self.prefix} {name}")
        chain = self.chains.get(name)
        if chain is None:
            self.chains[name] = Chain(name, hook, type, priority, comment)
        elif comment:
            chain.comment = comment

    def flush_chain(self, name: str) -> None:
        self.lines.append(f"flush chain {self.prefix} {name}")
        self.chains[name].rules.clear()

    def delete_chain(self, name: str) -> None:
        self.lines.append(f"delete chain {self.prefix} {name}")
        del self.chains[name]

    def ensure_chain(self, name: str) -> None:
        """kube-proxy's ``ensureChain``: add and flush a chain once per transaction."""
        if name in self.ensured:
            return
        self.ensured.add(name)
        self.add_chain(name)
        self.flush_chain(name)

    def rule(self, chain: str, text: str, listed: str | None = None, comment: str = "") -> None:
        """``add rule``; ``listed`` is how ``nft list`` prints the rule (default: as written)."""
        shown = text if listed is None else listed
        if comment:
            quoted = go_quote(comment)
            text = f"{text} comment {quoted}"
            shown = f"{shown} comment {quoted}"
        self.lines.append(f"add rule {self.prefix} {chain} {text}")
        self.chains[chain].rules.append(shown)

    # -- sets, maps, counters ----------------------------------------------------------
    def add_set(self, name: str, type: str, *, flags: str = "", timeout: int = 0,
                comment: str = "", kind: str = "set") -> None:
        body = f"type {type} ;"
        if flags:
            body += f" flags {flags} ;"
        if timeout:
            body += f" timeout {timeout}s ;"
        if comment:
            body += f" comment {go_quote(comment)} ;"
        self.lines.append(f"add {kind} {self.prefix} {name} {{ {body} }}")
        self.added_sets.add(name)
        existing = self.containers.get(name)
        if existing is None:
            self.containers[name] = Container(kind, name, type, flags, timeout, comment)
        else:  # kernel keeps the object (and its elements) in place
            existing.type, existing.flags, existing.timeout = type, flags, timeout
            existing.comment = comment

    def add_map(self, name: str, type: str, comment: str) -> None:
        self.add_set(name, type, comment=comment, kind="map")

    def flush_set(self, name: str) -> None:
        container = self.containers[name]
        self.lines.append(f"flush {container.kind} {self.prefix} {name}")
        container.elements.clear()

    def delete_set(self, name: str, kind: str = "set") -> None:
        self.lines.append(f"delete {kind} {self.prefix} {name}")
        del self.containers[name]

    def add_counter(self, name: str) -> None:
        self.lines.append(f"add counter {self.prefix} {name}")
        self.containers.setdefault(name, Container("counter", name))

    def delete_counter(self, name: str) -> None:
        self.lines.append(f"delete counter {self.prefix} {name}")
        del self.containers[name]

    def add_element(self, name: str, key: str, value: str = "", comment: str = "") -> None:
        text = key
        if comment:
            text += f" comment {go_quote(comment)}"
        if value:
            text += f" : {value}"
        self.lines.append(f"add element {self.prefix} {name} {{ {text} }}")
        self.containers[name].elements[key] = (value, comment)

    def ensure_element(self, name: str, key: str, value: str = "", comment: str = "") -> None:
        """kube-proxy's ``ensureElem`` on a fresh node: add a key once; a second value for the
        same key replaces the first (``delete element`` + ``add element``); comments are not
        compared."""
        self.touched.setdefault(name, set()).add(key)
        existing = self.containers[name].elements.get(key)
        if existing is not None:
            if existing[0] == value:
                return
            self.delete_element(name, key)
        self.add_element(name, key, value, comment)

    def delete_element(self, name: str, key: str) -> None:
        self.lines.append(f"delete element {self.prefix} {name} {{ {key} }}")
        del self.containers[name].elements[key]

    def transaction(self) -> str:
        return "\n".join(self.lines) + "\n"
