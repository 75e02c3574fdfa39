"""The BlobStore protocol (ocinest.storage.blobs), on every blob backend: upload sessions,
verification, publication, ranged reads, deletion, listing, and what survives a restart."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import itertools
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ocinest.oci.digest import Digest
from ocinest.storage import filesystem
from ocinest.storage.blobs import BlobStore
from ocinest.storage.errors import DigestMismatch, UploadOffsetMismatch, UploadUnknown
from ocinest.storage.filesystem import FilesystemBlobStore
from tests.storage.conftest import BLOB_BACKENDS, PART_SIZE, OpenBlobs
from tests.storage.content import chunks, read_all, upload


def listed(blobs: BlobStore) -> dict[str, int]:
    """What `scan` lists: digest -> size."""
    return {digest: size for digest, size, _ in blobs.scan()}


async def test_chunked_upload_becomes_a_readable_blob(blobs: BlobStore) -> None:
    parts = [os.urandom(100), os.urandom(1), os.urandom(3000)]
    data = b"".join(parts)
    digest = Digest.of(data)
    await blobs.start_upload("u1")
    assert await blobs.upload_size("u1") == 0
    offset = 0
    for part in parts:
        offset = await blobs.append("u1", offset, chunks(part[:10], part[10:]))
        assert await blobs.upload_size("u1") == offset
    assert offset == len(data)
    assert await blobs.verify("u1", digest) == len(data)
    # Verified is not published; the filesystem store links the content into place already
    # (outside the metadata transaction, as content no row names), the others do not.
    assert listed(blobs) in ({}, {str(digest): len(data)})
    started = time.time()
    blobs.publish("u1", digest)
    assert await read_all(blobs, digest, 0, len(data)) == data
    [(name, size, mtime)] = list(blobs.scan())
    assert (name, size) == (str(digest), len(data))
    assert abs(mtime - started) < 120


async def test_read_returns_exactly_the_range_asked_for(blobs: BlobStore) -> None:
    data = os.urandom(1000)
    digest = await upload(blobs, data)
    for start, end in [(0, 1000), (0, 1), (10, 500), (999, 1000), (500, 500)]:
        assert await read_all(blobs, digest, start, end) == data[start:end], (start, end)


async def test_a_blob_is_served_from_its_local_file_or_presigned_url(blobs: BlobStore) -> None:
    """What the registry serves without streaming through itself: sendfile from a local
    store, or a redirect to a remote one."""
    data = os.urandom(700)
    digest = await upload(blobs, data)
    path, url = blobs.local_path(digest), blobs.presigned_url(digest)
    if path is not None:
        assert path.read_bytes() == data
    else:
        assert url is not None
        assert httpx.get(url, timeout=30).content == data


async def test_empty_blob(blobs: BlobStore) -> None:
    digest = await upload(blobs, b"")
    assert await read_all(blobs, digest, 0, 0) == b""
    assert listed(blobs) == {str(digest): 0}


async def test_sha512_blob(blobs: BlobStore) -> None:
    data = os.urandom(2000)
    digest = await upload(blobs, data, "sha512")
    assert digest.algorithm == "sha512"
    assert await read_all(blobs, digest, 0, len(data)) == data
    assert listed(blobs) == {str(digest): len(data)}


async def test_append_at_a_wrong_offset_is_refused_and_changes_nothing(blobs: BlobStore) -> None:
    first = os.urandom(50)
    await blobs.start_upload("u1")
    assert await blobs.append("u1", 0, chunks(first)) == 50
    for wrong in (0, 49, 51, 1000):
        with pytest.raises(UploadOffsetMismatch) as caught:
            await blobs.append("u1", wrong, chunks(b"more"))
        assert caught.value.size == 50
    assert await blobs.upload_size("u1") == 50
    assert await blobs.verify("u1", Digest.of(first)) == 50


async def test_of_two_appends_at_one_offset_at_once_one_is_refused(open_blobs: OpenBlobs) -> None:
    """Two registry processes taking a chunk for the same offset at the same time: only one
    may be acknowledged (`append` returning means durable), as the upload holds only one."""
    first, second = open_blobs(), open_blobs()
    await first.start_upload("u1")
    ours, theirs = b"A" * 100, b"B" * 150
    results = await asyncio.gather(
        first.append("u1", 0, chunks(ours)),
        second.append("u1", 0, chunks(theirs)),
        return_exceptions=True,
    )
    landed = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, UploadOffsetMismatch)]
    assert len(landed) == len(refused) == 1, results
    size = await first.upload_size("u1")
    assert size == landed[0]
    winner = ours if size == len(ours) else theirs
    assert await first.verify("u1", Digest.of(winner)) == size


async def test_an_append_cut_short_leaves_the_upload_to_the_next_at_once(
    open_blobs: OpenBlobs,
) -> None:
    """A request body that breaks off after more than a part: the next request, on another
    process, continues the upload from where it stands (what was kept of the broken one, if
    anything), without waiting for any hold on it to lapse."""
    first, second = open_blobs(), open_blobs()
    await first.start_upload("u1")
    sent = os.urandom(PART_SIZE + 1000)

    async def broken() -> AsyncIterator[bytes]:
        yield sent[: PART_SIZE // 2]
        yield sent[PART_SIZE // 2 :]
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await first.append("u1", 0, broken())
    offset = await second.upload_size("u1")
    assert offset is not None and offset <= len(sent)
    rest = os.urandom(300)
    assert await second.append("u1", offset, chunks(rest)) == offset + 300
    assert await second.verify("u1", Digest.of(sent[:offset] + rest)) == offset + 300


# S3 only: a writer's hold on an upload there is a lease that lapses, where the filesystem's
# is a lock that dies with its process.
S3 = [backend for backend in BLOB_BACKENDS if backend == "s3"]


@pytest.mark.parametrize("open_blobs", S3, indirect=True)
async def test_the_lease_of_a_writer_that_died_lapses(open_blobs: OpenBlobs) -> None:
    """A writer that died holding the upload's lease (taken, never given back): another
    waits for it to lapse, and then goes on; one that will not wait as long is refused."""
    dead, alive = open_blobs(), open_blobs()
    await dead.start_upload("u1")
    dead._states.lease = 5.0  # type: ignore[attr-defined]
    dead._states.grant("u1", 0, None)  # type: ignore[attr-defined]
    alive._states.lease = 0.3  # type: ignore[attr-defined]
    with pytest.raises(UploadOffsetMismatch) as caught:
        await alive.append("u1", 0, chunks(b"x"))
    assert caught.value.size == 0
    alive._states.lease = 30.0  # type: ignore[attr-defined]
    data = os.urandom(PART_SIZE + 500)  # a part: numbered past the dead writer's
    assert await alive.append("u1", 0, chunks(data)) == len(data)
    assert await alive.verify("u1", Digest.of(data)) == len(data)


@pytest.mark.parametrize("open_blobs", S3, indirect=True)
async def test_a_writer_that_outlived_its_lease_stores_nothing(open_blobs: OpenBlobs) -> None:
    """A writer stalled past its lease (its client silent, or its process paused) while
    another waited for the lease to lapse and took the upload over: when it wakes, it is
    refused, and what the other acknowledged, a whole part and a tail, stays as it was."""
    slow, fast = open_blobs(), open_blobs()
    await slow.start_upload("u1")
    slow._states.lease = 1.0  # type: ignore[attr-defined]
    wake = asyncio.Event()
    asked = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        asked.set()  # the lease is taken before the body is read
        await wake.wait()
        yield b"S" * (PART_SIZE + 100)

    stalling = asyncio.create_task(slow.append("u1", 0, stalled()))
    await asyncio.wait_for(asked.wait(), 30)
    theirs = os.urandom(PART_SIZE + 50)
    assert await fast.append("u1", 0, chunks(theirs)) == len(theirs)  # once the lease lapsed
    wake.set()
    with pytest.raises(UploadOffsetMismatch) as caught:
        await stalling
    assert caught.value.size == len(theirs)
    assert await fast.upload_size("u1") == len(theirs)
    assert await fast.verify("u1", Digest.of(theirs)) == len(theirs)


async def test_verify_refuses_other_content_and_keeps_the_upload(blobs: BlobStore) -> None:
    data = os.urandom(300)
    await blobs.start_upload("u1")
    await blobs.append("u1", 0, chunks(data))
    with pytest.raises(DigestMismatch):
        await blobs.verify("u1", Digest.of(b"something else"))
    assert await blobs.upload_size("u1") == 300
    assert listed(blobs) == {}
    # The client may finish it with the right digest.
    assert await blobs.verify("u1", Digest.of(data)) == 300
    blobs.publish("u1", Digest.of(data))
    assert await read_all(blobs, Digest.of(data), 0, 300) == data


async def test_unknown_upload(blobs: BlobStore) -> None:
    assert await blobs.upload_size("nope") is None
    with pytest.raises(UploadUnknown):
        await blobs.append("nope", 0, chunks(b"data"))
    with pytest.raises(UploadUnknown):
        await blobs.verify("nope", Digest.of(b""))
    await blobs.abort("nope")  # nothing to drop: no error


async def test_an_upload_resumes_on_a_new_store_instance(open_blobs: OpenBlobs) -> None:
    """The session's data outlives the process that started it (a restart, or the next
    chunk landing on another registry process)."""
    head, middle, tail = os.urandom(1000), os.urandom(2000), os.urandom(3000)
    data = head + middle + tail
    first = open_blobs()
    await first.start_upload("u1")
    await first.append("u1", 0, chunks(head))
    second = open_blobs()
    assert await second.upload_size("u1") == 1000
    assert await second.append("u1", 1000, chunks(middle)) == 3000
    # Back on the first instance, whose own running state is now behind.
    assert await first.upload_size("u1") == 3000
    with pytest.raises(UploadOffsetMismatch):
        await first.append("u1", 1000, chunks(middle))
    assert await first.append("u1", 3000, chunks(tail)) == len(data)
    digest = Digest.of(data)
    assert await first.verify("u1", digest) == len(data)
    first.publish("u1", digest)
    assert await read_all(second, digest, 0, len(data)) == data


async def test_reading_a_missing_blob_fails(blobs: BlobStore) -> None:
    """Not a silent empty body: the protocol names no error type, so any will do."""
    with pytest.raises(Exception):  # noqa: B017
        await read_all(blobs, Digest.of(b"never stored"), 0, 12)


async def test_delete_removes_the_blob(blobs: BlobStore) -> None:
    kept = await upload(blobs, b"kept")
    gone = await upload(blobs, b"gone")
    blobs.delete(gone)
    assert listed(blobs) == {str(kept): 4}
    with pytest.raises(Exception):  # noqa: B017
        await read_all(blobs, gone, 0, 4)
    blobs.delete(gone)  # already gone: no error
    assert await read_all(blobs, kept, 0, 4) == b"kept"


async def test_publishing_a_digest_that_exists_keeps_one_blob(blobs: BlobStore) -> None:
    data = os.urandom(500)
    digest = await upload(blobs, data)
    assert await upload(blobs, data) == digest
    assert listed(blobs) == {str(digest): 500}
    assert await read_all(blobs, digest, 0, 500) == data


async def test_concurrent_uploads_of_the_same_content(open_blobs: OpenBlobs) -> None:
    data = os.urandom(4000)
    stores = [open_blobs(), open_blobs()]
    digests = await asyncio.gather(*(upload(stores[i % 2], data) for i in range(4)))
    assert set(digests) == {Digest.of(data)}
    assert listed(stores[0]) == {str(Digest.of(data)): 4000}
    assert await read_all(stores[1], Digest.of(data), 0, 4000) == data


async def test_concurrent_uploads_of_different_blobs(blobs: BlobStore) -> None:
    contents = [os.urandom(100 + i) for i in range(8)]
    digests = await asyncio.gather(*(upload(blobs, data) for data in contents))
    assert listed(blobs) == {str(d): len(data) for d, data in zip(digests, contents, strict=True)}
    for digest, data in zip(digests, contents, strict=True):
        assert await read_all(blobs, digest, 0, len(data)) == data


async def test_large_upload_across_parts_and_a_restart(open_blobs: OpenBlobs) -> None:
    """More than two S3 parts, in appends that do not end on part boundaries, each sent in
    small chunks, with a new store instance half way."""
    data = os.urandom(2 * PART_SIZE + 12345)
    cuts = [0, PART_SIZE - 1000, PART_SIZE + 7, len(data)]
    first = open_blobs()
    await first.start_upload("big")
    step = 64 << 10
    for i, (start, end) in enumerate(itertools.pairwise(cuts)):
        store = first if i < 2 else open_blobs()
        pieces = [data[at : min(at + step, end)] for at in range(start, end, step)]
        assert await store.append("big", start, chunks(*pieces)) == end
    digest = Digest.of(data)
    assert await store.verify("big", digest) == len(data)
    store.publish("big", digest)
    read = await read_all(first, digest, 0, len(data))
    assert hashlib.sha256(read).hexdigest() == digest.encoded
    for start, end in [(PART_SIZE - 10, PART_SIZE + 10), (2 * PART_SIZE, len(data))]:
        assert await read_all(first, digest, start, end) == data[start:end]
    assert listed(first) == {str(digest): len(data)}


async def test_abort_drops_the_upload(blobs: BlobStore) -> None:
    await blobs.start_upload("u1")
    await blobs.append("u1", 0, chunks(b"partial"))
    await blobs.abort("u1")
    assert await blobs.upload_size("u1") is None
    with pytest.raises(UploadUnknown):
        await blobs.append("u1", 7, chunks(b"more"))
    assert blobs.stale_uploads(time.time() + 60) == []
    assert listed(blobs) == {}


async def test_abort_after_publish_keeps_the_blob(blobs: BlobStore) -> None:
    """`publish` keeps the upload's data, for the metadata to commit; `abort` then drops
    the session and not the blob."""
    data = os.urandom(200)
    digest = Digest.of(data)
    await blobs.start_upload("u1")
    await blobs.append("u1", 0, chunks(data))
    await blobs.verify("u1", digest)
    blobs.publish("u1", digest)
    assert await blobs.upload_size("u1") == 200
    await blobs.abort("u1")
    assert await blobs.upload_size("u1") is None
    assert await read_all(blobs, digest, 0, 200) == data
    assert listed(blobs) == {str(digest): 200}


async def test_stale_uploads_are_those_written_before_a_time(blobs: BlobStore) -> None:
    before = time.time() - 60  # clocks of a remote store may differ a little
    ids = [uuid.uuid4().hex for _ in range(3)]
    for upload_id in ids:
        await blobs.start_upload(upload_id)
    await blobs.append(ids[0], 0, chunks(b"data"))
    await upload(blobs, b"published")
    assert blobs.stale_uploads(before) == []
    assert sorted(blobs.stale_uploads(time.time() + 60)) == sorted(ids)
    await blobs.abort(ids[1])
    assert sorted(blobs.stale_uploads(time.time() + 60)) == sorted([ids[0], ids[2]])


# A closing append (`digest` given): the body of a monolithic push.


async def _push(blobs: BlobStore, data: bytes, algorithm: str = "sha256") -> Digest:
    """A monolithic push as the registry runs it: start, a closing append, verify, publish
    and abort."""
    upload_id = uuid.uuid4().hex
    digest = Digest.of(data, algorithm)
    await blobs.start_upload(upload_id)
    assert await blobs.upload_size(upload_id) == 0
    assert await blobs.append(upload_id, 0, chunks(data[:7], data[7:]), digest) == len(data)
    assert await blobs.verify(upload_id, digest) == len(data)
    blobs.publish(upload_id, digest)
    await blobs.abort(upload_id)
    return digest


@pytest.mark.parametrize("size", [0, 1000, PART_SIZE + 10])  # empty, less and more than a part
@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
async def test_a_closing_append_becomes_a_readable_blob(
    open_blobs: OpenBlobs, size: int, algorithm: str
) -> None:
    blobs = open_blobs()
    data = os.urandom(size)
    digest = await _push(blobs, data, algorithm)
    assert listed(blobs) == {str(digest): size}
    assert await read_all(open_blobs(), digest, 0, size) == data
    assert blobs.stale_uploads(time.time() + 60) == []  # the session is gone


async def test_a_closing_append_of_other_content_is_kept_as_any_append(blobs: BlobStore) -> None:
    data = os.urandom(300)
    await blobs.start_upload("u1")
    assert await blobs.append("u1", 0, chunks(data), Digest.of(b"something else")) == 300
    assert await blobs.upload_size("u1") == 300
    with pytest.raises(DigestMismatch):
        await blobs.verify("u1", Digest.of(b"something else"))
    assert await blobs.verify("u1", Digest.of(data)) == 300
    blobs.publish("u1", Digest.of(data))
    assert await read_all(blobs, Digest.of(data), 0, 300) == data


async def test_a_closing_append_checked_against_another_digest_is_kept(blobs: BlobStore) -> None:
    data = os.urandom(300)
    await blobs.start_upload("u1")
    assert await blobs.append("u1", 0, chunks(data), Digest.of(data)) == 300
    with pytest.raises(DigestMismatch):
        await blobs.verify("u1", Digest.of(b"something else"))
    assert await blobs.upload_size("u1") == 300
    assert await blobs.verify("u1", Digest.of(data)) == 300


async def test_a_closing_append_after_others_ends_the_upload(open_blobs: OpenBlobs) -> None:
    """The last chunk of a chunked upload, on another store instance than the first."""
    first, second = open_blobs(), open_blobs()
    data = os.urandom(5000)
    await first.start_upload("u1")
    assert await first.append("u1", 0, chunks(data[:1000])) == 1000
    assert await second.upload_size("u1") == 1000
    assert await second.append("u1", 1000, chunks(data[1000:]), Digest.of(data)) == 5000
    assert await second.verify("u1", Digest.of(data)) == 5000
    second.publish("u1", Digest.of(data))
    await second.abort("u1")
    assert await read_all(first, Digest.of(data), 0, 5000) == data
    assert first.stale_uploads(time.time() + 60) == []


@pytest.mark.parametrize("open_blobs", S3, indirect=True)
async def test_a_closing_append_held_elsewhere_leaves_the_upload_to_others(
    open_blobs: OpenBlobs,
) -> None:
    """Bytes the S3 store holds for its publish are not the upload's: another process sees
    the upload as it was and may still write it."""
    first, second = open_blobs(), open_blobs()
    data = os.urandom(1000)
    await first.start_upload("u1")
    await first.append("u1", 0, chunks(data), Digest.of(data))
    assert await second.upload_size("u1") == 0
    assert await second.append("u1", 0, chunks(data)) == 1000
    assert await second.verify("u1", Digest.of(data)) == 1000


@pytest.mark.parametrize("open_blobs", S3, indirect=True)
async def test_a_monolithic_push_writes_its_bytes_once_in_few_requests(
    open_blobs: OpenBlobs,
) -> None:
    """A 1 MiB push on S3: at most 5 requests, and the bytes sent once (the object at the
    content address), not copied there server-side."""
    blobs = open_blobs()
    sent: list[tuple[str, int, bool]] = []  # operation, body bytes, copy

    def count(request: Any, **_: Any) -> None:
        body = request.body
        size = len(body) if isinstance(body, bytes | bytearray) else 0
        if hasattr(body, "seek"):
            at = body.tell()
            size = body.seek(0, os.SEEK_END) - at
            body.seek(at)
        copy = "x-amz-copy-source" in request.headers
        sent.append((request.method, size, copy))

    blobs._s3.meta.events.register("before-send.s3", count)  # type: ignore[attr-defined]
    data = os.urandom(1 << 20)
    digest = await _push(blobs, data)
    assert len(sent) <= 5, sent
    assert sum(size for _, size, _ in sent) < len(data) + 4096, sent
    assert not any(copy for _, _, copy in sent), sent
    assert await read_all(blobs, digest, 0, len(data)) == data


@pytest.mark.parametrize("open_blobs", S3, indirect=True)
async def test_a_publish_run_again_writes_the_bytes_only_if_gone(open_blobs: OpenBlobs) -> None:
    """A metadata transaction that conflicts runs again, and its publish with it: the held
    bytes are then not sent again while they are still at their content address."""
    blobs = open_blobs()
    operations: list[str] = []
    blobs._s3.meta.events.register(  # type: ignore[attr-defined]
        "before-call.s3", lambda model, **_: operations.append(model.name)
    )
    data = os.urandom(1000)
    digest = Digest.of(data)
    await blobs.start_upload("u1")
    await blobs.append("u1", 0, chunks(data), digest)
    await blobs.verify("u1", digest)
    blobs.publish("u1", digest)
    operations.clear()
    blobs.publish("u1", digest)
    assert operations == ["HeadObject"]
    blobs.delete(digest)  # gone meanwhile (say, an orphan at that address that gc removed)
    blobs.publish("u1", digest)
    await blobs.abort("u1")
    assert await read_all(blobs, digest, 0, 1000) == data


@pytest.mark.parametrize("open_blobs", S3, indirect=True)
async def test_a_chunked_upload_of_less_than_a_part_is_sent_once(open_blobs: OpenBlobs) -> None:
    """Chunks that make less than a part, all on one process: the tail object they are kept
    in becomes the upload's data, so their bytes are sent once, never read back, and copied
    to the content address by S3 alone."""
    blobs = open_blobs()
    calls: list[tuple[str, int]] = []  # operation, body bytes

    def count(model: Any, params: Any, **_: Any) -> None:
        body = params.get("body", b"")
        calls.append((model.name, len(body) if isinstance(body, bytes | bytearray) else 0))

    blobs._s3.meta.events.register("before-call.s3", count)  # type: ignore[attr-defined]
    data = os.urandom(300_000)
    digest = Digest.of(data)
    await blobs.start_upload("u1")
    assert await blobs.append("u1", 0, chunks(data[:100_000])) == 100_000
    assert await blobs.append("u1", 100_000, chunks(data[100_000:])) == len(data)
    assert await blobs.verify("u1", digest) == len(data)
    blobs.publish("u1", digest)
    await blobs.abort("u1")
    names = [name for name, _ in calls]
    assert names.count("CopyObject") == 1, names
    # The tail is read (to be extended) once, by the second append; never to hash the upload.
    assert sum(size for _, size in calls) < len(data) + 100_000 + 8192, calls
    assert await read_all(blobs, digest, 0, len(data)) == data
    assert listed(blobs) == {str(digest): len(data)}
    assert blobs.stale_uploads(time.time() + 60) == []


# The filesystem's write path: hashed and written on an I/O thread while the body arrives.


async def test_a_filesystem_upload_starts_its_writeback_as_it_arrives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each WRITEBACK bytes written, their writeback is started (the range just written,
    from where the append began), so that the closing fsync has little left to do."""
    started: list[tuple[int, int]] = []
    real = filesystem._start_writeback

    def record(fd: int, offset: int, length: int) -> None:
        started.append((offset, length))
        real(fd, offset, length)  # the real call, on a real file: it must not fail

    monkeypatch.setattr(filesystem, "_start_writeback", record)
    store = FilesystemBlobStore(tmp_path / "data")
    try:
        first, second = os.urandom(3 * 1024), os.urandom(3 * filesystem.WRITEBACK + 5)
        await store.start_upload("u")
        assert await store.append("u", 0, chunks(first)) == len(first)
        assert started == []  # too little to start anything
        body = [second[i : i + 256 * 1024] for i in range(0, len(second), 256 * 1024)]
        total = len(first) + len(second)
        assert await store.append("u", len(first), chunks(*body)) == total
        assert started[0][0] == len(first)
        for (offset, length), (following, _) in itertools.pairwise(started):
            assert offset + length == following  # contiguous, in order
        assert all(length >= filesystem.WRITEBACK for _, length in started)
        end = started[-1][0] + started[-1][1]
        assert total - filesystem.WRITEBACK < end <= total
        assert await store.verify("u", Digest.of(first + second)) == total
    finally:
        store.close()


