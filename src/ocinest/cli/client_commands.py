"""The client commands: login, logout, index create, push, tree, pull, copy, delete.

Human output by default, `--json` for machines. Exit codes: 0 success, 1 the operation failed,
2 bad input (usage, malformed reference), 3 authentication, 4 not found, 5 network.
A user error prints one line on stderr, never a traceback.
"""

from __future__ import annotations

import click

from ocinest.cli.index import index
from ocinest.cli.login import login, logout
from ocinest.cli.rpm import rpm
from ocinest.cli.sign import key, sign, verify
from ocinest.cli.transfer import copy, pull, push
from ocinest.cli.trees import delete, tree

COMMANDS = [login, logout, index, push, tree, pull, copy, delete, rpm, key, sign, verify]


def register(group: click.Group) -> None:
    """Add the client commands to the `ocinest` group."""
    for command in COMMANDS:
        group.add_command(command)
