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

from ocinest.storage.sql import Connection, SQLMetaStore

T = TypeVar("T")

SCHEMA = [
    """
    CREATE TABLE repositories (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE blobs (
        digest TEXT PRIMARY KEY,
        size BIGINT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE repo_blobs (
        repo_id INTEGER NOT NULL REFERENCES repositories(id),
        digest TEXT NOT NULL REFERENCES blobs(digest),
        linked_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (repo_id, digest)
    );
    CREATE INDEX repo_blobs_by_digest ON repo_blobs(digest);
    CREATE TABLE manifests (
        repo_id INTEGER NOT NULL REFERENCES repositories(id),
        digest TEXT NOT NULL,
        media_type TEXT NOT NULL,
        size BIGINT NOT NULL,
        content BLOB NOT NULL,
        artifact_type TEXT,
        subject TEXT,
        annotations TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (repo_id, digest)
    );
    CREATE INDEX manifests_by_subject ON manifests(repo_id, subject);
    CREATE TABLE tags (
        repo_id INTEGER NOT NULL REFERENCES repositories(id),
        name TEXT NOT NULL,
        digest TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (repo_id, name)
    );
    CREATE INDEX tags_by_digest ON tags(repo_id, digest);
    -- Reference edges: manifest (repo_id, digest) needs a blob or a manifest in target_repo_id.
    CREATE TABLE refs (
        repo_id INTEGER NOT NULL,
        digest TEXT NOT NULL,
        kind TEXT NOT NULL,
        target_repo_id INTEGER NOT NULL REFERENCES repositories(id),
        target_digest TEXT NOT NULL,
        PRIMARY KEY (repo_id, digest, kind, target_repo_id, target_digest)
    );
    CREATE INDEX refs_by_target ON refs(target_repo_id, target_digest, kind);
    -- Nested reach: content in target_repo_id readable through repo_id by digest, because
    -- manifest `owner` of repo_id reaches it through nested descriptors. Filled when the
    -- owner is pushed (manifests are immutable, referenced children cannot be deleted).
    CREATE TABLE reach (
        repo_id INTEGER NOT NULL,
        owner TEXT NOT NULL,
        kind TEXT NOT NULL,
        target_repo_id INTEGER NOT NULL,
        digest TEXT NOT NULL,
        PRIMARY KEY (repo_id, owner, kind, target_repo_id, digest)
    );
    CREATE INDEX reach_by_digest ON reach(repo_id, digest, kind);
    CREATE INDEX reach_by_target ON reach(target_repo_id, digest);
    CREATE TABLE uploads (
        id TEXT PRIMARY KEY,
        repository TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    """,
]


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
                for statement in step.split(";"):
                    if statement.strip():
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
