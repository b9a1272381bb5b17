"""What kube-proxy's own rules reveal about the node, when nobody said.

Without ``--local-ip`` (or a snapshot) the tracer does not know the node's addresses. A
kube-proxy dump gives some of them away, and the pod network too:

* ``--nodeport-addresses``: ``KUBE-SERVICES -d <node address> ... -j KUBE-NODEPORTS``;
* a load balancer's "allow from node" rule (``KUBE-FW-*``: ``-s <VIP>`` is added only when
  one of the source ranges holds the node's address; a lone host range then is that address);
* the masquerade rules of cluster IPs, ``! -s <pod CIDR> ... -j KUBE-MARK-MASQ`` (and the
  pod short-cuts ``-s <pod CIDR>`` of external destinations): the pod network;
* ``-d <cluster IP>`` of the "cluster IP" rules: Service addresses, which no node holds in
  iptables mode.

kube-proxy's nftables table (``table ip kube-proxy`` / ``ip6``) gives the same away, read by
:func:`netproxy.kubeview.nftables.read_node_rules` (:func:`infer_nft_node`):

* ``set nodeport-ips``: the addresses NodePorts answer on, which kube-proxy fills with the
  node's own addresses (those inside ``--nodeport-addresses``);
* ``ip saddr != <pod CIDR> ... jump mark-for-masquerade`` (or ``meta mark set``) of the
  cluster-IP masquerade rules, and ``ip saddr <pod CIDR> goto`` of the "short-circuit pod
  traffic" rules: the pod network;
* ``set cluster-ips`` and the ``service-ips`` keys that lead to a ``service-``/``local-``
  chain: Service cluster IPs, which no node holds in nftables mode either (only IPVS mode
  binds them to an interface, kube-ipvs0); ``cluster-ips-check``'s drop rule: the Service
  CIDR, no address of which is the node's;
* a firewall chain's ``ip saddr != { ranges, <LB IP> } drop``: kube-proxy appends the load
  balancer IP only when a range holds the node's address ("allow from node").

Each inference carries the line it came from, so the trace can state it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from netproxy.netfilter.model import Rule, Ruleset
from netproxy.netfilter.nft import NftRuleset
from netproxy.trace.addr import BITS, parse_addr, parse_net

if TYPE_CHECKING:
    from netproxy.kubeview.model import NftRef


@dataclass
class NodeFacts:
    addresses: list[tuple[str, str]] = field(default_factory=list)
    """(node address, why)."""
    pod_cidrs: list[tuple[str, str]] = field(default_factory=list)
    """(pod CIDR, why)."""
    service_ips: set[int] = field(default_factory=set)
    """Cluster IPs: not addresses of the node."""
    service_nets: list[tuple[int, int]] = field(default_factory=list)
    """Service CIDRs (nftables mode's ``cluster-ips-check``): no address of the node."""
    services: list[str] = field(default_factory=list)
    """Statements about Service addresses (nftables mode; iptables mode uses them silently)."""
    ranges: list[str] = field(default_factory=list)
    """Statements that narrow the node's address without giving it."""

    def merge(self, other: NodeFacts) -> None:
        """Add what another source (the nftables listings beside a dump) revealed."""
        known = {a for a, _ in self.addresses}
        self.addresses += [(a, why) for a, why in other.addresses if a not in known]
        pods = {c for c, _ in self.pod_cidrs}
        self.pod_cidrs += [(c, why) for c, why in other.pod_cidrs if c not in pods]
        self.service_ips |= other.service_ips
        self.service_nets += other.service_nets
        self.services += other.services
        self.ranges += other.ranges


def _comment(rule: Rule) -> str:
    for o in rule.matches:
        if o.module == "comment" and o.name == "comment" and o.args:
            return o.args[0]
    return ""


def _addr(rule: Rule, name: str) -> tuple[str, bool] | None:
    opt = rule.builtin(name)
    if opt is None or not opt.args:
        return None
    return opt.args[0], opt.negated


def _host(text: str, family: str) -> str | None:
    """The address of a host network (``a/32``, ``a/128`` or a bare address)."""
    try:
        _net, mask = parse_net(text, family)
    except ValueError:
        return None
    if mask != (1 << BITS[family]) - 1:
        return None
    return text.split("/")[0]


def _at(line: int, source: str | None) -> str:
    """Where a rule is: ``line 12``, or ``FILE:12`` when several files are walked."""
    return f"{source}:{line}" if source else f"line {line}"


def infer_node(ruleset: Ruleset, *, source: str | None = None) -> NodeFacts:
    """What kube-proxy's iptables rules in ``ruleset`` reveal; ``source``: name the file
    beside each line (several files are walked together)."""
    facts = NodeFacts()
    nat = ruleset.tables.get("nat")
    if nat is None:
        return facts
    fam = ruleset.family
    seen_addr: set[str] = set()
    seen_pod: set[str] = set()
    services = nat.chains.get("KUBE-SERVICES")
    lb_vips: dict[str, set[str]] = {}
    for rule in services.rules if services is not None else ():
        if rule.opaque is not None:
            continue
        comment = _comment(rule)
        dst = _addr(rule, "destination")
        target = rule.target.name if rule.target is not None else ""
        if target == "KUBE-NODEPORTS" and dst is not None and not dst[1]:
            host = _host(dst[0], fam)
            if host is not None and host not in seen_addr:
                seen_addr.add(host)
                facts.addresses.append((host, f"{_at(rule.line, source)}: KUBE-SERVICES sends {host} "
                                        "to KUBE-NODEPORTS (--nodeport-addresses)"))
        elif comment.endswith("cluster IP") and dst is not None and not dst[1]:
            host = _host(dst[0], fam)
            if host is not None:
                facts.service_ips.add(parse_net(host, fam)[0])
        elif target.startswith("KUBE-FW-") and dst is not None and not dst[1]:
            lb_vips.setdefault(target, set()).add(dst[0].split("/")[0])
    quiet = 0  # kube-proxy repeats the pod CIDR in every Service chain: a sample suffices
    for cname, chain in nat.chains.items():
        if quiet > 50 and cname.startswith(("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-",
                                            "KUBE-XLB-", "KUBE-SEP-")):
            continue
        if cname.startswith("KUBE-SEP-"):
            continue  # endpoint chains hold endpoint addresses only
        found_before = len(facts.pod_cidrs)
        for rule in chain.rules:
            if rule.opaque is not None or rule.target is None:
                continue
            src = _addr(rule, "source")
            if src is None:
                continue
            comment = _comment(rule)
            masq = src[1] and rule.target.name == "KUBE-MARK-MASQ" and "cluster ip" in \
                comment.lower()
            shortcut = not src[1] and comment.startswith(("Redirect pods trying to reach "
                                                          "external", "pod traffic for"))
            pod = src[0] if masq or shortcut else None
            if pod is not None and pod not in seen_pod:
                try:
                    parse_net(pod, fam)
                except ValueError:
                    continue
                seen_pod.add(pod)
                facts.pod_cidrs.append((pod, f"{_at(rule.line, source)}: {cname} masquerades "
                                        f"sources outside {pod} (the pod network)"
                                        if src[1] else f"{_at(rule.line, source)}: {cname} treats "
                                        f"{pod} as pods"))
        if cname.startswith(("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-XLB-")):
            quiet = 0 if len(facts.pod_cidrs) > found_before else quiet + 1
    for fw, vips in lb_vips.items():
        fw_chain = nat.chains.get(fw)
        if fw_chain is None:
            continue
        ranges = []
        allow = None
        for rule in fw_chain.rules:
            src = _addr(rule, "source")
            if src is None or src[1] or rule.opaque is not None:
                continue
            if src[0].split("/")[0] in vips:
                allow = rule
            else:
                ranges.append(src[0])
        if allow is None or not ranges:
            continue
        if len(ranges) == 1 and (host := _host(ranges[0], fam)) is not None:
            if host not in seen_addr:
                seen_addr.add(host)
                facts.addresses.append((host, f"{_at(allow.line, source)}: {fw} allows traffic from "
                                        f"the node, and its only source range is {host}"))
        else:
            facts.ranges.append(f"the node's primary address lies in {' or '.join(ranges)} "
                                f"({_at(allow.line, source)}: {fw} allows traffic from the node)")
    return facts


SHOWN_SERVICE_IPS = 3
"""Cluster IPs named in the statement about them (the rest are counted)."""


def infer_nft_node(listings: Sequence[NftRuleset], family: str, *,
                   several: bool = False) -> NodeFacts:
    """What kube-proxy's nftables table of ``family`` (in any of ``listings``) reveals about
    the node; ``several``: name the file beside each line."""
    facts = NodeFacts()
    nft_family = "ip" if family == "ipv4" else "ip6"
    for listing in listings:
        table = listing.tables.get((nft_family, "kube-proxy"))
        if table is None:
            continue
        from netproxy.kubeview.nftables import read_node_rules

        node = read_node_rules(table, sample=50)
        source = listing.source if several else None
        label = f"{nft_family} kube-proxy"
        for addr, ref in node.nodeport_ips or ():
            host = _host(addr, family)
            if host is not None:
                facts.addresses.append((host, f"{_at(ref.line, source)}: {label} set "
                                        "nodeport-ips, the addresses NodePorts answer on, which "
                                        "kube-proxy fills with the node's own addresses"))
        for cidr, ref in node.pod_cidrs:
            try:
                parse_net(cidr, family)
            except ValueError:
                continue
            assert ref.chain is not None
            facts.pod_cidrs.append((cidr, f"{_at(ref.line, source)}: {ref.chain} masquerades "
                                    f"sources outside {cidr} (the pod network)"
                                    if _negated_saddr(ref) else f"{_at(ref.line, source)}: "
                                    f"{ref.chain} treats {cidr} as pods"))
        nets: list[tuple[int, int]] = []
        for cidr, ref in node.service_cidrs:
            try:
                nets.append(parse_net(cidr, family))
            except ValueError:
                continue
            facts.services.append(f"{cidr} is the Service network, not the node's "
                                  f"({_at(ref.line, source)}: {ref.chain} drops traffic to "
                                  "unallocated cluster IPs in it)")
        facts.service_nets += nets
        ips: dict[int, str] = {}
        first = None
        for addr, ref in node.cluster_ips:
            try:
                ips.setdefault(parse_addr(addr, family), addr)
            except ValueError:
                continue
            first = first or ref
        facts.service_ips |= set(ips)
        outside = {a: t for a, t in ips.items() if not any(a & m == n for n, m in nets)}
        ips = outside  # those inside a Service network go without saying
        if ips and first is not None:
            shown = list(ips.values())[:SHOWN_SERVICE_IPS]
            more = len(ips) - len(shown)
            what = ", ".join(shown) + (f" and {more} more" if more else "")
            where = first.set or "service-ips"
            what += (" are Service cluster IPs, not node addresses" if len(ips) > 1
                     else " is a Service cluster IP, not a node address")
            # several elements, one statement: the set's line (an element's own for one)
            at = first.set_line if len(ips) > 1 and first.set_line else first.line
            facts.services.append(f"{what} ({_at(at, source)}: {label} set {where}; "
                                  "nftables mode binds cluster IPs to no interface)")
        for ranges, ref in node.node_ranges:
            if len(ranges) == 1 and (host := _host(ranges[0], family)) is not None:
                facts.addresses.append((host, f"{_at(ref.line, source)}: {ref.chain} allows "
                                        f"traffic from the node, and its only source range "
                                        f"is {host}"))
            else:
                facts.ranges.append(f"the node's primary address lies in {' or '.join(ranges)} "
                                    f"({_at(ref.line, source)}: {ref.chain} allows traffic "
                                    "from the node)")
    return facts


def _negated_saddr(ref: NftRef) -> bool:
    """Whether the rule that named a pod CIDR matched sources outside it (``!=``)."""
    return ref.rule is not None and any(
        isinstance(s, dict) and isinstance(s.get("match"), dict) and s["match"].get("op") == "!="
        for s in ref.rule.exprs)
