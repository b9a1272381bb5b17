"""A node as it is: the snapshot format, its reader, and the node's routing decision.

``netproxy.node.snapshot`` reads (and names the sections of) the text file that
``netproxy snapshot`` and ``scripts/node-snapshot.sh`` write; ``netproxy.node.routing``
answers route lookups over the node's policy rules, tables and addresses.
"""

from netproxy.node.snapshot import MAGIC, NodeContext, is_snapshot, parse_snapshot, read_snapshot

__all__ = ["MAGIC", "NodeContext", "is_snapshot", "parse_snapshot", "read_snapshot"]
