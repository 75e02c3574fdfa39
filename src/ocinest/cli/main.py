"""`ocinest`: the command line. Thin: it parses, then calls registry/ and client/.

Each command's module is imported only when that command runs, so that `ocinest --version`
and a client command never pay for the registry's imports (nor the registry for the client's).

The client commands (login, logout, index, push, tree, pull, copy, delete, rpm, key, sign,
attest, verify) print for humans by default, one JSON object with `--json`. Exit codes: 0 success,
1 the operation failed, 2 bad input (usage, malformed reference), 3 authentication, 4 not
found, 5 network. A user error prints one line on stderr, never a traceback.
"""

from __future__ import annotations

import gc
import importlib

import click

from ocinest import __version__

# Each command: the module and the name it has there.
COMMANDS = {
    "serve": ("ocinest.cli.serve", "serve_command"),
    "gc": ("ocinest.cli.admin", "gc_command"),
    "fsck": ("ocinest.cli.admin", "fsck_command"),
    "login": ("ocinest.cli.login", "login"),
    "logout": ("ocinest.cli.login", "logout"),
    "index": ("ocinest.cli.index", "index"),
    "push": ("ocinest.cli.transfer", "push"),
    "pull": ("ocinest.cli.transfer", "pull"),
    "copy": ("ocinest.cli.transfer", "copy"),
    "tree": ("ocinest.cli.trees", "tree"),
    "delete": ("ocinest.cli.trees", "delete"),
    "rpm": ("ocinest.cli.rpm", "rpm"),
    "key": ("ocinest.cli.sign", "key"),
    "sign": ("ocinest.cli.sign", "sign"),
    "attest": ("ocinest.cli.sign", "attest"),
    "verify": ("ocinest.cli.sign", "verify"),
}


class LazyGroup(click.Group):
    """A group whose commands are imported when asked for (click's documented pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, name = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(module), name)
        assert isinstance(command, click.Command)
        # What the imports made lives as long as the process: out of the cyclic collector's
        # reach, no collection while the command runs walks it, nor the one at exit (a
        # tenth of a second for a server's modules), and forked workers share it unchanged.
        gc.freeze()
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ocinest")
def main() -> None:
    """ocinest: an OCI registry and client for nested-artifact indexes."""
