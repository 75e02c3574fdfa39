"""The SQL MetaStore's garbage collection and consistency checks: the GC plan from a
snapshot, deletions re-checked item by item under the write lock, and what fsck reads."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict

from ocinest.storage.database import SPARSE_BLOB, SPARSE_MANIFEST, Connection, Database, find_repo
from ocinest.storage.meta import GCPlan, GCRun, Inventory, TagRecord

# Collections kept in `gc_runs` (the last is what /metrics shows; the rest, a short history).
GC_RUNS_KEPT = 100


class GCQueries:
    """Part of `SQLMetaStore`: the methods of the MetaStore protocol that GC and fsck use."""

    _db: Database

    # Garbage collection

    async def all_tags(self) -> list[TagRecord]:
        rows = await self._db.snapshot(
            lambda c: c.execute(
                "SELECT r.name, t.name, t.digest, t.updated_at FROM tags t "
                "JOIN repositories r ON r.id = t.repo_id"
            ).fetchall()
        )
        return [TagRecord(r[0], r[1], r[2], float(r[3])) for r in rows]

    async def gc_plan(
        self, cutoff: float, delete_untagged: bool, release: Iterable[TagRecord] = ()
    ) -> GCPlan:
        released = {(t.repository, t.name, t.digest) for t in release}
        return await self._db.snapshot(lambda c: _gc_plan(c, cutoff, delete_untagged, released))

    async def gc_untag(self, tags: list[TagRecord], cutoff: float) -> list[TagRecord]:
        def untag(c: Connection) -> list[TagRecord]:
            return [
                tag
                for tag in tags
                if c.execute(
                    "DELETE FROM tags WHERE repo_id = ? AND name = ? AND digest = ? "
                    "AND updated_at < ?",
                    (find_repo(c, tag.repository), tag.name, tag.digest, cutoff),
                ).rowcount
            ]

        return await self._db.write(untag)

    async def gc_delete_manifests(
        self, keys: list[tuple[str, str]], cutoff: float
    ) -> list[tuple[str, str]]:
        doomed = set(keys)

        def delete(c: Connection) -> list[tuple[str, str]]:
            gone = []
            for repository, digest in keys:
                repo_id = find_repo(c, repository)
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
                    f"AND kind IN ('manifest', '{SPARSE_MANIFEST}') "
                    "AND NOT (repo_id = ? AND digest = ?) LIMIT 1",
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
                            "SELECT 1 FROM refs WHERE target_digest = ? "
                            f"AND kind IN ('blob', '{SPARSE_BLOB}') "
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

    async def sparse_references(self) -> list[tuple[str, str, str, str]]:
        rows = await self._db.snapshot(
            lambda c: c.execute(
                "SELECT r.name, f.digest, f.kind, t.name || '@' || f.target_digest FROM refs f "
                "JOIN repositories r ON r.id = f.repo_id "
                "JOIN repositories t ON t.id = f.target_repo_id "
                f"WHERE (f.kind = '{SPARSE_BLOB}' AND NOT EXISTS (SELECT 1 FROM repo_blobs b "
                "  WHERE b.repo_id = f.target_repo_id AND b.digest = f.target_digest)) "
                f"OR (f.kind = '{SPARSE_MANIFEST}' AND NOT EXISTS (SELECT 1 FROM manifests m "
                "  WHERE m.repo_id = f.target_repo_id AND m.digest = f.target_digest)) "
                "ORDER BY 1, 2, 4"
            ).fetchall()
        )
        kinds = {SPARSE_BLOB: "blob", SPARSE_MANIFEST: "manifest"}
        return [(r[0], r[1], kinds[r[2]], r[3]) for r in rows]

    async def forget_blobs(self, digests: list[str], delete: Callable[[str], None]) -> None:
        def forget(c: Connection) -> None:
            for digest in digests:
                delete(digest)
                c.execute("DELETE FROM repo_blobs WHERE digest = ?", (digest,))
                c.execute("DELETE FROM blobs WHERE digest = ?", (digest,))

        await self._db.write(forget)

    # What GC counts and records

    async def inventory(self) -> Inventory:
        def count(c: Connection) -> Inventory:
            blobs, blob_bytes = c.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blobs"
            ).fetchone()
            (manifests,) = c.execute("SELECT COUNT(*) FROM manifests").fetchone()
            (repositories,) = c.execute("SELECT COUNT(*) FROM repositories").fetchone()
            # A nested descriptor is the one manifest edge into another repository.
            indexes, edges = c.execute(
                "SELECT COUNT(*), COALESCE(SUM(n), 0) FROM (SELECT COUNT(*) AS n FROM refs "
                "WHERE kind = 'manifest' AND target_repo_id <> repo_id "
                "GROUP BY repo_id, digest) nested"
            ).fetchone()
            return Inventory(
                int(blobs), int(blob_bytes), int(manifests), int(repositories),
                int(indexes), int(edges),
            )  # fmt: skip

        return await self._db.snapshot(count)

    async def record_gc_run(self, run: GCRun) -> None:
        summary = json.dumps(asdict(run))

        def record(c: Connection) -> None:
            (last,) = c.execute(
                "INSERT INTO gc_runs(finished_at, summary) VALUES (?, ?) RETURNING id",
                (run.finished_at, summary),
            ).fetchone()
            c.execute("DELETE FROM gc_runs WHERE id <= ?", (int(last) - GC_RUNS_KEPT,))

        await self._db.write(record)

    async def last_gc_run(self) -> GCRun | None:
        row = await self._db.read(
            lambda c: c.execute("SELECT summary FROM gc_runs ORDER BY id DESC LIMIT 1").fetchone()
        )
        if row is None:
            return None
        doc = json.loads(row[0])
        return GCRun(**{**doc, "inventory": Inventory(**doc["inventory"])})


def _gc_plan(
    c: Connection, cutoff: float, delete_untagged: bool, release: set[tuple[str, str, str]]
) -> GCPlan:
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
        # A sparse edge holds its target once that is pushed, as an ordinary one does.
        if kind in ("manifest", SPARSE_MANIFEST):
            children.setdefault((repo_id, digest), []).append((target_repo, target))
        else:
            blob_refs.setdefault((repo_id, digest), []).append(target)
    # Tags retention releases (still where they were, and older than the cutoff) hold
    # nothing; the others are roots.
    released: list[tuple[tuple[int, str], TagRecord]] = []
    tagged: set[tuple[int, str]] = set()
    for repo_id, name, digest, updated in c.execute(
        "SELECT repo_id, name, digest, updated_at FROM tags"
    ):
        if updated < cutoff and (names[repo_id], name, digest) in release:
            record = TagRecord(names[repo_id], name, digest, float(updated))
            released.append(((repo_id, digest), record))
        else:
            tagged.add((repo_id, digest))
    by_subject: dict[tuple[int, str], list[tuple[int, str]]] = {}
    for (repo_id, digest), (subject, _, _) in manifests.items():
        if subject is not None:
            by_subject.setdefault((repo_id, subject), []).append((repo_id, digest))

    def reach(roots: set[tuple[int, str]]) -> set[tuple[int, str]]:
        """What the roots reach through children, nested edges and subjects."""
        found: set[tuple[int, str]] = set()
        frontier = [key for key in roots if key in manifests]
        while frontier:
            key = frontier.pop()
            if key in found:
                continue
            found.add(key)
            frontier.extend(k for k in children.get(key, []) if k in manifests)
            frontier.extend(by_subject.get(key, []))
        return found

    young = {key for key, (_, created, _) in manifests.items() if created >= cutoff}
    if delete_untagged:
        roots = tagged | young
    else:  # every manifest, but what only released tags reach
        roots = (set(manifests) - reach({key for key, _ in released})) | tagged | young
    live = reach(roots)
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
    # A released tag goes when its manifest goes, or stays tagged by another tag; a manifest
    # that stays because something else reaches it (a kept parent) keeps its tags.
    untag = sorted(
        (tag for key, tag in released if key not in live or key in tagged),
        key=lambda t: (t.repository, t.name),
    )
    return GCPlan(sorted(dead), sorted(blobs), untag)
