"""The scale model's COPY seeder (benchmarks/scale_seed.py) writes exactly the rows the HTTP push
path writes for the same small group: children, re-pinned parents, signatures, tags. This keeps
the seeder from drifting from the real schema and the real push path."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, free_port, push_blob, push_manifest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import scale_seed

ADMIN = os.environ.get("OCINEST_TEST_POSTGRES")
pytestmark = pytest.mark.skipif(not ADMIN, reason="needs OCINEST_TEST_POSTGRES")

# Each table without its timestamps, repository ids replaced by names.
DUMPS = {
    "repositories": "SELECT name FROM repositories",
    "blobs": "SELECT digest, size FROM blobs",
    "repo_blobs": "SELECT r.name, b.digest FROM repo_blobs b"
    " JOIN repositories r ON r.id = b.repo_id",
    "manifests": "SELECT r.name, m.digest, m.media_type, m.size, m.content, m.artifact_type,"
    " m.subject, m.annotations FROM manifests m JOIN repositories r ON r.id = m.repo_id",
    "tags": "SELECT r.name, t.name, t.digest FROM tags t JOIN repositories r ON r.id = t.repo_id",
    "refs": "SELECT r.name, f.digest, f.kind, t.name, f.target_digest FROM refs f"
    " JOIN repositories r ON r.id = f.repo_id JOIN repositories t ON t.id = f.target_repo_id",
    "reach": "SELECT r.name, x.owner, x.kind, t.name, x.digest FROM reach x"
    " JOIN repositories r ON r.id = x.repo_id JOIN repositories t ON t.id = x.target_repo_id",
}


def schema_dsn() -> Iterator[str]:
    import psycopg

    assert ADMIN is not None
    name = f"t_{uuid.uuid4().hex}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}".encode())
    yield f"{ADMIN}{'&' if '?' in ADMIN else '?'}options=-csearch_path%3D{name}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {name} CASCADE".encode())


@pytest.fixture
def pushed_dsn() -> Iterator[str]:
    yield from schema_dsn()


@pytest.fixture
def seeded_dsn() -> Iterator[str]:
    yield from schema_dsn()


def dump(dsn: str) -> dict[str, set[tuple[Any, ...]]]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        # The seeder drops the keys and indexes while it copies: they must all be back.
        schema = conn.execute("SELECT current_schema()").fetchone()
        assert schema is not None
        keys = {
            ("index", r[0], r[1].replace(f"{schema[0]}.", ""))
            for r in conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            )
        } | {
            ("constraint", r[0], r[1])
            for r in conn.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE connamespace = current_schema()::regnamespace"
            )
        }
        return {"keys": keys} | {
            t: {tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                for row in conn.execute(q.encode()).fetchall()}
            for t, q in DUMPS.items()
        }  # fmt: skip


def test_seeded_rows_equal_pushed_rows(tmp_path: Path, pushed_dsn: str, seeded_dsn: str) -> None:
    group = scale_seed.build_group(0, 3, days=3)
    settings = {"metadata": "postgres", "postgres_dsn": pushed_dsn}
    server = Server(tmp_path / "data", free_port(), settings=settings)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            for repo, data in group.blobs:
                push_blob(c, repo, data)
            for repo, raw, media_type, tags, _ in group.manifests:
                digest = scale_seed.sha256(raw)
                for ref in [digest, *tags]:
                    r = push_manifest(c, repo, ref, raw, media_type)
                    assert r.status_code == 201, r.text
            # The seeded parent is served like a pushed one, through the nested extension.
            r = c.get(f"/v2/{group.name}/_ocinest/tree/latest")
            assert r.status_code == 200, r.text
    finally:
        server.stop()
    summary = scale_seed.seed(seeded_dsn, tmp_path / "seeded", 0, source=[group])
    assert summary["rows"]["manifests"] == len(group.manifests)
    pushed, seeded = dump(pushed_dsn), dump(seeded_dsn)
    for table in ["keys", *DUMPS]:
        assert seeded[table] == pushed[table], table
    assert len(seeded["reach"]) == 3 * 3 * 7  # 3 parents x 3 children x (index, 2 images, 4 blobs)
