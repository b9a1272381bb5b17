"""``nft -j list ruleset`` (libnftables JSON, schema version 1) to the nftables model."""

from __future__ import annotations

import json
from typing import Any

from netproxy.errors import ParseError
from netproxy.netfilter.model import Problem
from netproxy.netfilter.nft import (
    NftChain,
    NftElement,
    NftFlowtable,
    NftObject,
    NftRule,
    NftRuleset,
    NftSet,
)
from netproxy.netfilter.nfttext import rule_text
from netproxy.parser.nftables.values import normal

OBJECTS = frozenset({"counter", "quota", "limit", "ct helper", "ct timeout", "ct expectation",
                     "secmark", "synproxy"})


def _names(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def parse_nft_json(text: str, *, source: str = "<nft>", strict: bool = False) -> NftRuleset:
    """Parse the JSON listing printed by ``nft -j list ruleset``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ParseError(f"not valid JSON: {err.msg}", source=source, line=err.lineno,
                         column=err.colno) from None
    items = data.get("nftables") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ParseError('not an nft JSON listing (no "nftables" list)', source=source)
    ruleset = NftRuleset(source=source)
    for index, item in enumerate(items):
        try:
            _item(ruleset, item)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            message = f"nftables[{index}]: unreadable item ({type(err).__name__}: {err})"
            if strict:
                raise ParseError(message, source=source) from None
            ruleset.problems.append(Problem(0, 0, message))
    return ruleset


def _item(ruleset: NftRuleset, item: dict[str, Any]) -> None:
    (kind, body), = item.items()
    if kind == "metainfo":
        return
    if kind == "table":
        table = ruleset.table(body["family"], body["name"])
        table.handle = body.get("handle")
        table.comment = body.get("comment")
        table.flags = _names(body.get("flags"))
        return
    table = ruleset.table(body["family"], body["table"])
    if kind == "chain":
        chain = table.chains.setdefault(body["name"], NftChain(body["name"]))
        chain.handle = body.get("handle")
        chain.comment = body.get("comment")
        if "hook" in body:
            chain.type = body.get("type")
            chain.hook = body["hook"]
            chain.priority = int(body["prio"])
            chain.policy = body.get("policy")
            dev = body.get("dev")
            chain.device = ",".join(_names(dev)) if dev else None
    elif kind == "rule":
        chain = table.chains.setdefault(body["chain"], NftChain(body["chain"]))
        exprs = [normal(s) for s in body.get("expr", [])]
        chain.rules.append(NftRule(exprs, handle=body.get("handle"), comment=body.get("comment"),
                                   text=rule_text(exprs, body.get("comment"))))
    elif kind in ("set", "map"):
        nset = NftSet(body["name"], kind, type=_names(body.get("type")),
                      map_type=" . ".join(_names(body.get("map"))) or None,
                      flags=tuple(sorted(_names(body.get("flags")))),
                      timeout=body.get("timeout"), size=body.get("size"),
                      policy=body.get("policy"), comment=body.get("comment"),
                      handle=body.get("handle"))
        nset.elements = [_element(e, kind == "map") for e in body.get("elem", [])]
        table.sets[nset.name] = nset
    elif kind == "element":
        found = table.sets[body["name"]]
        found.elements.extend(_element(e, found.kind == "map") for e in body.get("elem", []))
    elif kind == "flowtable":
        table.flowtables[body["name"]] = NftFlowtable(
            body["name"], body.get("hook"), body.get("prio"), _names(body.get("dev")),
            body.get("handle"))
    elif kind in OBJECTS:
        values = {k: v for k, v in body.items()
                  if k not in ("family", "table", "name", "handle")}
        table.objects.append(NftObject(kind, body["name"], values, body.get("handle")))
    else:
        raise ValueError(f"unknown object {kind!r}")


def _element(item: Any, is_map: bool) -> NftElement:
    key, value = (item[0], item[1]) if is_map else (item, None)
    elem = NftElement(None, normal(value))
    if isinstance(key, dict) and "elem" in key:
        props = key["elem"]
        key = props["val"]
        elem.comment = props.get("comment")
        elem.timeout = props.get("timeout")
        elem.expires = props.get("expires")
    elem.key = normal(key)
    return elem
