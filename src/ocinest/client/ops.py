"""The operations on whole trees that the command line offers: copy, pull, index create,
push of files as an artifact, delete."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocinest.oci import mediatypes as mt
from ocinest.oci.digest import Digest, new_hasher
from ocinest.oci.manifest import parse_manifest
from ocinest.oci.names import child_path_problem, is_tag
from ocinest.oci.nested import (
    EMPTY_JSON,
    SET_ARTIFACT_TYPE,
    TITLE_ANNOTATION,
    artifact_manifest,
    descriptor,
    empty_config,
    parent_index,
)

from .base import BlobSource, Progress, ProgressEvent, Repository, Stats, no_progress
from .copy import Copier, CopyResult, resolve_mode
from .errors import BadReference, ClientError, Kind, NotFound, RegistryError
from .layout import LayoutRepository
from .reference import LayoutRef, Ref, RemoteRef, parse_remote
from .remote import Client, RemoteRepository
from .tree import Node, walk

DEFAULT_FILE_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"


def open_repository(client: Client, ref: Ref, *, create: bool = False) -> Repository:
    """The repository (remote) or layout a reference names."""
    if isinstance(ref, LayoutRef):
        return LayoutRepository(ref.path, create=create)
    return client.registry(ref.host).repository(ref.repository)


async def copy(
    client: Client,
    src: Ref,
    dst: Ref,
    *,
    mode: str = "auto",
    referrers: bool = False,
    child_tags: bool = True,
    progress: Progress = no_progress,
) -> CopyResult:
    """Copy the tree at `src` to `dst` (registries, repositories, OCI layouts); with
    `child_tags`, each nested child keeps the tags its source repository has for it (where
    both sides are registries)."""
    if isinstance(dst, RemoteRef) and dst.digest is not None:
        raise BadReference(f"destination {dst} names a digest; give a tag or none")
    source = open_repository(client, src)
    root = await walk(source, src.reference, referrers=referrers, concurrency=8)
    if dst.digest is not None and dst.digest != root.digest:
        raise BadReference(
            f"destination {dst} names digest {dst.digest}, the tree is {root.digest}"
        )
    tag = dst.tag or (src.tag if src.digest is None else None)
    target = open_repository(client, dst, create=True)
    async with Copier(
        mode=mode,
        referrers=referrers,
        child_tags=child_tags,
        concurrency=client.options.concurrency,
        progress=progress,
    ) as copier:
        return await copier.copy(root, target, tag)


async def pull(
    client: Client,
    src: Ref,
    out: Path,
    *,
    tag: str | None = None,
    referrers: bool = False,
    progress: Progress = no_progress,
) -> CopyResult:
    """Write the whole tree at `src` into the OCI image layout `out`."""
    return await copy(
        client,
        src,
        LayoutRef(out, tag or src.tag),
        referrers=referrers,
        progress=progress,
    )


# index create


@dataclass
class IndexResult:
    reference: str  # host/P@sha256:…
    digest: Digest
    body: bytes
    mode: str
    children: list[Node] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)


async def _platform_of(node: Node) -> dict[str, Any] | None:
    """The platform of an image manifest, from its config (None for an index or artifact)."""
    blobs = node.blobs()
    if not blobs or blobs[0].media_type not in mt.IMAGE_CONFIGS:
        return None
    try:
        cfg = json.loads(await node.repo.fetch_blob_bytes(blobs[0].digest, blobs[0].size))
    except (ValueError, ClientError):
        return None
    if not isinstance(cfg, dict):
        return None
    if not isinstance(cfg.get("architecture"), str) or not isinstance(cfg.get("os"), str):
        return None
    platform: dict[str, Any] = {"architecture": cfg["architecture"], "os": cfg["os"]}
    for src_key, key in (("variant", "variant"), ("os.version", "os.version")):
        if isinstance(cfg.get(src_key), str) and cfg[src_key]:
            platform[key] = cfg[src_key]
    if isinstance(cfg.get("os.features"), list) and cfg["os.features"]:
        platform["os.features"] = cfg["os.features"]
    return platform


async def discover_children(parent: RemoteRepository, tag: str) -> list[tuple[str, RemoteRef]]:
    """Every repository under `parent` that has `tag`, as (child path, reference)."""
    try:
        names = await parent.registry.catalog()
    except RegistryError as exc:
        raise ClientError(
            f"--discover needs the catalog of {parent.registry.host}, which it refused: {exc}"
        ) from None
    prefix = parent.name + "/"
    found = []
    for name in sorted(n for n in names if n.startswith(prefix)):
        repo = parent.registry.repository(name)
        try:
            head = await repo.head_manifest(tag)
        except NotFound:
            head = None
        if head is not None:
            found.append((name[len(prefix) :], RemoteRef(parent.registry.host, name, tag)))
    if not found:
        raise NotFound(f"no repository under {parent.display} has tag {tag}")
    return found


def children_from_refs(parent: RemoteRef, text: str, source: str) -> list[tuple[str, RemoteRef]]:
    """The children a reference list names (`ko build --image-refs FILE`: one
    host/repo[:tag]@digest per line, blank lines ignored), as (child path, reference); each
    must lie under `parent` (same registry, a repository below it)."""
    prefix = parent.repository + "/"
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        where = f"{source} line {number}"
        try:
            ref = parse_remote(line)
        except BadReference as exc:
            raise BadReference(f"{where}: {exc.message}") from None
        if ref.host != parent.host or not ref.repository.startswith(prefix):
            raise BadReference(f"{where}: {line} is not under {parent.name}")
        out.append((ref.repository[len(prefix) :], ref))
    return out


def build_index(
    children: Sequence[Node],
    *,
    platforms: bool = False,
    artifact_type: str | None = None,
    annotations: dict[str, str] | None = None,
) -> bytes:
    """The parent index: one nested descriptor per child, in order. Deterministic bytes. A
    set unless `platforms` (see `parent_index`)."""
    return parent_index(
        [c.descriptor() for c in children],
        platforms=platforms,
        artifact_type=artifact_type,
        annotations=annotations,
    )


def _platform_label(platform: dict[str, Any]) -> str:
    return "/".join(str(platform[k]) for k in ("os", "architecture", "variant") if platform.get(k))


async def _set_platforms(nodes: Sequence[Node]) -> None:
    """For `--platforms`: each child's platform from its config; every child must be a
    single-platform image and the platforms distinct."""
    platforms = await asyncio.gather(*(_platform_of(n) for n in nodes))
    problems = [
        f"{n.child_path} is a multi-platform index"
        if n.is_index
        else f"{n.child_path} has no os/architecture in its config"
        for n, p in zip(nodes, platforms, strict=True)
        if p is None
    ]
    if problems:
        raise ClientError(
            "--platforms wants single-platform images: " + "; ".join(problems), kind=Kind.USAGE
        )
    owners: dict[str, list[str]] = {}
    for node, platform in zip(nodes, platforms, strict=True):
        node.platform = platform
        label = _platform_label(platform or {})
        owners.setdefault(label, []).append(str(node.child_path))
    clashes = [
        f"{' and '.join(o)} have the same platform {p}" for p, o in owners.items() if len(o) > 1
    ]
    if clashes:
        raise ClientError(
            "--platforms wants distinct platforms: " + "; ".join(clashes), kind=Kind.USAGE
        )


async def create_index(
    client: Client,
    parent: RemoteRef,
    children: Sequence[tuple[str, Ref]],
    *,
    discover: str | None = None,
    mode: str = "auto",
    platforms: bool = False,
    artifact_type: str | None = None,
    annotations: dict[str, str] | None = None,
    progress: Progress = no_progress,
) -> IndexResult:
    """Build and push the index `parent` (at its tag; untagged when it has none) from children
    that exist somewhere: each is copied or mounted into `parent/<path>` unless it is already
    there. A set (SET_ARTIFACT_TYPE or `artifact_type`, no platforms) unless `platforms`: one
    multi-platform image of single-platform children."""
    if parent.digest is not None:
        raise BadReference(f"{parent}: the index is pushed to a tag, not a digest")
    if platforms and artifact_type:
        raise BadReference("--platforms builds a multi-platform image, which has no artifactType")
    parent_repo = client.registry(parent.host).repository(parent.repository)
    wanted: list[tuple[str, Ref]] = list(children)
    if discover is not None:
        if not is_tag(discover):
            raise BadReference(f"--discover wants a tag, got {discover!r}")
        have = {p for p, _ in wanted}
        wanted += [c for c in await discover_children(parent_repo, discover) if c[0] not in have]
    if not wanted:
        raise BadReference(
            "no children: give CHILD=REF arguments, --children-from FILE or --discover TAG"
        )
    seen: set[str] = set()
    for path, _ in wanted:
        problem = child_path_problem(parent.repository, path)
        if problem:
            raise BadReference(f"child {path!r}: {problem}")
        if path in seen:
            raise BadReference(f"child {path!r} is given twice")
        seen.add(path)
    resolved_mode = await resolve_mode(parent_repo, mode)

    async def child_node(path: str, ref: Ref) -> Node:
        repo = open_repository(client, ref)
        try:
            node = await walk(repo, ref.reference)
        except NotFound as exc:
            raise NotFound(f"child {path}={ref}: {exc}") from None
        node.child_path = path
        return node

    nodes = list(await asyncio.gather(*(child_node(p, r) for p, r in wanted)))
    if platforms:
        await _set_platforms(nodes)
    body = build_index(
        nodes, platforms=platforms, artifact_type=artifact_type, annotations=annotations
    )
    root = Node(
        repo=parent_repo,
        media_type=mt.OCI_INDEX,
        digest=Digest.of(body),
        size=len(body),
        manifest=parse_manifest(body, mt.OCI_INDEX),
        artifact_type=None if platforms else artifact_type or SET_ARTIFACT_TYPE,
        annotations=dict(annotations or {}),
        children=nodes,
    )
    async with Copier(
        mode=resolved_mode, concurrency=client.options.concurrency, progress=progress
    ) as copier:
        result = await copier.copy(root, parent_repo, parent.tag)
    return IndexResult(
        parent.with_(tag=None, digest=None).pinned(root.digest),
        root.digest,
        body,
        result.mode,
        nodes,
        result.stats,
    )


# push: files as an artifact


def hash_file(path: Path) -> tuple[Digest, int]:
    hasher = new_hasher()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
            size += len(chunk)
    return Digest("sha256", hasher.hexdigest()), size


@dataclass
class PushResult:
    reference: str
    digest: Digest
    body: bytes
    stats: Stats


async def push_files(
    client: Client,
    ref: Ref,
    files: Sequence[tuple[Path, str | None]],
    *,
    artifact_type: str | None = None,
    annotations: dict[str, str] | None = None,
    progress: Progress = no_progress,
) -> PushResult:
    """Push files as an OCI artifact (ORAS style): an image manifest with an empty config,
    one layer per file titled with its name, and `artifactType`."""
    if not files:
        raise BadReference("no files to push")
    layers: list[dict[str, Any]] = []
    sources: list[tuple[Digest, int, BlobSource]] = []
    for path, media_type in files:
        if not path.is_file():
            raise NotFound(f"no such file: {path}")
        if media_type is not None and not mt.is_media_type(media_type):
            raise BadReference(f"invalid media type {media_type!r} for {path}")
        digest, size = await asyncio.to_thread(hash_file, path)
        sources.append((digest, size, path))
        layers.append(
            descriptor(
                media_type or DEFAULT_FILE_MEDIA_TYPE,
                digest,
                size,
                annotations={TITLE_ANNOTATION: path.name},
            )
        )
    titles = {path.name for path, _ in files}
    if len(titles) != len(files):
        raise BadReference("two files have the same name; artifact layers are titled by name")
    config = empty_config()
    sources.insert(0, (Digest.parse(config["digest"]), config["size"], EMPTY_JSON))
    body = artifact_manifest(layers, artifact_type=artifact_type, annotations=annotations)
    repo = open_repository(client, ref, create=True)
    stats = Stats()
    repo.declare("pull", "push")
    limit = asyncio.Semaphore(client.options.concurrency)

    async def one(digest: Digest, size: int, source: BlobSource) -> None:
        async with limit:
            if await repo.push_blob(digest, size, source, progress) == "skipped":
                stats.blobs_skipped += 1
                return
            stats.blobs_uploaded += 1
            stats.bytes_uploaded += size

    await asyncio.gather(*(one(d, s, p) for d, s, p in sources))
    tag = ref.tag if ref.digest is None else None
    if isinstance(ref, RemoteRef) and tag is None and ref.digest is None:
        tag = "latest"
    digest = await repo.put_manifest(body, mt.OCI_MANIFEST, tag, root=True)
    stats.manifests_pushed += 1
    progress(ProgressEvent.manifest(digest, len(body), repo.display))
    if ref.digest is not None and ref.digest != digest:
        raise ClientError(f"the artifact's digest is {digest}, not {ref.digest}")
    pinned = (
        ref.with_(tag=None, digest=None).pinned(digest)
        if isinstance(ref, RemoteRef)
        else f"oci:{ref.path}@{digest}"
    )
    return PushResult(pinned, digest, body, stats)


# delete


@dataclass
class DeleteResult:
    deleted: list[str] = field(default_factory=list)  # "repo@digest"
    kept: list[str] = field(default_factory=list)  # still referenced elsewhere
    missing: list[str] = field(default_factory=list)


async def delete_tree(
    client: Client, ref: Ref, *, recursive: bool = True, mode: str = "auto"
) -> DeleteResult:
    """Delete the tree at `ref`, parent first; in compat mode also the copies of children
    that compat placed in the ancestor repositories."""
    repo = open_repository(client, ref)
    root = await walk(repo, ref.reference) if recursive else None
    result = DeleteResult()
    if root is None:
        head = await repo.head_manifest(ref.reference or "latest")
        if head is None:
            raise NotFound(f"manifest {ref.reference} not found in {repo.display}")
        await repo.delete_manifest(head[1])
        result.deleted.append(f"{repo.display}@{head[1]}")
        return result
    for node in root.walk():
        node.repo.declare("pull", "delete")
    compat = mode == "compat" or (mode == "auto" and not await repo.native())

    async def remove(r: Repository, digest: Digest, copy: bool) -> None:
        name = f"{r.display}@{digest}"
        try:
            await r.delete_manifest(digest)
            result.deleted.append(name)
        except NotFound:
            if not copy:
                result.missing.append(name)
        except RegistryError as exc:
            if exc.status == 409 or "DENIED" in exc.codes:
                result.kept.append(f"{name} ({exc})")
            else:
                raise

    async def visit(node: Node, ancestors: list[Repository]) -> None:
        await remove(node.repo, node.digest, False)
        if compat and ancestors:
            seen = {node.repo.display}
            for a in reversed(ancestors):
                if a.display not in seen:
                    seen.add(a.display)
                    await remove(a, node.digest, True)
        for child in node.children:
            if child.child_path:
                await visit(child, [*ancestors, node.repo])
            else:
                await visit(child, ancestors)

    await visit(root, [])
    return result


def parse_annotations(values: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise BadReference(f"annotation {value!r} is not KEY=VALUE")
        out[key] = val
    return out


__all__ = [
    "DeleteResult",
    "IndexResult",
    "PushResult",
    "children_from_refs",
    "copy",
    "create_index",
    "delete_tree",
    "open_repository",
    "pull",
    "push_files",
]
