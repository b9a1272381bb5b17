"""``netproxy compile``: Services and EndpointSlices in, kube-proxy's exact rules out."""

from __future__ import annotations

import gc
import sys
from typing import TYPE_CHECKING, Any

import click

from netproxy.commands.cluster_options import (
    cluster_options,
    load_cluster,
    proxy_mode,
    settings_for,
)
from netproxy.commands.nftables_options import NftFlags, nft_options, nftables_text
from netproxy.compiler.saveview import save_view
from netproxy.errors import InputError
from netproxy.fileio import write_atomic
from netproxy.gcpause import paused_gc
from netproxy.progress import Progress, progress
from netproxy.render import render_save
from netproxy.textsafe import digits

if TYPE_CHECKING:
    from netproxy.k8s.loader import Cluster

LEAVE_TO_OS_BYTES = 2_000_000
"""From this much output on (some 20,000 rules), the objects behind it are left for the
process exit."""


def _leave_to_the_os(*objects: object) -> None:
    """Keep ``objects`` until the process exits instead of freeing them one by one.

    ``netproxy compile`` ends right after writing its output. Freeing a big compiled cluster
    object by object takes about a quarter of a second for 10,000 services (the loaded
    cluster alone 0.06 s), for memory the OS takes back at once. A holder that references
    itself, moved to the collector's frozen generation, is never collected, so neither the
    command's return nor the interpreter's shutdown walks those objects.
    """
    holder: list[object] = [*objects]
    holder.append(holder)
    gc.freeze()


def _version(text: str) -> tuple[int, ...]:
    parts = text.split(".")
    if not 1 <= len(parts) <= 3 or not all(digits(p) for p in parts):
        raise click.BadParameter(f"{text!r} is not a version like 1.8.9")
    return tuple(int(p) for p in parts)


@click.command("compile")
@cluster_options
@click.option("--proxy-mode", "proxy_mode", type=click.Choice(["iptables", "nftables"]),
              default=None, help="kube-proxy's mode (default: the configuration's, else iptables).")
@click.option("--format", "fmt", type=click.Choice(["save", "restore", "list", "transaction"]),
              default=None,
              help="iptables mode: save (default; what iptables-save shows) or restore (kube-proxy's "
                   "payload); nftables mode: list (default; what nft list table shows) or "
                   "transaction (kube-proxy's nft -f input).")
@click.option("-o", "--output", metavar="FILE", help="Write to FILE (atomically) instead of stdout.")
@click.option("--existing-rules", metavar="DUMP",
              help="The node's current iptables-save output (nftables mode: nft list table/ruleset): "
                   "what kube-proxy's sync removes or keeps of it, as kube-proxy does.")
@click.option("--strict", is_flag=True,
              help="Fields the API does not have (typos such as sesionAffinity) are errors, "
                   "not warnings.")
@click.option("--iptables-version", "iptables_version", metavar="X.Y.Z", default="1.8.9",
              show_default=True, callback=lambda _c, _p, v: _version(v),
              help="iptables release whose iptables-save spelling the save view uses.")
@nft_options
def command(fmt: str | None, output: str | None, existing_rules: str | None,
            iptables_version: tuple[int, ...], **params: Any) -> None:
    """Compile Services and EndpointSlices into kube-proxy's iptables rules (or, with
    --proxy-mode nftables, its nftables table).

    INPUTS are YAML or JSON files, directories, or - for stdin (kubectl get -o yaml output,
    multi-document files, List objects). Flags use kube-proxy's names.
    """
    with progress("compile: reading the cluster objects") as bar:
        _compile(bar, fmt, output, existing_rules, iptables_version, params)


def _compile(bar: Progress, fmt: str | None, output: str | None, existing_rules: str | None,
             iptables_version: tuple[int, ...], params: dict[str, Any]) -> None:
    nft = NftFlags.pop(params)
    with paused_gc(freeze=True):
        cluster = load_cluster(params)
    ports = sum(len(s.ports) for s in cluster.services)  # an upper bound: headless ones write none
    bar.stage(f"compile: writing the rules of {len(cluster.services):,} Services, service ports",
              total=ports)
    if proxy_mode(params, cluster) == "nftables":
        if fmt not in (None, "list", "transaction"):
            raise InputError(f"--format {fmt} is an iptables-mode format; nftables mode writes "
                             "list (default) or transaction", where="--format")
        _write([nftables_text(params, cluster, fmt or "list", nft, existing_rules,
                              on_port=bar.update)], output)
        return
    if fmt not in (None, "save", "restore"):
        raise InputError(f"--format {fmt} is an nftables-mode format (add --proxy-mode nftables); "
                         "iptables mode writes save (default) or restore", where="--format")
    nft.refuse_in_iptables_mode()
    existing: tuple[str, ...] = ()
    if existing_rules:
        from netproxy.inputs.read import read_ruleset  # only for --existing-rules

        dump = read_ruleset(existing_rules, command="compile", family=params.get("family") or "ipv4")
        nat = dump.tables.get("nat")
        existing = tuple(nat.chains) if nat is not None else ()
    if fmt == "restore":
        pieces = _restore_pieces(params, cluster, existing, bar)
    else:
        pieces = [_save_text(params, cluster, existing, iptables_version, bar)]
    _write(pieces, output)


def _write(pieces: list[str], output: str | None) -> None:
    if output:
        write_atomic(output, pieces)
    else:
        sys.stdout.writelines(pieces)


def _restore_pieces(params: dict[str, Any], cluster: Cluster,
                    existing: tuple[str, ...], bar: Progress) -> list[str]:
    """kube-proxy's payload, written as text without the rule model (in pieces)."""
    from netproxy.compiler import compile_restore_pieces, proxy_model

    with paused_gc(freeze=True):
        settings = settings_for(params, cluster)
        model = proxy_model(cluster, settings)
        pieces = compile_restore_pieces(model, settings, existing, bar.update)
    if sum(map(len, pieces)) >= LEAVE_TO_OS_BYTES:
        _leave_to_the_os(cluster, model)
    return pieces


def _save_text(params: dict[str, Any], cluster: Cluster, existing: tuple[str, ...],
               iptables_version: tuple[int, ...], bar: Progress) -> str:
    from netproxy.compiler import compile_cluster

    with paused_gc(freeze=True):
        compiled = compile_cluster(cluster, settings_for(params, cluster), existing, bar.update)
        bar.stage("compile: formatting the iptables-save view")
        # the view unsorted: render_save sorts, and formats faster in build order
        view = save_view(compiled.payload, sort_chains=False)
        text = render_save(view, iptables_version=iptables_version)
    if len(text) >= LEAVE_TO_OS_BYTES:
        _leave_to_the_os(cluster, compiled, view)
    return text
