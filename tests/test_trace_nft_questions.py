"""Every `nft list ruleset` dump answers the typical questions without context: definite or
conditional, never UNKNOWN for something the question left out (an interface, an address, a
set's contents)."""

from __future__ import annotations

import pytest

from netproxy.trace import Packet, Tracer

from conftest import DUMPS


@pytest.mark.parametrize("path", sorted(DUMPS.glob("nft/*.nft")), ids=lambda p: p.stem)
def test_every_nft_listing_answers_common_questions_without_unknown_for_missing_context(
        path) -> None:  # type: ignore[no-untyped-def]
    """The same questions of every `nft list ruleset` dump, walked alone: a pod calling a
    Service (one of kube-proxy's service-ips elements, when the listing has them), pod
    egress, the LAN to a NodePort. No addresses, interfaces or set contents given."""
    import re

    from netproxy.netfilter.model import Ruleset
    from netproxy.parser.nftables import read_nft
    from netproxy.trace.cases import case_list

    t = Tracer(Ruleset(family="ipv4", source=str(path)), local_ips=None, assume=True,
               nft=[read_nft(str(path))])
    questions = [Packet(src="10.244.0.9", dst="203.0.113.9", dport=443),
                 Packet(src="192.168.77.50", dst="192.168.77.1", dport=30080)]
    element = re.search(r"(\d+\.\d+\.\d+\.\d+) \. (tcp|udp) \. (\d+) : goto service",
                        path.read_text())
    if element is not None:
        questions.append(Packet(src="10.244.0.9", dst=element[1], dport=int(element[3]),
                                proto=element[2]))
    for q in questions:
        res = t.trace(q)
        cases = case_list(res)
        for _conds, outs in cases if cases is not None else [((), res.outcomes)]:
            assert abs(sum(o.probability for o in outs) - 1.0) < 1e-9, (q, _conds)
        for o in res.outcomes:
            if o.verdict == "UNKNOWN":
                assert "(give " not in (o.reason or ""), (q, o.reason)
                assert "not known" not in (o.reason or ""), (q, o.reason)
