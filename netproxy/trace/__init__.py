"""The tracer: walk a packet through a ruleset the way netfilter does.

``Tracer(ruleset, local_ips=[...])`` indexes the ruleset once; ``tracer.trace(packet)``
returns a :class:`TraceResult` whose outcomes carry probability, verdict, DNAT destination,
masquerading and the path of hops.
"""

from netproxy.trace.engine import Tracer
from netproxy.trace.packet import Packet
from netproxy.trace.result import Hop, Outcome, TraceResult
from netproxy.trace.state import Memory

__all__ = ["Hop", "Memory", "Outcome", "Packet", "TraceResult", "Tracer"]
