"""``netproxy apply``: load rules into a network namespace the way kube-proxy does."""

from __future__ import annotations

import json
from typing import Any

import click

from netproxy.backend import select
from netproxy.backend.desired import desired_state
from netproxy.backend.engine import apply_state, cleanup, current_state
from netproxy.backend.owned import owned_chain
from netproxy.backend.plan import make_plan
from netproxy.commands.cluster_options import build_ruleset, cluster_options
from netproxy.commands.nftables_options import NftFlags, nft_options
from netproxy.commands.save import netns_options
from netproxy.errors import InputError
from netproxy.netfilter.model import Chain, Rule, Ruleset
from netproxy.netfilter.nft import NFT_FAMILY
from netproxy.progress import progress


def load_ruleset(params: dict[str, Any], rules_file: str | None) -> Ruleset:
    """The ruleset to apply: ``--rules FILE`` or compiled from the cluster inputs."""
    from netproxy.inputs.read import read_ruleset, split_rules_input

    rules_file, params["inputs"] = split_rules_input(tuple(params.get("inputs") or ()), rules_file,
                                                     "apply")
    if rules_file is not None:
        if params.get("inputs"):
            raise InputError("give either --rules FILE or cluster INPUTS, not both")
        return read_ruleset(rules_file, command="apply", strict=True)
    if not params.get("inputs"):
        raise InputError("nothing to apply: give cluster INPUTS or --rules FILE (or --cleanup)")
    return build_ruleset(params)


@click.command("apply")
@netns_options
@click.option("--rules", "rules_file", metavar="FILE",
              help="Apply this iptables-save/-restore file instead of compiling ('-' = stdin); "
                   "nftables mode: an nft -f file (transaction or listing) for table ip/ip6 "
                   "kube-proxy only.")
@click.option("--full", is_flag=True, help="Rewrite every owned chain, not only the changed ones.")
@click.option("--reread", is_flag=True,
              help="Read the namespace's rules (nftables: table) even if the record of the "
                   "last apply is still valid.")
@click.option("--dry-run", is_flag=True, help="Show the semantic diff and the plan; change nothing.")
@click.option("--cleanup", "do_cleanup", is_flag=True,
              help="Remove every KUBE-* chain and the built-in jumps to them.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--proxy-mode", "proxy_mode", type=click.Choice(["iptables", "nftables"]),
              default=None, help="kube-proxy's mode (default: the configuration's, else iptables); "
                                 "nftables: load table ip/ip6 kube-proxy with nft -f.")
@cluster_options
@nft_options
def command(netns_name: str, variant: str, backend_name: str, allow_host_netns: bool,
            rules_file: str | None, full: bool, reread: bool, dry_run: bool, do_cleanup: bool, as_json: bool,
            **params: Any) -> None:
    """Load rules into namespace NAME with iptables-restore --noflush, touching only the
    chains kube-proxy owns (KUBE-*) and the jumps to them; other software's rules survive.
    Only the chains that differ are sent; the result equals a full apply.

    With --proxy-mode nftables: kube-proxy's nftables table(s) loaded atomically with nft -f,
    only what changed (elements, changed chains), other tables untouched.
    """
    flags = NftFlags.pop(params)
    if _nftables_mode(params, do_cleanup, rules_file):
        _apply_nftables(netns_name, allow_host_netns, rules_file, full, dry_run, do_cleanup,
                        as_json, params, flags, backend_name, reread)
        return
    flags.refuse_in_iptables_mode()
    if params.get("family") == "dual":
        raise InputError("both families at once only in nftables mode (--proxy-mode nftables)",
                         where="--family")
    ruleset = None if do_cleanup else load_ruleset(params, rules_file)
    family = ruleset.family if ruleset is not None else (params.get("family") or "ipv4")
    backend = select.open_backend(netns_name, variant=variant, backend=backend_name,
                                  family=family, allow_host=allow_host_netns)
    desired = desired_state(ruleset) if ruleset is not None else {}
    note = select.other_variant_note(backend)
    if note:
        click.echo(note, err=True)
    if dry_run:
        _dry_run(backend, ruleset, desired, full=full, as_json=as_json)
        return
    if do_cleanup:
        result = cleanup(backend, reread=reread)
    else:
        result = apply_state(backend, desired, model=ruleset, full=full, reread=reread)
    if as_json:
        click.echo(json.dumps({"netns": result.netns, "backend": result.backend, "mode": result.mode,
                               "changed": result.changed, **result.counts,
                               "ignored_chains": result.ignored,
                               "seconds": {k: round(v, 3) for k, v in result.seconds.items()}}, indent=2))
        return
    click.echo(result.summary())
    if result.ignored:
        click.echo(f"note: {len(result.ignored)} chains not owned by kube-proxy were not applied: "
                   + ", ".join(result.ignored[:5]) + (" ..." if len(result.ignored) > 5 else ""), err=True)


def _nftables_mode(params: dict[str, Any], do_cleanup: bool, rules_file: str | None) -> bool:
    if params.get("proxy_mode"):
        return bool(params["proxy_mode"] == "nftables")
    if rules_file is not None and rules_file != "-":
        from netproxy.commands.nftrules import is_nft_file

        return is_nft_file(rules_file)  # an nft -f file: kube-proxy's nftables tables
    if do_cleanup or not params.get("inputs"):
        return False
    from netproxy.commands.cluster_options import effective_config

    return effective_config(params).mode == "nftables"


