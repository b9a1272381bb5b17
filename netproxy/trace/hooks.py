"""The order of base chains at each hook: iptables tables and nftables base chains alike.

The kernel runs every base chain registered at a hook in priority order, whichever tool
created it. iptables tables sit at fixed priorities (raw -300, mangle -150, nat -100 for
DNAT in PREROUTING/OUTPUT and 100 for SNAT in INPUT/POSTROUTING, filter 0, security 50) --
as legacy tables and as the nftables chains iptables-nft creates; native nftables base chains
sit where their ``priority`` puts them. Chains with equal priority run in the order they were
given (the kernel's order among equals is its registration order, which a listing does not
show).

A step of a walk is ``(HOOK, table, chain)``; the markers ``ROUTE`` (routing decision),
``LOOP`` (where a locally generated packet goes), ``REROUTE`` (routing again after
OUTPUT nat: the kernel re-routes a local packet whose address or mark nat or mangle changed,
so it comes after every OUTPUT chain at or below dstnat's priority, -100) and ``DONE``
(table = how the packet was delivered) carry empty names.
"""

from __future__ import annotations

from typing import NamedTuple

HOOKS = {"prerouting": "PREROUTING", "input": "INPUT", "forward": "FORWARD",
         "output": "OUTPUT", "postrouting": "POSTROUTING"}
IPTABLES_PRIORITY = {"raw": -300, "mangle": -150, "filter": 0, "security": 50}
Step = tuple[str, str, str]
MARKERS = frozenset({"ROUTE", "LOOP", "DONE"})
DSTNAT = -100


class BaseChain(NamedTuple):
    hook: str
    """Upper-case hook name (``PREROUTING``)."""
    priority: int
    order: int
    table: str
    chain: str
    nat: bool
    """A nat chain: consulted only for the first packet of a connection."""


def iptables_priority(table: str, hook: str) -> int | None:
    """Priority of an iptables table's built-in chain, None for a table the kernel lacks."""
    if table == "nat":
        return -100 if hook in ("PREROUTING", "OUTPUT") else 100
    return IPTABLES_PRIORITY.get(table)


def plan(bases: list[BaseChain]) -> dict[str, tuple[Step, ...]]:
    """The step sequences of a walk: ``pre`` (arriving), ``in``/``fwd`` (after routing),
    ``out`` (generated here), ``loop`` (back in through ``lo``), ``sent``."""
    ordered = sorted(bases, key=lambda b: (b.priority, b.order))

    def at(hook: str, nat: bool = True, upto: int | None = None, above: int | None = None
           ) -> list[Step]:
        return [(b.hook, b.table, b.chain) for b in ordered
                if b.hook == hook and (nat or not b.nat)
                and (upto is None or b.priority <= upto)
                and (above is None or b.priority > above)]

    return {
        "pre": (*at("PREROUTING"), ("ROUTE", "", "")),
        "in": (*at("INPUT"), ("DONE", "local", "")),
        "fwd": (*at("FORWARD"), *at("POSTROUTING"), ("DONE", "forwarded", "")),
        "out": (*at("OUTPUT", upto=DSTNAT), ("REROUTE", "", ""),
                *at("OUTPUT", above=DSTNAT), *at("POSTROUTING"), ("LOOP", "", "")),
        # nat is not consulted again on the way back in: the connection's bindings are set.
        "loop": (*at("PREROUTING", False), *at("INPUT", False), ("DONE", "local", "")),
        "sent": (("DONE", "sent", ""),),
    }
