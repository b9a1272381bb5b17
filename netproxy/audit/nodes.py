"""The fleet's node inputs: which files, which node each one is, and what kind of rules it holds.

``--nodes`` is a directory (every file in it), a glob pattern, or an fsspec URL or URL glob
(``s3://bucket/dumps/*.rules``; needs the ``fsspec`` package and its driver). A node is named
after its file (``node-7.rules`` -> ``node-7``); a node snapshot names its node itself.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from netproxy.errors import InputError

SUFFIXES = (".rules", ".save", ".iptables", ".dump", ".txt", ".nft", ".snap", ".snapshot")


@dataclass(frozen=True, slots=True)
class NodeInput:
    name: str
    path: str
    """A local path (absolute) or an fsspec URL, as the workers will open it."""
    shown: str = ""
    """The path as the user named it (for reports)."""


def is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def node_name(path: str) -> str:
    base = path.rstrip("/").rsplit("/", 1)[-1]
    for suffix in SUFFIXES:
        if base.endswith(suffix) and len(base) > len(suffix):
            return base[: -len(suffix)]
    return base


def _url_files(spec: str) -> list[str]:
    try:
        import fsspec
    except ImportError:
        raise InputError("reading node files from URLs needs the fsspec package "
                         "(pip install 'netproxy[dask]')", where=spec) from None
    fs, _, paths = fsspec.get_fs_token_paths(spec)
    if not any(ch in spec for ch in "*?[") and fs.isdir(paths[0]):
        paths = [p for p in fs.ls(paths[0], detail=False) if fs.isfile(p)]
    return sorted(p if "://" in p else fs.unstrip_protocol(p) for p in paths)


def find_nodes(specs: tuple[str, ...]) -> list[NodeInput]:
    """Every node input named by ``--nodes`` (sorted by node name; names must be unique)."""
    files: list[str] = []
    for spec in specs:
        if is_url(spec):
            files += _url_files(spec)
            continue
        if spec.startswith("file://"):
            spec = spec[len("file://"):]
        path = Path(spec)
        if path.is_dir():
            found = sorted(str(p) for p in path.iterdir()
                           if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            found = [spec]
        else:
            found = sorted(p for p in glob.glob(spec) if os.path.isfile(p))
            if not found:
                raise InputError("no node files match (give a directory, a file or a glob)",
                                 where=spec)
        files += found
    if not files:
        raise InputError("no node files found", where=" ".join(specs) or "--nodes")
    seen: dict[str, str] = {}
    out: list[NodeInput] = []
    for f in files:
        name = node_name(f)
        if name in seen:
            raise InputError(f"two files for node {name!r}: {seen[name]} and {f}", where="--nodes")
        seen[name] = f
        out.append(NodeInput(name, f if is_url(f) else os.path.abspath(f), f))
    return sorted(out, key=lambda n: n.name)


def read_node_text(path: str) -> str:
    """The file's text (``OSError`` / ``UnicodeError`` when it cannot be read)."""
    if is_url(path):
        import fsspec

        with fsspec.open(path, "rt", encoding="utf-8", errors="surrogateescape") as handle:
            text: str = handle.read()
            return text
    with open(path, encoding="utf-8", errors="surrogateescape") as handle:
        return handle.read()


@dataclass(slots=True)
class NodeText:
    """What a node file holds: the kind of rules, the text, the node's name."""

    kind: str
    """``iptables``, ``nftables``, ``snapshot`` or ``unknown``."""
    text: str
    name: str
    what: str = ""
    """For ``unknown``: what the file looks like instead (``Kubernetes objects``, ...)."""


def classify(text: str, name: str) -> NodeText:
    """Tell an ``iptables-save`` dump, an nftables listing and a node snapshot apart (by the
    head of the file, with :mod:`netproxy.inputs.sniff`)."""
    from netproxy.inputs import sniff

    found = sniff.sniff_text(text)
    if found.kind in sniff.RULES:
        return NodeText("iptables", text, name)
    if found.kind in (sniff.NFT_TEXT, sniff.NFT_JSON):
        return NodeText("nftables", text, name)
    if found.kind == sniff.SNAPSHOT:
        return NodeText("snapshot", text, name)
    return NodeText("unknown", text, name, sniff.DESCRIPTIONS.get(found.kind, found.kind))
