"""`ocinest login` and `ocinest logout`."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Any

import click

from ocinest.cli.options import connection_options, fail, options_from, run
from ocinest.client import Client, ClientError, Kind
from ocinest.client.auth import Credentials, remove_credentials, store_credentials


@click.command("login")
@click.argument("host")
@click.option("-u", "--username", help="User name (asked for when not given).")
@click.option("-p", "--password", help="Password or token (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@connection_options
def login(
    host: str, username: str | None, password: str | None, password_stdin: bool, **kw: Any
) -> None:
    """Check credentials against registry HOST and save them for later commands.

    A registry that asks for no credentials gets none stored.
    """
    auth_file: Path | None = kw.get("authfile")
    options = options_from(kw)
    host = host.removeprefix("https://").removeprefix("http://").rstrip("/")
    if "/" in host or not host:
        fail(f"give a registry host (host[:port]), not {host!r}", int(Kind.USAGE))
    if password_stdin:
        if password is not None:
            fail("give --password or --password-stdin, not both", int(Kind.USAGE))
        password = sys.stdin.readline().rstrip("\r\n")
    if username is None:
        if not sys.stdin.isatty():
            fail("give --username", int(Kind.USAGE))
        username = click.prompt("Username")
    if password is None:
        if not sys.stdin.isatty():
            fail("give --password-stdin or --password", int(Kind.USAGE))
        password = getpass.getpass("Password: ")
    creds = Credentials(username or "", password or "")
    options.credentials[host] = creds

    async def asks_for_credentials() -> bool:
        async with Client(options) as client:
            registry = client.registry(host)
            await registry.ping()
            # No Authorization for a request: the registry never challenged.
            return await registry.transport.auth.authorization([]) is not None

    if not run(asks_for_credentials()):
        click.echo(f"{host} does not ask for credentials; nothing stored")
        return
    path = store_credentials(host, creds, auth_file)
    click.echo(f"Login succeeded; credentials for {host} saved in {path}")


@click.command("logout")
@click.argument("host")
@click.option(
    "--authfile",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The auth file to edit [env REGISTRY_AUTH_FILE].",
)
def logout(host: str, authfile: Path | None) -> None:
    """Forget the saved credentials for registry HOST."""
    host = host.removeprefix("https://").removeprefix("http://").rstrip("/")
    try:
        removed = remove_credentials(host, authfile)
    except ClientError as exc:
        fail(exc.message, int(exc.kind))
    if not removed:
        fail(f"not logged in to {host}", int(Kind.NOT_FOUND))
    click.echo(f"Removed the credentials for {host}")
