"""nft syntax for statements of the nftables model (rules read from JSON are shown this way)."""

from __future__ import annotations

from typing import Any

_BINOPS = ("&", "|", "^", "<<", ">>")
_VERDICTS = ("accept", "drop", "return", "continue")


def expr_text(e: Any) -> str:
    """An expression or value in nft's spelling."""
    if isinstance(e, bool):
        return "exists" if e else "missing"
    if isinstance(e, int):
        return str(e)
    if isinstance(e, str):
        return e
    if isinstance(e, list):
        return ",".join(expr_text(v) for v in e)
    if not isinstance(e, dict) or len(e) != 1:
        return str(e)
    (key, body), = e.items()
    if key == "payload":
        return f"{body['protocol']} {body['field']}"
    if key == "meta":
        return f"meta {body['key']}"
    if key == "ct":
        parts = ["ct", body.get("dir"), body.get("family"), body["key"]]
        return " ".join(p for p in parts if p)
    if key == "fib":
        return f"fib {' . '.join(body['flags'])} {body['result']}"
    if key == "numgen":
        off = f" offset {body['offset']}" if body.get("offset") else ""
        return f"numgen {body['mode']} mod {body['mod']}{off}"
    if key in ("jhash", "symhash"):
        of = f" {expr_text(body['expr'])}" if "expr" in body else ""
        seed = f" seed {hex(body['seed'])}" if "seed" in body else ""
        off = f" offset {body['offset']}" if body.get("offset") else ""
        return f"{key}{of} mod {body['mod']}{seed}{off}"
    if key in _BINOPS:
        return f"{expr_text(body[0])} {key} {expr_text(body[1])}"
    if key == "concat":
        return " . ".join(expr_text(v) for v in body)
    if key == "prefix":
        return f"{body['addr']}/{body['len']}"
    if key == "range":
        return f"{expr_text(body[0])}-{expr_text(body[1])}"
    if key == "set":
        return "{ " + ", ".join(_item(v) for v in body) + " }"
    if key == "map":
        return f"{expr_text(body['key'])} map {expr_text(body['data'])}"
    if key == "elem":
        return expr_text(body["val"])
    if key in _VERDICTS:
        return key
    if key in ("jump", "goto"):
        return f"{key} {body['target']}"
    return f"{key} {body}"


def _item(v: Any) -> str:
    if isinstance(v, list) and len(v) == 2:
        return f"{expr_text(v[0])} : {expr_text(v[1])}"
    return expr_text(v)


def stmt_text(s: Any) -> str:
    """One statement in nft's spelling."""
    (key, body), = s.items()
    if key == "match":
        op = body["op"]
        right = body["right"]
        right_text = "{ " + ", ".join(expr_text(v) for v in right) + " }" if (
            isinstance(right, list) and op != "in") else expr_text(right)
        sep = " " if op in ("==", "in") else f" {op} "
        return f"{expr_text(body['left'])}{sep}{right_text}"
    if key in _VERDICTS or key in ("jump", "goto"):
        return expr_text(s)
    if key == "vmap":
        return f"{expr_text(body['key'])} vmap {expr_text(body['data'])}"
    if key == "mangle":
        return f"{expr_text(body['key'])} set {expr_text(body['value'])}"
    if key == "counter":
        if isinstance(body, dict):
            return f"counter packets {body['packets']} bytes {body['bytes']}"
        return "counter" if body is None else f"counter name {body}"
    if key in ("dnat", "snat"):
        fam = f" {body['family']}" if body.get("family") else ""
        addr = expr_text(body["addr"]) if body.get("addr") is not None else ""
        port = f":{expr_text(body['port'])}" if body.get("port") is not None else ""
        flags = " " + " ".join(body["flags"]) if body.get("flags") else ""
        return f"{key}{fam} to {addr}{port}{flags}"
    if key in ("masquerade", "redirect"):
        if not body:
            return key
        port = f" to :{expr_text(body['port'])}" if body.get("port") is not None else ""
        flags = " " + " ".join(body["flags"]) if body.get("flags") else ""
        return f"{key}{port}{flags}"
    if key == "reject":
        if not body:
            return "reject"
        if body.get("type") == "tcp reset":
            return "reject with tcp reset"
        return f"reject with {body['type']} {body.get('expr', '')}".rstrip()
    if key == "set":
        return f"{body['op']} {body['set']} {{ {expr_text(body['elem'])} }}"
    if key == "notrack":
        return "notrack"
    if key == "xt":
        return f"xt {body.get('type')} \"{body.get('name')}\""
    if key == "unknown":
        return str(body)
    if key == "flow":
        return f"flow add {body['flowtable']}"
    if body is None:
        return key
    if isinstance(body, dict):
        return key + "".join(f" {k} {expr_text(v)}" for k, v in body.items())
    return f"{key} {expr_text(body)}"


def rule_text(exprs: list[Any], comment: str | None = None) -> str:
    text = " ".join(stmt_text(s) for s in exprs)
    if comment is not None:
        text += f' comment "{comment}"'
    return text
