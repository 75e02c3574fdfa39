"""What a remote repository and an OCI image layout both offer (go-containerregistry's
`remote`/`layout` symmetry), so that every tree operation works from and to either."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ocinest.oci import mediatypes as mt
from ocinest.oci.digest import Digest
from ocinest.oci.nested import TreeNode

MANIFEST_ACCEPT = ", ".join(
    [mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST]
)

# A blob's bytes: in memory, or a file.
BlobSource = bytes | Path
# What a push takes: the bytes, or a function that gets them (only called to upload).
Source = BlobSource | Callable[[], Awaitable[BlobSource]]


@dataclass(frozen=True)
class Fetched:
    """A manifest as fetched: its bytes, media type and (verified) digest."""

    body: bytes
    media_type: str
    digest: Digest

    @property
    def size(self) -> int:
        return len(self.body)


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a transfer.

    For a blob, `kind` is "start" (size known), "advance" (`amount` more bytes moved) or
    "done" (`outcome`: "uploaded", "downloaded", "mounted", "skipped" or "written"). A
    manifest placed is one event of kind "manifest" (`outcome`: "pushed" or "skipped").
    """

    kind: str
    digest: Digest
    size: int
    amount: int = 0
    outcome: str = ""
    where: str = ""

    @classmethod
    def manifest(
        cls, digest: Digest, size: int, where: str, outcome: str = "pushed"
    ) -> ProgressEvent:
        """A manifest placed in `where`."""
        return cls("manifest", digest, size, outcome=outcome, where=where)


Progress = Callable[[ProgressEvent], None]


def no_progress(event: ProgressEvent) -> None:
    """The default progress callback: nothing."""


@dataclass
class Stats:
    """What an operation moved, for reports and tests."""

    blobs_uploaded: int = 0
    blobs_downloaded: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0
    bytes_uploaded: int = 0
    bytes_downloaded: int = 0
    manifests_pushed: int = 0
    manifests_skipped: int = 0
    tags_pushed: int = 0  # the children's own tags a copy carried

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Repository(Protocol):
    """A repository of a registry, or an OCI image layout seen as one."""

    @property
    def display(self) -> str:
        """How a person names it: `host/repo` or `oci:PATH`."""

    @property
    def nested_path(self) -> str:
        """The child path below the root it was opened at ("" for the root)."""

    @property
    def own_tags(self) -> bool:
        """Whether a child repository has tags of its own (a registry's repositories do; the
        names of an OCI layout are shared by everything it holds)."""

    def child(self, path: str) -> Repository:
        """The nested child repository `path` below this one."""

    def declare(self, *actions: str) -> None:
        """Access an operation will need here (`pull`, `push`, `delete`), declared before it
        starts so that one registry token covers every repository it touches."""

    async def native(self) -> bool:
        """Whether a nested index is stored as it is, children only in their own
        repositories: a registry with the nested extension, or a layout (one store)."""

    async def get_manifest(self, reference: str | None) -> Fetched:
        """The manifest at a tag or digest; `NotFound` when absent."""

    async def has_manifest(self, digest: Digest, *, root: bool = False) -> bool:
        """Whether the manifest is here (`root`: as the top of a tree, which a layout lists
        in its index.json)."""

    async def head_manifest(self, reference: str) -> tuple[str, Digest, int] | None:
        """(media type, digest, size) of a manifest, or None when absent."""

    async def put_manifest(
        self, body: bytes, media_type: str, tag: str | None, *, root: bool = False
    ) -> Digest:
        """Store a manifest, by digest, and under `tag` when given (`root`: it is the top of
        a tree, which an OCI layout lists in its index.json)."""

    async def put_referrer(self, body: bytes, referrer: dict[str, Any], subject: Digest) -> bool:
        """Store the manifest `body` (described by `referrer`) as a referrer of `subject`,
        listed where this store keeps referrers; False when it was there already."""

    async def delete_manifest(self, digest: Digest) -> None: ...

    async def blob_size(self, digest: Digest) -> int | None:
        """The size of a blob present here, else None."""

    async def fetch_blob(self, digest: Digest, size: int, dest: Path, progress: Progress) -> None:
        """Write the blob to `dest`, verified against digest and size; nothing left on error."""

    async def fetch_blob_bytes(self, digest: Digest, size: int, limit: int = 16 << 20) -> bytes:
        """A small blob (a config) in memory, verified."""

    def local_blob(self, digest: Digest) -> Path | None:
        """A file holding the blob, where the repository is on disk."""

    async def receive_blob(
        self, digest: Digest, size: int, src: Repository, progress: Progress
    ) -> str | None:
        """A staged write: take the blob from `src` straight into this store (a layout
        downloads into a temporary file it moves into place once verified). "skipped",
        "written" (copied from a file of `src`) or "downloaded"; None where this store only
        takes pushes (a registry)."""

    async def push_blob(
        self,
        digest: Digest,
        size: int,
        source: Source,
        progress: Progress,
        mount_from: Sequence[Repository] = (),
        *,
        check: bool = True,
    ) -> str:
        """Make the blob present: "skipped" (there already), "mounted" (from one of
        `mount_from` on the same registry), "uploaded" or "written" (a layout). `check` off:
        a registry is not asked first whether it has the blob (a mount answers it)."""

    async def referrers(self, digest: Digest) -> list[dict[str, Any]]:
        """The descriptors of the manifests whose subject is `digest`."""

    async def tags(self) -> list[str]: ...

    async def tree(
        self,
        reference: str,
        depth: int | None = None,
        *,
        manifests: bool = False,
        tags: bool = False,
    ) -> TreeNode | None:
        """The whole tree in one answer, where the store has an endpoint for it; with
        `manifests`, every manifest's bytes too, and with `tags`, each node's tags."""
