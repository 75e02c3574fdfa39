"""What the client commands share: connection options, `--json`, `--mode` and `--concurrency`
(each only on the commands it applies to), running a command's coroutine (a `ClientError`
becomes one line on stderr and its exit code), and output (progress is cli/progress.py)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.filesize import decimal

from ocinest.client import (
    BadReference,
    ClientError,
    Kind,
    Options,
    Stats,
    parse_reference,
)
from ocinest.oci.digest import DigestError

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
PROGRESS_OPTION = click.option(
    "--progress",
    type=click.Choice(["auto", "json"]),
    default="auto",
    show_default=True,
    help="Progress on stderr: auto (bars on a terminal, else a line per manifest and large "
    "blob and the rate every 10 s), or json (those lines as JSON Lines).",
)
QUIET_OPTION = click.option("--quiet", "-q", is_flag=True, help="No progress, only errors.")
# Only on the commands that transfer blobs.
CONCURRENCY_OPTION = click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Blobs transferred in parallel.",
)


RESULT_FILE_OPTION = click.option(
    "--result-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the pinned reference host/P@sha256:… here (a Tekton result).",
)


def write_result(result_file: Path | None, reference: str) -> None:
    """Write the pinned reference where --result-file says, if it says."""
    if result_file is None:
        return
    try:
        result_file.write_text(reference)
    except OSError as exc:
        fail(f"cannot write {result_file}: {exc.strerror}", 1)


def connection_options(f: F) -> F:
    """Options on how to reach registries, shared by every client command (`--concurrency`
    is CONCURRENCY_OPTION, on the commands that transfer blobs)."""
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
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def options_from(kwargs: dict[str, Any]) -> Options:
    return Options(
        plain_http=bool(kwargs.pop("plain_http", False)),
        insecure=bool(kwargs.pop("insecure", False)),
        ca_file=kwargs.pop("ca_file", None),
        auth_file=kwargs.pop("authfile", None),
        concurrency=int(kwargs.pop("concurrency", 4)),
    )


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"ocinest: error: {message}", err=True)
    sys.exit(code)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; a `ClientError` becomes one line and its exit code."""
    try:
        return asyncio.run(coro)
    except ClientError as exc:
        fail(exc.message, int(exc.kind))
    except DigestError as exc:  # in what a registry or a layout answered
        fail(f"invalid content: {exc}", int(Kind.FAILED))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except OSError as exc:
        fail(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}", 1)
    raise AssertionError("unreachable")


def reference_arg(text: str) -> Any:
    try:
        return parse_reference(text)
    except BadReference as exc:
        fail(exc.message, int(Kind.USAGE))


def emit(as_json: bool, data: dict[str, Any], human: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        for line in human:
            click.echo(line)


def note(as_json: bool, text: str) -> None:
    """A human note on stderr (not with --json)."""
    if not as_json:
        click.echo(text, err=True)


def plural(count: int, word: str, words: str | None = None) -> str:
    """`1 blob`, `2 blobs` (`words`: the plural when it is not word + s)."""
    return f"{count} {word if count == 1 else words or word + 's'}"


def summary(stats: Stats) -> str:
    parts = [
        f"{plural(stats.blobs_uploaded, 'blob')} uploaded ({decimal(stats.bytes_uploaded)})",
        f"{stats.blobs_mounted} mounted",
        f"{stats.blobs_skipped} already there",
        f"{plural(stats.manifests_pushed, 'manifest')} pushed",
    ]
    if stats.manifests_skipped:
        parts.append(f"{stats.manifests_skipped} already there")
    if stats.tags_pushed:
        parts.append(f"{plural(stats.tags_pushed, 'child tag')} set")
    return ", ".join(parts)
