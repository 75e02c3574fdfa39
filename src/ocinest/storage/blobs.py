"""The BlobStore protocol: content-addressed blobs and the upload sessions that make them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Protocol

from ocinest.oci.digest import Digest


class BlobStore(Protocol):
    """Blobs by digest, written only through verified upload sessions.

    A blob becomes visible or goes away only under the MetaStore's write lock (`publish` and
    `delete` are called from inside its transactions), so that metadata and content never
    disagree about an acknowledged blob."""

    def close(self) -> None:
        """Release threads and handles."""

    async def ping(self) -> None:
        """Return once the store can be read and written; `BackendUnavailable` otherwise."""

    def local_path(self, digest: Digest) -> Path | None:
        """A file holding the blob, for zero-copy serving, when the store is local."""

    def presigned_url(self, digest: Digest) -> str | None:
        """A URL the client may fetch the blob from directly, when the store offers one."""

    def read(self, digest: Digest, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes `start` to `end` (exclusive) of the blob."""

    async def start_upload(self, upload_id: str) -> None:
        """Create an empty upload session's data (durable only once `verify` passed)."""

    async def upload_size(self, upload_id: str) -> int | None:
        """How many bytes the upload holds, or None when it does not exist."""

    async def append(
        self,
        upload_id: str,
        offset: int,
        chunks: AsyncIterator[bytes],
        digest: Digest | None = None,
    ) -> int:
        """Append `chunks` at `offset`; returns the upload's new size, which `upload_size`
        reports from then on (also after a process crash). Not necessarily durable against
        a power loss: `verify` is.

        Raises `UploadOffsetMismatch` when `offset` is not the upload's size, `UploadUnknown`
        when the upload does not exist. When `chunks` raises `ChunkRefused`, nothing of this
        call is kept.

        `digest` says that these are the upload's last bytes and that `verify` with it follows
        at once (the body of the closing PUT or of a monolithic POST). A store may then keep
        bytes that match it in memory, for `verify` and `publish` to write once where the blob
        is read; they are durable once `publish` returned, and `upload_size` meanwhile reports
        the size without them. Bytes that do not match are stored as without `digest`.
        """

    async def verify(self, upload_id: str, digest: Digest) -> int:
        """Check the upload against `digest` and make its data durable; returns its size.

        Raises `DigestMismatch` on mismatch (the upload is kept); `UploadUnknown` when it is gone.
        """

    def publish(self, upload_id: str, digest: Digest) -> None:
        """Make a verified upload the blob `digest`, atomically and durably, keeping the
        upload's data (`abort` drops it once the metadata committed). The MetaStore calls it
        while it holds its write lock, so that it never races a deletion."""

    def delete(self, digest: Digest) -> None:
        """Delete the blob; called by the MetaStore under its write lock."""

    def scan(self) -> Iterator[tuple[str, int, float]]:
        """Every stored blob: (digest, size, modification time)."""

    def stale_uploads(self, before: float) -> list[str]:
        """Upload sessions whose data was last written before `before`."""

    async def abort(self, upload_id: str) -> None:
        """Drop an upload session's data."""
