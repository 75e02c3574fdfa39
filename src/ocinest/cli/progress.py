"""How a transfer reports while it runs, by where its output goes:

* a terminal: progress bars (rich), gone when done;
* anything else (CI, Tekton logs): a line per manifest placed and per large blob moved, and
  every 10 s a line of the bytes moved so far and their rate;
* `--progress json`: the same events as JSON Lines, every blob included, small ones too;
* `--quiet`: nothing but errors.

`--json` is about standard output only: one object at the end, whatever the progress.
"""

from __future__ import annotations

import json
import sys
import time
from abc import ABC, abstractmethod
from typing import Any

import click
from rich.filesize import decimal

from ocinest.client import ProgressEvent

LARGE_BLOB = 1 << 20  # a blob this size or more gets a line of its own
PERIOD = 10.0  # seconds between lines of bytes moved


def reporter(progress: str, quiet: bool) -> Reporter:
    """The reporter for --progress (auto or json), --quiet and where stderr goes."""
    if quiet:
        return Reporter()
    if progress == "json":
        return JsonEvents()
    if sys.stdout.isatty() and sys.stderr.isatty():
        return TransferBars()
    return LogLines()


class Reporter:
    """Reports nothing (--quiet); the base of those that do."""

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __call__(self, event: ProgressEvent) -> None:
        pass


class TransferBars(Reporter):
    """Progress bars (rich) on stderr, gone when done: for a terminal."""

    def __init__(self) -> None:
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
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> TransferBars:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def __call__(self, event: ProgressEvent) -> None:
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


class _Lines(Reporter, ABC):
    """Events as lines on stderr, with a line of the bytes moved every PERIOD seconds."""

    every_blob = False

    def __init__(self) -> None:
        self._start = self._last = time.monotonic()
        self._moved = 0

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "advance":
            self._moved += event.amount
            now = time.monotonic()
            if now - self._last >= PERIOD:
                self._last = now
                seconds = round(now - self._start)
                rate = int(self._moved / max(seconds, 1))
                self.line(
                    {"event": "progress", "bytes": self._moved, "seconds": seconds, "rate": rate}
                )
        elif event.kind == "manifest" or (
            event.kind == "done" and (self.every_blob or event.size >= LARGE_BLOB)
        ):
            self.line(
                {
                    "event": "manifest" if event.kind == "manifest" else "blob",
                    "outcome": event.outcome,
                    "digest": str(event.digest),
                    "size": event.size,
                    "where": event.where,
                }
            )

    @abstractmethod
    def line(self, record: dict[str, Any]) -> None:
        """Write one event."""


class LogLines(_Lines):
    """For people reading a log."""

    def line(self, record: dict[str, Any]) -> None:
        if record["event"] == "progress":
            text = (
                f"… {decimal(record['bytes'])} moved in {record['seconds']} s "
                f"({decimal(record['rate'])}/s)"
            )
        else:
            what = "manifest " if record["event"] == "manifest" else ""
            digest = record["digest"][:19]  # sha256: and 12 hex digits
            text = f"{record['outcome']} {what}{digest} ({decimal(record['size'])})"
            if record["where"]:
                text += f" in {record['where']}"
        click.echo(text, err=True)


class JsonEvents(_Lines):
    """For programs: one JSON object per line."""

    every_blob = True

    def line(self, record: dict[str, Any]) -> None:
        click.echo(json.dumps(record), err=True)
