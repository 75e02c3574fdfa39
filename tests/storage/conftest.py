"""The storage suite's backends: each test runs in-process against every store this
environment offers, as the registry opens them (`Registry.open`).

* blobs: the filesystem always; S3 when S3_ENDPOINT is set (with AWS_ACCESS_KEY_ID and
  AWS_SECRET_ACCESS_KEY), in a bucket of this module's own, under a fresh prefix per test;
* metadata: SQLite always; PostgreSQL when OCINEST_TEST_POSTGRES names an admin DSN, in a
  fresh schema per test.

`open_blobs` and `open_meta` open one more store over the same test's storage on each call:
a second store is the same data after a restart, or a second registry process beside the
first. Test functions may be `async def`; each runs on an event loop of its own.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ocinest.storage.blobs import BlobStore
from ocinest.storage.filesystem import FilesystemBlobStore
from ocinest.storage.meta import MetaStore
from ocinest.storage.sqlite import SQLiteMetaStore

BLOB_BACKENDS = ["filesystem", *(["s3"] if os.environ.get("S3_ENDPOINT") else [])]
META_BACKENDS = ["sqlite", *(["postgres"] if os.environ.get("OCINEST_TEST_POSTGRES") else [])]
# S3's smallest part, the smallest `s3_part_size` the configuration accepts: uploads of a
# few MiB then span parts.
PART_SIZE = 5 << 20

OpenBlobs = Callable[[], BlobStore]
OpenMeta = Callable[[], MetaStore]


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an `async def` test on a fresh event loop."""
    test = pyfuncitem.obj
    if not inspect.iscoroutinefunction(test):
        return None
    names = inspect.signature(test).parameters
    asyncio.run(test(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True


@pytest.fixture(scope="module")
def s3_bucket() -> Iterator[str]:
    """A bucket for this module's tests, emptied and removed after them."""
    import boto3

    name = f"suite-{uuid.uuid4().hex[:24]}"
    yield name
    bucket = boto3.resource("s3", endpoint_url=os.environ["S3_ENDPOINT"]).Bucket(name)
    for upload in bucket.multipart_uploads.all():
        upload.abort()
    bucket.objects.all().delete()
    bucket.delete()


@pytest.fixture(params=BLOB_BACKENDS)
def open_blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenBlobs]:
    opened: list[BlobStore] = []
    new: OpenBlobs
    if request.param == "filesystem":

        def new() -> BlobStore:
            return FilesystemBlobStore(tmp_path / "data")

    else:
        from ocinest.storage.s3 import S3BlobStore

        bucket = request.getfixturevalue("s3_bucket")
        prefix = f"t-{uuid.uuid4().hex}"

        def new() -> BlobStore:
            return S3BlobStore(
                bucket,
                endpoint=os.environ["S3_ENDPOINT"],
                access_key=os.environ.get("AWS_ACCESS_KEY_ID"),
                secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
                prefix=prefix,
                part_size=PART_SIZE,
                redirect=True,  # so that its presigned URLs are tried too
            )

    def open_one() -> BlobStore:
        opened.append(new())
        return opened[-1]

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def blobs(open_blobs: OpenBlobs) -> BlobStore:
    return open_blobs()


@pytest.fixture(params=META_BACKENDS)
def open_meta(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenMeta]:
    opened: list[MetaStore] = []
    new: OpenMeta
    schema = None
    if request.param == "sqlite":

        def new() -> MetaStore:
            return SQLiteMetaStore(tmp_path / "meta.db")

    else:
        import psycopg

        from ocinest.storage.postgres import PostgresMetaStore

        # A schema of its own (far cheaper to make than a database), as its search path.
        admin = os.environ["OCINEST_TEST_POSTGRES"]
        schema = f"s_{uuid.uuid4().hex}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}".encode())
        dsn = f"{admin}{'&' if '?' in admin else '?'}options=-csearch_path%3D{schema}"

        def new() -> MetaStore:
            return PostgresMetaStore(dsn)

    def open_one() -> MetaStore:
        opened.append(new())
        return opened[-1]

    yield open_one

    async def close_all() -> None:
        for store in opened:
            await store.close()

    asyncio.run(close_all())
    if schema is not None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())


@pytest.fixture
def meta(open_meta: OpenMeta) -> MetaStore:
    return open_meta()
