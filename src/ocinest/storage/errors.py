"""The storage layer's own errors: what went wrong, in storage terms.

The stores never decide an HTTP status or an OCI error code; the registry maps these errors
to OCI error answers in one place (`ocinest.registry.errors`), as distribution maps its
storage driver errors to `errcode`.
"""

from __future__ import annotations

from dataclasses import dataclass


class StorageError(Exception):
    """Base of the errors a BlobStore or MetaStore raises on purpose."""


class UploadUnknown(StorageError):
    """The upload session does not exist (never started, finished, cancelled or expired)."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(f"upload {upload_id} is gone")
        self.upload_id = upload_id


class UploadComplete(StorageError):
    """The upload's data was already closed for completion; nothing more can be appended."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(f"upload {upload_id} is complete")
        self.upload_id = upload_id


class UploadBusy(StorageError):
    """Another process is writing the upload right now (and kept at it past the wait)."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(f"upload {upload_id} is being written to")
        self.upload_id = upload_id


class UploadOffsetMismatch(StorageError):
    """A chunk did not start where the upload ends; `size` is where it ends."""

    def __init__(self, size: int) -> None:
        super().__init__(f"upload is {size} bytes long")
        self.size = size


class ChunkRefused(StorageError):
    """Raised by the chunk source of an `append` to refuse the chunk as a whole (say, a body
    longer than its declared range): the store drops what that append wrote, so the upload is
    as it was before the call."""


class DigestMismatch(StorageError):
    """An upload's content does not have the digest it was finished with."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"uploaded content has digest {actual}, not {expected}")
        self.expected = expected
        self.actual = actual


class BlobUnknown(StorageError):
    """The blob is not in the repository."""

    def __init__(self, repository: str, digest: str) -> None:
        super().__init__(f"blob {digest} is not in {repository}")
        self.repository = repository
        self.digest = digest


class ManifestUnknown(StorageError):
    """The manifest or tag is not in the repository."""

    def __init__(self, repository: str, reference: str, kind: str = "manifest") -> None:
        what = f"tag {reference!r}" if kind == "tag" else f"manifest {reference}"
        super().__init__(f"{what} is not in {repository}")
        self.repository = repository
        self.reference = reference


class ManifestReferenced(StorageError):
    """The manifest cannot go: an index still references it."""

    def __init__(self, repository: str, digest: str, index: str) -> None:
        super().__init__(
            f"manifest {repository}@{digest} is referenced by index {index}; "
            "delete that index first"
        )
        self.repository = repository
        self.digest = digest
        self.index = index


class ReachTooLarge(StorageError):
    """An index would reach more manifests and blobs through nested descriptors than the
    store was told to accept from one push."""

    def __init__(self, repository: str, digest: str, limit: int) -> None:
        super().__init__(
            f"index {repository}@{digest} reaches more than {limit} manifests and blobs "
            "through its nested descriptors"
        )
        self.repository = repository
        self.digest = digest
        self.limit = limit


class BackendUnavailable(StorageError):
    """A backend cannot be reached, or did not answer within the configured bound.

    `backend` names which: `metadata` (the MetaStore's database) or `blobs` (the BlobStore).
    Nothing acknowledged is lost; the operation may be tried again later."""

    def __init__(self, backend: str, detail: str) -> None:
        super().__init__(f"{backend} backend unavailable: {detail}")
        self.backend = backend


@dataclass(frozen=True)
class ReferenceProblem:
    """One reference of a manifest that cannot be stored: its target is missing, or is not
    what the descriptor says (`mismatch`). `nested` when the target lives in a child
    repository (a nested descriptor)."""

    detail: str
    missing: bool
    nested: bool = False


class ReferencesInvalid(StorageError):
    """A manifest's references do not all name content the store holds; one problem each."""

    def __init__(self, problems: list[ReferenceProblem]) -> None:
        super().__init__("; ".join(p.detail for p in problems))
        self.problems = problems
