"""The MetaStore in SQL, one implementation for SQLite and PostgreSQL.

Every method is one transaction on a `Database`, which the engine-specific modules provide:
how to read, how to write (serialized: SQLite's single writer, PostgreSQL's serializable
transactions, retried), and how to read a consistent snapshot (garbage collection, fsck).
The SQL is written once, with `?` placeholders, in the subset both engines speak. The schema
and the `Database` protocol are in `database.py`; what GC and fsck read and delete is in
`sql_gc.py`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from ocinest.oci.digest import Digest
from ocinest.oci.manifest import Manifest, Reference
from ocinest.storage.database import (
    SPARSE_BLOB,
    SPARSE_MANIFEST,
    Connection,
    Database,
    find_repo,
)
from ocinest.storage.errors import (
    BlobUnknown,
    ManifestReferenced,
    ManifestUnknown,
    ReachTooLarge,
    ReferenceProblem,
    ReferencesInvalid,
)
from ocinest.storage.manifest_cache import ManifestCache
from ocinest.storage.meta import (
    ManifestNode,
    MoveHook,
    Referrer,
    StoredManifest,
    TagHook,
    Upload,
)
from ocinest.storage.sql_gc import GCQueries

T = TypeVar("T")

# A blob's or a link's time is refreshed by a new push only when older than this (seconds).
FRESH = 1.0


def _visible_blob_size(c: Connection, repo_id: int, digest: str) -> int | None:
    """The blob's size when it is visible in the repository: linked there (pushed or
    mounted), referenced by one of its manifests (which keeps it after a blob DELETE),
    reachable through nested descriptors of its manifests, or needed by a referrer of content
    so reached (what reads see, writes may reference)."""
    row = c.execute(
        "SELECT b.size FROM blobs b WHERE b.digest = ? AND ("
        " EXISTS (SELECT 1 FROM repo_blobs rb WHERE rb.repo_id = ? AND rb.digest = b.digest)"
        " OR EXISTS (SELECT 1 FROM refs f WHERE f.target_repo_id = ?"
        "  AND f.target_digest = b.digest AND f.kind = 'blob')"
        " OR EXISTS (SELECT 1 FROM reach x WHERE x.repo_id = ?"
        "  AND x.digest = b.digest AND x.kind = 'blob'))",
        (digest, repo_id, repo_id, repo_id),
    ).fetchone()
    return _referrer_blob_size(c, repo_id, digest) if row is None else int(row[0])


def _referrer_blob_size(c: Connection, repo_id: int, digest: str) -> int | None:
    """The blob's size when a referrer of content the repository reaches through nested
    descriptors needs it (contract rule 6: such referrers are readable through the parent)."""
    # Driven from what the repository reaches (nothing, for most repositories), never from
    # the blob's users: a common blob such as the empty config has very many.
    row = c.execute(
        "SELECT b.size FROM reach x "
        "CROSS JOIN manifests m CROSS JOIN refs f CROSS JOIN blobs b "
        "WHERE x.repo_id = ? AND x.kind = 'manifest' "
        "AND m.repo_id = x.target_repo_id AND m.subject = x.digest "
        "AND f.repo_id = m.repo_id AND f.digest = m.digest AND f.kind = 'blob' "
        "AND f.target_repo_id = m.repo_id AND f.target_digest = ? "
        "AND b.digest = f.target_digest LIMIT 1",
        (repo_id, digest),
    ).fetchone()
    return None if row is None else int(row[0])


# Keys per batched lookup (two parameters each: well within SQLite's and PostgreSQL's limits).
BATCH = 500


def _keys_table(keys: Sequence[tuple[Any, Any]]) -> tuple[str, list[Any]]:
    """`keys` as a table `k` of two columns (`k.column1`, `k.column2`) to join, each key then
    a primary-key lookup, and its parameters."""
    return f"(VALUES {', '.join('(?, ?)' for _ in keys)}) k", [v for key in keys for v in key]


def _batches(keys: Sequence[T]) -> Iterator[Sequence[T]]:
    """`keys` without repeats, `BATCH` at a time."""
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), BATCH):
        yield unique[start : start + BATCH]


def _manifests_by_name(
    c: Connection, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, str, int]]:
    """(repo_id, media type, size) of each (repository, digest) of `keys` that is stored, in
    one query per `BATCH` keys. The repository id is a subquery per key, not a join (see
    `manifest_nodes`)."""
    found: dict[tuple[str, str], tuple[int, str, int]] = {}
    for batch in _batches(keys):
        table, params = _keys_table(batch)
        for name, digest, repo_id, media_type, size in c.execute(
            f"SELECT k.column1, m.digest, m.repo_id, m.media_type, m.size FROM {table} "
            "JOIN manifests m ON m.repo_id = (SELECT r.id FROM repositories r"
            " WHERE r.name = k.column1) AND m.digest = k.column2",
            params,
        ).fetchall():
            found[(name, digest)] = (int(repo_id), media_type, int(size))
    return found


def _closure(
    c: Connection, roots: list[tuple[int, str]], limit: int | None = None
) -> set[tuple[str, int, str]] | None:
    """Everything the manifests `roots` (repo_id, digest) reach through reference edges,
    themselves included, as (kind, repo_id, digest); None as soon as that is more than
    `limit` (so that the walk itself stays bounded too). One query per level of the tree and
    `BATCH` manifests, not one per manifest."""
    found = {("manifest", repo_id, digest) for repo_id, digest in roots}
    if limit is not None and len(found) > limit:
        return None
    frontier = roots
    while frontier:
        below: list[tuple[int, str]] = []
        for batch in _batches(frontier):
            table, params = _keys_table(batch)
            rows = c.execute(
                f"SELECT DISTINCT f.kind, f.target_repo_id, f.target_digest FROM {table} "
                "JOIN refs f ON f.repo_id = k.column1 AND f.digest = k.column2"
                " AND f.kind IN ('blob', 'manifest')"  # a sparse edge makes nothing readable
                + ("" if limit is None else f" LIMIT {limit + 1}"),
                params,
            ).fetchall()
            for kind, target, target_digest in rows:
                edge = (kind, int(target), target_digest)
                if edge not in found:
                    found.add(edge)
                    if kind == "manifest":
                        below.append((edge[1], edge[2]))
            if limit is not None and len(found) > limit:
                return None
        frontier = below
    return found


class SQLMetaStore(GCQueries):
    def __init__(self, db: Database) -> None:
        self._db = db
        self._manifests = ManifestCache()

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> None:
        await self._db.read(lambda c: c.execute("SELECT 1").fetchone())

    # Blobs

    async def blob_size(self, repository: str, digest: Digest) -> int | None:
        def size(c: Connection) -> int | None:
            repo_id = find_repo(c, repository)
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
            # Content already stored is not published again, and its rows are written only
            # when their time is stale: many pushers of one blob then read the same rows
            # instead of all writing them (which, in PostgreSQL, would make them conflict).
            now = time.time()
            if upload_id is not None:
                c.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))
            row = c.execute("SELECT created_at FROM blobs WHERE digest = ?", (str(digest),))
            created = row.fetchone()
            if created is None:
                if publish is None:
                    return False
                publish()
                c.execute(
                    "INSERT INTO blobs(digest, size, created_at) VALUES (?, ?, ?) "
                    "ON CONFLICT(digest) DO NOTHING",
                    (str(digest), size, now),
                )
            elif publish is not None and created[0] < now - FRESH:
                # Pushed again: a fresh grace window.
                c.execute("UPDATE blobs SET created_at = ? WHERE digest = ?", (now, str(digest)))
            repo_id = find_repo(c, repository, create=True)
            linked = c.execute(
                "SELECT linked_at FROM repo_blobs WHERE repo_id = ? AND digest = ?",
                (repo_id, str(digest)),
            ).fetchone()
            if linked is None or linked[0] < now - FRESH:
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
            repo_id = find_repo(c, repository)
            if repo_id is None or _visible_blob_size(c, repo_id, str(digest)) is None:
                raise BlobUnknown(repository, str(digest))
            c.execute(
                "DELETE FROM repo_blobs WHERE repo_id = ? AND digest = ?", (repo_id, str(digest))
            )

        await self._db.write(unlink)

    # Manifests and tags

    async def get_manifest(self, repository: str, reference: str) -> StoredManifest | None:
        version = self._db.change_counter()  # before the query: see manifest_cache.py
        if version is not None:
            hit = self._manifests.get(version, repository, reference)
            if hit is not None:
                return hit
        if Digest.looks_like(reference):
            # Its own manifest, or one reachable through its nested descriptors.
            sql = (
                "SELECT r.name, m.digest, m.media_type, m.content FROM repositories r "
                "JOIN manifests m ON m.repo_id = r.id WHERE r.name = ? AND m.digest = ? "
                "UNION ALL "
                "SELECT t.name, m.digest, m.media_type, m.content FROM repositories p "
                "JOIN reach x ON x.repo_id = p.id AND x.digest = ? AND x.kind = 'manifest' "
                "JOIN manifests m ON m.repo_id = x.target_repo_id AND m.digest = x.digest "
                "JOIN repositories t ON t.id = m.repo_id WHERE p.name = ? "
                "UNION ALL "  # a referrer of reachable content (rule 6)
                "SELECT t.name, m.digest, m.media_type, m.content FROM repositories p "
                "JOIN reach x ON x.repo_id = p.id AND x.kind = 'manifest' "
                "JOIN manifests m ON m.repo_id = x.target_repo_id AND m.subject = x.digest"
                " AND m.digest = ? "
                "JOIN repositories t ON t.id = m.repo_id WHERE p.name = ? LIMIT 1"
            )
            params: tuple[str, ...] = (
                repository, reference, reference, repository, reference, repository
            )  # fmt: skip
        else:
            sql = (
                "SELECT r.name, m.digest, m.media_type, m.content FROM repositories r "
                "JOIN tags t ON t.repo_id = r.id "
                "JOIN manifests m ON m.repo_id = t.repo_id AND m.digest = t.digest "
                "WHERE r.name = ? AND t.name = ?"
            )
            params = (repository, reference)
        row = await self._db.read(lambda c: c.execute(sql, params).fetchone())
        if row is None:
            return None
        stored = StoredManifest(row[0], row[1], row[2], bytes(row[3]))
        if version is not None:
            self._manifests.put(version, repository, reference, stored)
        return stored

    async def reached_through(self, repository: str, digest: str, kind: str) -> list[str]:
        # Reached itself, or a referrer (a manifest whose subject is reached) or a blob of one.
        if kind == "manifest":
            referrer = "SELECT m.subject FROM manifests m WHERE m.repo_id = t.id AND m.digest = ?"
        else:
            referrer = (
                "SELECT m.subject FROM refs f JOIN manifests m"
                " ON m.repo_id = f.repo_id AND m.digest = f.digest "
                "WHERE f.target_digest = ? AND f.target_repo_id = t.id AND f.kind = 'blob'"
            )
        sql = (
            "SELECT DISTINCT p.name FROM repositories t "
            "JOIN reach x ON x.target_repo_id = t.id AND x.kind = ? AND x.digest = ? "
            "JOIN repositories p ON p.id = x.repo_id WHERE t.name = ? "
            "UNION "
            "SELECT DISTINCT p.name FROM repositories t "
            "JOIN reach x ON x.target_repo_id = t.id AND x.kind = 'manifest' "
            f"AND x.digest IN ({referrer}) "
            "JOIN repositories p ON p.id = x.repo_id WHERE t.name = ?"
        )
        args = (kind, digest, repository, digest, repository)
        rows = await self._db.read(lambda c: c.execute(sql, args).fetchall())
        return sorted(r[0] for r in rows)

    async def manifest_nodes(
        self, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], ManifestNode]:
        if not keys:
            return {}
        # Joining the keys as a table lets each one be a primary-key lookup. The repository
        # id is a subquery per key, not a join: joined, PostgreSQL hashes every repository
        # for a few hundred keys (a scan that grows with the registry; docs/scaling.md).
        table, params = _keys_table(keys)
        sql = (
            "SELECT k.column1, m.digest, m.media_type, m.size, m.content,"
            " (SELECT COUNT(*) FROM manifests s WHERE s.repo_id = m.repo_id"
            f"  AND s.subject = m.digest) FROM {table} "
            "JOIN manifests m ON m.repo_id = (SELECT r.id FROM repositories r"
            " WHERE r.name = k.column1) AND m.digest = k.column2"
        )
        rows = await self._db.read(lambda c: c.execute(sql, params).fetchall())
        return {
            (r[0], r[1]): ManifestNode(r[0], r[1], r[2], int(r[3]), bytes(r[4]), int(r[5]))
            for r in rows
        }

    async def tags_by_digest(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
        if not keys:
            return {}
        table, params = _keys_table(keys)
        sql = (
            f"SELECT k.column1, t.digest, t.name FROM {table} "
            "JOIN tags t ON t.repo_id = (SELECT r.id FROM repositories r"
            " WHERE r.name = k.column1) AND t.digest = k.column2 "
            "ORDER BY k.column1, t.digest, t.name"
        )
        rows = await self._db.read(lambda c: c.execute(sql, params).fetchall())
        found: dict[tuple[str, str], list[str]] = {}
        for repository, digest, tag in rows:
            found.setdefault((repository, digest), []).append(tag)
        return found

    async def put_manifest(
        self,
        repository: str,
        manifest: Manifest,
        tags: list[str],
        on_move: MoveHook | None = None,
        sparse: bool = False,
        max_reach: int | None = None,
    ) -> None:
        def put(c: Connection) -> None:
            digest = str(manifest.digest)
            if on_move is not None:
                for tag in tags:
                    row = c.execute(
                        "SELECT t.digest FROM tags t JOIN repositories r ON r.id = t.repo_id "
                        "WHERE r.name = ? AND t.name = ?",
                        (repository, tag),
                    ).fetchone()
                    if row is not None and row[0] != digest:
                        on_move(tag, row[0])
            repo_id = find_repo(c, repository, create=True)
            assert repo_id is not None
            edges, problems = self._check_references(c, repository, repo_id, manifest, sparse)
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
                reached = _closure(c, nested, max_reach)
                if reached is None:
                    assert max_reach is not None
                    raise ReachTooLarge(repository, digest, max_reach)
                c.executemany(
                    "INSERT INTO reach(repo_id, owner, kind, target_repo_id, digest) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    [(repo_id, digest, *edge) for edge in reached],
                )
            c.executemany(
                "INSERT INTO tags(repo_id, name, digest, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(repo_id, name) DO UPDATE "
                "SET digest = excluded.digest, updated_at = excluded.updated_at "
                "WHERE tags.digest <> excluded.digest",
                [(repo_id, tag, digest, now) for tag in tags],
            )

        await self._db.write(put)

    def _check_references(
        self, c: Connection, repository: str, repo_id: int, manifest: Manifest, sparse: bool
    ) -> tuple[list[tuple[str, int, str]], list[ReferenceProblem]]:
        """The edges `manifest` makes, and a problem for each reference that is not there
        (with `sparse`, a missing non-nested one is a sparse edge instead)."""
        edges: list[tuple[str, int, str]] = []
        problems: list[ReferenceProblem] = []

        def target_of(ref: Reference) -> str:
            """The repository of a manifest reference: the child's, or this one."""
            return repository if ref.child is None else f"{repository}/{ref.child}"

        found = _manifests_by_name(
            c,
            [
                (target_of(ref), str(ref.descriptor.digest))
                for ref in manifest.references
                if ref.kind != "blob"
            ],
        )
        for ref in manifest.references:
            d = ref.descriptor
            digest = str(d.digest)
            if ref.kind == "blob":
                size = _visible_blob_size(c, repo_id, digest)
                if size is None and sparse:
                    edges.append((SPARSE_BLOB, repo_id, digest))
                elif size is None:
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
                    edges.append(("blob", repo_id, digest))
                continue
            target = target_of(ref)
            row = found.get((target, digest))
            nested = ref.child is not None
            if row is None and sparse and not nested:
                edges.append((SPARSE_MANIFEST, repo_id, digest))
            elif row is None:
                problems.append(
                    ReferenceProblem(
                        f"manifest {digest} is not in {target}", missing=True, nested=nested
                    )
                )
            elif (row[1], row[2]) != (d.media_type, d.size):
                problems.append(
                    ReferenceProblem(
                        f"descriptor of manifest {target}@{digest} says {d.media_type}, "
                        f"{d.size} bytes; the manifest is {row[1]}, {row[2]} bytes",
                        missing=False,
                        nested=nested,
                    )
                )
            else:
                edges.append(("manifest", row[0], digest))
        return edges, problems

    async def delete_manifest(
        self, repository: str, digest: Digest, on_untag: TagHook | None = None
    ) -> None:
        def delete(c: Connection) -> None:
            repo_id = find_repo(c, repository)
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
                "WHERE f.target_repo_id = ? AND f.target_digest = ? "
                f"AND f.kind IN ('manifest', '{SPARSE_MANIFEST}') "
                "AND NOT (f.repo_id = ? AND f.digest = ?) LIMIT 1",
                (*key, *key),
            ).fetchone()
            if user is not None:
                raise ManifestReferenced(repository, str(digest), f"{user[0]}@{user[1]}")
            if on_untag is not None:
                for (tag,) in c.execute(
                    "SELECT name FROM tags WHERE repo_id = ? AND digest = ? ORDER BY name", key
                ).fetchall():
                    on_untag(tag)
            c.execute("DELETE FROM tags WHERE repo_id = ? AND digest = ?", key)
            c.execute("DELETE FROM refs WHERE repo_id = ? AND digest = ?", key)
            c.execute("DELETE FROM reach WHERE repo_id = ? AND owner = ?", key)
            c.execute("DELETE FROM manifests WHERE repo_id = ? AND digest = ?", key)

        await self._db.write(delete)

    async def delete_tag(self, repository: str, tag: str) -> None:
        def delete(c: Connection) -> None:
            repo_id = find_repo(c, repository)
            cur = c.execute("DELETE FROM tags WHERE repo_id = ? AND name = ?", (repo_id, tag))
            if cur.rowcount == 0:
                raise ManifestUnknown(repository, tag, kind="tag")

        await self._db.write(delete)

    async def list_tags(self, repository: str, limit: int, last: str | None) -> list[str] | None:
        tags = await self.list_tags_pushed(repository, limit, last)
        return None if tags is None else [name for name, _ in tags]

    async def list_tags_pushed(
        self, repository: str, limit: int, last: str | None
    ) -> list[tuple[str, float]] | None:
        def tags(c: Connection) -> list[tuple[str, float]] | None:
            repo_id = find_repo(c, repository)
            if repo_id is None:
                return None
            rows = c.execute(
                "SELECT name, updated_at FROM tags WHERE repo_id = ? AND name > ? "
                "ORDER BY name LIMIT ?",
                (repo_id, last or "", limit),
            ).fetchall()
            return [(r[0], float(r[1])) for r in rows]

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
        # Its own, and those kept where the subject is when this repository reaches it
        # through nested descriptors (contract rule 6).
        columns = "m.digest, m.media_type, m.size, m.artifact_type, m.annotations"
        own = (
            f"SELECT {columns} FROM repositories r JOIN manifests m ON m.repo_id = r.id "
            "WHERE r.name = ? AND m.subject = ?"
        )
        reached = (
            f"SELECT {columns} FROM repositories p "
            "JOIN reach x ON x.repo_id = p.id AND x.digest = ? AND x.kind = 'manifest' "
            "JOIN manifests m ON m.repo_id = x.target_repo_id AND m.subject = x.digest "
            "WHERE p.name = ?"
        )
        args: tuple[str, ...] = (repository, str(subject), str(subject), repository)
        if artifact_type is not None:
            own += " AND m.artifact_type = ?"
            reached += " AND m.artifact_type = ?"
            args = (repository, str(subject), artifact_type, str(subject), repository,
                    artifact_type)  # fmt: skip
        sql = f"{own} UNION {reached} ORDER BY 1"
        rows = await self._db.read(lambda c: c.execute(sql, args).fetchall())
        return [
            Referrer(r[0], r[1], int(r[2]), r[3], json.loads(r[4]) if r[4] else {}) for r in rows
        ]

    # Upload sessions

    async def create_upload(self, upload: Upload) -> None:
        # Not durable where the database allows it (SQLite): a session is no stored content
        # (its data is not fsynced either); the commit that ends it with a blob is, and
        # makes this one durable with it.
        await self._db.write(
            lambda c: c.execute(
                "INSERT INTO uploads(id, repository, created_at) VALUES (?, ?, ?)",
                (upload.id, upload.repository, upload.created_at),
            ),
            durable=False,
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
