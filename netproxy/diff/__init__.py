"""Semantic diff of two rulesets, in the words of Services and endpoints.

``diff_rulesets(old, new)`` pairs chains by what they are (service port, endpoint) rather
than by name, compares rules in the canonical spelling and order ``iptables-save`` would
print (ignoring counters, comments around the tables, chain declaration order and the order
of rules that never match the same packet), groups the differences by service, and reports
stale chains and jumps to missing chains.
"""

from netproxy.diff.engine import diff_rulesets
from netproxy.diff.report import DiffReport, render_text

__all__ = ["DiffReport", "diff_rulesets", "render_text"]
