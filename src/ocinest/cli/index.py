"""`ocinest index create`: the parent index over children that exist somewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ocinest.cli.options import (
    JSON_OPTION,
    MODE_OPTION,
    TransferBars,
    connection_options,
    emit,
    fail,
    note,
    options_from,
    reference_arg,
    run,
    summary,
)
from ocinest.client import BadReference, Client, Kind, RemoteRef, parse_remote
from ocinest.client import ops as client_ops


@click.group("index")
def index() -> None:
    """Build nested-artifact indexes."""


def _child_argument(parent: RemoteRef, value: str) -> tuple[str, Any]:
    path, sep, ref = value.partition("=")
    if not sep or not path or not ref:
        fail(f"{value!r} is not CHILD=REF", int(Kind.USAGE))
    if ref.startswith((":", "@")):
        # Relative to the child repository itself: app1=:latest, app1=@sha256:…
        ref = f"{parent.host}/{parent.repository}/{path}{ref}"
    return path, reference_arg(ref)


@index.command("create")
@click.argument("parent")
@click.argument("children", nargs=-1, metavar="[CHILD=REF]...")
@click.option(
    "--discover",
    metavar="TAG",
    help="Also take every repository under the parent that has TAG (needs the catalog).",
)
@click.option("--artifact-type", help="The index's artifactType.")
@click.option("--annotation", "annotations", multiple=True, metavar="KEY=VALUE")
@click.option(
    "--result-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the pinned reference host/P@sha256:… here (a Tekton result).",
)
@MODE_OPTION
@JSON_OPTION
@connection_options
def index_create(
    parent: str,
    children: tuple[str, ...],
    discover: str | None,
    artifact_type: str | None,
    annotations: tuple[str, ...],
    result_file: Path | None,
    mode: str,
    as_json: bool,
    **kw: Any,
) -> None:
    """Push an index to PARENT (host/repo:tag) pinning CHILD=REF children.

    Each child ends up in repository PARENT/CHILD: REF is any reference (host/repo:tag,
    host/repo@digest, oci:DIR:tag); a child that lives elsewhere is copied, with blobs mounted
    when on the same registry. REF may also be written :TAG or @DIGEST, relative to
    PARENT/CHILD. Prints the pinned reference host/P@sha256:….
    """
    options = options_from(kw)
    try:
        parent_ref = parse_remote(parent)
    except BadReference as exc:
        fail(exc.message, int(Kind.USAGE))
    wanted = [_child_argument(parent_ref, c) for c in children]
    try:
        annotation_map = client_ops.parse_annotations(annotations)
    except BadReference as exc:
        fail(exc.message, int(Kind.USAGE))

    async def go() -> client_ops.IndexResult:
        async with Client(options) as client:
            with TransferBars(not as_json) as bars:
                return await client_ops.create_index(
                    client,
                    parent_ref,
                    wanted,
                    discover=discover,
                    mode=mode,
                    artifact_type=artifact_type,
                    annotations=annotation_map,
                    progress=bars,
                )

    result = run(go())
    if result_file is not None:
        try:
            result_file.write_text(result.reference)
        except OSError as exc:
            fail(f"cannot write {result_file}: {exc.strerror}", 1)
    emit(
        as_json,
        {
            "reference": result.reference,
            "digest": str(result.digest),
            "mode": result.mode,
            "children": [
                {
                    "path": c.child_path,
                    "digest": str(c.digest),
                    "mediaType": c.media_type,
                    "platform": c.platform,
                    "artifactType": c.artifact_type,
                }
                for c in result.children
            ],
            "stats": result.stats.to_json(),
        },
        [result.reference],
    )
    note(
        as_json,
        f"index with {len(result.children)} children pushed ({result.mode} mode): "
        + summary(result.stats),
    )
