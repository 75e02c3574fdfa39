"""`ocinest push`, `pull` and `copy`: moving artifacts and whole trees."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ocinest.cli.options import (
    CONCURRENCY_OPTION,
    JSON_OPTION,
    MODE_OPTION,
    PROGRESS_OPTION,
    QUIET_OPTION,
    connection_options,
    emit,
    fail,
    note,
    options_from,
    reference_arg,
    run,
    summary,
)
from ocinest.cli.progress import reporter
from ocinest.client import BadReference, Client, Kind, LayoutRef, RemoteRef
from ocinest.client import ops as client_ops
from ocinest.client.copy import CopyResult
from ocinest.oci.names import is_tag
from ocinest.oci.nested import ORAS_DEFAULT_ARTIFACT_TYPE


def _file_argument(value: str) -> tuple[Path, str | None]:
    """FILE or FILE:MEDIATYPE (the media type contains a '/')."""
    path, sep, media_type = value.rpartition(":")
    if sep and "/" in media_type and path:
        return Path(path), media_type
    return Path(value), None


@click.command("push")
@click.argument("reference")
@click.argument("files", nargs=-1, required=True, metavar="FILE[:MEDIATYPE]...")
@click.option(
    "--artifact-type",
    help=f"The artifact's type [default {ORAS_DEFAULT_ARTIFACT_TYPE}].",
)
@click.option("--annotation", "annotations", multiple=True, metavar="KEY=VALUE")
@JSON_OPTION
@PROGRESS_OPTION
@QUIET_OPTION
@CONCURRENCY_OPTION
@connection_options
def push(
    reference: str,
    files: tuple[str, ...],
    artifact_type: str | None,
    annotations: tuple[str, ...],
    as_json: bool,
    progress: str,
    quiet: bool,
    **kw: Any,
) -> None:
    """Push FILEs as one OCI artifact (ORAS style) to REFERENCE.

    Each file becomes a layer titled with its name (media type FILE:TYPE, default
    application/vnd.oci.image.layer.v1.tar); the config is the empty JSON. Prints the pinned
    reference.
    """
    options = options_from(kw)
    ref = reference_arg(reference)
    try:
        annotation_map = client_ops.parse_annotations(annotations)
    except BadReference as exc:
        fail(exc.message, int(Kind.USAGE))
    paths = [_file_argument(f) for f in files]

    async def go() -> client_ops.PushResult:
        async with Client(options) as client:
            with reporter(progress, quiet) as report:
                return await client_ops.push_files(
                    client,
                    ref,
                    paths,
                    artifact_type=artifact_type,
                    annotations=annotation_map,
                    progress=report,
                )

    result = run(go())
    emit(
        as_json,
        {
            "reference": result.reference,
            "digest": str(result.digest),
            "manifest": json.loads(result.body),
            "stats": result.stats.to_json(),
        },
        [result.reference],
    )


# pull


@click.command("pull")
@click.argument("reference")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="The OCI image layout folder to write (created if needed).",
)
@click.option("--tag", help="Tag the root in the layout [default: the reference's tag].")
@click.option("--referrers", is_flag=True, help="Bring signatures, SBOMs and other referrers.")
@JSON_OPTION
@PROGRESS_OPTION
@QUIET_OPTION
@CONCURRENCY_OPTION
@connection_options
def pull(
    reference: str,
    output: Path,
    tag: str | None,
    referrers: bool,
    as_json: bool,
    progress: str,
    quiet: bool,
    **kw: Any,
) -> None:
    """Write the whole tree at REFERENCE into an OCI image layout, digests verified.

    Nested paths stay in the indexes' dev.ocinest.repository annotations; push the layout
    back with `ocinest copy oci:DIR[:TAG] REF`.
    """
    options = options_from(kw)
    ref = reference_arg(reference)
    if tag is not None and not is_tag(tag):
        fail(f"invalid tag {tag!r}", int(Kind.USAGE))

    async def go() -> CopyResult:
        async with Client(options) as client:
            with reporter(progress, quiet) as report:
                return await client_ops.pull(
                    client, ref, output, tag=tag, referrers=referrers, progress=report
                )

    result = run(go())
    layout_tag = tag or ref.tag
    where = f"oci:{output}" + (f":{layout_tag}" if layout_tag else "")
    emit(
        as_json,
        {
            "layout": str(output),
            "reference": where,
            "digest": str(result.digest),
            "stats": result.stats.to_json(),
        },
        [f"{where}@{result.digest}"],
    )


# copy


@click.command("copy")
@click.argument("source")
@click.argument("destination")
@click.option("--referrers", is_flag=True, help="Bring signatures, SBOMs and other referrers.")
@click.option(
    "--child-tags/--no-child-tags",
    default=True,
    help="Give each child at the destination the tags it has at the source [default on].",
)
@MODE_OPTION
@JSON_OPTION
@PROGRESS_OPTION
@QUIET_OPTION
@CONCURRENCY_OPTION
@connection_options
def copy(
    source: str,
    destination: str,
    referrers: bool,
    child_tags: bool,
    mode: str,
    as_json: bool,
    progress: str,
    quiet: bool,
    **kw: Any,
) -> None:
    """Copy the whole tree at SOURCE to DESTINATION, children relocated under it.

    Either side is a registry reference (host/repo[:tag][@digest]) or an OCI layout
    (oci:DIR[:tag]). Blobs are mounted or skipped when already there, and each blob is
    transferred at most once; each child keeps the tags it has at the source. Prints the
    pinned destination.
    """
    options = options_from(kw)
    src = reference_arg(source)
    dst = reference_arg(destination)

    async def go() -> CopyResult:
        async with Client(options) as client:
            with reporter(progress, quiet) as report:
                return await client_ops.copy(
                    client,
                    src,
                    dst,
                    mode=mode,
                    referrers=referrers,
                    child_tags=child_tags,
                    progress=report,
                )

    result = run(go())
    if isinstance(dst, RemoteRef):
        pinned = dst.with_(tag=None, digest=None).pinned(result.digest)
    else:
        assert isinstance(dst, LayoutRef)
        pinned = f"oci:{dst.path}@{result.digest}"
    emit(
        as_json,
        {
            "reference": pinned,
            "digest": str(result.digest),
            "mode": result.mode,
            "stats": result.stats.to_json(),
            "missing": result.missing,
        },
        [pinned],
    )
    for what in result.missing:
        note(as_json, f"not copied, never pushed at the source (sparse): {what}")
    note(as_json or quiet, f"copied ({result.mode} mode): " + summary(result.stats))