def _apply_nftables(netns_name: str, allow_host: bool, rules_file: str | None, full: bool,
                    dry_run: bool, do_cleanup: bool, as_json: bool, params: dict[str, Any],
                    flags: NftFlags, backend_name: str, reread: bool) -> None:
    from netproxy.backend import netns
    from netproxy.backend.nftables import apply_nftables, cleanup
    from netproxy.commands.cluster_options import load_cluster
    from netproxy.commands.nftables_options import nftables_tables

    if backend_name != "restore":
        raise InputError("nftables mode loads with nft -f; --backend is for iptables mode",
                         where="--backend")
    if rules_file is not None:
        _apply_nft_file(netns_name, allow_host, rules_file, params, dry_run, as_json)
        return
    netns.require(netns_name, allow_host=allow_host)
    if do_cleanup:
        if dry_run:
            raise InputError("--cleanup --dry-run: nothing to show; nft list tables shows what "
                             "would go", where="--dry-run")
        gone = cleanup(netns_name)
        if as_json:
            click.echo(json.dumps({"netns": netns_name, "mode": "nftables",
                                   "deleted_tables": gone}, indent=2))
        else:
            click.echo(f"netns {netns_name}: deleted " + (", ".join(f"table {t}" for t in gone)
                                                          if gone else "nothing (no kube-proxy table)"))
        return
    if not params.get("inputs"):
        raise InputError("nothing to apply: give cluster INPUTS or --rules FILE (or --cleanup)")
    cluster = load_cluster(params)
    family = params.get("family") or "ipv4"
    families = ["ipv4", "ipv6"] if family == "dual" else [family]
    with progress(f"apply: netns {netns_name}, nftables mode"):
        result, transaction = apply_nftables(
            netns_name, families,
            lambda current: nftables_tables(params, cluster, flags, node=current),
            full=full, dry_run=dry_run, reread=reread)
    if as_json:
        body = result.to_json()
        if dry_run:
            body = {**body, "dry_run": True, "transaction": transaction.splitlines()}
        click.echo(json.dumps(body, indent=2))
        return
    if dry_run:
        click.echo(transaction, nl=False)
        stale = f", deleting {result.stale_chains} stale chains" if result.stale_chains else ""
        source = f" ({result.source()})" if result.source() else ""
        click.echo(f"dry run: would send {result.operations} of {result.full_operations} "
                   f"operations with nft -f{stale}{source}" if transaction else
                   f"dry run: nothing to send{source}", err=True)
        return
    click.echo(result.summary())


def _apply_nft_file(netns_name: str, allow_host: bool, rules_file: str, params: dict[str, Any],
                    dry_run: bool, as_json: bool) -> None:
    """``apply --proxy-mode nftables --rules FILE``: an nft -f file for kube-proxy's tables."""
    from netproxy.backend import netns
    from netproxy.backend.nftables import load_file
    from netproxy.inputs.read import split_rules_input
    from netproxy.parser.nftables.read import read_text

    _, inputs = split_rules_input(tuple(params.get("inputs") or ()), rules_file, "apply")
    if inputs:
        raise InputError("give either --rules FILE or cluster INPUTS, not both")
    text, source = read_text(rules_file)
    netns.require(netns_name, allow_host=allow_host)
    result = load_file(netns_name, text, source, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps({**result.to_json(), "dry_run": dry_run}, indent=2))
    elif dry_run:
        click.echo(f"dry run: nft -c accepts {source} ({result.operations} statements for "
                   + " and ".join(f"table {f} kube-proxy" for f in
                                  (NFT_FAMILY[x] for x in result.families))
                   + "); nothing changed")
    else:
        click.echo(result.summary())


def _dry_run(backend: Any, ruleset: Ruleset | None, desired: Any, *, full: bool, as_json: bool) -> None:
    from netproxy.parser import parse_rules

    text = backend.read()
    plan = make_plan(current_state(backend), desired, full=full, allow_replace=backend.supports_replace)
    current = parse_rules(text, source=f"netns {backend.netns}", family=ruleset.family if ruleset else None)
    after = expected_after(current, ruleset or Ruleset(family=current.family))
    diff_text = _semantic_diff(current, after)
    c = plan.counts()
    if as_json:
        click.echo(json.dumps({"netns": backend.netns, "would_change": not plan.empty(), **c,
                               "diff": diff_text}, indent=2))
        return
    click.echo(diff_text.rstrip("\n"))
    verb = "would send" if not plan.empty() else "nothing to send"
    click.echo(f"dry run: {verb}: {c['chains_written']} chains written, {c['chains_deleted']} deleted, "
               f"{c['builtin_chains_fixed']} built-in chains' jumps fixed ({c['payload_lines']} payload lines)")


def expected_after(current: Ruleset, desired: Ruleset) -> Ruleset:
    """The namespace's rules as they will be after the apply: other software's chains and
    rules as they are, kube-proxy's owned chains and jumps replaced by the desired ones."""
    after = Ruleset(family=current.family, source="after apply")
    for tname in list(current.tables) + [t for t in desired.tables if t not in current.tables]:
        old = current.tables.get(tname)
        new = desired.tables.get(tname)
        table = after.table(tname)
        for chain in old.chains.values() if old else ():
            if chain.builtin or not owned_chain(chain.name):
                kept = [r for r in chain.rules if not (chain.builtin and _owned_rule(r))]
                table.chains[chain.name] = Chain(chain.name, chain.policy, chain.counters, kept)
        for chain in new.chains.values() if new else ():
            saved = list(chain.rules)
            if chain.builtin:
                table.chain(chain.name).rules[:0] = [r for r in saved if _owned_rule(r)]
            elif owned_chain(chain.name):
                table.chains[chain.name] = Chain(chain.name, None, None, saved)
    return after


def _owned_rule(rule: Rule) -> bool:
    return rule.jump is not None and owned_chain(rule.jump)


def _semantic_diff(current: Ruleset, after: Ruleset) -> str:
    """The differ's report of what applying would change (namespace now → after apply)."""
    from netproxy.diff import diff_rulesets, render_text

    return render_text(diff_rulesets(current, after))
