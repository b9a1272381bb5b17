"""``nft list table`` of a :class:`~netproxy.compiler.nftables.table.Table`, as nft 1.0.6
prints it.

What nft does to the written text, reproduced here: counters, then sets and maps, then
chains, each in creation order, blocks separated by a blank line; base-chain priorities by
name where nft has one for the hook; timeouts as ``3h``/``10m``; set elements sorted the way
nft sorts them before printing (single values by value; concatenations by their key bytes
read as one little-endian number) and wrapped (two IPv4 addresses per line, one element per
line otherwise); anonymous interval sets merged (see :func:`interval_set`).
"""

from __future__ import annotations

import ipaddress
import socket

from netproxy.compiler.nftables.table import Chain, Container, Table, go_quote

PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132}

_PRIORITY_NAMES = {
    ("prerouting", -110): "dstnat - 10",
    ("prerouting", -100): "dstnat",
    ("postrouting", 100): "srcnat",
}
"""nft 1.0.6 names priorities by hook: ``dstnat`` only on prerouting, ``srcnat`` only on
postrouting (later nft releases also name ``dstnat`` on the output hook)."""

WRAP = ",\n\t\t\t     "


def priority_text(hook: str, priority: int) -> str:
    if priority == 0:
        return "filter"
    return _PRIORITY_NAMES.get((hook, priority), str(priority))


def timeout_text(seconds: int) -> str:
    """nft's duration: ``3h``, ``10m``, ``1h30m30s``, ``1d``."""
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            out += f"{count}{unit}"
    return out or "0s"


def _field_bytes(kind: str, text: str) -> bytes:
    if kind == "ipv4_addr":
        return socket.inet_pton(socket.AF_INET, text)
    if kind == "ipv6_addr":
        return socket.inet_pton(socket.AF_INET6, text)
    if kind == "inet_proto":
        return bytes((PROTOCOL_NUMBERS[text],))
    if kind == "inet_service":
        return int(text).to_bytes(2, "big")
    raise ValueError(f"no sort order for {kind}")


def element_order(container: Container) -> list[str]:
    """The container's keys in the order nft prints them."""
    kinds = container.type.split(" : ")[0].split(" . ")
    keys = list(container.elements)
    if len(kinds) == 1:
        kind = kinds[0]
        return sorted(keys, key=lambda k: _field_bytes(kind, k))

    def concat_key(key: str) -> bytes:
        data = b"".join(_field_bytes(kind, part)
                        for kind, part in zip(kinds, key.split(" . "), strict=True))
        return data[::-1]  # one little-endian number: the last byte weighs most

    return sorted(keys, key=concat_key)


def _elements_line(container: Container) -> str:
    parts = []
    for key in element_order(container):
        value, comment = container.elements[key]
        text = key
        if comment:
            text += f" comment {go_quote(comment)}"
        if value:
            text += f" : {value}"
        parts.append(text)
    if container.type == "ipv4_addr":  # nft puts two addresses on a line
        text = ""
        for i, part in enumerate(parts):
            text += part if i == 0 else (WRAP if i % 2 == 0 else ", ") + part
    else:
        text = WRAP.join(parts)
    return f"\t\telements = {{ {text} }}"


def _container_block(container: Container) -> list[str]:
    if container.kind == "counter":
        return [f"\tcounter {container.name} {{", "\t\tpackets 0 bytes 0", "\t}"]
    lines = [f"\t{container.kind} {container.name} {{", f"\t\ttype {container.type}"]
    if "dynamic" in container.flags.split(","):
        lines.append("\t\tsize 65535")
    if container.flags:
        lines.append(f"\t\tflags {container.flags}")
    if container.timeout:
        lines.append(f"\t\ttimeout {timeout_text(container.timeout)}")
    if container.comment:
        lines.append(f"\t\tcomment {go_quote(container.comment)}")
    if container.elements:
        lines.append(_elements_line(container))
    lines.append("\t}")
    return lines


def _chain_block(chain: Chain) -> list[str]:
    lines = [f"\tchain {chain.name} {{"]
    if chain.hook:
        lines.append(f"\t\ttype {chain.type} hook {chain.hook} priority "
                     f"{priority_text(chain.hook, chain.priority)}; policy accept;")
    if chain.comment:
        lines.append(f"\t\tcomment {go_quote(chain.comment)}")
    lines.extend(f"\t\t{rule}" for rule in chain.rules)
    lines.append("\t}")
    return lines


def list_table(table: Table) -> str:
    """What ``nft list table <family> kube-proxy`` prints after the transaction."""
    blocks: list[list[str]] = []
    containers = list(table.containers.values())
    blocks.extend(_container_block(c) for c in containers if c.kind == "counter")
    blocks.extend(_container_block(c) for c in containers if c.kind != "counter")
    blocks.extend(_chain_block(c) for c in table.chains.values())
    out = [f"table {table.prefix} {{"]
    if table.comment:
        out.append(f"\tcomment {go_quote(table.comment)}")
    for i, block in enumerate(blocks):
        if i:
            out.append("")
        out.extend(block)
    out.append("}")
    return "\n".join(out) + "\n"


def interval_set(cidrs: list[str]) -> str:
    """An anonymous set of CIDRs as nft lists it: one written element prints bare; several
    print in braces, merged (overlapping and adjacent ranges join) and sorted, each range as
    a prefix where it is one (``/32``/``/128`` as the bare address), else ``first-last``."""
    if len(cidrs) == 1:
        return _bare(ipaddress.ip_network(cidrs[0]))
    nets = sorted((ipaddress.ip_network(c) for c in cidrs), key=lambda n: int(n.network_address))
    ranges: list[list[int]] = []
    for net in nets:
        first, last = int(net.network_address), int(net.broadcast_address)
        if ranges and first <= ranges[-1][1] + 1:
            ranges[-1][1] = max(ranges[-1][1], last)
        else:
            ranges.append([first, last])
    bits = nets[0].max_prefixlen
    parts = []
    for first, last in ranges:
        size = last - first + 1
        prefix = bits - size.bit_length() + 1
        if size & (size - 1) == 0 and first % size == 0:  # one prefix
            parts.append(_bare(ipaddress.ip_network((first, prefix)) if bits == 32
                               else ipaddress.IPv6Network((first, prefix))))
        else:
            low, high = ipaddress.ip_address(first), ipaddress.ip_address(last)
            if bits == 128:
                low, high = ipaddress.IPv6Address(first), ipaddress.IPv6Address(last)
            parts.append(f"{low}-{high}")
    return "{ " + ", ".join(parts) + " }"


def _bare(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)
