"""The engine boundary of the SQL MetaStore: the schema, written once in portable SQL, and the
small `Database` protocol each engine (SQLite, PostgreSQL) provides to run it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

# Kinds of reference edges (`refs.kind`) for the descriptors a sparse push accepted though
# their target was never pushed (`allow_sparse`). Such an edge makes nothing visible (not in
# the repository, not through a parent), but once its target is there it holds it as an
# ordinary edge does: against GC, and a manifest against DELETE.
SPARSE_BLOB = "sparse-blob"
SPARSE_MANIFEST = "sparse-manifest"


# The schema, one step per version, in portable SQL; {ID}, {BYTES} and {NAME} (text that sorts
# byte by byte, as tag lists must) are spelled by each engine.
SCHEMA = [
    """
    CREATE TABLE repositories (
        id {ID},
        name {NAME} NOT NULL UNIQUE
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
        content {BYTES} NOT NULL,
        artifact_type TEXT,
        subject TEXT,
        annotations TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (repo_id, digest)
    );
    CREATE INDEX manifests_by_subject ON manifests(repo_id, subject);
    CREATE TABLE tags (
        repo_id INTEGER NOT NULL REFERENCES repositories(id),
        name {NAME} NOT NULL,
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
    CREATE INDEX refs_by_target ON refs(target_digest, target_repo_id, kind);
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
    # What each garbage collection did and counted, whichever process ran it (`serve` or
    # `ocinest gc`): /metrics reads the last one. The summary is JSON (GCRun).
    """
    CREATE TABLE gc_runs (
        id {ID},
        finished_at DOUBLE PRECISION NOT NULL,
        summary TEXT NOT NULL
    );
    """,
]


def migration(step: str, types: dict[str, str]) -> list[str]:
    """The statements of a schema step, in an engine's spelling."""
    for key, spelled in types.items():
        step = step.replace("{" + key + "}", spelled)
    return [s.strip() for s in step.split(";") if s.strip()]


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Cursor: ...
    def executemany(self, sql: str, params: Sequence[Sequence[Any]], /) -> Any: ...


class Database(Protocol):
    async def read(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` on a connection that sees committed data."""

    async def write(self, fn: Callable[[Connection], T], durable: bool = True) -> T:
        """Run `fn` in a write transaction isolated from every other (it may run again).

        Committed durably, unless `durable` is False: then the commit may survive only a
        crash of this process, not one of the machine, until the next durable commit (which
        makes every earlier one durable too). A database that can crash on its own commits
        durably whatever `durable` says."""

    async def snapshot(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in one read-only transaction: a consistent view of a long read."""

    def change_counter(self) -> int | None:
        """A number that differs after every commit, by any connection of any process, read
        without touching a table; None where the engine has no such number short of a round
        trip to its server (then the MetaStore caches nothing)."""

    async def close(self) -> None: ...


def find_repo(c: Connection, name: str, create: bool = False) -> int | None:
    """The repository's id; with `create`, made when it is not there yet."""
    row = c.execute("SELECT id FROM repositories WHERE name = ?", (name,)).fetchone()
    if row is not None:
        return int(row[0])
    if not create:
        return None
    row = c.execute("INSERT INTO repositories(name) VALUES (?) RETURNING id", (name,)).fetchone()
    return int(row[0])
