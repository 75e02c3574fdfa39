"""Bulk-build an ocinest data folder for the GC scenario through the storage classes
(FilesystemBlobStore, SQLiteMetaStore), without HTTP.

    python benchmarks/seed_gc.py DATA_DIR --repos R --manifests-per-repo M

Per repository `gc/rNNN`: 15 small blobs, M image manifests and 10 image indexes.
Even-numbered manifests are tagged; odd ones are not. Indexes 0-4 are tagged and each pins
10 untagged manifests; indexes 5-9 are untagged and pin 10 more. Blobs 0-4 are named by
tagged manifests, 5-9 by the untagged manifests the tagged indexes pin, 10-14 only by
untagged, unpinned manifests. `ocinest gc --delete-untagged --grace 0s` must then delete,
per repository, the untagged unpinned manifests (M/2 - 100), the 5 untagged indexes with
their 50 children, and blobs 10-14, and keep everything else. Prints a JSON summary with
those expected counts.

The seeding turns SQLite's synchronous commits off for its own connections (this is set-up,
not measurement); if the store's internals change so that this cannot be done, seeding still
works, only slower.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from harness.oci import OCI_INDEX, OCI_MANIFEST, Descriptor, image_index, image_manifest

from ocinest.oci.digest import Digest
from ocinest.oci.manifest import parse_manifest
from ocinest.storage import sqlite as sqlite_store
from ocinest.storage.filesystem import FilesystemBlobStore
from ocinest.storage.sqlite import SQLiteMetaStore

BLOBS_PER_REPO = 15
INDEXES_PER_REPO = 10
CHILDREN_PER_INDEX = 10
BATCH = 256


def _fast_sqlite() -> bool:
    """Make the store's connections commit without fsync, for seeding only."""
    connect = getattr(sqlite_store, "_connect", None)
    if connect is None:
        return False

    def fast(path: Path) -> sqlite3.Connection:
        conn: sqlite3.Connection = connect(path)
        conn.execute("PRAGMA synchronous = OFF")
        return conn

    sqlite_store._connect = fast
    return True


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def seed(data: Path, repos: int, per_repo: int) -> dict[str, object]:
    start = time.monotonic()
    fast = _fast_sqlite()
    data.mkdir(parents=True, exist_ok=True)
    blobs = FilesystemBlobStore(data)
    meta = SQLiteMetaStore(data / "meta.db")
    untagged_per_repo = per_repo // 2
    pinned = INDEXES_PER_REPO * CHILDREN_PER_INDEX  # untagged manifests the indexes name
    if untagged_per_repo < pinned:
        raise SystemExit(f"--manifests-per-repo must be at least {2 * pinned}")
    total = 0
    try:
        for r in range(repos):
            name = f"gc/r{r:03d}"
            descs: list[Descriptor] = []
            for b in range(BLOBS_PER_REPO):
                content = f"ocinest gc seed {r} {b}\n".encode().ljust(512, b".")
                digest = Digest.of(content)
                upload_id = f"seed-{r}-{b}"
                await blobs.start_upload(upload_id)
                await blobs.append(upload_id, 0, _once(content))
                size = await blobs.verify(upload_id, digest)

                def publish(u: str = upload_id, d: Digest = digest) -> None:
                    blobs.publish(u, d)

                await meta.link_blob(name, digest, size, publish)
                descs.append((str(digest), size))
            # Image manifests: even i tagged (blobs 0-4); odd i untagged, the first `pinned`
            # of them (by odd rank) pinned by indexes (blobs 5-9), the rest loose (10-14).
            children: list[Descriptor] = []
            jobs = []
            for i in range(per_repo):
                if i % 2 == 0:
                    group, tag = 0, f"v{i}"
                else:
                    group, tag = (5 if i // 2 < pinned else 10), None
                config, layer = descs[group + i % 5], descs[group + (i + 1) % 5]
                body = image_manifest(config, layer, **{"bench.gc": f"{r}/{i}"})
                manifest = parse_manifest(body, OCI_MANIFEST)
                if tag is None and i // 2 < pinned:
                    children.append((str(manifest.digest), manifest.size))
                jobs.append(meta.put_manifest(name, manifest, [tag] if tag else []))
                if len(jobs) >= BATCH:
                    await asyncio.gather(*jobs)
                    jobs = []
            await asyncio.gather(*jobs)
            for j in range(INDEXES_PER_REPO):
                pins = children[j * CHILDREN_PER_INDEX : (j + 1) * CHILDREN_PER_INDEX]
                body = image_index(
                    [{"mediaType": OCI_MANIFEST, "digest": d, "size": s} for d, s in pins],
                    **{"bench.gc.index": f"{r}/{j}"},
                )
                manifest = parse_manifest(body, OCI_INDEX)
                await meta.put_manifest(name, manifest, [f"index-{j}"] if j < 5 else [])
            total += per_repo + INDEXES_PER_REPO
    finally:
        await meta.close()
        blobs.close()
    loose = untagged_per_repo - pinned
    return {
        "repositories": repos,
        "manifests": total,
        "blobs": repos * BLOBS_PER_REPO,
        # loose untagged manifests, the children of the untagged indexes, those indexes
        "expect_deleted_manifests": repos * (loose + pinned // 2 + INDEXES_PER_REPO // 2),
        "expect_deleted_blobs": repos * 5,
        "seconds": round(time.monotonic() - start, 2),
        "fast_sqlite": fast,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--repos", type=int, default=100)
    parser.add_argument("--manifests-per-repo", type=int, default=1000)
    args = parser.parse_args()
    summary = asyncio.run(seed(args.data, args.repos, args.manifests_per_repo))
    json.dump(summary, sys.stdout)
    print()


if __name__ == "__main__":
    main()
