"""What ``iptables-save`` shows on the node after the sync: the payload plus everything
kube-proxy and kubelet create outside it (spec §1.1, §9.4).

Assumes iptables-nft (tables mangle, filter, nat), kubelet (>= 1.28) started before
kube-proxy, and no other software's rules.
"""

from __future__ import annotations

from netproxy.compiler.build import comment, ctstate, rule
from netproxy.compiler.fixed import localnet_rule
from netproxy.netfilter.model import BUILTIN_CHAINS, Chain, Rule, Ruleset, Table

KUBE_PROXY_CANARY = "KUBE-PROXY-CANARY"
KUBELET_CANARY = "KUBE-KUBELET-CANARY"
HINT = "KUBE-IPTABLES-HINT"
NEW = ctstate("NEW")

JUMPS: tuple[tuple[str, str, str, bool, str], ...] = (
    ("filter", "INPUT", "KUBE-EXTERNAL-SERVICES", True, "kubernetes externally-visible service portals"),
    ("filter", "FORWARD", "KUBE-EXTERNAL-SERVICES", True, "kubernetes externally-visible service portals"),
    ("filter", "INPUT", "KUBE-NODEPORTS", False, "kubernetes health check service ports"),
    ("filter", "FORWARD", "KUBE-SERVICES", True, "kubernetes service portals"),
    ("filter", "OUTPUT", "KUBE-SERVICES", True, "kubernetes service portals"),
    ("filter", "FORWARD", "KUBE-FORWARD", False, "kubernetes forwarding rules"),
    ("filter", "INPUT", "KUBE-PROXY-FIREWALL", True, "kubernetes load balancer firewall"),
    ("filter", "OUTPUT", "KUBE-PROXY-FIREWALL", True, "kubernetes load balancer firewall"),
    ("filter", "FORWARD", "KUBE-PROXY-FIREWALL", True, "kubernetes load balancer firewall"),
    ("nat", "OUTPUT", "KUBE-SERVICES", False, "kubernetes service portals"),
    ("nat", "PREROUTING", "KUBE-SERVICES", False, "kubernetes service portals"),
    ("nat", "POSTROUTING", "KUBE-POSTROUTING", False, "kubernetes postrouting rules"),
    ("filter", "INPUT", "KUBE-FIREWALL", False, ""),
    ("filter", "OUTPUT", "KUBE-FIREWALL", False, ""),
)
"""kube-proxy's jump rules from built-in chains, in the order it ensures them (each prepended
only when missing)."""


def jump_rule(target: str, new_only: bool, text: str) -> Rule:
    """``[-m conntrack --ctstate NEW] [-m comment --comment TEXT] -j TARGET``."""
    return rule((NEW if new_only else ()) + (comment(text) if text else ()), target)


def _new_table(name: str) -> Table:
    table = Table(name)
    for chain in BUILTIN_CHAINS[name]:
        table.chains[chain] = Chain(chain, "ACCEPT")
    return table


def _sorted(table: Table) -> Table:
    """Built-ins in hook order, then user chains sorted like iptables-save (strcmp)."""
    builtins = [n for n in BUILTIN_CHAINS[table.name] if n in table.chains]
    # Code point order is UTF-8 byte order, so plain string sorting is strcmp's order.
    users = sorted([n for n in table.chains if n not in builtins])
    table.chains = {n: table.chains[n] for n in builtins + users}
    return table


def _ensure_jumps(tables: dict[str, Table]) -> None:
    """Replay kube-proxy's EnsureChain + EnsureRule(Prepend) sequence."""
    for table_name, src, dst, new_only, text in JUMPS:
        table = tables[table_name]
        table.chain(dst)
        new = jump_rule(dst, new_only, text)
        chain = table.chains[src]
        if not any(_same(r, new) for r in chain.rules):
            chain.rules.insert(0, new)


def _same(a: Rule, b: Rule) -> bool:
    return a.matches == b.matches and a.jump == b.jump


def save_view(payload: Ruleset, *, sort_chains: bool = True) -> Ruleset:
    """The node's full ruleset for the payload's family after a first full sync.

    Chains are in iptables-save's order (built-ins in hook order, then user chains sorted);
    ``sort_chains=False`` keeps user chains in the order they were created instead, for a
    caller that only renders the view (:func:`netproxy.render.render_save` sorts, and
    formats faster in that order).
    """
    family = payload.family
    tables = {name: _new_table(name) for name in ("mangle", "filter", "nat")}
    for table in tables.values():
        table.chain(KUBE_PROXY_CANARY)
        table.chain(KUBELET_CANARY)
    tables["mangle"].chain(HINT)
    if family == "ipv4":
        # kubelet's own KUBE-FIREWALL (IPv4 only), created before kube-proxy starts.
        filter_table = tables["filter"]
        filter_table.chain("KUBE-FIREWALL").rules.append(localnet_rule())
        filter_table.chains["OUTPUT"].rules.insert(0, rule((), "KUBE-FIREWALL"))
        filter_table.chains["INPUT"].rules.insert(0, rule((), "KUBE-FIREWALL"))
    _ensure_jumps(tables)
    for name, written in payload.tables.items():
        table = tables[name]
        for chain in written.chains.values():
            table.chain(chain.name).rules = list(chain.rules)  # --noflush: declared chains are replaced
        for gone in written.deleted:
            table.chains.pop(gone, None)
    out = Ruleset(family=family, source="<compiled>")
    for name in ("mangle", "filter", "nat"):
        out.tables[name] = _sorted(tables[name]) if sort_chains else tables[name]
    return out
