"""``netproxy save``: read a namespace's rules back, so diff and trace can use them."""

from __future__ import annotations

from typing import Any

import click

from netproxy.backend import select
from netproxy.errors import InputError
from netproxy.fileio import write_atomic
from netproxy.progress import progress

IPTABLES_CHOICE = click.Choice(["auto", "legacy", "nft"])


def netns_options(func: Any, *, reads_only: bool = False) -> Any:
    """``--netns``, ``--iptables``, ``--backend`` and ``--allow-host-netns``; ``reads_only``
    for a command that never changes the namespace (its help says so)."""
    allow_help = ("No effect here: save only reads, and reading the host's own namespace is "
                  "always allowed (apply needs it to change the host's rules)." if reads_only else
                  "Allow changing the host's own namespace (never needed for the lab).")
    func = click.option("--allow-host-netns", is_flag=True, help=allow_help)(func)
    func = click.option("--backend", "backend_name", type=click.Choice(select.BACKENDS), default="restore",
                        show_default=True,
                        help="restore: iptables-restore/-save; iptc: python-iptables (legacy only).")(func)
    func = click.option("--iptables", "variant", type=IPTABLES_CHOICE, default="auto", show_default=True,
                        help="iptables variant; auto is the host's plain 'iptables'.")(func)
    func = click.option("--netns", "netns_name", required=True, metavar="NAME",
                        help="Network namespace (as in 'ip netns list').")(func)
    return func


@click.command("save")
@lambda f: netns_options(f, reads_only=True)
@click.option("--family", type=click.Choice(["ipv4", "ipv6"]), default=None,
              help="Which rules to read: ipv4 (iptables-save, the default) or ipv6 (ip6tables-save).")
@click.option("--ipv6", is_flag=True, hidden=True, help="The same as --family ipv6.")
@click.option("-c", "--counters", is_flag=True, help="Include packet and byte counters.")
@click.option("-o", "--output", metavar="FILE", help="Write here instead of stdout.")
@click.option("--proxy-mode", "proxy_mode", type=click.Choice(["iptables", "nftables"]),
              default="iptables", show_default=True,
              help="nftables: read kube-proxy's nftables tables back, as a node snapshot "
                   "(docs/snapshot.md) or, with --format nft, as nft list table prints them.")
@click.option("--format", "fmt", type=click.Choice(["snapshot", "nft"]), default=None,
              help="nftables mode: snapshot (the default: the namespace's node snapshot, with "
                   "nft list ruleset, addresses, routes) or nft (nft list table ip/ip6 "
                   "kube-proxy; both present unless --family says which).")
def command(netns_name: str, variant: str, backend_name: str, allow_host_netns: bool,
            family: str | None, ipv6: bool, counters: bool, output: str | None,
            proxy_mode: str, fmt: str | None) -> None:
    """Print the rules of namespace NAME the way iptables-save does. With --counters the
    packet counters show which rules traffic actually hit. Only reads."""
    if ipv6 and family == "ipv4":
        raise InputError("--ipv6 and --family ipv4 contradict each other", where="--family")
    if proxy_mode == "nftables":
        _save_nftables(netns_name, "ipv6" if ipv6 else family, counters, output, fmt or "snapshot")
        return
    if fmt is not None:
        raise InputError("only in nftables mode (add --proxy-mode nftables)", where="--format")
    family = "ipv6" if ipv6 else family or "ipv4"
    backend = select.open_backend(netns_name, variant=variant, backend=backend_name,
                                  family=family, allow_host=True)
    with progress(f"reading the rules of netns {netns_name}"):
        text = backend.read(counters=counters)
    if output:
        write_atomic(output, text)
    else:
        click.echo(text, nl=False)


def _save_nftables(netns_name: str, family: str | None, counters: bool, output: str | None,
                   fmt: str) -> None:
    """kube-proxy's tables read back: in a node snapshot (what trace, diff --behaviour,
    migrate's companion form and doctor read, with the namespace's addresses and routes), or
    as ``nft list table`` prints them (what compile --existing-rules reads too)."""
    from netproxy.backend import netns
    from netproxy.backend.nftables import TABLE, read_table
    from netproxy.errors import BackendError
    from netproxy.netfilter.nft import NFT_FAMILY

    if counters:
        raise InputError("nftables mode: kube-proxy's table has no rule counters (its "
                         "localhost-nodeport-rejected-* counters are in the listing)",
                         where="--counters")
    if fmt == "snapshot" and family is not None:
        raise InputError("a snapshot holds both families; --family picks one table with "
                         "--format nft", where="--family")
    netns.require(netns_name, allow_host=True)
    families = [family] if family else ["ipv4", "ipv6"]
    with progress(f"reading the nftables tables of netns {netns_name}"):
        if fmt == "snapshot":
            from netproxy.node.collect import collect
            from netproxy.node.snapshot import parse_snapshot

            text = collect(netns_name)
            listing = parse_snapshot(text, f"netns {netns_name}").nft_ruleset or ""
            found = any(f"table {NFT_FAMILY[f]} {TABLE} {{" in listing for f in families)
        else:
            text = "".join(t for t in (read_table(netns_name, f) for f in families) if t)
            found = bool(text)
    if not found:
        which = " or ".join(f"table {NFT_FAMILY[f]} {TABLE}" for f in families)
        raise BackendError(f"no {which} (apply --proxy-mode nftables loads one)",
                           where=f"netns {netns_name}")
    if output:
        write_atomic(output, text)
    else:
        click.echo(text, nl=False)
