"""The BlobStore protocol: content-addressed blobs and the upload sessions that make them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from ocinest.oci.digest import Digest


class UploadOffsetMismatch(Exception):
    """A chunk did not start where the upload ends; `size` is where it ends."""

    def __init__(self, size: int) -> None:
        super().__init__(f"upload is {size} bytes long")
        self.size = size


class BlobStore(Protocol):
    """Blobs by digest, written only through verified upload sessions."""

    async def stat(self, digest: Digest) -> int | None:
        """The blob's size, or None when it is not stored."""

    def local_path(self, digest: Digest) -> Path | None:
        """A file holding the blob, for zero-copy serving, when the store is local."""

    async def start_upload(self, upload_id: str) -> None:
        """Create an empty upload session's data."""

    async def upload_size(self, upload_id: str) -> int | None:
        """How many bytes the upload holds, or None when it does not exist."""

    async def append(self, upload_id: str, offset: int, chunks: AsyncIterator[bytes]) -> int:
        """Append `chunks` at `offset`; durable when it returns the upload's new size.

        Raises `UploadOffsetMismatch` when `offset` is not the upload's size.
        """

    async def commit(self, upload_id: str, digest: Digest) -> int:
        """Verify the upload against `digest` and make it the blob; returns its size.

        Raises `OCIError(DIGEST_INVALID)` on mismatch (the upload is kept).
        """

    async def abort(self, upload_id: str) -> None:
        """Drop an upload session's data."""
