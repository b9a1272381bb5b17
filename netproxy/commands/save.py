"""``netproxy save``: read a namespace's rules back, so diff and trace can use them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import click

from netproxy.backend import select

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


def write_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and rename (never half-written)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or Path("."))
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
