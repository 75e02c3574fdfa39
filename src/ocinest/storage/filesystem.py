"""A content-addressed BlobStore on a local filesystem.

Layout under the root: `blobs/<algorithm>/<2 hex>/<encoded>` and `uploads/<id>`.
A blob becomes visible only by an atomic link after its digest is verified and its data
fsynced; the directory entry is fsynced too, so an acknowledged blob survives a crash.

Upload data is not fsynced while it arrives (neither the new file nor a PATCH): durability
is the closing PUT's, which fsyncs the data before the link. Its writeback is started as it
arrives (sync_file_range, a hint that waits for nothing), so that fsync has little to do.
What an upload reports as its offset is always the size of its file, the bytes really there;
its running hash is kept in this process only, and whenever it does not cover exactly those
bytes (after a restart, say) the next chunk or the PUT hashes the file itself: never a state
that disagrees with them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import errno
import fcntl
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ocinest.oci.digest import CANONICAL, Digest, Hasher, new_hasher
from ocinest.storage.errors import (
    BackendUnavailable,
    ChunkRefused,
    DigestMismatch,
    UploadOffsetMismatch,
    UploadUnknown,
)

T = TypeVar("T")

# Bytes gathered before a write: large enough to amortize the hop to the I/O thread.
WRITE_BATCH = 1 << 20
READ_BATCH = 4 << 20
# Batches of an upload received while the I/O thread hashes and writes the one before.
IN_FLIGHT = 4
# Bytes of an upload after which their writeback is started, so that the disk writes while
# the body arrives instead of all at the closing fsync.
WRITEBACK = 8 << 20
SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>


@dataclass
class _Progress:
    """A running hash of an upload's first `offset` bytes, kept by this process."""

    hasher: Hasher
    offset: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FilesystemBlobStore:
    def __init__(self, root: Path, io_threads: int = 4) -> None:
        self.root = root
        self._blobs = root / "blobs"
        self._uploads = root / "uploads"
        for d in (self._blobs, self._uploads):
            d.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(io_threads, thread_name_prefix="ocinest-io")
        self._progress: dict[str, _Progress] = {}

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    async def ping(self) -> None:
        for folder in (self._blobs, self._uploads):
            if not os.access(folder, os.W_OK | os.X_OK):
                raise BackendUnavailable("blobs", f"{folder} is missing or cannot be written")

    def _blob_path(self, digest: Digest) -> Path:
        return self._blobs / digest.algorithm / digest.encoded[:2] / digest.encoded

    def _upload_path(self, upload_id: str) -> Path:
        return self._uploads / upload_id

    def _run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Start `fn` on the I/O threads now; await the future for its result."""
        return asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def local_path(self, digest: Digest) -> Path | None:
        return self._blob_path(digest)

    def presigned_url(self, digest: Digest) -> str | None:
        return None

    async def read(self, digest: Digest, start: int, end: int) -> AsyncIterator[bytes]:
        with open(self._blob_path(digest), "rb") as f:
            f.seek(start)
            while start < end:
                data = await self._run(f.read, min(READ_BATCH, end - start))
                if not data:
                    return
                start += len(data)
                yield data

    async def start_upload(self, upload_id: str) -> None:
        def create() -> None:
            # Not fsynced: a session lost with the page cache is answered as unknown, and
            # the client starts again (nothing of it was acknowledged as stored).
            fd = os.open(self._upload_path(upload_id), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            os.close(fd)

        await self._run(create)
        self._progress[upload_id] = _Progress(new_hasher(CANONICAL), 0)

    async def upload_size(self, upload_id: str) -> int | None:
        try:
            return os.stat(self._upload_path(upload_id)).st_size
        except FileNotFoundError:
            return None

    async def append(
        self,
        upload_id: str,
        offset: int,
        chunks: AsyncIterator[bytes],
        digest: Digest | None = None,  # a file is written once whether or not they close it
    ) -> int:
        try:
            fd = os.open(self._upload_path(upload_id), os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            raise UploadUnknown(upload_id) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                # Another request is writing this upload right now.
                raise UploadOffsetMismatch(os.fstat(fd).st_size) from None
            size = os.fstat(fd).st_size
            if size != offset:
                raise UploadOffsetMismatch(size)
            progress = self._progress.pop(upload_id, None)
            if progress is None or progress.offset != size:
                # No running hash of these bytes here (a restart, another worker's chunk, a
                # chunk broken off): hash what the file holds, so the state matches the bytes.
                progress = _Progress(await self._run(_hasher_of, fd, size), size)
            hasher = progress.hasher
            try:
                written = await self._write_all(fd, hasher, chunks)
            except ChunkRefused:
                await self._run(os.ftruncate, fd, size)
                raise
            # No fsync: the PUT that closes the upload makes it durable (`verify`).
            self._progress[upload_id] = _Progress(hasher, size + written)
            return size + written
        finally:
            os.close(fd)

    async def _write_all(self, fd: int, hasher: Hasher, chunks: AsyncIterator[bytes]) -> int:
        """Write while reading: the batches are hashed and written in order on an I/O
        thread while the loop reads on, up to IN_FLIGHT of them waiting (so the socket is
        drained while the thread works), and the writeback of each WRITEBACK bytes written
        is started, so that the closing fsync finds little left to write. A thread is held
        only while batches wait: a client that sends slowly holds none."""
        loop = asyncio.get_running_loop()
        waiting: collections.deque[list[bytes]] = collections.deque()
        lock = threading.Lock()
        draining = False
        drain: asyncio.Future[None] | None = None
        room = asyncio.Semaphore(IN_FLIGHT)
        failed: list[BaseException] = []
        end = flushed = os.fstat(fd).st_size

        def write_waiting() -> None:
            nonlocal draining, end, flushed
            while True:
                with lock:
                    if not waiting:
                        draining = False
                        return
                    batch = waiting.popleft()
                if not failed:  # after a failure, only make room until the loop stops
                    try:
                        for chunk in batch:
                            hasher.update(chunk)
                        end += _write_chunks(fd, batch)
                        if end - flushed >= WRITEBACK:
                            _start_writeback(fd, flushed, end - flushed)
                            flushed = end
                    except BaseException as exc:
                        failed.append(exc)
                loop.call_soon_threadsafe(room.release)

        def put(batch: list[bytes]) -> None:
            nonlocal draining, drain
            with lock:
                waiting.append(batch)
                if draining:
                    return  # the running drain takes it
                draining = True
            drain = self._run(write_waiting)

        written = 0
        batch: list[bytes] = []
        batched = 0
        try:
            async for chunk in chunks:
                batch.append(chunk)
                batched += len(chunk)
                if batched >= WRITE_BATCH:
                    await room.acquire()
                    if failed:
                        break
                    put(batch)
                    written += batched
                    batch, batched = [], 0
            else:
                if batch:
                    put(batch)
                    written += batched
        finally:
            # Also when the client went away: what waits is written before fd closes. The
            # last drain started is the one that ends with nothing left waiting.
            if drain is not None:
                await asyncio.wait([drain])
        if drain is not None:
            drain.result()
        if failed:
            raise failed[0]
        return written

    async def verify(self, upload_id: str, digest: Digest) -> int:
        path = self._upload_path(upload_id)
        progress = self._progress.pop(upload_id, None)

        def check() -> int:
            fd = os.open(path, os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                if (
                    progress is not None
                    and progress.offset == size
                    and digest.algorithm == CANONICAL
                ):
                    actual = progress.hasher.hexdigest()
                else:
                    actual = _hasher_of(fd, size, digest.algorithm).hexdigest()
                if actual != digest.encoded:
                    raise DigestMismatch(str(digest), f"{digest.algorithm}:{actual}")
                # The one fsync of an upload's data. Linked into place already, with the
                # folder fsynced, outside the metadata transaction: `publish` then finds it
                # there. Until that commits it is content no row names, as after a crash
                # between publish and commit, which gc removes (and `publish` links again).
                os.fsync(fd)
                self._link(path, digest)
                return size
            finally:
                os.close(fd)

        try:
            return await self._run(check)
        except FileNotFoundError:
            raise UploadUnknown(upload_id) from None

    def publish(self, upload_id: str, digest: Digest) -> None:
        path = self._upload_path(upload_id)
        try:
            if os.stat(self._blob_path(digest)).st_ino == os.stat(path).st_ino:
                return  # linked by `verify`, the folder fsynced since
        except FileNotFoundError:
            pass
        try:
            self._link(path, digest)
        except FileNotFoundError:
            raise UploadUnknown(upload_id) from None

    def _link(self, path: Path, digest: Digest) -> None:
        """Link the upload file at `path` into place as the blob `digest`, durably. A hard
        link, not a rename: should the metadata transaction not commit, the upload keeps its
        data."""
        target = self._blob_path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # the same content, verified before
            os.link(path, target)
        _fsync_dir(target.parent)

    def delete(self, digest: Digest) -> None:
        # Not fsynced: a deletion the crash undid leaves content no row names, which the
        # next gc finds in its scan and removes (as after a crash between publish and
        # commit), and a push of the same digest finds the same bytes there.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._blob_path(digest))

    def scan(self) -> Iterator[tuple[str, int, float]]:
        for algorithm_dir in self._blobs.iterdir():
            for shard in algorithm_dir.iterdir():
                for entry in os.scandir(shard):
                    st = _stat(entry)
                    if st is not None:
                        yield f"{algorithm_dir.name}:{entry.name}", st.st_size, st.st_mtime

    def stale_uploads(self, before: float) -> list[str]:
        return [
            e.name
            for e in os.scandir(self._uploads)
            if (st := _stat(e)) is not None and st.st_mtime < before
        ]

    async def abort(self, upload_id: str) -> None:
        self._progress.pop(upload_id, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._upload_path(upload_id))


def _write_chunks(fd: int, chunks: list[bytes]) -> int:
    """Write the chunks as they came (no copy into one buffer); the bytes written."""
    views = [memoryview(c) for c in chunks]
    total = sum(len(v) for v in views)
    while views:
        done = os.writev(fd, views[:1024])
        while views and done >= len(views[0]):
            done -= len(views[0])
            views.pop(0)
        if views and done:
            views[0] = views[0][done:]
    return total


def _sync_file_range() -> Callable[[int, int, int], None]:
    """Linux's sync_file_range(2) with SYNC_FILE_RANGE_WRITE, which `os` does not bind: start
    writing a range of dirty pages back, without waiting. Elsewhere, nothing."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except AttributeError:
        return lambda fd, offset, length: None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int

    def start(fd: int, offset: int, length: int) -> None:
        # A hint: a failure here (an old kernel, a filesystem without it) is found, if it
        # matters, by the fsync that makes the upload durable.
        function(fd, offset, length, SYNC_FILE_RANGE_WRITE)

    return start


_start_writeback = _sync_file_range()


def _stat(entry: os.DirEntry[str]) -> os.stat_result | None:
    """The entry's status, or None when it went away since the directory was listed."""
    try:
        return entry.stat()
    except FileNotFoundError:
        return None


def _hasher_of(fd: int, size: int, algorithm: str = CANONICAL) -> Hasher:
    """A hasher fed the first `size` bytes of the file `fd`."""
    hasher = new_hasher(algorithm)
    offset = 0
    while offset < size and (data := os.pread(fd, min(READ_BATCH, size - offset), offset)):
        hasher.update(data)
        offset += len(data)
    return hasher
