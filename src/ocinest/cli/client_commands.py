"""The client commands: login, logout, index create, push, tree, pull, copy, delete.

Human output by default, `--json` for machines. Exit codes: 0 success, 1 the operation failed,
2 bad input (usage, malformed reference), 3 authentication, 4 not found, 5 network.
A user error prints one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from ocinest.client import (
    BadReference,
    Client,
    ClientError,
    Kind,
    LayoutRef,
    Node,
    Options,
    ProgressEvent,
    RemoteRef,
    Stats,
    parse_reference,
    parse_remote,
)
from ocinest.client import ops as client_ops
from ocinest.client.auth import Credentials, remove_credentials, store_credentials
from ocinest.client.copy import CopyResult
from ocinest.client.tree import read_tree, render
from ocinest.oci.names import is_tag
from ocinest.oci.nested import ORAS_DEFAULT_ARTIFACT_TYPE

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

MODE_OPTION = click.option(
    "--mode",
    type=click.Choice(["auto", "native", "compat"]),
    default="auto",
    show_default=True,
    help="native: the registry implements nested indexes; compat: also place each child in "
    "the parent repository by digest (any registry); auto: ask the registry.",
)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


def connection_options(f: F) -> F:
    """Options on how to reach registries, shared by every client command."""
    decorators = [
        click.option(
            "--plain-http",
            is_flag=True,
            help="Plain HTTP for every registry (loopback hosts use it unless --ca-file is given).",
        ),
        click.option(
            "--insecure",
            is_flag=True,
            help="TLS without certificate verification, and plain HTTP when TLS fails.",
        ),
        click.option(
            "--ca-file",
            type=click.Path(path_type=Path, dir_okay=False, exists=True),
            help="Trust the CA certificates in this PEM file.",
        ),
        click.option(
            "--authfile",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Read credentials from this auth file first [env REGISTRY_AUTH_FILE].",
        ),
        click.option(
            "--concurrency",
            type=click.IntRange(1, 64),
            default=4,
            show_default=True,
            help="Blobs transferred in parallel.",
        ),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def _options(kwargs: dict[str, Any]) -> Options:
    return Options(
        plain_http=bool(kwargs.pop("plain_http", False)),
        insecure=bool(kwargs.pop("insecure", False)),
        ca_file=kwargs.pop("ca_file", None),
        auth_file=kwargs.pop("authfile", None),
        concurrency=int(kwargs.pop("concurrency", 4)),
    )


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"ocinest: error: {message}", err=True)
    sys.exit(code)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; a `ClientError` becomes one line and its exit code."""
    try:
        return asyncio.run(coro)
    except ClientError as exc:
        _fail(exc.message, int(exc.kind))
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except OSError as exc:
        _fail(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}", 1)
    raise AssertionError("unreachable")


def _reference(text: str) -> Any:
    try:
        return parse_reference(text)
    except BadReference as exc:
        _fail(exc.message, int(Kind.USAGE))


