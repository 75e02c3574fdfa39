"""The scale model's registry shape, and its bulk seeding into PostgreSQL with COPY.

The shape, per group `scale/gNNNNN` (child counts cycle 10, 100, 1,000):

* each child `scale/gNNNNN/cNNNN` is a multi-platform image: an index (tagged `vN`) over an
  amd64 and an arm64 image manifest (untagged), each with a config and a layer blob;
* every index, child and parent, has a signature (a referrer, untagged, cosign-like);
* one parent a day for `DAYS` days, re-pinned over the current children; each day 2% of the
  children (at least one) get a new version, so consecutive parents share 98% of them.
  Parents of odd days are tagged `day-N`, the last also `latest`; even days are untagged.

`rows(group)` turns a group into the rows `SQLMetaStore.put_manifest` and `link_blob` write
(manifests, tags, blobs, repo_blobs, refs, and the reach rows of the nested extension), derived
from the same parser (`parse_manifest`); tests/integration/test_scale_seed.py checks them against
what the HTTP push path writes for the same small group. `seed()` writes them with COPY.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.oci import NESTED_ANNOTATION, OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, sha256

from ocinest.oci.manifest import Manifest, parse_manifest

CHILD_COUNTS = (10, 100, 1000)
DAYS = 10
CHURN = 0.02
SET_TYPE = "application/vnd.dev.ocinest.set.v1+json"
SIG_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
EMPTY = b"{}"
DAY = 86400.0


@dataclass
class Group:
    """One parent repository with its children, in push order."""

    name: str
    children: int
    blobs: list[tuple[str, bytes]] = field(default_factory=list)  # (repository, content)
    # (repository, raw, media type, tags, pushed at as days before now)
    manifests: list[tuple[str, bytes, str, list[str], int]] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)  # parent digests, oldest first


def _desc(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def build_group(index: int, children: int, days: int = DAYS) -> Group:
    g = Group(f"scale/g{index:05d}", children)

    def sign(repo: str, subject: dict[str, Any], age: int) -> None:
        payload = f"signature payload {repo}".encode()
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": SIG_TYPE,
            "config": _desc("application/vnd.oci.empty.v1+json", EMPTY),
            "layers": [_desc("application/vnd.dev.cosign.simplesigning.v1+json", payload)],
            "subject": {k: subject[k] for k in ("mediaType", "digest", "size")},
            "annotations": {"dev.cosignproject.cosign/signature": subject["digest"]},
        }
        g.manifests.append((repo, _dumps(doc), OCI_MANIFEST, [], age))

    current: list[dict[str, Any]] = []

    def version(k: int, v: int, age: int) -> dict[str, Any]:
        repo = f"{g.name}/c{k:04d}"
        platforms = []
        for arch in ("amd64", "arm64"):
            config = _dumps({"architecture": arch, "os": "linux", "child": repo})
            layer = f"layer {repo} {arch}\n".encode()
            if v == 0:
                g.blobs += [(repo, config), (repo, layer)]
            body = _dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": OCI_MANIFEST,
                    "config": _desc(OCI_CONFIG, config),
                    "layers": [_desc(OCI_LAYER, layer)],
                    "annotations": {"org.opencontainers.image.version": str(v)},
                }
            )
            g.manifests.append((repo, body, OCI_MANIFEST, [], age))
            platforms.append(
                _desc(OCI_MANIFEST, body, platform={"architecture": arch, "os": "linux"})
            )
        if v == 0:
            g.blobs += [(repo, EMPTY), (repo, f"signature payload {repo}".encode())]
        body = _dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": platforms})
        g.manifests.append((repo, body, OCI_INDEX, [f"v{v}"], age))
        desc = _desc(OCI_INDEX, body)
        sign(repo, desc, age)
        return {**desc, "annotations": {NESTED_ANNOTATION: f"c{k:04d}"}}

    g.blobs += [(g.name, EMPTY), (g.name, f"signature payload {g.name}".encode())]
    versions = [0] * children
    current = [version(k, 0, days) for k in range(children)]
    churn = max(1, int(children * CHURN))
    for day in range(days):
        age = days - day
        if day:
            for j in range(churn):
                k = (day * churn + j) % children
                versions[k] += 1
                current[k] = version(k, versions[k], age)
        body = _dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "artifactType": SET_TYPE,
                "manifests": current,
                "annotations": {"dev.ocinest.scale.day": str(day)},
            }
        )
        tags = [f"day-{day}"] if day % 2 else []
        if day == days - 1:
            tags.append("latest")
        g.manifests.append((g.name, body, OCI_INDEX, tags, age))
        g.parents.append(sha256(body))
        sign(g.name, _desc(OCI_INDEX, body), age)
    return g


def groups(manifests: int, start: int = 0) -> Iterator[Group]:
    """Groups until about `manifests` manifests are made."""
    made, i = 0, start
    while made < manifests:
        g = build_group(i, CHILD_COUNTS[i % len(CHILD_COUNTS)])
        made += len(g.manifests)
        i += 1
        yield g


@dataclass
class Rows:
    repositories: list[tuple[int, str]] = field(default_factory=list)
    blobs: list[tuple[str, int, float]] = field(default_factory=list)
    repo_blobs: list[tuple[int, str, float]] = field(default_factory=list)
    manifests: list[tuple[Any, ...]] = field(default_factory=list)
    tags: list[tuple[int, str, str, float]] = field(default_factory=list)
    refs: list[tuple[int, str, str, int, str]] = field(default_factory=list)
    reach: list[tuple[int, str, str, int, str]] = field(default_factory=list)


class RowMaker:
    """Rows for groups, with repository ids from `next_id` on and blobs made once."""

    def __init__(self, next_id: int = 1, now: float | None = None) -> None:
        self.next_id = next_id
        self.now = time.time() if now is None else now
        self.seen_blobs: set[str] = set()

    def rows(self, g: Group) -> Rows:
        out = Rows()
        ids: dict[str, int] = {}

        def repo(name: str) -> int:
            if name not in ids:
                ids[name] = self.next_id
                out.repositories.append((self.next_id, name))
                self.next_id += 1
            return ids[name]

        repo(g.name)
        oldest = self.now - (DAYS + 1) * DAY
        linked: set[tuple[int, str]] = set()
        for name, data in g.blobs:
            d = sha256(data)
            if d not in self.seen_blobs:
                self.seen_blobs.add(d)
                out.blobs.append((d, len(data), oldest))
            key = (repo(name), d)
            if key not in linked:
                linked.add(key)
                out.repo_blobs.append((*key, oldest))
        edges: dict[tuple[int, str], list[tuple[str, int, str]]] = {}
        for name, raw, media_type, tags, age in g.manifests:
            m: Manifest = parse_manifest(raw, media_type)
            rid, digest, at = repo(name), str(m.digest), self.now - age * DAY
            out.manifests.append(
                (
                    rid,
                    digest,
                    m.media_type,
                    m.size,
                    m.raw,
                    m.artifact_type,
                    str(m.subject.digest) if m.subject else None,
                    json.dumps(m.annotations) if m.annotations else None,
                    at,
                )
            )
            mine: list[tuple[str, int, str]] = []
            for ref in m.references:
                target = rid if ref.child is None else repo(f"{name}/{ref.child}")
                edge = (ref.kind, target, str(ref.descriptor.digest))
                if edge not in mine:
                    mine.append(edge)
            edges[(rid, digest)] = mine
            out.refs += [(rid, digest, *e) for e in mine]
            nested = [(t, d) for kind, t, d in mine if kind == "manifest" and t != rid]
            if nested:
                found = {("manifest", t, d) for t, d in nested}
                frontier = list(nested)
                while frontier:
                    for e in edges[frontier.pop()]:
                        if e not in found:
                            found.add(e)
                            if e[0] == "manifest":
                                frontier.append((e[1], e[2]))
                out.reach += [(rid, digest, *e) for e in sorted(found)]
            out.tags += [(rid, t, digest, at) for t in tags]
        return out


TABLES = {
    "repositories": "id, name",
    "blobs": "digest, size, created_at",
    "repo_blobs": "repo_id, digest, linked_at",
    "manifests": "repo_id, digest, media_type, size, content, artifact_type, subject,"
    " annotations, created_at",
    "tags": "repo_id, name, digest, updated_at",
    "refs": "repo_id, digest, kind, target_repo_id, target_digest",
    "reach": "repo_id, owner, kind, target_repo_id, digest",
}


def write_blobs(root: Path, g: Group) -> None:
    """The blobs' content, in FilesystemBlobStore's layout (blobs/sha256/<2 hex>/<hex>)."""
    for _, data in g.blobs:
        hexd = sha256(data).split(":", 1)[1]
        path = root / "blobs" / "sha256" / hexd[:2] / hexd
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


def _keys(conn: Any) -> tuple[list[str], list[str]]:
    """Statements that drop every constraint and index of the seeded tables, and those that make
    them again as the migration made them (COPY into bare tables, then one index build each)."""
    tables = list(TABLES)
    cons = conn.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), contype "
        "FROM pg_constraint WHERE connamespace = current_schema()::regnamespace "
        "AND contype IN ('p', 'u', 'f') AND conrelid::regclass::text = ANY(%s)",
        (tables,),
    ).fetchall()
    indexes = conn.execute(
        "SELECT tablename, indexname, indexdef FROM pg_indexes "
        "WHERE schemaname = current_schema() AND tablename = ANY(%s) AND indexname NOT IN "
        "(SELECT conname FROM pg_constraint WHERE connamespace = current_schema()::regnamespace)",
        (tables,),
    ).fetchall()
    fks = [c for c in cons if c[3] == "f"]
    keys = [c for c in cons if c[3] != "f"]
    drop = [f'ALTER TABLE {t} DROP CONSTRAINT "{n}"' for t, n, _, _ in fks + keys]
    drop += [f'DROP INDEX "{n}"' for _, n, _ in indexes]
    create = [f'ALTER TABLE {t} ADD CONSTRAINT "{n}" {d}' for t, n, d, _ in keys]
    create += [d for _, _, d in indexes]
    create += [f'ALTER TABLE {t} ADD CONSTRAINT "{n}" {d}' for t, n, d, _ in fks]
    return drop, create


def seed(
    dsn: str, data: Path, manifests: int, batch: int = 20, source: Iterable[Group] | None = None
) -> dict[str, Any]:
    """Create the schema (the store's own migration), then COPY about `manifests` manifests of
    groups (or the groups of `source`); blobs to `data`. Returns counts and seconds."""
    import psycopg

    from ocinest.storage.postgres import PostgresDatabase

    start = time.monotonic()
    db = PostgresDatabase(dsn)  # runs the migrations
    import asyncio

    asyncio.run(db.close())
    maker = RowMaker()
    counts = dict.fromkeys(TABLES, 0)
    made: list[Group] = []
    with psycopg.connect(dsn) as conn:
        conn.execute("SET maintenance_work_mem = '256MB'")
        drop, create = _keys(conn)
        for statement in drop:
            conn.execute(statement.encode())
        conn.commit()

        def flush(pending: list[Group]) -> None:
            merged = Rows()
            for g in pending:
                r = maker.rows(g)
                write_blobs(data, g)
                for t in TABLES:
                    getattr(merged, t).extend(getattr(r, t))
            with conn.transaction():
                for t, cols in TABLES.items():
                    rows = getattr(merged, t)
                    counts[t] += len(rows)
                    with conn.cursor().copy(f"COPY {t} ({cols}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)

        pending: list[Group] = []
        for g in groups(manifests) if source is None else source:
            pending.append(g)
            made.append(Group(g.name, g.children, parents=g.parents))
            if len(pending) >= batch:
                flush(pending)
                pending = []
        if pending:
            flush(pending)
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('repositories', 'id'), max(id)) FROM repositories"
        )
        conn.commit()
        copied = time.monotonic() - start
        for statement in create:
            conn.execute(statement.encode())
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return {
        "rows": counts,
        "groups": [(g.name, g.children, g.parents) for g in made],
        "copy_seconds": round(copied, 1),  # the rest: index builds and VACUUM ANALYZE
        "seconds": round(time.monotonic() - start, 1),
    }
