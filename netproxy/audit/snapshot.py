"""Node snapshots (``# netproxy node snapshot v1``): the node's name and its iptables rules."""

from __future__ import annotations

from netproxy.audit.nodes import NodeText
from netproxy.errors import InputError


def iptables_from_snapshot(got: NodeText) -> NodeText:
    """The snapshot's ``iptables-save`` section as a node text named after its hostname."""
    raise InputError("node snapshots cannot be read by this version of netproxy; give the "
                     "node's iptables-save output", where=got.name)
