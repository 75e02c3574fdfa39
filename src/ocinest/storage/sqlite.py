"""SQLite for the MetaStore, in WAL mode: the embedded single-machine registry.

Reads run on the event loop's thread (they take microseconds); writes run in one dedicated
thread, in `IMMEDIATE` transactions committed with `synchronous=FULL`, so an acknowledged
write survives a crash. Writes that queue up while one commits are committed together (a
group commit: one fsync for all of them), each in a savepoint of its own, so that one that
fails is rolled back alone. Several processes may share the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ocinest.storage.database import SCHEMA, Connection, migration
from ocinest.storage.sql import SQLMetaStore

T = TypeVar("T")

# How the portable schema's types are spelled here.
TYPES = {"ID": "INTEGER PRIMARY KEY", "BYTES": "BLOB", "NAME": "TEXT"}


@dataclass
class _Write:
    """A write waiting for the writer thread, and where its outcome goes."""

    fn: Callable[[Connection], Any]
    durable: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = None

    def settle(self) -> None:
        def deliver() -> None:
            if self.future.done():
                return  # the caller went away
            if self.error is not None:
                self.future.set_exception(self.error)
            else:
                self.future.set_result(self.result)

        self.loop.call_soon_threadsafe(deliver)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class SQLiteDatabase:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._writer = _connect(path)
        self._migrate()
        self._reader = _connect(path)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ocinest-sqlite")
        self._queued: list[_Write] = []
        self._queue_lock = threading.Lock()

    def _migrate(self) -> None:
        c = self._writer
        c.execute("BEGIN EXCLUSIVE")
        try:
            version = c.execute("PRAGMA user_version").fetchone()[0]
            for step in SCHEMA[version:]:
                for statement in migration(step, TYPES):
                    c.execute(statement)
            c.execute(f"PRAGMA user_version = {len(SCHEMA)}")
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    async def read(self, fn: Callable[[Connection], T]) -> T:
        return fn(self._reader)

    def change_counter(self) -> int:
        # The reader never writes, so its data_version moves with every commit: this
        # process's writer's and any other process's (read from the WAL index, ~1.5 µs).
        version: int = self._reader.execute("PRAGMA data_version").fetchone()[0]
        return version

    async def write(self, fn: Callable[[Connection], T], durable: bool = True) -> T:
        loop = asyncio.get_running_loop()
        write = _Write(fn, durable, loop, loop.create_future())
        with self._queue_lock:
            self._queued.append(write)
        # Each write starts a turn of the writer thread; a turn takes every write queued by
        # then, so a later turn may find its write already done.
        self._pool.submit(self._commit_queued)
        result: T = await write.future
        return result

    def _commit_queued(self) -> None:
        with self._queue_lock:
            writes, self._queued = self._queued, []
        if not writes:
            return
        c = self._writer
        durable = any(w.durable for w in writes)
        try:
            if not durable:
                # In WAL mode the commit is then written, not fsynced: the WAL is
                # sequential, so the next FULL commit's fsync covers it.
                c.execute("PRAGMA synchronous = NORMAL")
            c.execute("BEGIN IMMEDIATE")
            for w in writes:
                c.execute("SAVEPOINT write")
                try:
                    w.result = w.fn(c)
                except BaseException as exc:
                    w.error = exc
                    c.execute("ROLLBACK TO write")
                c.execute("RELEASE write")
            c.execute("COMMIT")
        except BaseException as exc:
            for w in writes:
                w.error = exc  # none of them committed
            if c.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    c.execute("ROLLBACK")
        finally:
            try:
                if not durable:
                    c.execute("PRAGMA synchronous = FULL")
            finally:
                for w in writes:
                    w.settle()

    async def snapshot(self, fn: Callable[[Connection], T]) -> T:
        def run() -> T:
            c = _connect(self._path)
            try:
                c.execute("BEGIN")
                return fn(c)
            finally:
                c.close()

        return await asyncio.get_running_loop().run_in_executor(None, run)

    async def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._reader.close()
        self._writer.close()


class SQLiteMetaStore(SQLMetaStore):
    def __init__(self, path: Path) -> None:
        super().__init__(SQLiteDatabase(path))
