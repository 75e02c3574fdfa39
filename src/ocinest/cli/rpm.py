"""`ocinest rpm push` and `ocinest rpm pull`: RPM repositories as nested trees."""

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
    run,
    summary,
    write_result,
)
from ocinest.cli.progress import reporter
from ocinest.client import BadReference, Client, Kind, RemoteRef
from ocinest.client import rpm as client_rpm
from ocinest.client.reference import parse_remote


def _remote(text: str) -> RemoteRef:
    try:
        return parse_remote(text)
    except BadReference as exc:
        fail(exc.message, int(Kind.USAGE))


@click.group("rpm")
def rpm() -> None:
    """RPM repositories: each package in P/<name>, the metadata in P/repodata, one index."""


@rpm.command("push")
@click.argument("reference")
@click.argument(
    "inputs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="(DIR | RPM...)"
)
@click.option(
    "--from",
    "base",
    metavar="REF",
    help="A pushed repository whose packages the new one keeps (only what changed is pushed).",
)
@RESULT_FILE_OPTION
@MODE_OPTION
@JSON_OPTION
@PROGRESS_OPTION
@QUIET_OPTION
@CONCURRENCY_OPTION
@connection_options
def rpm_push(
    reference: str,
    inputs: tuple[Path, ...],
    base: str | None,
    result_file: Path | None,
    mode: str,
    as_json: bool,
    progress: str,
    quiet: bool,
    **kw: Any,
) -> None:
    """Push RPMs (files, or every *.rpm below DIR) as the repository REFERENCE (host/P[:tag],
    tag default latest).

    Each RPM becomes an artifact in P/<name> tagged <version>-<release>.<arch>; the metadata,
    made by createrepo_c, goes to P/repodata; one index in P pins the set. The same RPMs give
    the same digest. Prints the pinned reference host/P@sha256:…, which dnf reads through
    http(s)://host/_ocinest/files/P@sha256:…/.
    """
    options = options_from(kw)
    ref = _remote(reference)
    base_ref = _remote(base) if base is not None else None

    async def go() -> client_rpm.RpmPushResult:
        async with Client(options) as client:
            with reporter(progress, quiet) as report:
                return await client_rpm.push(
                    client, ref, list(inputs), base=base_ref, mode=mode, progress=report
                )

    result = run(go())
    write_result(result_file, result.reference)
    emit(
        as_json,
        {
            "reference": result.reference,
            "digest": str(result.digest),
            "mode": result.mode,
            "packages": [
                {"nevra": p.nevra, "path": p.child_path, "tag": p.tag, "file": p.path.name}
                for p in result.packages
            ],
            "stats": result.stats.to_json(),
        },
        [result.reference],
    )
    note(
        as_json,
        f"{len(result.packages)} packages ({result.mode} mode): " + summary(result.stats),
    )


@rpm.command("pull")
@click.argument("reference")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@JSON_OPTION
@CONCURRENCY_OPTION
@connection_options
def rpm_pull(reference: str, folder: Path, as_json: bool, **kw: Any) -> None:
    """Write the repository REFERENCE to FOLDER as dnf reads it: repodata/ and the packages
    (baseurl=file://FOLDER). Works with any registry."""
    options = options_from(kw)
    ref = _remote(reference)

    async def go() -> list[str]:
        async with Client(options) as client:
            return await client_rpm.pull_files(client, ref, folder)

    written = run(go())
    emit(as_json, {"folder": str(folder), "files": written}, [str(folder)])
    note(as_json, f"{len(written)} files written")
