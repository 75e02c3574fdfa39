"""`ocinest tree` and `ocinest delete`: showing and removing whole trees."""

from __future__ import annotations

import sys
from typing import Any

import click

from ocinest.cli.options import (
    JSON_OPTION,
    MODE_OPTION,
    connection_options,
    emit,
    options_from,
    reference_arg,
    run,
)
from ocinest.client import Client, Kind, Node
from ocinest.client import ops as client_ops
from ocinest.client.tree import read_tree, render


@click.command("tree")
@click.argument("reference")
@click.option("--depth", type=click.IntRange(0), help="Stop after this many levels.")
@click.option(
    "--walk",
    "force_walk",
    is_flag=True,
    help="Walk manifest by manifest even where the registry has a tree endpoint.",
)
@JSON_OPTION
@connection_options
def tree(reference: str, depth: int | None, force_walk: bool, as_json: bool, **kw: Any) -> None:
    """Draw the nested tree at REFERENCE (host/repo:tag, host/repo@digest, oci:DIR:tag)."""
    options = options_from(kw)
    ref = reference_arg(reference)

    async def go() -> Node:
        async with Client(options) as client:
            repo = client_ops.open_repository(client, ref)
            return await read_tree(repo, ref.reference, depth=depth, endpoint=not force_walk)

    node = run(go())
    emit(as_json, node.to_json(), render(node, str(ref)))


# delete


@click.command("delete")
@click.argument("reference")
@click.option(
    "-r", "--recursive", is_flag=True, help="Delete the whole tree, parent first, then children."
)
@MODE_OPTION
@JSON_OPTION
@connection_options
def delete(reference: str, recursive: bool, mode: str, as_json: bool, **kw: Any) -> None:
    """Delete the manifest at REFERENCE; with --recursive its whole nested tree.

    Children still referenced by another index are kept (the registry refuses with 409) and
    listed. In compat mode the copies of children in the ancestor repositories go too.
    """
    options = options_from(kw)
    ref = reference_arg(reference)

    async def go() -> client_ops.DeleteResult:
        async with Client(options) as client:
            return await client_ops.delete_tree(client, ref, recursive=recursive, mode=mode)

    result = run(go())
    emit(
        as_json,
        {"deleted": result.deleted, "kept": result.kept, "missing": result.missing},
        [f"deleted {d}" for d in result.deleted]
        + [f"kept {k}" for k in result.kept]
        + [f"missing {m}" for m in result.missing],
    )
    if result.missing and not result.deleted:
        sys.exit(int(Kind.NOT_FOUND))
