"""An nftables-mode node's ``kube-proxy`` table against the one compiled for it.

Both sides are read into the nftables model (:mod:`netproxy.parser.nftables`), so spelling,
handles, counters and element order do not count. What does: chains (by name: kube-proxy's
nftables chain names carry the Service port and the endpoint), their rules in order, base
chain hooks and policies, and the elements of sets and maps. Differences are said in the
audit's words: endpoints a Service port's chain sends to (the DNAT map of 1.37, the endpoint
chains of 1.36), frontends (the ``service-ips`` / ``service-nodeports`` / ``firewall-ips``
map elements, attributed to the Service port of the chain they lead to), and other chain and
set differences.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from netproxy.audit.findings import Finding
from netproxy.netfilter.nft import NftChain, NftSet, NftTable

ROLES = ("service", "local", "external", "firewall", "endpoint")


def chain_identity(name: str) -> tuple[str, str, str, str]:
    """``(role, namespace/name:port, protocol, endpoint)`` of a kube-proxy chain name
    (``service-HASH-ns/name/tcp/port``, ``endpoint-HASH-ns/name/tcp/port__ip/port``);
    empty strings for the table's fixed chains."""
    role, _, rest = name.partition("-")
    if role not in ROLES or rest.count("-") < 1:
        return "", "", "", ""
    rest = rest.split("-", 1)[1]
    svc, _, ep = rest.partition("__")
    parts = svc.split("/")
    if len(parts) != 4:
        return "", "", "", ""
    ns, svc_name, protocol, port = parts
    spn = f"{ns}/{svc_name}:{port}" if port else f"{ns}/{svc_name}"
    endpoint = ""
    if ep:
        ip, _, ep_port = ep.rpartition("/")
        endpoint = f"[{ip}]:{ep_port}" if ":" in ip else f"{ip}:{ep_port}"
    return role, spn, protocol, endpoint


