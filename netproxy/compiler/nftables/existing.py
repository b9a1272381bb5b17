"""A full sync on a node that already holds kube-proxy's table (``--existing-rules``).

kube-proxy (restarted, so its first sync) reads the current elements of its sets and maps and
the names of its chains and sets; the transaction then adds only missing elements, replaces
changed ones, flushes service chains no longer used (deleted a second later, in another
transaction), deletes unused affinity sets at once and deletes leftover elements
(``nftElementStorage``, ``syncProxyRules``). Objects keep their places in the kernel's lists;
re-created base chains move to the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netproxy.compiler.nftables.table import Chain, Container, Table

STORAGE_ORDER = ("cluster-ips", "service-ips", "firewall-ips", "no-endpoint-services",
                 "no-endpoint-nodeports", "service-nodeports", "hairpin-connections",
                 "localhost-nodeport-reject-ports")
"""The containers whose elements kube-proxy diffs, in the order it cleans them up."""


def _field(value: Any) -> str:
    return str(value)


def element_key(key: Any) -> str:
    if isinstance(key, dict) and "concat" in key:
        return " . ".join(_field(v) for v in key["concat"])
    return _field(key)


def element_value(value: Any) -> str:
    """A verdict as written: ``goto X``, ``jump X``, ``drop``, ``accept``."""
    if value is None:
        return ""
    if isinstance(value, dict) and len(value) == 1:
        verb, arg = next(iter(value.items()))
        if isinstance(arg, dict) and "target" in arg:
            return f"{verb} {arg['target']}"
        if arg is None:
            return str(verb)
    return _field(value)


@dataclass(slots=True)
class KernelTable:
    """A ``kube-proxy`` table as the kernel holds it, in the recorder's terms: the table's
    comment, chains and containers (sets, maps, counters) in the kernel's order. Read from a
    listing (:func:`from_listing`) or from apply's record of what it loaded."""

    comment: str
    chains: dict[str, Chain]
    containers: dict[str, Container]


def from_listing(existing: Any) -> KernelTable:
    """The kernel table of a parsed ``nft list table`` (:class:`netproxy.netfilter.nft.NftTable`)."""
    containers: dict[str, Container] = {}
    for obj in existing.objects or ():
        if obj.kind == "counter":
            containers[obj.name] = Container("counter", obj.name)
    for name, s in existing.sets.items():
        kind = "map" if s.kind == "map" else "set"
        type_text = " . ".join(s.type)
        if s.map_type:
            type_text += f" : {s.map_type}"
        flags = ",".join(s.flags)
        timeout = int(s.timeout) if s.timeout else 0
        container = Container(kind, name, type_text, flags, timeout, s.comment or "")
        for element in s.elements:
            container.elements[element_key(element.key)] = (element_value(element.value),
                                                           element.comment or "")
        containers[name] = container
    chains = {name: Chain(name, chain.hook or "", chain.type or "", int(chain.priority or 0),
                          chain.comment or "", [rule.text for rule in chain.rules])
              for name, chain in existing.chains.items()}
    return KernelTable(existing.comment or "", chains, containers)


def preload(t: Table, existing: Any) -> None:
    """Put the node's current table into ``t`` as kernel state: a :class:`KernelTable`, or a
    parsed ``nft list table``."""
    kernel = existing if isinstance(existing, KernelTable) else from_listing(existing)
    t.comment = kernel.comment
    t.containers.update(kernel.containers)
    t.chains.update(kernel.chains)
    t.existing_chains = [n for n in kernel.chains]
    t.existing_sets = [n for n, c in kernel.containers.items() if c.kind != "counter"]
    t.existing_elements = {name: set(t.containers[name].elements) for name in STORAGE_ORDER
                           if name in t.containers}
    t.before = state_of(t)


def kernel_after(t: Table, deleted_chains: list[str]) -> KernelTable:
    """What the kernel holds once ``t``'s transaction and the deletion of ``deleted_chains``
    went through (the record apply keeps)."""
    gone = set(deleted_chains)
    return KernelTable(t.comment, {n: c for n, c in t.chains.items() if n not in gone},
                       dict(t.containers))


def state_of(t: Table) -> dict[tuple[str, str], object]:
    """Every object of ``t`` as a comparable value: ``("chain", name)`` -> header and rules,
    ``("set", name)`` -> kind, type, flags, timeout, comment and elements."""
    out: dict[tuple[str, str], object] = {}
    for name, chain in t.chains.items():
        out[("chain", name)] = (chain.hook, chain.type, chain.priority if chain.hook else 0,
                                chain.comment, tuple(chain.rules))
    for name, c in t.containers.items():
        out[("set", name)] = (c.kind, c.type, c.flags, c.timeout, c.comment,
                              frozenset(c.elements.items()))
    return out


def finish(t: Table) -> None:
    """What kube-proxy writes after the services when the table existed: flush stale service
    chains, delete unused affinity sets, delete leftover elements (each in Go map order in
    kube-proxy; sorted here)."""
    for name in sorted(t.existing_chains):
        if "/" in name and name not in t.ensured and name in t.chains:
            t.flush_chain(name)
    for name in sorted(t.existing_sets):
        if name.startswith("affinity-") and name not in t.added_sets:
            t.delete_set(name)
    for name in STORAGE_ORDER:
        if name not in t.existing_elements or name not in t.containers:
            continue
        for key in sorted(t.existing_elements[name] - t.touched.get(name, set())):
            t.delete_element(name, key)
