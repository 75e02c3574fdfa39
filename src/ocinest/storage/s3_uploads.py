"""The upload sessions of the S3 BlobStore: each session's state object
(`uploads/<id>/state`) and the short lease a writer holds on it, both written with S3
conditional writes (`If-Match`, `If-None-Match`), so that processes sharing an upload write it
one at a time and none ever overwrites what another acknowledged."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from ocinest.storage.errors import UploadComplete, UploadOffsetMismatch, UploadUnknown

PART_NUMBERS = 64  # handed to a lease at a time
LEASE = 10.0  # seconds a lease lasts unless renewed


@dataclass
class State:
    """An upload session, as kept in `uploads/<id>/state`."""

    multipart: str = ""  # the S3 multipart upload, made with the first whole part
    parts: list[dict[str, Any]] = field(default_factory=list)  # PartNumber, ETag, Size
    size: int = 0
    tail: int = 0  # bytes in the tail object
    tail_key: str = ""  # the tail object's name under the upload, "" when there is none
    completed: bool = False
    data: str = ""  # the object under the upload with a completed upload's bytes ("": data)
    next_part: int = 1  # the first part number no lease was handed
    writer: str = ""  # the token of the lease's holder, "" when free
    until: float = 0.0  # when the lease expires (time.time())


class Lease:
    """A writer's hold on an upload: the state as it committed it and that state's ETag."""

    def __init__(self, state: State, etag: str, token: str) -> None:
        self.state, self.etag, self.token = state, etag, token
        self.next = state.next_part  # its next part number; it may use up to state.next_part - 1


class Held(Exception):
    """Another writer holds the upload's lease; `size` is the upload's size meanwhile."""

    def __init__(self, size: int) -> None:
        super().__init__(f"upload is {size} bytes long and being written to")
        self.size = size


def _precondition_failed(exc: ClientError) -> bool:
    return bool(exc.response.get("Error", {}).get("Code") == "PreconditionFailed")


def missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NoSuchUpload")


class UploadStates:
    """The state objects of one bucket's upload sessions, and their leases."""

    def __init__(self, s3: Any, bucket: str, prefix: str, lease: float = LEASE) -> None:
        self._s3, self._bucket, self._prefix, self.lease = s3, bucket, prefix, lease

    def key(self, upload_id: str, name: str) -> str:
        """The key of the session's object `name` (state, data, a tail)."""
        return f"{self._prefix}uploads/{upload_id}/{name}"

    def load(self, upload_id: str) -> State | None:
        loaded = self.fetch(upload_id)
        return None if loaded is None else loaded[0]

    def fetch(self, upload_id: str) -> tuple[State, str] | None:
        """The state and its ETag."""
        try:
            body = self._s3.get_object(Bucket=self._bucket, Key=self.key(upload_id, "state"))
        except ClientError as exc:
            if missing(exc):
                return None
            raise
        return State(**json.loads(body["Body"].read())), body["ETag"]

    def save(self, upload_id: str, state: State, etag: str | None) -> str | None:
        """Write the state if its ETag is still `etag` (None: if there is none); its new ETag,
        or None when another writer changed it first."""
        # Ceph RGW (16.2) matches If-Match against the bare ETag only, without its quotes.
        condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag.strip('"')}
        try:
            answer = self._s3.put_object(
                Bucket=self._bucket,
                Key=self.key(upload_id, "state"),
                Body=json.dumps(state.__dict__).encode(),
                **condition,
            )
        except ClientError as exc:
            if not _precondition_failed(exc):
                raise
            # Refused, or done by an attempt whose answer was lost and then refused on retry.
            now = self.fetch(upload_id)
            return now[1] if now is not None and now[0] == state else None
        return str(answer["ETag"])

    def grant(self, upload_id: str, offset: int | None, loaded: tuple[State, str] | None) -> Lease:
        """Take the lease at once, or raise `Held`."""
        token = uuid.uuid4().hex
        while True:
            loaded = loaded or self.fetch(upload_id)
            if loaded is None:
                raise UploadUnknown(upload_id)
            state, etag = loaded
            if state.completed:
                raise UploadComplete(upload_id)
            if offset is not None and offset != state.size:
                raise UploadOffsetMismatch(state.size)
            if state.writer and state.until > time.time():
                raise Held(state.size)
            lease = Lease(state, etag, token)
            leased = self.leased(lease, PART_NUMBERS)
            new = self.save(upload_id, leased, etag)
            if new is not None:
                lease.state, lease.etag = leased, new
                return lease
            loaded = None

    def leased(self, lease: Lease, numbers: int) -> State:
        """The lease's state, renewed from now and with `numbers` more part numbers."""
        return State(
            **{
                **lease.state.__dict__,
                "writer": lease.token,
                "until": time.time() + self.lease,
                "next_part": lease.state.next_part + numbers,
            }
        )

    def due(self, lease: Lease, part: bool) -> bool:
        """Whether the lease is half through its time or, when `part`, out of part numbers."""
        spare = not part or lease.next < lease.state.next_part
        return not spare or time.time() > lease.state.until - self.lease / 2

    def renew(self, upload_id: str, lease: Lease, part: bool) -> None:
        """Renew the lease when due; raises when it was lost."""
        if not self.due(lease, part):
            return
        leased = self.leased(lease, PART_NUMBERS)
        etag = self.save(upload_id, leased, lease.etag)
        if etag is None:
            raise self.lost(upload_id)
        lease.state, lease.etag = leased, etag

    def release(self, upload_id: str, lease: Lease, state: State) -> None:
        """Commit `state` (the lease's, changed) and give the lease back; raises when the
        lease was lost, and nothing is committed."""
        state.writer, state.until = "", 0.0
        if self.save(upload_id, state, lease.etag) is None:
            raise self.lost(upload_id)

    def lost(self, upload_id: str) -> UploadOffsetMismatch:
        """The lease expired and another writer took the upload over."""
        now = self.load(upload_id)
        return UploadOffsetMismatch(0 if now is None else now.size)

    def tail(self, upload_id: str, state: State) -> bytes:
        if not state.tail:
            return b""
        body = self._s3.get_object(Bucket=self._bucket, Key=self.key(upload_id, state.tail_key))
        return bytes(body["Body"].read())
