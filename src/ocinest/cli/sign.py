"""`ocinest key generate`, `ocinest sign` and `ocinest verify`: cosign v3 signatures on every
node of a tree."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from ocinest.cli.options import (
    JSON_OPTION,
    connection_options,
    emit,
    options_from,
    reference_arg,
    run,
)
from ocinest.client import Client, ClientError, Kind
from ocinest.client import keys as client_keys
from ocinest.client import sign as client_sign


def _password(confirm: bool = False) -> str:
    """The key's password: $OCINEST_KEY_PASSWORD, else a prompt; without a terminal, none
    for a new key, and an error for an encrypted one."""
    env = os.environ.get(client_keys.PASSWORD_ENV)
    if env is not None:
        return env
    if not sys.stdin.isatty():
        if confirm:
            return ""
        raise ClientError(f"the key is encrypted: set {client_keys.PASSWORD_ENV}", kind=Kind.USAGE)
    return str(
        click.prompt(
            "Key password",
            hide_input=True,
            confirmation_prompt=confirm,
            default="",
            show_default=False,
            err=True,
        )
    )


@click.group("key")
def key() -> None:
    """Signing keys (ECDSA P-256, PEM)."""


@key.command("generate")
@click.option(
    "--output",
    "prefix",
    default="ocinest",
    show_default=True,
    help="Write PREFIX.key (private, mode 0600) and PREFIX.pub.",
)
def generate(prefix: str) -> None:
    """Create a key pair; the private key is encrypted with the password from
    $OCINEST_KEY_PASSWORD or a prompt (empty: not encrypted)."""

    async def go() -> tuple[Path, Path]:
        return client_keys.generate(Path(prefix), _password(confirm=True))

    private, public = run(go())
    click.echo(f"private key {private}\npublic key {public}")


RECURSIVE = click.option(
    "-r",
    "--recursive",
    is_flag=True,
    help="Every node of the tree, not only the one REFERENCE names.",
)


@click.command("sign")
@click.argument("reference")
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Private key: PEM (ocinest key generate) or cosign.key.",
)
@RECURSIVE
@JSON_OPTION
@connection_options
def sign(reference: str, key_path: Path, recursive: bool, as_json: bool, **kw: Any) -> None:
    """Sign REFERENCE (with --recursive its whole tree) in cosign v3's bundle format."""
    options = options_from(kw)
    ref = reference_arg(reference)

    async def go() -> list[client_sign.Signed]:
        private = client_keys.load_private(key_path, _password)
        async with Client(options) as client:
            return await client_sign.sign(client, ref, private, recursive=recursive)

    signed = run(go())
    emit(
        as_json,
        {"signed": [s.to_json() for s in signed]},
        [f"signed {s.repository}@{s.digest}  ({s.signature})" for s in signed],
    )


@click.command("verify")
@click.argument("reference")
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Public key (PEM, cosign.pub).",
)
@RECURSIVE
@JSON_OPTION
@connection_options
def verify(reference: str, key_path: Path, recursive: bool, as_json: bool, **kw: Any) -> None:
    """Check the signatures of REFERENCE (with --recursive of every node): one line per node;
    exit 1 when any node is unsigned, signed by another key or its signature does not match."""
    options = options_from(kw)
    ref = reference_arg(reference)

    async def go() -> list[client_sign.Checked]:
        public = client_keys.load_public(key_path)
        async with Client(options) as client:
            return await client_sign.verify(client, ref, public, recursive=recursive)

    checked = run(go())
    ok = all(c.ok for c in checked)
    emit(as_json, {"ok": ok, "nodes": [c.to_json() for c in checked]}, [c.line() for c in checked])
    if not ok:
        sys.exit(1)
