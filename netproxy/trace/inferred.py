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

Each inference carries the line it came from, so the trace can state it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netproxy.netfilter.model import Rule, Ruleset
from netproxy.trace.addr import BITS, parse_net


@dataclass
class NodeFacts:
    addresses: list[tuple[str, str]] = field(default_factory=list)
    """(node address, why)."""
    pod_cidrs: list[tuple[str, str]] = field(default_factory=list)
    """(pod CIDR, why)."""
    service_ips: set[int] = field(default_factory=set)
    """Cluster IPs (iptables mode): not addresses of the node."""
    ranges: list[str] = field(default_factory=list)
    """Statements that narrow the node's address without giving it."""


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


def infer_node(ruleset: Ruleset) -> NodeFacts:
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
                facts.addresses.append((host, f"line {rule.line}: KUBE-SERVICES sends {host} "
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
                facts.pod_cidrs.append((pod, f"line {rule.line}: {cname} masquerades sources "
                                        f"outside {pod} (the pod network)"
                                        if src[1] else f"line {rule.line}: {cname} treats "
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
                facts.addresses.append((host, f"line {allow.line}: {fw} allows traffic from "
                                        f"the node, and its only source range is {host}"))
        else:
            facts.ranges.append(f"the node's primary address lies in {' or '.join(ranges)} "
                                f"(line {allow.line}: {fw} allows traffic from the node)")
    return facts
