"""`ocinest index create`: the parent index over children that exist somewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ocinest.cli.options import (
    CONCURRENCY_OPTION,
    JSON_OPTION,
    MODE_OPTION,
    PROGRESS_OPTION,
    QUIET_OPTION,
    RESULT_FILE_OPTION,
    connection_options,
    emit,
    fail,
    note,
    options_from,
    plural,
    reference_arg,
    run,
    summary,
    write_result,
)
from ocinest.cli.progress import reporter
from ocinest.client import BadReference, Client, Kind, RemoteRef, parse_remote
from ocinest.client import ops as client_ops
from ocinest.oci.nested import SET_ARTIFACT_TYPE


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
@click.option(
    "--children-from",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Also take the children this file lists, one host/repo@digest a line, each under "
    "PARENT (what `ko build --image-refs FILE` writes); the child path is the repository "
    "below PARENT.",
)
@click.option(
    "--platforms",
    is_flag=True,
    help="Build one multi-platform image: every child a single-platform image, platforms "
    "distinct; the descriptors carry them, and the index no set artifactType.",
)
@click.option(
    "--artifact-type",
    help=f"The set's artifactType [default {SET_ARTIFACT_TYPE}].",
)
@click.option("--annotation", "annotations", multiple=True, metavar="KEY=VALUE")
@RESULT_FILE_OPTION
@MODE_OPTION
@JSON_OPTION
@PROGRESS_OPTION
@QUIET_OPTION
@CONCURRENCY_OPTION
@connection_options
def index_create(
    parent: str,
    children: tuple[str, ...],
    discover: str | None,
    children_from: Path | None,
    platforms: bool,
    artifact_type: str | None,
    annotations: tuple[str, ...],
    result_file: Path | None,
    mode: str,
    as_json: bool,
    progress: str,
    quiet: bool,
    **kw: Any,
) -> None:
    """Push an index to PARENT (host/repo[:tag]) pinning CHILD=REF children.

    Each child ends up in repository PARENT/CHILD: REF is any reference (host/repo:tag,
    host/repo@digest, oci:DIR:tag); a child that lives elsewhere is copied, with blobs mounted
    when on the same registry. REF may also be written :TAG or @DIGEST, relative to
    PARENT/CHILD. The index is a set (an artifactType, no platforms) unless --platforms.
    Without a tag in PARENT it is pushed untagged. Prints the pinned reference host/P@sha256:….
    """
    options = options_from(kw)
    try:
        parent_ref = parse_remote(parent)
    except BadReference as exc:
        fail(exc.message, int(Kind.USAGE))
    wanted = [_child_argument(parent_ref, c) for c in children]
    if children_from is not None:
        try:
            text = children_from.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read {children_from}: {exc}", int(Kind.USAGE))
        try:
            wanted += client_ops.children_from_refs(parent_ref, text, str(children_from))
        except BadReference as exc:
            fail(exc.message, int(Kind.USAGE))
    try:
        annotation_map = client_ops.parse_annotations(annotations)
    except BadReference as exc:
        fail(exc.message, int(Kind.USAGE))

    async def go() -> client_ops.IndexResult:
        async with Client(options) as client:
            with reporter(progress, quiet) as report:
                return await client_ops.create_index(
                    client,
                    parent_ref,
                    wanted,
                    discover=discover,
                    mode=mode,
                    platforms=platforms,
                    artifact_type=artifact_type,
                    annotations=annotation_map,
                    progress=report,
                )

    result = run(go())
    write_result(result_file, result.reference)
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
    shape = "multi-platform image" if platforms else "set"
    note(
        as_json,
        f"{shape} of {plural(len(result.children), 'child', 'children')} pushed "
        f"({result.mode} mode): " + summary(result.stats),
    )
    if parent_ref.tag is None:
        note(as_json, f"the index is untagged: only {result.reference} reaches it")
