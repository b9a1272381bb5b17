"""Which command or flag takes a file of each kind, and the error for a file given to the
wrong one ("this looks like an iptables-save dump, not Kubernetes objects: give it with
--rules: netproxy trace --rules node.rules ...")."""

from __future__ import annotations

import shlex

from netproxy.errors import InputError
from netproxy.inputs import sniff as k
from netproxy.inputs.sniff import Sniffed

EXPECTED = {
    "rules": "an iptables-save dump or iptables-restore payload",
    "cluster": "Kubernetes objects (YAML or JSON)",
    "config": "a KubeProxyConfiguration",
    "pcap": "a packet capture (pcap or pcapng)",
    "ipsets": "'ipset save' output",
    "packets": "a packets file",
}
"""What each role a file can play in a command expects, for messages."""

ACCEPTED = {
    "rules": k.RULES,
    "cluster": (k.KUBERNETES, k.KUBE_PROXY_CONFIG, k.TEXT, k.EMPTY, k.DIRECTORY),
    "config": (k.KUBE_PROXY_CONFIG, k.TEXT, k.EMPTY),
    "pcap": (k.PCAP,),
    "ipsets": (k.IPSET, k.TEXT, k.EMPTY),
    "packets": (k.PACKETS, k.TEXT, k.EMPTY),
}
"""The kinds each role reads; for the text-based roles unrecognised text goes on to the
reader, whose own errors name the line."""


class WrongInput(InputError):
    """A file of one kind given where another is read."""

    def __init__(self, message: str, *, where: str, found: Sniffed) -> None:
        self.found = found
        super().__init__(message, where=where)


def _q(name: str) -> str:
    return shlex.quote(name)


def hint(kind: str, command: str, name: str) -> str:
    """What to type to give file ``name`` of ``kind`` to netproxy, seen from ``command``."""
    f = _q(name)
    if kind in k.RULES:
        return {
            "trace": f"give it with --rules: netproxy trace --rules {f} --dst ...",
            "doctor": f"give it with --rules: netproxy doctor --rules {f}",
            "apply": f"give it with --rules: netproxy apply --netns NAME --rules {f}",
            "compile": ("compile reads cluster objects; a node's current rules go to "
                        f"--existing-rules {f}, or trace them: netproxy trace --rules {f} --dst ..."),
            "lab": f"the lab is built from cluster objects; trace a dump with netproxy trace --rules {f}",
            "diff": (f"compare two dumps with netproxy diff OLD NEW, or a dump with cluster "
                     f"objects with netproxy diff --expected CLUSTER... {f}"),
        }.get(command, f"trace it with netproxy trace --rules {f}, check it with netproxy doctor --rules {f}")
    if kind == k.KUBERNETES:
        return {
            "trace": f"cluster objects are INPUTS, without --rules: netproxy trace {f} --dst ...",
            "doctor": (f"doctor checks a dump; objects to compare it with are INPUTS: "
                       f"netproxy doctor --rules DUMP {f}"),
            "diff": (f"to compare a node's dump with what these objects should give: "
                     f"netproxy diff --expected {f} DUMP"),
            "apply": f"cluster objects are INPUTS, without --rules: netproxy apply --netns NAME {f}",
        }.get(command, f"give them as INPUTS: netproxy compile {f}")
    if kind == k.KUBE_PROXY_CONFIG:
        return f"give it with --config {f} (or among the cluster INPUTS)"
    if kind == k.PCAP:
        return f"trace the packets of a capture with netproxy trace --rules DUMP --pcap {f}"
    if kind == k.IPSET:
        return f"give it to trace with --ipsets {f}"
    if kind == k.PACKETS:
        return f"give it to trace with --packets {f}"
    if kind == k.IPTABLES_S:
        return "netproxy reads iptables-save output: run iptables-save (not iptables -S) on the node"
    if kind in (k.NFT_TEXT, k.NFT_JSON):
        return (f"netproxy {command} reads iptables rulesets: on the node run iptables-save, which "
                "also shows the rules iptables-nft keeps in nftables; netproxy trace reads nft "
                f"listings: netproxy trace --rules {f} --dst ...")
    if kind == k.SNAPSHOT:
        return {
            "trace": f"a node snapshot goes to --rules or --snapshot: netproxy trace --rules {f} --dst ...",
            "doctor": f"give it with --rules: netproxy doctor --rules {f}",
            "diff": f"give it as OLD or NEW: netproxy diff OLD {f}",
        }.get(command, f"trace it with netproxy trace --rules {f}, check it with netproxy doctor --rules {f}")
    if kind == k.COMPRESSED:
        return f"decompress it first (e.g. zcat {f} > node.rules)"
    if kind == k.BINARY:
        return "this is not a text file"
    if kind == k.EMPTY:
        return "the file holds nothing to read"
    if kind == k.DIRECTORY:
        return "give a file"
    return ""


def refuse(found: Sniffed, *, where: str, role: str, command: str) -> WrongInput:
    """The error for ``found`` given where ``role`` is read by ``command``."""
    expected = EXPECTED[role]
    if role == "rules" and command == "trace":
        expected = "an iptables-save dump, iptables-restore payload or nft listing"
    if found.kind == k.TEXT:
        quoted = f": {found.detail!r}" if found.detail else ""
        message = f"not {expected}{quoted}"
        if role == "rules":
            message += " (expected '*filter', '*nat', ... table lines as iptables-save prints them)"
        return WrongInput(message, where=f"{where}:{found.line}" if found.line else where, found=found)
    if found.kind == k.EMPTY:
        return WrongInput(f"empty file, expected {expected}", where=where, found=found)
    advice = hint(found.kind, command, where)
    message = f"this looks like {found.description}, not {expected}"
    return WrongInput(f"{message}: {advice}" if advice else message, where=where, found=found)
