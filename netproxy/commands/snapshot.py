"""``netproxy snapshot``: everything a trace needs from a node, in one text file."""

from __future__ import annotations

import click

from netproxy.fileio import write_atomic


@click.command("snapshot")
@click.option("--netns", "netns_name", metavar="NAME",
              help="Collect inside this network namespace instead of the host.")
@click.option("-o", "--output", metavar="FILE", help="Write here (atomically) instead of stdout.")
def command(netns_name: str | None, output: str | None) -> None:
    """Record a node's rules (iptables legacy and nft, nft, ipset), addresses, routes of all
    tables, policy rules, links, sysctls, hostname and tool versions in one greppable file
    (docs/snapshot.md). Read-only; missing tools are noted in the file, not fatal.

    Use the file wherever a dump is read: `netproxy trace --rules node.snap ...`,
    `netproxy diff`, `netproxy doctor --rules`. On a node without netproxy,
    scripts/node-snapshot.sh writes the same format.
    """
    from netproxy.node.collect import collect

    text = collect(netns_name)
    if output:
        write_atomic(output, text)
    else:
        click.echo(text, nl=False)