async def test_a_failed_write_stops_the_append_and_the_upload_keeps_what_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails (a full disk) ends the append with its error, without reading the
    rest of the body; the upload reports the bytes really in its file, and continues from
    there with a hash of exactly those."""
    real = filesystem._write_chunks
    calls = 0

    def full_at_the_third(fd: int, batch: list[bytes]) -> int:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, batch)

    monkeypatch.setattr(filesystem, "_write_chunks", full_at_the_third)
    mib = filesystem.WRITE_BATCH
    sent = os.urandom(64 * mib)
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for offset in range(0, len(sent), mib):
            pulled += 1
            yield sent[offset : offset + mib]

    store = FilesystemBlobStore(tmp_path / "data")
    try:
        await store.start_upload("u")
        with pytest.raises(OSError, match="No space left"):
            await store.append("u", 0, body())
        assert pulled <= 3 + filesystem.IN_FLIGHT + 1  # not the 64 of the whole body
        held = await store.upload_size("u")
        assert held == 2 * mib
        monkeypatch.setattr(filesystem, "_write_chunks", real)
        assert await store.append("u", held, chunks(sent[held:])) == len(sent)
        assert await store.verify("u", Digest.of(sent)) == len(sent)
    finally:
        store.close()


async def test_an_upload_whose_body_pauses_holds_no_io_thread(tmp_path: Path) -> None:
    """With one I/O thread, an upload whose client has sent a batch and then goes quiet
    leaves the thread to others: a second upload and a read finish meanwhile."""
    store = FilesystemBlobStore(tmp_path / "data", io_threads=1)
    try:
        quiet = asyncio.Event()
        first = os.urandom(2 * filesystem.WRITE_BATCH)
        rest = os.urandom(1000)

        async def pausing() -> AsyncIterator[bytes]:
            yield first
            quiet.set()
            await resume.wait()
            yield rest

        resume = asyncio.Event()
        await store.start_upload("slow")
        slow = asyncio.create_task(store.append("slow", 0, pausing()))
        await quiet.wait()
        other = os.urandom(3 * filesystem.WRITE_BATCH)
        digest = await asyncio.wait_for(upload(store, other), timeout=30)
        assert await asyncio.wait_for(read_all(store, digest, 0, len(other)), 30) == other
        assert not slow.done()
        resume.set()
        assert await slow == len(first) + len(rest)
        assert await store.verify("slow", Digest.of(first + rest)) == len(first) + len(rest)
    finally:
        store.close()
