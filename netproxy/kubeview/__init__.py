"""One reading of kube-proxy's rules: chain names, comments, and the Service model.

* :mod:`.names` -- what kube-proxy's chain names say (roles, hashes, which chains it owns).
* :mod:`.comments` -- what its rule comments say (Service port, endpoint, the rule's role).
* :mod:`.model` -- every Service port of a node (addresses, endpoint rules with their
  probabilities, endpoint chains, REJECT/DROP rules) and what the node says around them
  (proxy mode, pod CIDRs, redactions), each fact with the rule it came from.
* :mod:`.iptables` -- builds that model from an iptables ruleset (``build_view``), or from
  the part of one holding a few Service ports (``build_part_view``).
* :mod:`.nftables` -- builds it from kube-proxy's nftables table (``build_nft_view``); facts
  point at nftables rules and set/map elements (:class:`~.model.NftRef`) instead of
  iptables rules (:class:`~.model.RuleRef`).
* :mod:`.reading` -- one Service port's meaning in words both modes share (frontends,
  endpoint shares, affinity, no-endpoint answers), for comparing rulesets of either mode.

The doctor judges the model of a whole ruleset; the differ compares the models of the
Service ports a change touches (it locates their chains and rules with its lazy index,
:mod:`netproxy.diff.identity`, and reads them with ``build_part_view``).
"""

from __future__ import annotations

from netproxy.kubeview.iptables import build_view, well_known_hashes
from netproxy.kubeview.model import (
    NftRef,
    Ref,
    RuleRef,
    RulesetView,
    ServicePortView,
    is_redacted,
)
from netproxy.kubeview.nftables import build_nft_view
from netproxy.kubeview.reading import reading

__all__ = ["NftRef", "Ref", "RuleRef", "RulesetView", "ServicePortView", "build_nft_view", "build_view",
           "is_redacted", "reading", "well_known_hashes"]
