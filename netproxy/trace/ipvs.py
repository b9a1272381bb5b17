"""kube-proxy's IPVS mode as the tracer sees it: which addresses are the node's because
kube-proxy binds them to its dummy interface ``kube-ipvs0``, and which deliveries IPVS takes
over.

In IPVS mode kube-proxy's iptables rules only mark, masquerade and accept; the Services'
load balancing happens in IPVS (not traced). Every cluster IP, external IP and load balancer
ingress IP kube-proxy puts in its Service sets (:data:`netproxy.trace.ipsets.BOUND_SETS`) is
bound to ``kube-ipvs0``, so it is a node address: a packet to it is delivered to the node
(INPUT), where IPVS picks it up. The node's addresses therefore come from one of:

* a node snapshot: its ``ip addr`` lists ``kube-ipvs0`` with those addresses;
* the set contents (``--ipsets``, a snapshot's ``ipset save``): the sets' addresses;
* neither (``--local-ip`` only, sets unknown): an address is the node's exactly when the walk
  found it in one of those sets (the set-membership fact), one fact, not a second one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from netproxy.netfilter.model import Ruleset
from netproxy.trace.addr import format_addr, parse_addr
from netproxy.trace.ipsets import BOUND_SETS, bound_addr

KUBE_IPVS0 = "kube-ipvs0"
BASE_NOTE = ("kube-proxy runs in IPVS mode here: its load balancing happens in IPVS, outside "
             "iptables, and is not traced")
DELIVERED = "ipvs"
"""An outcome's ``delivered`` for a packet delivered to the node at a Service address
kube-proxy binds to kube-ipvs0: INPUT accepted it, and IPVS takes over there."""


def ipvs_mode(ruleset: Ruleset) -> bool:
    """Does the dump hold kube-proxy's IPVS-mode rules (KUBE-SERVICES asks KUBE-CLUSTER-IP)?"""
    nat = ruleset.tables.get("nat")
    services = nat.chains.get("KUBE-SERVICES") if nat is not None else None
    return services is not None and any(
        o.module == "set" and o.args and o.args[0] == "KUBE-CLUSTER-IP"
        for r in services.rules for o in r.matches)


class IpvsNode:
    """What IPVS mode makes of the node's addresses, for one tracer.

    ``hosts``: addresses to add to the node's; ``open``: the node's other addresses are only
    known through set-membership facts (``--local-ip`` given, set contents unknown); ``notes``
    say which applies."""

    def __init__(self, ruleset: Ruleset, family: str, ipsets: dict[str, Any] | None, *,
                 given: bool, assume: bool, on_device: Iterable[str] | None) -> None:
        self.active = ipvs_mode(ruleset)
        self.family = family
        self.hosts: frozenset[int] = frozenset()
        self.open = False
        self.notes: list[str] = []
        self.services: list[tuple[int, int, int, int]] | None = None
        """(address, protocol, low port, high port) of the Service sets' elements, when their
        contents are known: the destinations IPVS takes over."""
        self._device: frozenset[int] | None = None
        if not self.active:
            return
        sets = [s for name, s in (ipsets or {}).items() if name in BOUND_SETS]
        addrs: set[int] = set()
        if sets:
            self.services = []
            for s in sets:
                for member, excluded in s.members:
                    if excluded or not s.dims or s.dims[0] not in ("ip", "net"):
                        continue
                    net, mask = member[0]
                    if mask != (1 << (32 if family == "ipv4" else 128)) - 1:
                        continue
                    addrs.add(net)
                    if len(s.dims) > 1 and s.dims[1] == "port":
                        proto, (lo, hi) = member[1]
                        self.services.append((net, proto, lo, hi))
        if on_device is not None:  # a snapshot: its ip addr says what kube-ipvs0 holds
            device = set()
            for text in on_device:
                try:
                    device.add(parse_addr(text, family))
                except ValueError:
                    continue
            self._device = frozenset(device)
            note = (f"{BASE_NOTE}; the node's addresses include the {len(device)} on "
                    f"{KUBE_IPVS0} (its ip addr), where kube-proxy binds its Service addresses")
            missing = sorted(addrs - device)
            if missing:
                note += (f"; {len(missing)} address{'es' if len(missing) != 1 else ''} of its "
                         f"Service sets {'are' if len(missing) != 1 else 'is'} not on "
                         f"{KUBE_IPVS0} (first {format_addr(missing[0], family)}): traced as "
                         "the node has it, not the node's")
            self.notes.append(note)
        elif sets:
            self.hosts = frozenset(addrs)
            self.notes.append(f"{BASE_NOTE}; the {len(addrs)} addresses of its Service sets "
                              f"(from the ipsets) are the node's too: kube-proxy binds them to "
                              f"{KUBE_IPVS0}")
        elif given and assume:
            self.open = True
            self.notes.append(
                f"{BASE_NOTE}; the node's addresses are those given and those kube-proxy binds "
                f"to {KUBE_IPVS0}: an address in one of its Service sets is the node's, one "
                "found in none of those asked is not (the same address with another Service "
                "port is not told apart)")
        elif not given and assume:
            self.notes.append(f"{BASE_NOTE}; an address in one of its Service sets is the "
                              f"node's (kube-proxy binds it to {KUBE_IPVS0})")
        else:
            self.notes.append(BASE_NOTE)

    def takes_over(self, addr: int, proto: int, port: int | None,
                   assumes: tuple[tuple[bool, Any], ...]) -> bool:
        """Is a packet delivered to the node at ``addr``:``port`` one IPVS takes over: a
        Service address and port of kube-proxy's sets (known, or assumed on its branch), or,
        with only a snapshot's addresses, an address on kube-ipvs0?"""
        for value, c in assumes:
            key = c.key
            if (value and key[0] == "set" and key[1] in BOUND_SETS
                    and bound_addr(key[2]) == addr):
                return True
        if self.services is not None:
            return port is not None and any(
                a == addr and p == proto and lo <= port <= hi
                for a, p, lo, hi in self.services)
        return self._device is not None and addr in self._device
