"""The thin click layer: parse flags, call one function, print, map errors to exit codes.

Sub-commands live in :mod:`netproxy.commands` and are imported only when invoked, so that
``netproxy trace`` on a small cluster starts fast.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import click

from netproxy import __version__
from netproxy.errors import NetproxyError
from netproxy.textsafe import install_output_escapes

COMMANDS: dict[str, tuple[str, str]] = {
    "compile": ("netproxy.commands.compile", "Compile Services and EndpointSlices into kube-proxy's iptables rules."),
    "trace": ("netproxy.commands.trace", "Walk a packet through a ruleset, every branch with its weight."),
    "diff": ("netproxy.commands.diff", "Compare two rulesets by meaning, grouped by Service."),
    "migrate": ("netproxy.commands.migrate", "Compare iptables and nftables mode: will every Service behave the same?"),
    "apply": ("netproxy.commands.apply", "Load rules into a network namespace, the way kube-proxy does."),
    "save": ("netproxy.commands.save", "Read the rules of a network namespace back."),
    "lab": ("netproxy.commands.lab", "Build a namespace lab and check the tracer against the kernel."),
    "doctor": ("netproxy.commands.doctor", "Run the 'my Service does not work' checklist."),
    "snapshot": ("netproxy.commands.snapshot", "Record a node's rules, routes, addresses and sets in one file."),
    "audit": ("netproxy.commands.audit", "Audit a fleet's nodes against the API state, per Service."),
}


class LazyGroup(click.Group):
    """A group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n, (mod, _) in COMMANDS.items() if importlib.util.find_spec(mod))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        try:
            module = importlib.import_module(entry[0])
        except ModuleNotFoundError as exc:
            if exc.name == entry[0]:
                return None
            raise
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="netproxy")
def cli() -> None:
    """netproxy: kube-proxy's iptables rules, offline and exact.

    Shell completion: eval "$(_NETPROXY_COMPLETE=bash_source netproxy)" (zsh_source, fish_source).
    """


def main(argv: list[str] | None = None) -> Any:
    """Entry point: run the CLI, turning user errors into one line and exit code 2."""
    install_output_escapes()
    try:
        result = cli.main(args=argv, prog_name="netproxy", standalone_mode=False)
        if isinstance(result, int) and not isinstance(result, bool):
            sys.exit(result)
        return result
    except NetproxyError as err:
        click.echo(f"netproxy: {err}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        click.echo("netproxy: aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(2 if err.exit_code == 1 else err.exit_code)
    except click.exceptions.Exit as exit_:
        sys.exit(exit_.exit_code)
    except BrokenPipeError:
        sys.exit(0)
