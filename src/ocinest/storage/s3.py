"""A BlobStore on any S3-compatible service (Ceph RGW, MinIO, AWS).

An upload session is one S3 multipart upload. Its state (the parts so far and the bytes
not yet making a whole part, kept in a small tail object) lives in the bucket, so a PATCH
may land on another process than the POST. A blob becomes visible only after its digest is
verified: the completed upload is hashed (by the process that saw every byte, or by reading
it back) and only then copied, server-side, to its content address. A monolithic push's body
(a closing append to an empty upload, of at most one part) is the exception: hashed as it
arrives and held in memory, it is written once, by `publish`, to its content address.

Writers of one upload (the store instances of several processes) take turns by a lease kept
in the state object and changed only by compare-and-swap (`s3_uploads.py`). The lease is
taken before any byte is stored, renewed while the body arrives, and given back with the new
size; a writer finding it held waits, for one lease's time at most, until it is given back or,
its holder dead, lapses. A writer stores only what no committed state names: part numbers
from a range the state handed to its lease alone, and a tail object of a new name. So one that
outlived its lease can neither commit nor overwrite what another acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError, HTTPClientError, IncompleteReadError
from botocore.exceptions import ConnectionError as S3ConnectionError

from ocinest.oci.digest import CANONICAL, Digest, Hasher, new_hasher
from ocinest.storage.errors import (
    BackendUnavailable,
    DigestMismatch,
    UploadBusy,
    UploadOffsetMismatch,
    UploadUnknown,
)
from ocinest.storage.s3_uploads import LEASE, Held, Lease, State, UploadStates, missing

T = TypeVar("T")
MIN_PART = 5 << 20  # S3's smallest part but the last
READ_CHUNK = 1 << 20
MAX_COPY = 5 << 30  # S3's largest part copied server-side
SEEN = 4096  # upload states remembered before the old are forgotten
HOLD = 300.0  # seconds closing bytes are held for the publish of a push whose commit failed


# Faults of the service, not answers about the request: it cannot be reached, stopped
# answering within the timeout, or broke a response off.
_FAULTS = (S3ConnectionError, HTTPClientError, IncompleteReadError)


@contextlib.contextmanager
def _unavailable() -> Iterator[None]:
    """S3's faults as `BackendUnavailable`: the service unreachable, too slow, or failing on
    its side (a 5xx answer, once botocore's retry is spent)."""
    try:
        yield
    except _FAULTS as exc:
        raise BackendUnavailable("blobs", f"S3 did not answer: {exc}") from None
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if status < 500:
            raise
        code = exc.response.get("Error", {}).get("Code", "")
        raise BackendUnavailable("blobs", f"S3 answered {status} {code}".rstrip()) from None


@dataclass
class _Held:
    """The closing bytes of an upload, verified against `digest`, waiting for `publish`."""

    digest: Digest
    data: bytes
    at: float  # time.monotonic() when they were received
    written: bool = False  # by a publish whose transaction then ran again


async def _prefixed(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield  # an async generator that yields nothing


class S3BlobStore:
    def __init__(
        self,
        bucket: str,
        *,
        endpoint: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        prefix: str = "",
        part_size: int = 16 << 20,
        redirect: bool = False,
        threads: int = 16,
        lease: float = LEASE,
        timeout: float = 5.0,
    ) -> None:
        def client(timeout: float) -> Any:
            return boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name=region or "us-east-1",
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                config=BotoConfig(
                    s3={"addressing_style": "path"},
                    max_pool_connections=threads,
                    # Every attempt waits `timeout` at most, to connect and for each read;
                    # one retry, so that an outage is reported within a bound.
                    connect_timeout=timeout,
                    read_timeout=timeout,
                    retries={"total_max_attempts": 2, "mode": "standard"},
                ),
            )

        self._s3 = client(timeout)
        self._bucket = bucket
        self._prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._part_size = max(part_size, MIN_PART)
        self._redirect = redirect
        self._states = UploadStates(self._s3, bucket, self._prefix, lease)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="ocinest-s3")
        self._hashers: dict[str, tuple[Hasher, int]] = {}
        # The state each upload had when this process last saw it, and when (time.monotonic).
        self._seen: dict[str, tuple[State, float]] = {}
        self._held: dict[str, _Held] = {}
        self._sources: dict[str, str] = {}  # the key of each verified upload's data
        # At start, S3 gets longer than a request's bound (making a bucket may take a while).
        setup = client(max(30.0, timeout))
        try:
            setup.head_bucket(Bucket=bucket)
        except ClientError:
            setup.create_bucket(Bucket=bucket)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        def call() -> T:
            with _unavailable():
                return fn(*args, **kwargs)

        return asyncio.get_running_loop().run_in_executor(self._pool, call)

    def _blob_key(self, digest: Digest) -> str:
        return f"{self._prefix}blobs/{digest.algorithm}/{digest.encoded[:2]}/{digest.encoded}"

    async def _take(
        self, upload_id: str, offset: int | None, loaded: tuple[State, str] | None = None
    ) -> Lease:
        """Take the upload's lease for appending at `offset` (None: to complete it), from the
        state as `loaded` when given. While another writer holds it, wait (for one lease's
        time at most) until it gives it back or, should it have died, until it lapses."""
        deadline = time.monotonic() + self._states.lease
        while True:
            try:
                return await self._run(self._states.grant, upload_id, offset, loaded)
            except Held as held:
                if time.monotonic() < deadline:
                    loaded = None
                    await asyncio.sleep(0.2)
                elif offset is None:
                    raise UploadBusy(upload_id) from None
                else:
                    raise UploadOffsetMismatch(held.size) from None

    # BlobStore

    async def ping(self) -> None:
        await self._run(self._s3.head_bucket, Bucket=self._bucket)

    def local_path(self, digest: Digest) -> Path | None:
        return None

    def presigned_url(self, digest: Digest) -> str | None:
        if not self._redirect:
            return None
        url: str = self._s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": self._bucket, "Key": self._blob_key(digest)},
            ExpiresIn=600,
        )
        return url

    async def read(self, digest: Digest, start: int, end: int) -> AsyncIterator[bytes]:
        if end <= start:
            return
        body = await self._run(
            self._s3.get_object,
            Bucket=self._bucket,
            Key=self._blob_key(digest),
            Range=f"bytes={start}-{end - 1}",
        )
        stream = body["Body"]
        try:
            while data := await self._run(stream.read, READ_CHUNK):
                yield data
        finally:
            stream.close()

    async def start_upload(self, upload_id: str) -> None:
        await self._run(self._states.save, upload_id, State(), None)
        self._hashers[upload_id] = (new_hasher(CANONICAL), 0)
        self._seen[upload_id] = (State(), time.monotonic())

    async def upload_size(self, upload_id: str) -> int | None:
        state = await self._run(self._states.load, upload_id)
        now = time.monotonic()
        if len(self._seen) > SEEN:
            self._seen = {u: seen for u, seen in self._seen.items() if seen[1] > now - HOLD}
        if state is not None:
            self._seen[upload_id] = (state, now)
        return None if state is None else state.size

    async def append(
        self,
        upload_id: str,
        offset: int,
        chunks: AsyncIterator[bytes],
        digest: Digest | None = None,
    ) -> int:
        seen, at = self._seen.pop(upload_id, (None, 0.0))
        fresh = seen is not None and time.monotonic() - at < self._states.lease / 2
        if digest is not None and fresh and seen == State() and offset == 0:
            return await self._hold(upload_id, chunks, digest)
        return await self._store(upload_id, offset, chunks)

    async def _hold(self, upload_id: str, chunks: AsyncIterator[bytes], digest: Digest) -> int:
        """The closing bytes of an upload that holds none yet (the body of a monolithic
        push): when they fit in one part and match `digest`, they are kept here, for
        `verify` and `publish` to write them once, at the content address. Otherwise they
        are stored as any append's."""
        hasher = new_hasher(digest.algorithm)
        buffer = bytearray()
        async for chunk in chunks:
            hasher.update(chunk)
            buffer += chunk
            if len(buffer) > self._part_size:
                return await self._store(upload_id, 0, _prefixed(bytes(buffer), chunks))
        if hasher.hexdigest() != digest.encoded:
            return await self._store(upload_id, 0, _prefixed(bytes(buffer), _nothing()))
        now = time.monotonic()
        for stale in [u for u, held in self._held.items() if held.at < now - HOLD]:
            del self._held[stale]  # a push whose commit failed and was never retried
        self._held[upload_id] = _Held(digest, bytes(buffer), now)
        return len(buffer)

    async def _store(self, upload_id: str, offset: int, chunks: AsyncIterator[bytes]) -> int:
        lease = await self._take(upload_id, offset)
        state = lease.state
        running = self._hashers.pop(upload_id, None)
        hasher = running[0] if running and running[1] == state.size else None
        parts: list[dict[str, Any]] = []
        size = state.size
        pending: asyncio.Future[None] | None = None
        multipart = [state.multipart]  # made with the first part, under the lease

        def put_part(number: int, data: bytes) -> None:
            key = self._states.key(upload_id, "data")
            if not multipart[0]:
                made = self._s3.create_multipart_upload(Bucket=self._bucket, Key=key)
                multipart[0] = made["UploadId"]
            answer = self._s3.upload_part(
                Bucket=self._bucket,
                Key=key,
                UploadId=multipart[0],
                PartNumber=number,
                Body=data,
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"], "Size": len(data)})

        try:
            buffer = bytearray(await self._run(self._states.tail, upload_id, state))
            try:
                async for chunk in chunks:
                    if self._states.due(lease, False):  # a slow body keeps its lease too
                        await self._run(self._states.renew, upload_id, lease, False)
                    if hasher is not None:
                        hasher.update(chunk)
                    buffer += chunk
                    size += len(chunk)
                    while len(buffer) >= self._part_size:
                        part = bytes(buffer[: self._part_size])
                        del buffer[: self._part_size]
                        if pending is not None:
                            await pending  # one part in flight while the next is read
                        if self._states.due(lease, True):
                            await self._run(self._states.renew, upload_id, lease, True)
                        pending = self._run(put_part, lease.next, part)
                        lease.next += 1
            finally:
                if pending is not None:
                    await asyncio.shield(pending)
            parts.sort(key=lambda p: p["PartNumber"])
            tail_key = f"tail.{lease.token}" if buffer else ""
            new = State(
                **{
                    **state.__dict__,
                    "multipart": multipart[0],
                    "parts": state.parts + parts,
                    "size": size,
                    "tail": len(buffer),
                    "tail_key": tail_key,
                    "next_part": lease.next,
                }
            )

            def commit() -> None:
                self._states.renew(upload_id, lease, False)
                if buffer:
                    self._s3.put_object(
                        Bucket=self._bucket,
                        Key=self._states.key(upload_id, tail_key),
                        Body=bytes(buffer),
                    )
                self._states.release(upload_id, lease, new)

            await self._run(commit)
        except BaseException:
            # Give the lease back unchanged (the part numbers it had stay spent), so that the
            # client may retry at once; should that fail too, the lease expires.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._run(self._states.release, upload_id, lease, lease.state))
            raise
        if state.tail:
            await self._run(
                self._s3.delete_object,
                Bucket=self._bucket,
                Key=self._states.key(upload_id, state.tail_key),
            )
        if hasher is not None:
            self._hashers[upload_id] = (hasher, size)
        return size

    async def verify(self, upload_id: str, digest: Digest) -> int:
        held = self._held.get(upload_id)
        if held is not None:
            if held.digest == digest:
                return len(held.data)
            # Checked against another digest: the bytes become the upload's like any append.
            del self._held[upload_id]
            await self._store(upload_id, 0, _prefixed(held.data, _nothing()))
        running = self._hashers.pop(upload_id, None)
        loaded = await self._run(self._states.fetch, upload_id)
        if loaded is None:
            raise UploadUnknown(upload_id)
        lease = None if loaded[0].completed else await self._take(upload_id, None, loaded)

        def finish() -> int:
            state = loaded[0]
            if lease is not None:
                state = lease.state
                data = "data"
                if not state.parts:
                    # Less than a part: the tail object is the upload's data as it stands.
                    if state.multipart:  # made by a session of an older version
                        self._s3.abort_multipart_upload(
                            Bucket=self._bucket,
                            Key=self._states.key(upload_id, data),
                            UploadId=state.multipart,
                        )
                    if state.tail:
                        data = state.tail_key
                    else:  # an empty blob
                        self._s3.put_object(
                            Bucket=self._bucket, Key=self._states.key(upload_id, data), Body=b""
                        )
                else:
                    parts = list(state.parts)
                    tail = self._states.tail(upload_id, state)
                    if tail:
                        answer = self._s3.upload_part(
                            Bucket=self._bucket,
                            Key=self._states.key(upload_id, data),
                            UploadId=state.multipart,
                            PartNumber=lease.next,
                            Body=tail,
                        )
                        parts.append(
                            {"PartNumber": lease.next, "ETag": answer["ETag"], "Size": len(tail)}
                        )
                    self._complete(upload_id, lease, parts)
                done = {"completed": True, "tail": 0, "tail_key": "", "data": data}
                self._states.release(upload_id, lease, State(**{**state.__dict__, **done}))
                if state.tail and data != state.tail_key:
                    self._s3.delete_object(
                        Bucket=self._bucket, Key=self._states.key(upload_id, state.tail_key)
                    )
                state = State(**{**state.__dict__, **done})
            key = self._states.key(upload_id, state.data or "data")
            self._sources[upload_id] = key
            if running is not None and running[1] == state.size and digest.algorithm == CANONICAL:
                actual = running[0].hexdigest()
            else:
                actual = self._hash_object(key, digest.algorithm)
            if actual != digest.encoded:
                raise DigestMismatch(str(digest), f"{digest.algorithm}:{actual}")
            return state.size

        return await self._run(finish)

    def _complete(self, upload_id: str, lease: Lease, parts: list[dict[str, Any]]) -> None:
        """Complete the upload's multipart upload of `parts` (PartNumber, ETag, Size).

        Ceph RGW (16.2) completes one only with every part that was uploaded to it, and a
        writer that died or outlived its lease may have left some no state names. Then the
        upload is completed with them all, and the named parts' bytes are copied, server-side,
        into a new multipart upload of the data."""
        key = self._states.key(upload_id, "data")
        multipart = lease.state.multipart

        def complete(upload: str, parts: list[dict[str, Any]]) -> None:
            # The ETag of the answer is not a digest (and Ceph's is odd): ignore it.
            self._s3.complete_multipart_upload(
                Bucket=self._bucket,
                Key=key,
                UploadId=upload,
                MultipartUpload={
                    "Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]
                },
            )

        try:
            complete(multipart, parts)
            return
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "InvalidPart":
                raise
        pages = self._s3.get_paginator("list_parts").paginate(
            Bucket=self._bucket, Key=key, UploadId=multipart
        )
        uploaded = sorted(
            (part for page in pages for part in page.get("Parts", [])),
            key=lambda p: p["PartNumber"],
        )
        complete(multipart, uploaded)
        named = {p["PartNumber"] for p in parts}
        ranges: list[list[int]] = []  # [start, end) of the named parts, joined when adjacent
        at = 0
        for part in uploaded:
            if part["PartNumber"] in named:
                if ranges and ranges[-1][1] == at and at + part["Size"] - ranges[-1][0] <= MAX_COPY:
                    ranges[-1][1] = at + part["Size"]
                else:
                    ranges.append([at, at + part["Size"]])
            at += part["Size"]
        copy = self._s3.create_multipart_upload(Bucket=self._bucket, Key=key)["UploadId"]
        copied = []
        for number, (start, end) in enumerate(ranges, 1):
            self._states.renew(upload_id, lease, False)
            answer = self._s3.upload_part_copy(
                Bucket=self._bucket,
                Key=key,
                UploadId=copy,
                PartNumber=number,
                CopySource={"Bucket": self._bucket, "Key": key},
                CopySourceRange=f"bytes={start}-{end - 1}",
            )
            copied.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
        complete(copy, copied)

    def _hash_object(self, key: str, algorithm: str) -> str:
        hasher = new_hasher(algorithm)
        stream = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"]
        while data := stream.read(READ_CHUNK):
            hasher.update(data)
        return hasher.hexdigest()

    def publish(self, upload_id: str, digest: Digest) -> None:
        held = self._held.get(upload_id)
        if held is not None and held.digest == digest:
            # Verified bytes, written once, where they are read: S3 replaces an object at
            # once and whole, so that a reader of the same content address (pushed before,
            # or left by a crash between publish and commit) sees it all, old or new.
            # A transaction that runs again (a conflict) publishes again: then the bytes are
            # written only if they are gone meanwhile.
            key = self._blob_key(digest)
            with _unavailable():
                if held.written:
                    try:
                        self._s3.head_object(Bucket=self._bucket, Key=key)
                        return
                    except ClientError as exc:
                        if not missing(exc):
                            raise
                self._s3.put_object(Bucket=self._bucket, Key=key, Body=held.data)
            held.written = True
            return
        # A server-side copy, not a move: should the metadata transaction around it not
        # commit, the upload keeps its data.
        try:
            with _unavailable():
                source = self._sources.get(upload_id)
                if source is None:  # verified by another process (say, before a restart)
                    state = self._states.load(upload_id)
                    name = (state.data if state is not None else "") or "data"
                    source = self._states.key(upload_id, name)
                self._s3.copy(
                    {"Bucket": self._bucket, "Key": source}, self._bucket, self._blob_key(digest)
                )
        except ClientError as exc:
            if missing(exc):
                raise UploadUnknown(upload_id) from None
            raise

    def delete(self, digest: Digest) -> None:
        with _unavailable():
            self._s3.delete_object(Bucket=self._bucket, Key=self._blob_key(digest))

    async def abort(self, upload_id: str) -> None:
        self._hashers.pop(upload_id, None)
        self._seen.pop(upload_id, None)
        self._sources.pop(upload_id, None)
        if self._held.pop(upload_id, None) is not None:
            # The session stored nothing but its state (the bytes went to the content
            # address); whatever another writer stored meanwhile is debris without a
            # state, which gc drops (`stale_uploads`).
            await self._run(
                self._s3.delete_object,
                Bucket=self._bucket,
                Key=self._states.key(upload_id, "state"),
            )
            return

        def drop() -> None:
            # Every multipart upload on the session's keys: the state's, and any a writer
            # made and died before its state named it.
            for multipart in self._multiparts(upload_id):
                try:
                    self._s3.abort_multipart_upload(
                        Bucket=self._bucket, Key=multipart["Key"], UploadId=multipart["UploadId"]
                    )
                except ClientError as exc:
                    if not missing(exc):
                        raise
            # Everything the session wrote: its state, data and tails (one a lease each).
            keys = [{"Key": obj["Key"]} for obj in self._list(f"uploads/{upload_id}/")]
            if keys:
                self._s3.delete_objects(Bucket=self._bucket, Delete={"Objects": keys})

        await self._run(drop)

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=self._prefix + prefix
        )
        with _unavailable():
            for page in pages:
                yield from page.get("Contents", [])

    def _multiparts(self, upload_id: str = "") -> Iterator[dict[str, Any]]:
        """The multipart uploads under the keys of one upload session, or of all."""
        prefix = f"{self._prefix}uploads/{upload_id}/" if upload_id else f"{self._prefix}uploads/"
        pages = self._s3.get_paginator("list_multipart_uploads").paginate(
            Bucket=self._bucket, Prefix=prefix
        )
        with _unavailable():
            for page in pages:
                yield from page.get("Uploads", [])

    def scan(self) -> Iterator[tuple[str, int, float]]:
        for obj in self._list("blobs/"):
            _, algorithm, _, encoded = obj["Key"][len(self._prefix) :].split("/")
            yield f"{algorithm}:{encoded}", int(obj["Size"]), obj["LastModified"].timestamp()

    def stale_uploads(self, before: float) -> list[str]:
        # A session is its state object; what lies under its keys without one (a writer died
        # before writing it, or while dropping the session) is stale once all of it is old.
        named: dict[str, float] = {}
        unnamed: dict[str, float] = {}
        for obj in self._list("uploads/"):
            upload_id, _, rest = obj["Key"][len(self._prefix) + len("uploads/") :].partition("/")
            into = named if rest == "state" else unnamed
            into[upload_id] = max(into.get(upload_id, 0.0), obj["LastModified"].timestamp())
        for multipart in self._multiparts():
            upload_id = multipart["Key"][len(self._prefix) + len("uploads/") :].partition("/")[0]
            unnamed[upload_id] = max(
                unnamed.get(upload_id, 0.0), multipart["Initiated"].timestamp()
            )
        stale = {u for u, mtime in named.items() if mtime < before}
        stale |= {u for u, mtime in unnamed.items() if u not in named and mtime < before}
        return sorted(stale)