def _emit(as_json: bool, data: dict[str, Any], human: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        for line in human:
            click.echo(line)


def _note(as_json: bool, text: str) -> None:
    """A human note on stderr (not with --json)."""
    if not as_json:
        click.echo(text, err=True)


def _summary(stats: Stats) -> str:
    parts = [
        f"{stats.blobs_uploaded} blob(s) uploaded",
        f"{stats.blobs_mounted} mounted",
        f"{stats.blobs_skipped} already there",
        f"{stats.manifests_pushed} manifest(s) pushed",
    ]
    if stats.manifests_skipped:
        parts.append(f"{stats.manifests_skipped} already there")
    return ", ".join(parts)


class TransferBars:
    """Progress bars (rich) on stderr, only when stdout is a terminal and not with --json."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stdout.isatty() and sys.stderr.isatty()
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> TransferBars:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, event: ProgressEvent) -> None:
        if self._progress is None:
            return
        key = str(event.digest)
        if event.kind == "start":
            label = f"{event.digest.encoded[:12]}"
            if key in self._tasks:
                self._progress.reset(self._tasks[key], total=max(event.size, 0))
            else:
                self._tasks[key] = self._progress.add_task(label, total=max(event.size, 0))
        elif event.kind == "advance" and key in self._tasks:
            self._progress.advance(self._tasks[key], event.amount)
        elif event.kind == "done" and key in self._tasks:
            self._progress.remove_task(self._tasks.pop(key))


# login / logout


@click.command("login")
@click.argument("host")
@click.option("-u", "--username", help="User name (asked for when not given).")
@click.option("-p", "--password", help="Password or token (prefer --password-stdin).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@connection_options
def login(
    host: str, username: str | None, password: str | None, password_stdin: bool, **kw: Any
) -> None:
    """Check credentials against registry HOST and save them for later commands."""
    auth_file: Path | None = kw.get("authfile")
    options = _options(kw)
    host = host.removeprefix("https://").removeprefix("http://").rstrip("/")
    if "/" in host or not host:
        _fail(f"give a registry host (host[:port]), not {host!r}", int(Kind.USAGE))
    if password_stdin:
        if password is not None:
            _fail("give --password or --password-stdin, not both", int(Kind.USAGE))
        password = sys.stdin.readline().rstrip("\r\n")
    if username is None:
        if not sys.stdin.isatty():
            _fail("give --username", int(Kind.USAGE))
        username = click.prompt("Username")
    if password is None:
        if not sys.stdin.isatty():
            _fail("give --password-stdin or --password", int(Kind.USAGE))
        password = getpass.getpass("Password: ")
    creds = Credentials(username or "", password or "")
    options.credentials[host] = creds

    async def check() -> None:
        async with Client(options) as client:
            await client.registry(host).ping()

    run(check())
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
        _fail(exc.message, int(exc.kind))
    if not removed:
        _fail(f"not logged in to {host}", int(Kind.NOT_FOUND))
    click.echo(f"Removed the credentials for {host}")


# index create


@click.group("index")
def index() -> None:
    """Build nested-artifact indexes."""


def _child_argument(parent: RemoteRef, value: str) -> tuple[str, Any]:
    path, sep, ref = value.partition("=")
    if not sep or not path or not ref:
        _fail(f"{value!r} is not CHILD=REF", int(Kind.USAGE))
    if ref.startswith((":", "@")):
        # Relative to the child repository itself: app1=:latest, app1=@sha256:…
        ref = f"{parent.host}/{parent.repository}/{path}{ref}"
    return path, _reference(ref)


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
    options = _options(kw)
    try:
        parent_ref = parse_remote(parent)
    except BadReference as exc:
        _fail(exc.message, int(Kind.USAGE))
    wanted = [_child_argument(parent_ref, c) for c in children]
    try:
        annotation_map = client_ops.parse_annotations(annotations)
    except BadReference as exc:
        _fail(exc.message, int(Kind.USAGE))

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
            _fail(f"cannot write {result_file}: {exc.strerror}", 1)
    _emit(
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
    _note(
        as_json,
        f"index with {len(result.children)} children pushed ({result.mode} mode): "
        + _summary(result.stats),
    )


# push


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
@MODE_OPTION
@JSON_OPTION
@connection_options
def push(
    reference: str,
    files: tuple[str, ...],
    artifact_type: str | None,
    annotations: tuple[str, ...],
    mode: str,
    as_json: bool,
    **kw: Any,
) -> None:
    """Push FILEs as one OCI artifact (ORAS style) to REFERENCE.

    Each file becomes a layer titled with its name (media type FILE:TYPE, default
    application/vnd.oci.image.layer.v1.tar); the config is the empty JSON. A single artifact
    is the same in every --mode. Prints the pinned reference.
    """
    options = _options(kw)
    ref = _reference(reference)
    try:
        annotation_map = client_ops.parse_annotations(annotations)
    except BadReference as exc:
        _fail(exc.message, int(Kind.USAGE))
    paths = [_file_argument(f) for f in files]

    async def go() -> client_ops.PushResult:
        async with Client(options) as client:
            with TransferBars(not as_json) as bars:
                return await client_ops.push_files(
                    client,
                    ref,
                    paths,
                    artifact_type=artifact_type,
                    annotations=annotation_map,
                    progress=bars,
                )

    result = run(go())
    _emit(
        as_json,
        {
            "reference": result.reference,
            "digest": str(result.digest),
            "manifest": json.loads(result.body),
            "stats": result.stats.to_json(),
        },
        [result.reference],
    )


# tree


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
    options = _options(kw)
    ref = _reference(reference)

    async def go() -> Node:
        async with Client(options) as client:
            repo = client_ops.open_repository(client, ref)
            return await read_tree(repo, ref.reference, depth=depth, endpoint=not force_walk)

    node = run(go())
    _emit(as_json, node.to_json(), render(node, str(ref)))


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
@connection_options
def pull(
    reference: str,
    output: Path,
    tag: str | None,
    referrers: bool,
    as_json: bool,
    **kw: Any,
) -> None:
    """Write the whole tree at REFERENCE into an OCI image layout, digests verified.

    Nested paths stay in the indexes' dev.ocinest.repository annotations; push the layout
    back with `ocinest copy oci:DIR[:TAG] REF`.
    """
    options = _options(kw)
    ref = _reference(reference)
    if tag is not None and not is_tag(tag):
        _fail(f"invalid tag {tag!r}", int(Kind.USAGE))

    async def go() -> CopyResult:
        async with Client(options) as client:
            with TransferBars(not as_json) as bars:
                return await client_ops.pull(
                    client, ref, output, tag=tag, referrers=referrers, progress=bars
                )

    result = run(go())
    layout_tag = tag or ref.tag
    where = f"oci:{output}" + (f":{layout_tag}" if layout_tag else "")
    _emit(
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
@MODE_OPTION
@JSON_OPTION
@connection_options
def copy(
    source: str, destination: str, referrers: bool, mode: str, as_json: bool, **kw: Any
) -> None:
    """Copy the whole tree at SOURCE to DESTINATION, children relocated under it.

    Either side is a registry reference (host/repo[:tag][@digest]) or an OCI layout
    (oci:DIR[:tag]). Blobs are mounted or skipped when already there, and each blob is
    transferred at most once. Prints the pinned destination.
    """
    options = _options(kw)
    src = _reference(source)
    dst = _reference(destination)

    async def go() -> CopyResult:
        async with Client(options) as client:
            with TransferBars(not as_json) as bars:
                return await client_ops.copy(
                    client, src, dst, mode=mode, referrers=referrers, progress=bars
                )

    result = run(go())
    if isinstance(dst, RemoteRef):
        pinned = dst.with_(tag=None, digest=None).pinned(result.digest)
    else:
        assert isinstance(dst, LayoutRef)
        pinned = f"oci:{dst.path}@{result.digest}"
    _emit(
        as_json,
        {
            "reference": pinned,
            "digest": str(result.digest),
            "mode": result.mode,
            "stats": result.stats.to_json(),
        },
        [pinned],
    )
    _note(as_json, f"copied ({result.mode} mode): " + _summary(result.stats))


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
    options = _options(kw)
    ref = _reference(reference)

    async def go() -> client_ops.DeleteResult:
        async with Client(options) as client:
            return await client_ops.delete_tree(client, ref, recursive=recursive, mode=mode)

    result = run(go())
    _emit(
        as_json,
        {"deleted": result.deleted, "kept": result.kept, "missing": result.missing},
        [f"deleted {d}" for d in result.deleted]
        + [f"kept {k}" for k in result.kept]
        + [f"missing {m}" for m in result.missing],
    )
    if result.missing and not result.deleted:
        sys.exit(int(Kind.NOT_FOUND))


COMMANDS = [login, logout, index, push, tree, pull, copy, delete]


def register(group: click.Group) -> None:
    """Add the client commands to the `ocinest` group."""
    for command in COMMANDS:
        group.add_command(command)
