"""SQLite for the MetaStore, in WAL mode: the embedded single-machine registry.

Reads run on the event loop's thread (they take microseconds); writes run in one dedicated
thread, each an `IMMEDIATE` transaction committed with `synchronous=FULL`, so an
acknowledged write survives a crash. Several processes may share the file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ocinest.storage.database import SCHEMA, Connection, migration
from ocinest.storage.sql import SQLMetaStore

T = TypeVar("T")

# How the portable schema's types are spelled here.
TYPES = {"ID": "INTEGER PRIMARY KEY", "BYTES": "BLOB", "NAME": "TEXT"}


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

    async def write(self, fn: Callable[[Connection], T]) -> T:
        def run() -> T:
            c = self._writer
            c.execute("BEGIN IMMEDIATE")
            try:
                result = fn(c)
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
            return result

        return await asyncio.get_running_loop().run_in_executor(self._pool, run)

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
