"""Copying a whole tree to a repository (remote) or an OCI layout: children relocated under the
new parent, each blob moved at most once (mounted or skipped when already there), manifests
pushed children first, and, in compat mode, every child also placed in each ancestor repository
by digest so that registries without the nested extension accept the parent index."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ocinest.oci.digest import Digest
from ocinest.oci.manifest import Descriptor
from ocinest.oci.nested import NESTED_HEADER, descriptor

from .base import BlobSource, Progress, ProgressEvent, Repository, Stats, no_progress
from .errors import ClientError, NotFound, RegistryError
from .tree import Node, from_endpoint

MODES = ("native", "compat", "auto")
SMALL_BLOB = 1 << 20  # blobs kept in memory between download and upload


async def resolve_mode(dst: Repository, mode: str) -> str:
    """ "native" or "compat" for writing to `dst`; "auto" asks the registry (`Ocinest-Nested`)."""
    if mode not in MODES:
        raise ClientError(f"unknown mode {mode!r}; use native, compat or auto")
    native = await dst.native()
    if mode == "auto":
        return "native" if native else "compat"
    if mode == "native" and not native:
        raise ClientError(
            f"{dst.display} does not implement nested indexes (GET /v2/ has no "
            f"{NESTED_HEADER}: 1 header); use --mode compat or --mode auto"
        )
    return mode


async def held(dst: Repository, root: Digest, tag: str | None) -> set[tuple[str, Digest]] | None:
    """The (repository, digest) of every manifest `dst` holds of the tree `root`, where its tree
    endpoint answers in one request (ocinest): the tree at the root's digest when it is there
    (then all of it), else at `tag` (an earlier version, whose children this one may share).
    None where the store has no such endpoint, or refuses the answer: ask per manifest."""
    found: set[tuple[str, Digest]] = set()
    for reference in dict.fromkeys(r for r in (str(root), tag) if r):
        try:
            answer = await dst.tree(reference)
        except RegistryError as exc:
            if exc.status == 404:
                continue
            return None
        if answer is None:
            return None
        found.update((n.repo.display, n.digest) for n in from_endpoint(dst, answer).walk())
        if (dst.display, root) in found:
            break
    return found


@dataclass
class CopyResult:
    digest: Digest
    media_type: str
    size: int
    mode: str
    stats: Stats = field(default_factory=Stats)
    # What the source's sparse manifests name but it never held: not copied.
    missing: list[str] = field(default_factory=list)


class Copier:
    """One copy operation; reusable for several trees that share blobs (index create)."""

    def __init__(
        self,
        *,
        mode: str = "auto",
        referrers: bool = False,
        child_tags: bool = False,
        concurrency: int = 4,
        progress: Progress = no_progress,
        stats: Stats | None = None,
    ) -> None:
        self.mode = mode
        self.referrers = referrers
        self.child_tags = child_tags
        self.progress = progress
        self.stats = stats or Stats()
        self._limit = asyncio.Semaphore(max(1, concurrency))
        self._landed: dict[Digest, asyncio.Future[None]] = {}
        self._where: dict[Digest, list[Repository]] = {}
        self._sources: dict[Digest, BlobSource] = {}
        self._source_locks: dict[Digest, asyncio.Lock] = {}
        self._manifests: dict[tuple[str, Digest], asyncio.Future[None]] = {}
        # (repository, digest) of the manifests the destination holds, where it can list them
        # in one answer; None: ask per manifest.
        self._held: set[tuple[str, Digest]] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._missing: set[str] = set()  # `manifest|blob repository@digest`

    async def __aenter__(self) -> Copier:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self._sources.clear()

    async def copy(self, root: Node, dst: Repository, tag: str | None) -> CopyResult:
        """Copy the tree `root` (walked with manifest bytes) to `dst`, tagging the root."""
        self._declare(root, dst, [])
        mode = await resolve_mode(dst, self.mode)
        self._held = await held(dst, root.digest, tag)
        await self._place(root, dst, [], mode, tag=tag, is_root=True)
        return CopyResult(
            root.digest, root.media_type, root.size, mode, self.stats, sorted(self._missing)
        )

    # Scopes: one token for every repository the copy touches.

    def _declare(self, node: Node, dst: Repository, ancestors: list[Repository]) -> None:
        dst.declare("pull", "push")
        node.repo.declare("pull")
        for child in node.children:
            if child.child_path:
                self._declare(child, dst.child(child.child_path), [*ancestors, dst])
            else:
                self._declare(child, dst, ancestors)
        for r in node.referrers:
            self._declare(r, dst, ancestors)

    # Manifests

    async def _place(
        self,
        node: Node,
        dst: Repository,
        ancestors: list[Repository],
        mode: str,
        *,
        tag: str | None = None,
        is_root: bool = False,
        subject: Node | None = None,
    ) -> None:
        if node.missing:  # a sparse index's member the source never held
            self._missing.add(f"manifest {node.repo.display}@{node.digest}")
            return
        if node.body is None:
            raise ClientError(f"manifest {node.digest} was not fetched")
        if node.truncated:
            raise ClientError(f"the tree below {node.digest} was cut; walk it whole to copy it")
        tasks = []
        for child in node.children:
            if child.child_path:
                tasks.append(
                    self._place(child, dst.child(child.child_path), [*ancestors, dst], mode)
                )
            else:
                tasks.append(self._place(child, dst, ancestors, mode))
        await asyncio.gather(*tasks)
        targets = [dst]
        if mode == "compat" and subject is None:
            seen = {dst.display}
            for a in reversed(ancestors):
                if a.display not in seen:
                    seen.add(a.display)
                    targets.append(a)
        # The node's own repository first: the ancestors (compat) mount its blobs from there.
        for target in targets:
            await self._put(node, target, tag if target is dst else None, is_root, subject)
        if self.child_tags and node.child_path and node.repo.own_tags and dst.own_tags:
            await self._carry_tags(node, dst)
        if self.referrers:
            await asyncio.gather(
                *(self._place(r, dst, ancestors, mode, subject=node) for r in node.referrers)
            )

    async def _put(
        self,
        node: Node,
        target: Repository,
        tag: str | None,
        is_root: bool,
        subject: Node | None,
    ) -> None:
        """The node's blobs, then its manifest, into `target`; neither when the manifest is
        there already (a registry holds every blob of the manifests it holds)."""
        assert node.body is not None
        if subject is not None:
            await self._blobs(node, target)
            await self._put_referrer(node, target, subject)
            return
        if tag is not None:
            if node.blobs() and not await self._holds(node, target, is_root):
                await self._blobs(node, target)
            await self._put_manifest(node, target, tag, is_root)
            self.stats.manifests_pushed += 1
            self._placed(node, target, "pushed")
            return
        key = (target.display, node.digest)
        if key in self._manifests:
            await self._manifests[key]
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._manifests[key] = done
        try:
            if await self._holds(node, target, is_root):
                self.stats.manifests_skipped += 1
                self._placed(node, target, "skipped")
            else:
                await self._blobs(node, target)
                await self._put_manifest(node, target, None, is_root)
                self.stats.manifests_pushed += 1
                self._placed(node, target, "pushed")
            done.set_result(None)
        except BaseException as exc:
            done.set_exception(exc)
            done.exception()  # retrieved: the caller raises it
            raise

    async def _put_manifest(
        self, node: Node, target: Repository, tag: str | None, is_root: bool
    ) -> None:
        assert node.body is not None
        try:
            await target.put_manifest(node.body, node.media_type, tag, root=is_root)
        except RegistryError as exc:
            if "MANIFEST_BLOB_UNKNOWN" not in exc.codes or not self._missing:
                raise
            raise ClientError(
                f"{target.display} refused {node.digest}, a sparse manifest: it names what the "
                f"source never held ({', '.join(sorted(self._missing))}); the destination "
                "must accept sparse manifests (ocinest: allow_sparse)"
            ) from None

    async def _holds(self, node: Node, target: Repository, is_root: bool) -> bool:
        """Whether `target` has the node's manifest: the repository it was walked from does;
        otherwise what the destination's tree endpoint listed, else a HEAD."""
        if not is_root and node.repo.display == target.display:
            return True
        if self._held is not None:
            return (target.display, node.digest) in self._held
        return await target.has_manifest(node.digest, root=is_root)

    def _placed(self, node: Node, target: Repository, outcome: str) -> None:
        self.progress(ProgressEvent.manifest(node.digest, node.size, target.display, outcome))

    async def _carry_tags(self, node: Node, dst: Repository) -> None:
        """Give the child at `dst` the tags its source repository has for it: those the tree
        endpoint listed with it, else each tag of the repository that points at it."""
        assert node.body is not None
        tags = node.tags
        if tags is None:
            tags = []
            for tag in await node.repo.tags():
                source = await node.repo.head_manifest(tag)
                if source is not None and source[1] == node.digest:
                    tags.append(tag)
        for tag in tags:
            there = await dst.head_manifest(tag)
            if there is None or there[1] != node.digest:
                await dst.put_manifest(node.body, node.media_type, tag)
                self.stats.tags_pushed += 1

    async def _put_referrer(self, node: Node, target: Repository, subject: Node) -> None:
        assert node.body is not None
        referrer = descriptor(
            node.media_type,
            node.digest,
            node.size,
            artifact_type=node.artifact_type,
            annotations=node.annotations,
        )
        if await target.put_referrer(node.body, referrer, subject.digest):
            self.stats.manifests_pushed += 1
            self._placed(node, target, "pushed")
        else:
            self.stats.manifests_skipped += 1
            self._placed(node, target, "skipped")

    # Blobs

    async def _blobs(self, node: Node, target: Repository) -> None:
        await asyncio.gather(*(self._blob(d, node.repo, target) for d in node.blobs()))

    async def _blob(self, desc: Descriptor, src: Repository, dst: Repository) -> None:
        digest = desc.digest
        first = self._landed.get(digest)
        if first is None:
            first = asyncio.get_running_loop().create_future()
            self._landed[digest] = first
            try:
                async with self._limit:
                    await self._move(desc, src, dst)
                self._where.setdefault(digest, []).append(dst)
                first.set_result(None)
            except BaseException as exc:
                first.set_exception(exc)
                first.exception()
                raise
            return
        await first
        async with self._limit:
            await self._move(desc, src, dst)
        self._where.setdefault(digest, []).append(dst)

    async def _move(self, desc: Descriptor, src: Repository, dst: Repository) -> None:
        digest, size = desc.digest, desc.size
        try:
            outcome = await dst.receive_blob(digest, size, src, self.progress)
            if outcome is None:

                async def source() -> BlobSource:
                    return await self._source(desc, src)

                mount_from = (*self._where.get(digest, []), src)
                # Where the destination listed what it holds, a blob of a manifest it lacks
                # is not asked for first: the mount (without `from`, on ocinest) answers that.
                outcome = await dst.push_blob(
                    digest, size, source, self.progress, mount_from, check=self._held is None
                )
        except NotFound:
            if await src.blob_size(digest) is not None:
                raise
            self._missing.add(f"blob {src.display}@{digest}")  # named by a sparse manifest
            return
        if outcome == "skipped":
            self.stats.blobs_skipped += 1
        elif outcome == "mounted":
            self.stats.blobs_mounted += 1
        elif outcome == "uploaded":
            self.stats.blobs_uploaded += 1
            self.stats.bytes_uploaded += size
        elif outcome == "downloaded":
            self.stats.blobs_downloaded += 1
            self.stats.bytes_downloaded += size

    async def _source(self, desc: Descriptor, src: Repository) -> BlobSource:
        """The blob's bytes as a file or in memory: fetched from `src` once per copy."""
        digest, size = desc.digest, desc.size
        local = src.local_blob(digest)
        if local is not None:
            return local
        lock = self._source_locks.setdefault(digest, asyncio.Lock())
        async with lock:
            if digest in self._sources:
                return self._sources[digest]
            source: BlobSource
            if size <= SMALL_BLOB:
                source = await src.fetch_blob_bytes(digest, size)
                self.progress(ProgressEvent("done", digest, size, outcome="downloaded"))
            else:
                if self._tmp is None:
                    self._tmp = tempfile.TemporaryDirectory(prefix="ocinest-")
                path = Path(self._tmp.name) / f"{digest.algorithm}-{digest.encoded}"
                await src.fetch_blob(digest, size, path, self.progress)
                source = path
            self.stats.blobs_downloaded += 1
            self.stats.bytes_downloaded += size
            self._sources[digest] = source
            return source
