"""The MetaStore protocol: repositories, tags, manifests, blob links, reference edges,
referrers and upload sessions."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from ocinest.oci.digest import Digest
from ocinest.oci.manifest import Manifest

# Called inside a write transaction with a tag or digest; what it raises refuses the write.
TagHook = Callable[[str], None]
# Called inside a write transaction with a tag and the digest it points at; what it raises
# refuses the write.
MoveHook = Callable[[str, str], None]


@dataclass(frozen=True)
class StoredManifest:
    """A manifest as the registry serves it, and the repository it lives in."""

    repository: str
    digest: str
    media_type: str
    content: bytes


@dataclass(frozen=True)
class ManifestNode:
    """A manifest as a node of a nested tree."""

    repository: str
    digest: str
    media_type: str
    size: int
    content: bytes
    referrers: int


@dataclass(frozen=True)
class Referrer:
    """A manifest whose subject is a given digest, as the referrers API lists it."""

    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    annotations: dict[str, str]


@dataclass(frozen=True)
class TagRecord:
    """A tag, the manifest it points at, and when it last moved (was pushed to point there)."""

    repository: str
    name: str
    digest: str
    updated_at: float


@dataclass(frozen=True)
class GCPlan:
    """What a garbage collection would delete."""

    manifests: list[tuple[str, str, int]]  # repository, digest, size
    blobs: list[tuple[str, int]]  # digest, size
    tags: list[TagRecord]  # released tags to remove first (retention)


@dataclass(frozen=True)
class Inventory:
    """What the stores hold, counted in one snapshot."""

    blobs: int
    blob_bytes: int
    manifests: int
    repositories: int
    nested_indexes: int  # manifests with at least one nested descriptor
    nested_edges: int  # nested descriptors of those


@dataclass(frozen=True)
class GCRun:
    """One garbage collection that went through, as /metrics shows the last one."""

    finished_at: float  # Unix seconds
    seconds: float
    deleted: dict[str, int]  # tag (retention), manifest, blob, upload -> how many went
    freed: dict[str, int]  # manifest, blob -> bytes
    inventory: Inventory  # counted once the deletions were done


@dataclass(frozen=True)
class Upload:
    id: str
    repository: str
    created_at: float


class MetaStore(Protocol):
    """Metadata, transactional: every method is atomic."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Return once the store answers; `BackendUnavailable` when it cannot be reached."""

    # Blobs: a blob is visible in a repository only once pushed or mounted there.
    async def blob_size(self, repository: str, digest: Digest) -> int | None:
        """The blob's size when it is visible in `repository`: linked there, referenced by
        one of its manifests, reached through nested descriptors, or needed by a referrer of
        reached content."""

    async def link_blob(
        self,
        repository: str,
        digest: Digest,
        size: int,
        publish: Callable[[], None] | None = None,
        upload_id: str | None = None,
    ) -> bool:
        """Link the blob into `repository` (creating the repository), running `publish` (which
        makes its content visible) inside the transaction when the blob is not stored yet; the
        transaction also ends the upload session `upload_id` it completes. Without `publish`
        the blob must already be stored; returns False when it is not (a mount then cannot
        happen)."""

    async def repositories_with_blob(self, digest: Digest, limit: int) -> list[str]:
        """Repositories where the blob is linked (for cross-repository mount)."""

    async def unlink_blob(self, repository: str, digest: Digest) -> None:
        """Remove the blob's link from `repository`. A blob that a manifest of the repository
        still references stays visible until that manifest goes, so no manifest is left
        pointing at missing content. Raises `BlobUnknown` when it is not visible."""

    # Manifests and tags.
    async def get_manifest(self, repository: str, reference: str) -> StoredManifest | None:
        """The manifest by tag, or by digest string: the repository's own, one reachable
        through nested descriptors of its manifests, or a referrer of such content."""

    async def reached_through(self, repository: str, digest: str, kind: str) -> list[str]:
        """The repositories whose manifests reach this content of `repository`, of `kind`
        (`manifest` or `blob`: the same bytes may be both), through nested descriptors, or
        that reach the subject of the referrer manifest that is (or needs) this content."""

    async def manifest_nodes(
        self, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], ManifestNode]:
        """The manifests at (repository, digest) `keys` that exist, in one lookup."""

    async def tags_by_digest(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
        """The tags of each repository that point at the digest, for (repository, digest)
        `keys`, in one lookup, sorted; keys without tags are absent."""

    async def put_manifest(
        self,
        repository: str,
        manifest: Manifest,
        tags: list[str],
        on_move: MoveHook | None = None,
        sparse: bool = False,
        max_reach: int | None = None,
    ) -> None:
        """Store `manifest` and its reference edges, and point each of `tags` at it, all
        atomically. A tag pushed again at the manifest it points at keeps the time it last
        moved.

        Raises `ReferencesInvalid` (one problem per missing or mismatched reference). With
        `sparse`, a missing target of a non-nested descriptor (a blob, or a manifest of the
        repository itself) is no problem: the edge is kept as sparse, which makes nothing
        visible, and holds its target against GC and deletes once it is pushed. Nested
        children are always checked. For
        each tag that already points at another manifest, `on_move` is first called with
        the tag and that manifest's digest, inside the transaction: what it raises refuses
        the push, and nothing is stored (no manifest, no tag). With `max_reach`, an index
        that reaches more manifests and blobs than that through nested descriptors (the
        rows that make them readable through it) raises `ReachTooLarge`, and nothing is
        stored.
        """

    async def delete_manifest(
        self, repository: str, digest: Digest, on_untag: TagHook | None = None
    ) -> None:
        """Delete the manifest and the tags that point at it.

        Raises `ManifestUnknown`, and `ManifestReferenced` while another manifest references it.
        `on_untag` is called with each tag that points at it, inside the transaction: what it
        raises refuses the delete.
        """

    async def delete_tag(self, repository: str, tag: str) -> None:
        """Raises `ManifestUnknown` when there is no such tag."""

    async def list_tags(self, repository: str, limit: int, last: str | None) -> list[str] | None:
        """Tags in lexical order after `last`; None when the repository is unknown."""

    async def list_tags_pushed(
        self, repository: str, limit: int, last: str | None
    ) -> list[tuple[str, float]] | None:
        """As `list_tags`, each tag with when it last moved (Unix seconds)."""

    async def list_repositories(self, limit: int, last: str | None) -> list[str]:
        """Repository names in lexical order after `last`."""

    async def list_referrers(
        self, repository: str, subject: Digest, artifact_type: str | None
    ) -> list[Referrer]:
        """The manifests whose subject is `subject`: the repository's own, and, where the
        repository reaches `subject` in a child through nested descriptors, those kept
        there (contract rule 6)."""

    # Upload sessions, which survive restarts.
    async def create_upload(self, upload: Upload) -> None:
        """Record a session; committed durably only with the next durable commit (a
        session's data is not durable either until it ends with a blob)."""

    async def get_upload(self, upload_id: str) -> Upload | None: ...

    async def delete_upload(self, upload_id: str) -> None: ...

    async def expired_uploads(self, before: float) -> list[Upload]:
        """Upload sessions started before `before`."""

    # Garbage collection: a plan from a snapshot, then re-checked deletions in small
    # transactions, so the registry stays writable while it runs.
    async def all_tags(self) -> list[TagRecord]:
        """Every tag of every repository (for retention)."""

    async def gc_plan(
        self, cutoff: float, delete_untagged: bool, release: Iterable[TagRecord] = ()
    ) -> GCPlan:
        """What is unreachable: untagged manifests (only with `delete_untagged`) that no tag
        reaches through index children, nested edges or subjects, and blobs that no remaining
        manifest references; both only when older than `cutoff`.

        `release` names tags to remove (retention), each only while it still points where it
        did and moved before `cutoff`. What only those tags reach (their manifests, the
        untagged children and referrers of those) counts as untagged whatever
        `delete_untagged` says. A released tag is planned for removal (`tags`) when
        its manifest then goes, or keeps another tag; one whose manifest something that stays
        still reaches (a parent index, a subject) is kept, as the manifest is."""

    async def gc_untag(self, tags: list[TagRecord], cutoff: float) -> list[TagRecord]:
        """Remove these tags, re-checking each still points at its digest and moved before
        `cutoff`; returns what went."""

    async def gc_delete_manifests(
        self, keys: list[tuple[str, str]], cutoff: float
    ) -> list[tuple[str, str]]:
        """Delete these (repository, digest) manifests, re-checking each is still untagged,
        unreferenced, not a referrer of a manifest that stays, and older than `cutoff`;
        returns what went (an index goes before the children it references)."""

    async def gc_delete_blobs(
        self, digests: list[str], cutoff: float, delete: Callable[[str], None]
    ) -> list[str]:
        """Delete these blobs (rows and links, and their content through `delete`, under the
        write lock), re-checking each is still unreferenced and older than `cutoff`; a digest
        with no row at all (content left by a crash) is deleted too. Returns what went."""

    # Consistency checks (fsck).
    async def all_blobs(self) -> dict[str, int]:
        """Every blob row: digest -> size."""

    async def all_manifests(self) -> list[tuple[str, str, bytes]]:
        """Every manifest: (repository, digest, content)."""

    async def dangling_references(self) -> list[tuple[str, str, str, str]]:
        """Edges whose target is missing: (repository, manifest digest, kind, target)."""

    async def sparse_references(self) -> list[tuple[str, str, str, str]]:
        """Descriptors of sparse manifests whose target is still not there (a blob not linked
        in the repository, a manifest not in it): (repository, manifest digest, kind, target)."""

    async def forget_blobs(self, digests: list[str], delete: Callable[[str], None]) -> None:
        """Drop blobs whose content is lost or corrupt, rows and content (through `delete`,
        under the write lock), for fsck --repair."""

    # What garbage collection counts and records, for /metrics.
    async def inventory(self) -> Inventory:
        """Blobs (and their bytes), manifests, repositories, nested indexes and nested edges,
        counted from one snapshot."""

    async def record_gc_run(self, run: GCRun) -> None:
        """Keep `run` as the last collection (and a short history of those before)."""

    async def last_gc_run(self) -> GCRun | None:
        """The collection recorded last, by any process; None before the first. One indexed
        lookup: cheap enough for every scrape."""
