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
              help="nftables: print kube-proxy's nftables tables (nft list table ip/ip6 "
                   "kube-proxy; both present unless --family says which).")
def command(netns_name: str, variant: str, backend_name: str, allow_host_netns: bool,
            family: str | None, ipv6: bool, counters: bool, output: str | None,
            proxy_mode: str) -> None:
    """Print the rules of namespace NAME the way iptables-save does. With --counters the
    packet counters show which rules traffic actually hit. Only reads."""
    if ipv6 and family == "ipv4":
        raise InputError("--ipv6 and --family ipv4 contradict each other", where="--family")
    if proxy_mode == "nftables":
        _save_nftables(netns_name, "ipv6" if ipv6 else family, counters, output)
        return
    family = "ipv6" if ipv6 else family or "ipv4"
    backend = select.open_backend(netns_name, variant=variant, backend=backend_name,
                                  family=family, allow_host=True)
    with progress(f"reading the rules of netns {netns_name}"):
        text = backend.read(counters=counters)
    if output:
        write_atomic(output, text)
    else:
        click.echo(text, nl=False)


def _save_nftables(netns_name: str, family: str | None, counters: bool, output: str | None) -> None:
    """kube-proxy's tables as ``nft list table`` prints them: what trace, diff, migrate and
    compile --existing-rules read (``netproxy snapshot --netns`` records them with the rest)."""
    from netproxy.backend import netns
    from netproxy.backend.nftables import NFT_FAMILY, read_table
    from netproxy.errors import BackendError

    if counters:
        raise InputError("nftables mode: kube-proxy's table has no rule counters (its "
                         "localhost-nodeport-rejected-* counters are in the listing)",
                         where="--counters")
    netns.require(netns_name, allow_host=True)
    families = [family] if family else ["ipv4", "ipv6"]
    texts = [t for t in (read_table(netns_name, f) for f in families) if t is not None]
    if not texts:
        which = " or ".join(f"table {NFT_FAMILY[f]} kube-proxy" for f in families)
        raise BackendError(f"no {which} (apply --proxy-mode nftables loads one)",
                           where=f"netns {netns_name}")
    text = "".join(texts)
    if output:
        write_atomic(output, text)
    else:
        click.echo(text, nl=False)
