"""The MetaStore in SQL, one implementation for SQLite and PostgreSQL.

Every method is one transaction on a `Database`, which the engine-specific modules provide:
how to read, how to write (serialized: SQLite's single writer, PostgreSQL's serializable
transactions, retried), and how to read a consistent snapshot (garbage collection, fsck).
The SQL is written once, with `?` placeholders, in the subset both engines speak.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from ocinest.oci.digest import Digest
from ocinest.oci.manifest import Manifest
from ocinest.storage.errors import (
    BlobUnknown,
    ManifestReferenced,
    ManifestUnknown,
    ReferenceProblem,
    ReferencesInvalid,
)
from ocinest.storage.meta import GCPlan, ManifestNode, Referrer, StoredManifest, Upload

T = TypeVar("T")


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

    async def write(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in a write transaction isolated from every other (it may run again)."""

    async def snapshot(self, fn: Callable[[Connection], T]) -> T:
        """Run `fn` in one read-only transaction: a consistent view of a long read."""

    async def close(self) -> None: ...


def _visible_blob_size(c: Connection, repo_id: int, digest: str) -> int | None:
    """The blob's size when it is visible in the repository: linked there (pushed or
    mounted), referenced by one of its manifests (which keeps it after a blob DELETE), or
    reachable through nested descriptors of its manifests."""
    row = c.execute(
        "SELECT b.size FROM blobs b WHERE b.digest = ? AND ("
        " EXISTS (SELECT 1 FROM repo_blobs rb WHERE rb.repo_id = ? AND rb.digest = b.digest)"
        " OR EXISTS (SELECT 1 FROM refs f WHERE f.target_repo_id = ?"
        "  AND f.target_digest = b.digest AND f.kind = 'blob')"
        " OR EXISTS (SELECT 1 FROM reach x WHERE x.repo_id = ?"
        "  AND x.digest = b.digest AND x.kind = 'blob'))",
        (digest, repo_id, repo_id, repo_id),
    ).fetchone()
    return None if row is None else int(row[0])


def _closure(c: Connection, roots: list[tuple[int, str]]) -> set[tuple[str, int, str]]:
    """Everything the manifests `roots` (repo_id, digest) reach through reference edges,
    themselves included, as (kind, repo_id, digest)."""
    found = {("manifest", repo_id, digest) for repo_id, digest in roots}
    frontier = list(roots)
    while frontier:
        repo_id, digest = frontier.pop()
        for kind, target, target_digest in c.execute(
            "SELECT kind, target_repo_id, target_digest FROM refs WHERE repo_id = ? AND digest = ?",
            (repo_id, digest),
        ).fetchall():
            edge = (kind, int(target), target_digest)
            if edge not in found:
                found.add(edge)
                if kind == "manifest":
                    frontier.append((edge[1], edge[2]))
    return found


class SQLMetaStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def close(self) -> None:
        await self._db.close()

    @staticmethod
    def _repo_id(c: Connection, name: str, create: bool = False) -> int | None:
        row = c.execute("SELECT id FROM repositories WHERE name = ?", (name,)).fetchone()
        if row is not None:
            return int(row[0])
        if not create:
            return None
        row = c.execute(
            "INSERT INTO repositories(name) VALUES (?) RETURNING id", (name,)
        ).fetchone()
        return int(row[0])

    # Blobs

    async def blob_size(self, repository: str, digest: Digest) -> int | None:
        def size(c: Connection) -> int | None:
            repo_id = self._repo_id(c, repository)
            return None if repo_id is None else _visible_blob_size(c, repo_id, str(digest))

        return await self._db.read(size)

    async def link_blob(
        self,
        repository: str,
        digest: Digest,
        size: int,
        publish: Callable[[], None] | None = None,
        upload_id: str | None = None,
    ) -> bool:
        def link(c: Connection) -> bool:
            now = time.time()
            if upload_id is not None:
                c.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))
            if publish is not None:
                publish()
                c.execute(
                    "INSERT INTO blobs(digest, size, created_at) VALUES (?, ?, ?) "
                    "ON CONFLICT(digest) DO UPDATE SET created_at = excluded.created_at",
                    (str(digest), size, now),
                )
            elif not c.execute("SELECT 1 FROM blobs WHERE digest = ?", (str(digest),)).fetchone():
                return False
            repo_id = self._repo_id(c, repository, create=True)
            c.execute(
                "INSERT INTO repo_blobs(repo_id, digest, linked_at) VALUES (?, ?, ?) "
                "ON CONFLICT(repo_id, digest) DO UPDATE SET linked_at = excluded.linked_at",
                (repo_id, str(digest), now),
            )
            return True

        return await self._db.write(link)

    async def repositories_with_blob(self, digest: Digest, limit: int) -> list[str]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT r.name FROM repo_blobs rb JOIN repositories r ON r.id = rb.repo_id "
                "WHERE rb.digest = ? ORDER BY r.name LIMIT ?",
                (str(digest), limit),
            ).fetchall()
        )
        return [r[0] for r in rows]

    async def unlink_blob(self, repository: str, digest: Digest) -> None:
        def unlink(c: Connection) -> None:
            repo_id = self._repo_id(c, repository)
            if repo_id is None or _visible_blob_size(c, repo_id, str(digest)) is None:
                raise BlobUnknown(repository, str(digest))
            c.execute(
                "DELETE FROM repo_blobs WHERE repo_id = ? AND digest = ?", (repo_id, str(digest))
            )

        await self._db.write(unlink)

    # Manifests and tags

    async def get_manifest(self, repository: str, reference: str) -> StoredManifest | None:
        if Digest.looks_like(reference):
            # Its own manifest, or one reachable through its nested descriptors.
            sql = (
                "SELECT r.name, m.digest, m.media_type, m.content FROM repositories r "
                "JOIN manifests m ON m.repo_id = r.id WHERE r.name = ? AND m.digest = ? "
                "UNION ALL "
                "SELECT t.name, m.digest, m.media_type, m.content FROM repositories p "
                "JOIN reach x ON x.repo_id = p.id AND x.digest = ? AND x.kind = 'manifest' "
                "JOIN manifests m ON m.repo_id = x.target_repo_id AND m.digest = x.digest "
                "JOIN repositories t ON t.id = m.repo_id WHERE p.name = ? LIMIT 1"
            )
            params: tuple[str, ...] = (repository, reference, reference, repository)
        else:
            sql = (
                "SELECT r.name, m.digest, m.media_type, m.content FROM repositories r "
                "JOIN tags t ON t.repo_id = r.id "
                "JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest "
                "WHERE r.name = ? AND t.name = ?"
            )
            params = (repository, reference)
        row = await self._db.read(lambda c: c.execute(sql, params).fetchone())
        return None if row is None else StoredManifest(row[0], row[1], row[2], bytes(row[3]))

    async def reached_through(self, repository: str, digest: str, kind: str) -> list[str]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT DISTINCT p.name FROM repositories t "
                "JOIN reach x ON x.target_repo_id = t.id AND x.digest = ? AND x.kind = ? "
                "JOIN repositories p ON p.id = x.repo_id WHERE t.name = ?",
                (digest, kind, repository),
            ).fetchall()
        )
        return [r[0] for r in rows]

    async def manifest_nodes(
        self, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], ManifestNode]:
        if not keys:
            return {}
        # Joining the keys as a table lets each one be a primary-key lookup.
        values = ", ".join("(?, ?)" for _ in keys)
        sql = (
            "SELECT r.name, m.digest, m.media_type, m.size, m.content,"
            " (SELECT COUNT(*) FROM manifests s WHERE s.repo_id = m.repo_id"
            "  AND s.subject = m.digest) "
            f"FROM (VALUES {values}) k "
            "JOIN repositories r ON r.name = k.column1 "
            "JOIN manifests m ON m.repo_id = r.id AND m.digest = k.column2"
        )
        params = [v for key in keys for v in key]
        rows = await self._db.read(lambda c: c.execute(sql, params).fetchall())
        return {
            (r[0], r[1]): ManifestNode(r[0], r[1], r[2], int(r[3]), bytes(r[4]), int(r[5]))
            for r in rows
        }

    async def put_manifest(self, repository: str, manifest: Manifest, tag: str | None) -> None:
        def put(c: Connection) -> None:
            repo_id = self._repo_id(c, repository, create=True)
            digest = str(manifest.digest)
            edges, problems = self._check_references(c, repository, repo_id, manifest)
            if problems:
                raise ReferencesInvalid(problems)
            now = time.time()
            c.execute(
                "INSERT INTO manifests(repo_id, digest, media_type, size, content, artifact_type,"
                " subject, annotations, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(repo_id, digest) DO NOTHING",
                (
                    repo_id,
                    digest,
                    manifest.media_type,
                    manifest.size,
                    manifest.raw,
                    manifest.artifact_type,
                    str(manifest.subject.digest) if manifest.subject else None,
                    json.dumps(manifest.annotations) if manifest.annotations else None,
                    now,
                ),
            )
            c.executemany(
                "INSERT INTO refs(repo_id, digest, kind, target_repo_id, target_digest) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(repo_id, digest, kind, target, d) for kind, target, d in edges],
            )
            nested = [(t, d) for kind, t, d in edges if kind == "manifest" and t != repo_id]
            if nested:
                c.executemany(
                    "INSERT INTO reach(repo_id, owner, kind, target_repo_id, digest) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    [(repo_id, digest, *edge) for edge in _closure(c, nested)],
                )
            if tag is not None:
                c.execute(
                    "INSERT INTO tags(repo_id, name, digest, updated_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(repo_id, name) DO UPDATE "
                    "SET digest = excluded.digest, updated_at = excluded.updated_at",
                    (repo_id, tag, digest, now),
                )

        await self._db.write(put)

    def _check_references(
        self, c: Connection, repository: str, repo_id: int | None, manifest: Manifest
    ) -> tuple[list[tuple[str, int, str]], list[ReferenceProblem]]:
        """The edges `manifest` makes, and a problem for each reference that is not there."""
        edges: list[tuple[str, int, str]] = []
        problems: list[ReferenceProblem] = []
        for ref in manifest.references:
            d = ref.descriptor
            digest = str(d.digest)
            if ref.kind == "blob":
                size = None if repo_id is None else _visible_blob_size(c, repo_id, digest)
                if size is None:
                    problems.append(
                        ReferenceProblem(f"blob {digest} is not in {repository}", missing=True)
                    )
                elif size != d.size:
                    problems.append(
                        ReferenceProblem(
                            f"descriptor of blob {digest} says size {d.size}, the blob has {size}",
                            missing=False,
                        )
                    )
                else:
                    assert repo_id is not None
                    edges.append(("blob", repo_id, digest))
                continue
            target = repository if ref.child is None else f"{repository}/{ref.child}"
            target_id = repo_id if ref.child is None else self._repo_id(c, target)
            row = c.execute(
                "SELECT media_type, size FROM manifests WHERE repo_id = ? AND digest = ?",
                (target_id, digest),
            ).fetchone()
            nested = ref.child is not None
            if row is None:
                problems.append(
                    ReferenceProblem(
                        f"manifest {digest} is not in {target}", missing=True, nested=nested
                    )
                )
            elif (row[0], row[1]) != (d.media_type, d.size):
                problems.append(
                    ReferenceProblem(
                        f"descriptor of manifest {target}@{digest} says {d.media_type}, "
                        f"{d.size} bytes; the manifest is {row[0]}, {row[1]} bytes",
                        missing=False,
                        nested=nested,
                    )
                )
            else:
                assert target_id is not None
                edges.append(("manifest", target_id, digest))
        return edges, problems

    async def delete_manifest(self, repository: str, digest: Digest) -> None:
        def delete(c: Connection) -> None:
            repo_id = self._repo_id(c, repository)
            key = (repo_id, str(digest))
            if (
                c.execute(
                    "SELECT 1 FROM manifests WHERE repo_id = ? AND digest = ?", key
                ).fetchone()
                is None
            ):
                raise ManifestUnknown(repository, str(digest))
            user = c.execute(
                "SELECT r.name, f.digest FROM refs f JOIN repositories r ON r.id = f.repo_id "
                "WHERE f.target_repo_id = ? AND f.target_digest = ? AND f.kind = 'manifest' "
                "AND NOT (f.repo_id = ? AND f.digest = ?) LIMIT 1",
                (*key, *key),
            ).fetchone()
            if user is not None:
                raise ManifestReferenced(repository, str(digest), f"{user[0]}@{user[1]}")
            c.execute("DELETE FROM tags WHERE repo_id = ? AND digest = ?", key)
            c.execute("DELETE FROM refs WHERE repo_id = ? AND digest = ?", key)
            c.execute("DELETE FROM reach WHERE repo_id = ? AND owner = ?", key)
            c.execute("DELETE FROM manifests WHERE repo_id = ? AND digest = ?", key)

        await self._db.write(delete)

    async def delete_tag(self, repository: str, tag: str) -> None:
        def delete(c: Connection) -> None:
            repo_id = self._repo_id(c, repository)
            cur = c.execute("DELETE FROM tags WHERE repo_id = ? AND name = ?", (repo_id, tag))
            if cur.rowcount == 0:
                raise ManifestUnknown(repository, tag, kind="tag")

        await self._db.write(delete)

    async def list_tags(self, repository: str, limit: int, last: str | None) -> list[str] | None:
        def tags(c: Connection) -> list[str] | None:
            repo_id = self._repo_id(c, repository)
            if repo_id is None:
                return None
            rows = c.execute(
                "SELECT name FROM tags WHERE repo_id = ? AND name > ? ORDER BY name LIMIT ?",
                (repo_id, last or "", limit),
            ).fetchall()
            return [r[0] for r in rows]

        return await self._db.read(tags)

    async def list_repositories(self, limit: int, last: str | None) -> list[str]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT name FROM repositories WHERE name > ? ORDER BY name LIMIT ?",
                (last or "", limit),
            ).fetchall()
        )
        return [r[0] for r in rows]

    async def list_referrers(
        self, repository: str, subject: Digest, artifact_type: str | None
    ) -> list[Referrer]:
        sql = (
            "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations "
            "FROM repositories r JOIN manifests m ON m.repo_id = r.id "
            "WHERE r.name = ? AND m.subject = ?"
        )
        args: tuple[str, ...] = (repository, str(subject))
        if artifact_type is not None:
            sql += " AND m.artifact_type = ?"
            args += (artifact_type,)
        sql += " ORDER BY m.digest"
        rows = await self._db.read(lambda c: c.execute(sql, args).fetchall())
        return [
            Referrer(r[0], r[1], int(r[2]), r[3], json.loads(r[4]) if r[4] else {}) for r in rows
        ]

    # Upload sessions

    async def create_upload(self, upload: Upload) -> None:
        await self._db.write(
            lambda c: c.execute(
                "INSERT INTO uploads(id, repository, created_at) VALUES (?, ?, ?)",
                (upload.id, upload.repository, upload.created_at),
            )
        )

    async def get_upload(self, upload_id: str) -> Upload | None:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT id, repository, created_at FROM uploads WHERE id = ?", (upload_id,)
            ).fetchone()
        )
        return None if row is None else Upload(row[0], row[1], float(row[2]))

    async def delete_upload(self, upload_id: str) -> None:
        await self._db.write(lambda c: c.execute("DELETE FROM uploads WHERE id = ?", (upload_id,)))

    async def expired_uploads(self, before: float) -> list[Upload]:
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT id, repository, created_at FROM uploads WHERE created_at < ?", (before,)
            ).fetchall()
        )
        return [Upload(r[0], r[1], float(r[2])) for r in rows]

    # Garbage collection

    async def gc_plan(self, cutoff: float, delete_untagged: bool) -> GCPlan:
        return await self._db.snapshot(lambda c: _gc_plan(c, cutoff, delete_untagged))

    async def gc_delete_manifests(
        self, keys: list[tuple[str, str]], cutoff: float
    ) -> list[tuple[str, str]]:
        doomed = set(keys)

        def delete(c: Connection) -> list[tuple[str, str]]:
            gone = []
            for repository, digest in keys:
                repo_id = self._repo_id(c, repository)
                key = (repo_id, digest)
                row = c.execute(
                    "SELECT created_at, subject FROM manifests WHERE repo_id = ? AND digest = ?",
                    key,
                ).fetchone()
                if row is None or row[0] >= cutoff:
                    continue
                subject = row[1]
                if (
                    subject is not None
                    and (repository, subject) not in doomed
                    and c.execute(
                        "SELECT 1 FROM manifests WHERE repo_id = ? AND digest = ?",
                        (repo_id, subject),
                    ).fetchone()
                ):
                    continue  # a referrer of content that stays
                if c.execute(
                    "SELECT 1 FROM tags WHERE repo_id = ? AND digest = ? UNION ALL "
                    "SELECT 1 FROM refs WHERE target_repo_id = ? AND target_digest = ? "
                    "AND kind = 'manifest' AND NOT (repo_id = ? AND digest = ?) LIMIT 1",
                    (*key, *key, *key),
                ).fetchone():
                    continue
                c.execute("DELETE FROM refs WHERE repo_id = ? AND digest = ?", key)
                c.execute("DELETE FROM reach WHERE repo_id = ? AND owner = ?", key)
                c.execute("DELETE FROM manifests WHERE repo_id = ? AND digest = ?", key)
                gone.append((repository, digest))
            return gone

        return await self._db.write(delete)

    async def gc_delete_blobs(
        self, digests: list[str], cutoff: float, delete: Callable[[str], None]
    ) -> list[str]:
        def sweep(c: Connection) -> list[str]:
            gone = []
            for digest in digests:
                row = c.execute(
                    "SELECT created_at FROM blobs WHERE digest = ?", (digest,)
                ).fetchone()
                if row is not None:
                    if (
                        row[0] >= cutoff
                        or c.execute(
                            "SELECT 1 FROM refs WHERE target_digest = ? AND kind = 'blob' "
                            "UNION ALL SELECT 1 FROM repo_blobs "
                            "WHERE digest = ? AND linked_at >= ? LIMIT 1",
                            (digest, digest, cutoff),
                        ).fetchone()
                    ):
                        continue
                    c.execute("DELETE FROM repo_blobs WHERE digest = ?", (digest,))
                    c.execute("DELETE FROM blobs WHERE digest = ?", (digest,))
                delete(digest)
                gone.append(digest)
            return gone

        return await self._db.write(sweep)

    # Consistency checks

    async def all_blobs(self) -> dict[str, int]:
        rows = await self._db.snapshot(
            lambda c: c.execute("SELECT digest, size FROM blobs").fetchall()
        )
        return {d: int(s) for d, s in rows}

    async def all_manifests(self) -> list[tuple[str, str, bytes]]:
        rows = await self._db.snapshot(
            lambda c: c.execute(
                "SELECT r.name, m.digest, m.content FROM manifests m "
                "JOIN repositories r ON r.id = m.repo_id"
            ).fetchall()
        )
        return [(r[0], r[1], bytes(r[2])) for r in rows]

    async def dangling_references(self) -> list[tuple[str, str, str, str]]:
        rows = await self._db.snapshot(
            lambda c: c.execute(
                "SELECT r.name, f.digest, f.kind, t.name || '@' || f.target_digest FROM refs f "
                "JOIN repositories r ON r.id = f.repo_id "
                "JOIN repositories t ON t.id = f.target_repo_id "
                "WHERE (f.kind = 'blob' AND NOT EXISTS "
                "  (SELECT 1 FROM blobs b WHERE b.digest = f.target_digest)) "
                "OR (f.kind = 'manifest' AND NOT EXISTS (SELECT 1 FROM manifests m "
                "  WHERE m.repo_id = f.target_repo_id AND m.digest = f.target_digest))"
            ).fetchall()
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def forget_blobs(self, digests: list[str], delete: Callable[[str], None]) -> None:
        def forget(c: Connection) -> None:
            for digest in digests:
                delete(digest)
                c.execute("DELETE FROM repo_blobs WHERE digest = ?", (digest,))
                c.execute("DELETE FROM blobs WHERE digest = ?", (digest,))

        await self._db.write(forget)


def _gc_plan(c: Connection, cutoff: float, delete_untagged: bool) -> GCPlan:
    names = {r[0]: r[1] for r in c.execute("SELECT id, name FROM repositories").fetchall()}
    manifests: dict[tuple[int, str], tuple[str | None, float, int]] = {
        (r[0], r[1]): (r[2], r[3], r[4])
        for r in c.execute("SELECT repo_id, digest, subject, created_at, size FROM manifests")
    }
    children: dict[tuple[int, str], list[tuple[int, str]]] = {}
    blob_refs: dict[tuple[int, str], list[str]] = {}
    for repo_id, digest, kind, target_repo, target in c.execute(
        "SELECT repo_id, digest, kind, target_repo_id, target_digest FROM refs"
    ):
        if kind == "manifest":
            children.setdefault((repo_id, digest), []).append((target_repo, target))
        else:
            blob_refs.setdefault((repo_id, digest), []).append(target)
    if delete_untagged:
        roots = {(r[0], r[1]) for r in c.execute("SELECT repo_id, digest FROM tags")}
        roots |= {key for key, (_, created, _) in manifests.items() if created >= cutoff}
    else:
        roots = set(manifests)
    by_subject: dict[tuple[int, str], list[tuple[int, str]]] = {}
    for (repo_id, digest), (subject, _, _) in manifests.items():
        if subject is not None:
            by_subject.setdefault((repo_id, subject), []).append((repo_id, digest))
    # Live: reachable from the roots through children, nested edges and subjects.
    live: set[tuple[int, str]] = set()
    frontier = [key for key in roots if key in manifests]
    while frontier:
        key = frontier.pop()
        if key in live:
            continue
        live.add(key)
        frontier.extend(k for k in children.get(key, []) if k in manifests)
        frontier.extend(by_subject.get(key, []))
    dead = [
        (names[repo_id], digest, manifests[(repo_id, digest)][2])
        for repo_id, digest in manifests
        if (repo_id, digest) not in live
    ]
    live_blobs = {d for key in live for d in blob_refs.get(key, [])}
    blobs = [
        (digest, int(size))
        for digest, size, created in c.execute("SELECT digest, size, created_at FROM blobs")
        if digest not in live_blobs and created < cutoff
    ]
    return GCPlan(sorted(dead), sorted(blobs))
