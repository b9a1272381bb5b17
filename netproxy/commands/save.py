"""``netproxy save``: read a namespace's rules back, so diff and trace can use them."""

from __future__ import annotations

from typing import Any

import click

from netproxy.backend import select
from netproxy.fileio import write_atomic

IPTABLES_CHOICE = click.Choice(["auto", "legacy", "nft"])


def netns_options(func: Any) -> Any:
    """``--netns``, ``--iptables``, ``--backend`` and ``--allow-host-netns``."""
    func = click.option("--allow-host-netns", is_flag=True,
                        help="Allow changing the host's own namespace (never needed for the lab).")(func)
    func = click.option("--backend", "backend_name", type=click.Choice(select.BACKENDS), default="restore",
                        show_default=True,
                        help="restore: iptables-restore/-save; iptc: python-iptables (legacy only).")(func)
    func = click.option("--iptables", "variant", type=IPTABLES_CHOICE, default="auto", show_default=True,
                        help="iptables variant; auto is the host's plain 'iptables'.")(func)
    func = click.option("--netns", "netns_name", required=True, metavar="NAME",
                        help="Network namespace (as in 'ip netns list').")(func)
    return func


@click.command("save")
@netns_options
@click.option("--ipv6", is_flag=True, help="Read the IPv6 rules (ip6tables).")
@click.option("-c", "--counters", is_flag=True, help="Include packet and byte counters.")
@click.option("-o", "--output", metavar="FILE", help="Write here instead of stdout.")
def command(netns_name: str, variant: str, backend_name: str, allow_host_netns: bool,
            ipv6: bool, counters: bool, output: str | None) -> None:
    """Print the rules of namespace NAME the way iptables-save does. With --counters the
    packet counters show which rules traffic actually hit."""
    backend = select.open_backend(netns_name, variant=variant, backend=backend_name,
                                  family="ipv6" if ipv6 else "ipv4", allow_host=True)
    text = backend.read(counters=counters)
    if output:
        write_atomic(output, text)
    else:
        click.echo(text, nl=False)
