"""A BlobStore on any S3-compatible service (Ceph RGW, MinIO, AWS).

An upload session is one S3 multipart upload. Its state (the parts so far and the bytes
not yet making a whole part, kept in a small `tail` object) lives in the bucket, so a PATCH
may land on another process than the POST. A blob becomes visible only after its digest is
verified: the completed upload is hashed (by the process that saw every byte, or by reading
it back) and only then copied, server-side, to its content address.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from ocinest.oci.digest import CANONICAL, Digest, Hasher, new_hasher
from ocinest.storage.errors import (
    DigestMismatch,
    UploadComplete,
    UploadOffsetMismatch,
    UploadUnknown,
)

T = TypeVar("T")
MIN_PART = 5 << 20  # S3's smallest part but the last
READ_CHUNK = 1 << 20


@dataclass
class _State:
    """An upload session, as kept in `uploads/<id>/state`."""

    multipart: str
    parts: list[dict[str, Any]] = field(default_factory=list)  # PartNumber, ETag, Size
    size: int = 0
    tail: int = 0  # bytes in the tail object
    completed: bool = False


def _missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NoSuchUpload")


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
    ) -> None:
        self._s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=region or "us-east-1",
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=BotoConfig(
                s3={"addressing_style": "path"},
                max_pool_connections=threads,
                retries={"max_attempts": 5, "mode": "standard"},
            ),
        )
        self._bucket = bucket
        self._prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._part_size = max(part_size, MIN_PART)
        self._redirect = redirect
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="ocinest-s3")
        self._hashers: dict[str, tuple[Hasher, int]] = {}
        try:
            self._s3.head_bucket(Bucket=bucket)
        except ClientError:
            self._s3.create_bucket(Bucket=bucket)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        return asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    def _blob_key(self, digest: Digest) -> str:
        return f"{self._prefix}blobs/{digest.algorithm}/{digest.encoded[:2]}/{digest.encoded}"

    def _upload_key(self, upload_id: str, name: str) -> str:
        return f"{self._prefix}uploads/{upload_id}/{name}"

    # Upload state

    def _load(self, upload_id: str) -> _State | None:
        try:
            body = self._s3.get_object(
                Bucket=self._bucket, Key=self._upload_key(upload_id, "state")
            )
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return _State(**json.loads(body["Body"].read()))

    def _save(self, upload_id: str, state: _State) -> None:
        self._s3.put_object(
            Bucket=self._bucket,
            Key=self._upload_key(upload_id, "state"),
            Body=json.dumps(state.__dict__).encode(),
        )

    def _tail(self, upload_id: str, state: _State) -> bytes:
        if not state.tail:
            return b""
        body = self._s3.get_object(Bucket=self._bucket, Key=self._upload_key(upload_id, "tail"))
        return bytes(body["Body"].read())

    # BlobStore

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
        def start() -> None:
            created = self._s3.create_multipart_upload(
                Bucket=self._bucket, Key=self._upload_key(upload_id, "data")
            )
            self._save(upload_id, _State(created["UploadId"]))

        await self._run(start)
        self._hashers[upload_id] = (new_hasher(CANONICAL), 0)

    async def upload_size(self, upload_id: str) -> int | None:
        state = await self._run(self._load, upload_id)
        return None if state is None else state.size

    async def append(self, upload_id: str, offset: int, chunks: AsyncIterator[bytes]) -> int:
        state = await self._run(self._load, upload_id)
        if state is None:
            raise UploadUnknown(upload_id)
        if state.completed:
            raise UploadComplete(upload_id)
        if offset != state.size:
            raise UploadOffsetMismatch(state.size)
        running = self._hashers.pop(upload_id, None)
        hasher = running[0] if running and running[1] == state.size else None
        buffer = bytearray(await self._run(self._tail, upload_id, state))
        pending: asyncio.Future[None] | None = None

        def put_part(number: int, data: bytes) -> None:
            answer = self._s3.upload_part(
                Bucket=self._bucket,
                Key=self._upload_key(upload_id, "data"),
                UploadId=state.multipart,
                PartNumber=number,
                Body=data,
            )
            state.parts.append({"PartNumber": number, "ETag": answer["ETag"], "Size": len(data)})

        try:
            async for chunk in chunks:
                if hasher is not None:
                    hasher.update(chunk)
                buffer += chunk
                state.size += len(chunk)
                while len(buffer) >= self._part_size:
                    part = bytes(buffer[: self._part_size])
                    del buffer[: self._part_size]
                    if pending is not None:
                        await pending  # one part in flight while the next is read
                    pending = self._run(put_part, len(state.parts) + 1, part)
        finally:
            if pending is not None:
                await asyncio.shield(pending)
        state.parts.sort(key=lambda p: p["PartNumber"])

        def save() -> None:
            self._s3.put_object(
                Bucket=self._bucket, Key=self._upload_key(upload_id, "tail"), Body=bytes(buffer)
            )
            state.tail = len(buffer)
            self._save(upload_id, state)

        await self._run(save)
        if hasher is not None:
            self._hashers[upload_id] = (hasher, state.size)
        return state.size

    async def verify(self, upload_id: str, digest: Digest) -> int:
        running = self._hashers.pop(upload_id, None)

        def finish() -> int:
            state = self._load(upload_id)
            if state is None:
                raise UploadUnknown(upload_id)
            key = self._upload_key(upload_id, "data")
            if not state.completed:
                tail = self._tail(upload_id, state)
                if not state.parts and not tail:
                    # An empty blob: S3 wants at least one part; write it plainly.
                    self._s3.abort_multipart_upload(
                        Bucket=self._bucket, Key=key, UploadId=state.multipart
                    )
                    self._s3.put_object(Bucket=self._bucket, Key=key, Body=b"")
                else:
                    parts = [
                        {"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in state.parts
                    ]
                    if tail:
                        number = len(parts) + 1
                        answer = self._s3.upload_part(
                            Bucket=self._bucket,
                            Key=key,
                            UploadId=state.multipart,
                            PartNumber=number,
                            Body=tail,
                        )
                        parts.append({"PartNumber": number, "ETag": answer["ETag"]})
                    # The ETag of the answer is not a digest (and Ceph's is odd): ignore it.
                    self._s3.complete_multipart_upload(
                        Bucket=self._bucket,
                        Key=key,
                        UploadId=state.multipart,
                        MultipartUpload={"Parts": parts},
                    )
                state.completed = True
                self._save(upload_id, state)
            if running is not None and running[1] == state.size and digest.algorithm == CANONICAL:
                actual = running[0].hexdigest()
            else:
                actual = self._hash_object(key, digest.algorithm)
            if actual != digest.encoded:
                raise DigestMismatch(str(digest), f"{digest.algorithm}:{actual}")
            return state.size

        return await self._run(finish)

    def _hash_object(self, key: str, algorithm: str) -> str:
        hasher = new_hasher(algorithm)
        stream = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"]
        while data := stream.read(READ_CHUNK):
            hasher.update(data)
        return hasher.hexdigest()

    def publish(self, upload_id: str, digest: Digest) -> None:
        # A server-side copy, not a move: should the metadata transaction around it not
        # commit, the upload keeps its data.
        try:
            self._s3.copy(
                {"Bucket": self._bucket, "Key": self._upload_key(upload_id, "data")},
                self._bucket,
                self._blob_key(digest),
            )
        except ClientError as exc:
            if _missing(exc):
                raise UploadUnknown(upload_id) from None
            raise

    def delete(self, digest: Digest) -> None:
        self._s3.delete_object(Bucket=self._bucket, Key=self._blob_key(digest))

    async def abort(self, upload_id: str) -> None:
        self._hashers.pop(upload_id, None)

        def drop() -> None:
            state = self._load(upload_id)
            if state is not None and not state.completed:
                try:
                    self._s3.abort_multipart_upload(
                        Bucket=self._bucket,
                        Key=self._upload_key(upload_id, "data"),
                        UploadId=state.multipart,
                    )
                except ClientError as exc:
                    if not _missing(exc):
                        raise
            self._s3.delete_objects(
                Bucket=self._bucket,
                Delete={
                    "Objects": [
                        {"Key": self._upload_key(upload_id, name)}
                        for name in ("data", "tail", "state")
                    ]
                },
            )

        await self._run(drop)

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=self._prefix + prefix
        )
        for page in pages:
            yield from page.get("Contents", [])

    def scan(self) -> Iterator[tuple[str, int, float]]:
        for obj in self._list("blobs/"):
            _, algorithm, _, encoded = obj["Key"][len(self._prefix) :].split("/")
            yield f"{algorithm}:{encoded}", int(obj["Size"]), obj["LastModified"].timestamp()

    def stale_uploads(self, before: float) -> list[str]:
        return [
            obj["Key"][len(self._prefix) :].split("/")[1]
            for obj in self._list("uploads/")
            if obj["Key"].endswith("/state") and obj["LastModified"].timestamp() < before
        ]