def _strip(value: Any) -> Any:
    """An expression without counters' values (packets and bytes change all the time)."""
    if isinstance(value, dict):
        return {k: (None if k == "counter" else _strip(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _rule_key(exprs: list[Any], comment: str | None) -> str:
    return json.dumps([_strip(exprs), comment], sort_keys=True)


def _text(value: Any) -> str:
    """An element key or value as nft spells it, roughly (for reports)."""
    if isinstance(value, dict):
        if "concat" in value:
            return " . ".join(_text(v) for v in value["concat"])
        if "prefix" in value:
            return f"{value['prefix']['addr']}/{value['prefix']['len']}"
        if "range" in value:
            return "-".join(_text(v) for v in value["range"])
        for verdict in ("goto", "jump"):
            if verdict in value:
                return f"{verdict} {value[verdict]['target']}"
        return json.dumps(value, sort_keys=True)
    return str(value)


def _endpoints(chain: NftChain) -> set[str]:
    """Endpoints a service or local chain sends to: DNAT addresses and ports (also inside
    numgen maps), and endpoint chains it jumps or goes to."""
    out: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for verdict in ("goto", "jump"):
                target = value.get(verdict)
                if isinstance(target, dict) and isinstance(target.get("target"), str):
                    role, _, _, endpoint = chain_identity(target["target"])
                    if role == "endpoint" and endpoint:
                        out.add(endpoint)
            dnat = value.get("dnat")
            if isinstance(dnat, dict):
                addr, port = dnat.get("addr"), dnat.get("port")
                if isinstance(addr, str) and port is not None:
                    out.add(f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}")
                walk_pairs(addr)
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    def walk_pairs(value: Any) -> None:
        if isinstance(value, dict):
            concat = value.get("concat")
            if isinstance(concat, list) and len(concat) == 2 and isinstance(concat[0], str) \
                    and isinstance(concat[1], int):
                ip, port = concat
                out.add(f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}")
            for v in value.values():
                walk_pairs(v)
        elif isinstance(value, list):
            for v in value:
                walk_pairs(v)

    for rule in chain.rules:
        walk(rule.exprs)
    return out


def _chain_props(chain: NftChain) -> tuple[Any, ...]:
    return (chain.type, chain.hook, chain.priority, chain.policy)


def _rule_changes(e: NftChain, a: NftChain) -> tuple[int, int]:
    want = Counter(_rule_key(r.exprs, r.comment) for r in e.rules)
    got = Counter(_rule_key(r.exprs, r.comment) for r in a.rules)
    return sum((got - want).values()), sum((want - got).values())


def _compare_chain(name: str, e: NftChain | None, a: NftChain | None) -> list[Finding]:
    role, spn, protocol, endpoint = chain_identity(name)
    if e is not None and a is not None:
        same_rules = [_rule_key(r.exprs, r.comment) for r in e.rules] == \
            [_rule_key(r.exprs, r.comment) for r in a.rules]
        if same_rules and _chain_props(e) == _chain_props(a):
            return []
    if not spn:
        if a is None or e is None:
            what = "missing" if a is None else "extra"
            return [Finding("shared-chains", "", "", f"kube-proxy table: {what} chain {name}",
                            f"{'-' if a is None else '+'} chain {name}")]
        plus, minus = _rule_changes(e, a)
        return [Finding("shared-chains", "", "", f"kube-proxy table: chain {name} differs",
                        f"~ chain {name}: rules +{plus} -{minus}")]
    if role == "endpoint":
        if a is None:
            return [Finding("endpoint-missing", spn, protocol, f"lost endpoint {endpoint}",
                            f"- chain {name}")]
        if e is None:
            return [Finding("endpoint-extra", spn, protocol, f"extra endpoint {endpoint}",
                            f"+ chain {name}")]
        return [Finding("endpoint-chain", spn, protocol, f"endpoint chain of {endpoint} differs",
                        f"~ chain {name}")]
    if a is None and role == "service":
        return [Finding("service-missing", spn, protocol,
                        "Service port missing from the node's rules", f"- chain {name}")]
    if e is None and role == "service":
        return [Finding("service-extra", spn, protocol,
                        "Service port the API state does not have (left over)", f"+ chain {name}")]
    if a is None or e is None:
        what = "missing" if a is None else "extra"
        return [Finding("rules", spn, protocol, f"{what} {role} chain",
                        f"{'-' if a is None else '+'} chain {name}")]
    out: list[Finding] = []
    want, got = _endpoints(e), _endpoints(a)
    for ep in sorted(want - got):
        out.append(Finding("endpoint-missing", spn, protocol, f"lost endpoint {ep}",
                           f"- endpoint {ep} in chain {name}"))
    for ep in sorted(got - want):
        out.append(Finding("endpoint-extra", spn, protocol, f"extra endpoint {ep}",
                           f"+ endpoint {ep} in chain {name}"))
    if not out:
        plus, minus = _rule_changes(e, a)
        out.append(Finding("rules", spn, protocol, f"{role} chain rules differ",
                           f"~ chain {name}: rules +{plus} -{minus}"))
    return out


def _elements(s: NftSet) -> dict[str, str]:
    return {_text(el.key): _text(el.value) if el.value is not None else "" for el in s.elements}


def _compare_set(name: str, e: NftSet | None, a: NftSet | None) -> list[Finding]:
    if e is None or a is None:
        what = "missing" if a is None else "extra"
        return [Finding("shared-chains", "", "", f"kube-proxy table: {what} {name}",
                        f"{'-' if a is None else '+'} {name}")]
    if e.dynamic or a.dynamic:
        return []  # filled by the packets (session affinity), not by kube-proxy's syncs
    want, got = _elements(e), _elements(a)
    out: list[Finding] = []
    for key in sorted(set(want) | set(got)):
        w, g = want.get(key), got.get(key)
        if w == g:
            continue
        value: str = g if g is not None else (w or "")
        _, spn, protocol, _ = chain_identity(value.split(" ", 1)[1]) if " " in value else ("",) * 4
        sign = "-" if g is None else "+" if w is None else "~"
        what = {"-": "missing", "+": "extra", "~": "changed"}[sign]
        item = f"{key} : {value}" if value else key
        if spn:
            out.append(Finding("frontend", spn, protocol, f"{what} frontend {key} in {name}",
                               f"{sign} {name} element {item}"))
        else:
            out.append(Finding("shared-chains", "", "", f"kube-proxy table: {name} element {what}",
                               f"{sign} {name} element {item}"))
    return out


def compare_tables(expected: NftTable, actual: NftTable) -> list[Finding]:
    """The differences of ``actual`` from ``expected`` (both kube-proxy's table)."""
    out: list[Finding] = []
    for name in sorted(set(expected.chains) | set(actual.chains)):
        out += _compare_chain(name, expected.chains.get(name), actual.chains.get(name))
    moved = {f.problem.split(" ", 2)[2] for f in out
             if f.kind in ("endpoint-missing", "endpoint-extra")}
    for name in sorted(set(expected.sets) | set(actual.sets)):
        for f in _compare_set(name, expected.sets.get(name), actual.sets.get(name)):
            if name == HAIRPIN and _hairpin_endpoint(f.detail) in moved:
                continue  # the hairpin entry of an endpoint already reported lost or extra
            out.append(f)
    return out


HAIRPIN = "hairpin-connections"


def _hairpin_endpoint(detail: str) -> str:
    """``ip:port`` of a hairpin-connections element (``ip . ip . proto . port``)."""
    parts = detail.split(" element ", 1)[-1].split(" . ")
    if len(parts) != 4:
        return ""
    ip, port = parts[0], parts[3]
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
