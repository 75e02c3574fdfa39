"""`ocinest key generate`, `ocinest sign`, `ocinest attest` and `ocinest verify`: cosign v3
signatures and attestations on every node of a tree."""

from __future__ import annotations

import json
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
from ocinest.oci.signing import predicate_type


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


PRIVATE_KEY = click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Private key: PEM (ocinest key generate) or cosign.key.",
)
RECURSIVE = click.option(
    "-r",
    "--recursive",
    is_flag=True,
    help="Every node of the tree, not only the one REFERENCE names.",
)


@click.command("sign")
@click.argument("reference")
@PRIVATE_KEY
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


def _kind(value: str) -> str:
    try:
        return predicate_type(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("attest")
@click.argument("reference")
@PRIVATE_KEY
@click.option(
    "--predicate",
    "predicate_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The predicate: a JSON object (a SLSA provenance, an SBOM…).",
)
@click.option(
    "--type",
    "kind",
    required=True,
    help="Its predicate type: a URI, or cosign's slsaprovenance, slsaprovenance1, spdxjson, "
    "cyclonedx, link, vuln.",
)
@RECURSIVE
@JSON_OPTION
@connection_options
def attest(
    reference: str,
    key_path: Path,
    predicate_path: Path,
    kind: str,
    recursive: bool,
    as_json: bool,
    **kw: Any,
) -> None:
    """Attach a signed in-toto attestation about REFERENCE (with --recursive about each node
    of its tree), in cosign v3's bundle format, as a referrer of each node."""
    options = options_from(kw)
    ref = reference_arg(reference)
    uri = _kind(kind)
    try:
        predicate = json.loads(predicate_path.read_bytes())
    except OSError as exc:
        raise click.BadParameter(f"cannot read {predicate_path}: {exc.strerror}") from None
    except ValueError as exc:
        raise click.BadParameter(f"{predicate_path} is not JSON: {exc}") from None
    if not isinstance(predicate, dict):
        raise click.BadParameter(f"{predicate_path} is not a JSON object")

    async def go() -> list[client_sign.Signed]:
        private = client_keys.load_private(key_path, _password)
        async with Client(options) as client:
            return await client_sign.attest(
                client, ref, private, uri, predicate, recursive=recursive
            )

    attested = run(go())
    emit(
        as_json,
        {"predicateType": uri, "attested": [s.to_json() for s in attested]},
        [f"attested {s.repository}@{s.digest}  ({s.signature})" for s in attested],
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
@click.option(
    "--attestations",
    is_flag=True,
    help="Also require, on each node, an attestation that verifies with the key.",
)
@click.option("--type", "kind", help="With --attestations: of this predicate type only.")
@JSON_OPTION
@connection_options
def verify(
    reference: str,
    key_path: Path,
    recursive: bool,
    attestations: bool,
    kind: str | None,
    as_json: bool,
    **kw: Any,
) -> None:
    """Check the signatures of REFERENCE (with --recursive of every node), and with
    --attestations its attestations: one line per node; exit 1 when any node is unsigned,
    signed by another key, its signature does not match, or (--attestations) it has no
    attestation that verifies."""
    options = options_from(kw)
    ref = reference_arg(reference)
    if kind is not None and not attestations:
        raise click.UsageError("--type applies to --attestations")
    wanted = None if not attestations else client_sign.ANY if kind is None else _kind(kind)

    async def go() -> list[client_sign.Checked]:
        public = client_keys.load_public(key_path)
        async with Client(options) as client:
            return await client_sign.verify(
                client, ref, public, recursive=recursive, attestations=wanted
            )

    checked = run(go())
    ok = all(c.ok for c in checked)
    emit(as_json, {"ok": ok, "nodes": [c.to_json() for c in checked]}, [c.line() for c in checked])
    if not ok:
        sys.exit(1)
