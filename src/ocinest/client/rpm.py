"""RPM repositories as nested trees (`ocinest rpm push` and `pull`).

A repository `P` is one nested index (RPM_REPOSITORY_ARTIFACT_TYPE) pinning one artifact per
RPM, in `P/<package name>` tagged `<version>-<release>.<arch>`, and the repository metadata in
`P/repodata`, every file titled with its path in the repository (`hello-1.0-1.noarch.rpm`,
`repodata/repomd.xml`, ...): what the registry's files view serves to dnf, and what `pull`
writes to a folder. Headers are read with createrepo_c's bindings and the metadata made by the
`createrepo_c` program, deterministic: the same RPMs give the same digest.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ocinest.oci import mediatypes as mt
from ocinest.oci.digest import Digest
from ocinest.oci.nested import (
    EMPTY_JSON,
    RPM_MEDIA_TYPE,
    RPM_PACKAGE_ARTIFACT_TYPE,
    RPM_REPODATA_ARTIFACT_TYPE,
    RPM_REPODATA_PATH,
    RPM_REPOSITORY_ARTIFACT_TYPE,
    TITLE_ANNOTATION,
    artifact_manifest,
    descriptor,
    empty_config,
    parent_index,
)

from .base import BlobSource, Fetched, Progress, ProgressEvent, Repository, Stats, no_progress
from .copy import Copier, resolve_mode
from .errors import BadReference, ClientError, Kind, NotFound
from .ops import hash_file, open_repository
from .reference import RemoteRef
from .remote import Client
from .tree import Node, node_of, walk

ANNOTATION_PREFIX = "dev.ocinest.rpm."
CREATED_ANNOTATION = "org.opencontainers.image.created"
REPOMD = f"{RPM_REPODATA_PATH}/repomd.xml"
_REPO_NS = "{http://linux.duke.edu/metadata/repo}"
_TAG_CHARS = re.compile(r"[^a-zA-Z0-9._-]")
_METADATA_TYPES = {
    ".xml": "application/xml",
    ".gz": "application/gzip",
    ".bz2": "application/x-bzip2",
    ".xz": "application/x-xz",
    ".zst": "application/zstd",
    ".zck": "application/zchunk",
}


class RpmError(ClientError):
    """Input that is not a repository: the message names the file."""

    kind = Kind.USAGE


@dataclass(frozen=True)
class Package:
    """One RPM file and what its header says."""

    path: Path
    digest: Digest
    size: int
    name: str
    epoch: str
    version: str
    release: str
    arch: str
    summary: str
    license: str
    build_time: int

    @property
    def nevra(self) -> str:
        return f"{self.name}-{self.epoch}:{self.version}-{self.release}.{self.arch}"

    @property
    def child_path(self) -> str:
        return child_path_of(self.name)

    @property
    def tag(self) -> str:
        return _TAG_CHARS.sub("_", f"{self.version}-{self.release}.{self.arch}")[:128]

    def annotations(self) -> dict[str, str]:
        fields = {
            "name": self.name,
            "epoch": self.epoch,
            "version": self.version,
            "release": self.release,
            "arch": self.arch,
            "nevra": self.nevra,
        }
        out = {ANNOTATION_PREFIX + k: v for k, v in fields.items()}
        out |= {
            "org.opencontainers.image.title": self.path.name,
            "org.opencontainers.image.version": f"{self.version}-{self.release}",
            "org.opencontainers.image.description": self.summary,
            "org.opencontainers.image.licenses": self.license,
            CREATED_ANNOTATION: _iso(self.build_time),
        }
        return out


def child_path_of(name: str) -> str:
    """A package's child path: its name lowercased, each run of characters outside
    [a-z0-9] one `-` (and none at either end)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _iso(seconds: int) -> str:
    when = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def read_package(path: Path) -> Package:
    """The header of the RPM at `path`; RpmError naming it when it is not one."""
    if not path.is_file():
        raise NotFound(f"no such file: {path}")
    try:
        import createrepo_c  # only here: it weighs on every start of the command line
    except ImportError:
        raise ClientError(
            "reading RPM headers needs the rpm extra: pip install 'ocinest[rpm]'", kind=Kind.USAGE
        ) from None
    try:
        pkg = createrepo_c.package_from_rpm(str(path))
    except (OSError, createrepo_c.CreaterepoCError) as exc:
        raise RpmError(f"{path} is not an RPM package: {exc}") from None
    digest, size = hash_file(path)
    return Package(
        path,
        digest,
        size,
        pkg.name,
        str(pkg.epoch or 0),
        pkg.version,
        pkg.release,
        pkg.arch,
        pkg.summary or "",
        pkg.rpm_license or "",
        int(pkg.time_build or 0),
    )


def check_packages(packages: Sequence[Package]) -> list[Package]:
    """The set to publish, in a stable order: the same file given twice counts once; two
    files of one NEVRA, one file name or one child path and tag are errors naming both."""
    by_digest = {p.digest: p for p in packages}
    unique = sorted(by_digest.values(), key=lambda p: (p.child_path, p.tag, p.path.name))
    names: dict[str, str] = {}
    for p in unique:
        other_name = names.setdefault(p.child_path, p.name)
        if not p.child_path or other_name != p.name:
            raise RpmError(
                f"packages {other_name!r} and {p.name!r} map to one child path {p.child_path!r}"
                if p.child_path
                else f"{p.path}: package name {p.name!r} gives no child path"
            )
    for key, what in (
        (lambda p: p.nevra, "the same NEVRA"),
        (lambda p: p.path.name, "the same file name"),
        (lambda p: (p.child_path, p.tag), "the same child path and tag"),
    ):
        seen: dict[Any, Package] = {}
        for p in unique:
            other = seen.setdefault(key(p), p)
            if other is not p:
                raise RpmError(f"{other.path} and {p.path} have {what} ({other.nevra})")
    return unique


def metadata_files(folder: Path) -> list[str]:
    """`repodata/repomd.xml` and every file it names, as paths relative to `folder`; RpmError
    for a path that leaves the folder or a file that is missing."""
    repomd = folder / REPOMD
    try:
        root = ET.parse(repomd).getroot()
    except (OSError, ET.ParseError) as exc:
        raise RpmError(f"cannot read {repomd}: {exc}") from None
    titles = [REPOMD]
    for location in root.iter(f"{_REPO_NS}location"):
        href = location.get("href", "")
        problem = title_problem(href)
        if problem:
            raise RpmError(f"{repomd} names {href!r}: {problem}")
        if not (folder / href).is_file():
            raise RpmError(f"{repomd} names {href}, which is missing")
        titles.append(href)
    return titles


def title_problem(title: str) -> str | None:
    """Why a title cannot be a file's path in a repository, or None."""
    path = PurePosixPath(title)
    if not title or path.is_absolute() or "\\" in title or "\0" in title:
        return "not a relative path"
    if any(part in ("", ".", "..") for part in title.split("/")):
        return "has an empty, '.' or '..' segment"
    return None


def make_metadata(packages: Sequence[Package], folder: Path) -> list[str]:
    """Stage the packages in `folder` and run createrepo_c there, deterministically: no
    database files, revision and timestamps the newest build time, each file's time its
    package's build time, and the package list in order. Returns the metadata's titles."""
    for p in packages:
        staged = folder / p.path.name
        shutil.copyfile(p.path, staged)
        os.utime(staged, (p.build_time, p.build_time))
    newest = max(p.build_time for p in packages)
    pkglist = folder.parent / "pkglist"
    pkglist.write_text("".join(f"{p.path.name}\n" for p in packages))
    command = [
        "createrepo_c",
        "--quiet",
        "--no-database",
        f"--revision={newest}",
        "--set-timestamp-to-revision",
        f"--pkglist={pkglist}",
        str(folder),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ClientError(
            "createrepo_c is not installed (Debian: apt install createrepo-c)"
        ) from None
    if done.returncode != 0:
        raise ClientError(f"createrepo_c failed: {done.stderr.strip()[-500:]}")
    return metadata_files(folder)


def _metadata_type(title: str) -> str:
    return _METADATA_TYPES.get(PurePosixPath(title).suffix, "application/octet-stream")


async def _push_artifact(
    repo: Repository,
    files: Sequence[tuple[str, Path, str]],
    artifact_type: str,
    annotations: dict[str, str],
    tag: str | None,
    stats: Stats,
    progress: Progress,
) -> Node:
    """Push an artifact of `files` (title, path, media type) to `repo`; its node."""
    config = empty_config()
    layers: list[dict[str, Any]] = []
    sources: list[tuple[Digest, int, BlobSource]] = [
        (Digest.parse(config["digest"]), config["size"], EMPTY_JSON)
    ]
    for title, path, media_type in files:
        digest, size = await asyncio.to_thread(hash_file, path)
        sources.append((digest, size, path))
        layers.append(descriptor(media_type, digest, size, annotations={TITLE_ANNOTATION: title}))
    for digest, size, source in sources:
        if await repo.push_blob(digest, size, source, progress) == "skipped":
            stats.blobs_skipped += 1
        else:
            stats.blobs_uploaded += 1
            stats.bytes_uploaded += size
    body = artifact_manifest(layers, artifact_type=artifact_type, annotations=annotations)
    digest = Digest.of(body)
    if await repo.has_manifest(digest) and tag is None:
        stats.manifests_skipped += 1
    else:
        await repo.put_manifest(body, mt.OCI_MANIFEST, tag)
        stats.manifests_pushed += 1
        progress(ProgressEvent.manifest(digest, len(body), repo.display))
    return node_of(repo, Fetched(body, mt.OCI_MANIFEST, digest))


@dataclass
class RpmPushResult:
    reference: str
    digest: Digest
    packages: list[Package]
    stats: Stats
    mode: str


async def existing_packages(client: Client, ref: RemoteRef, folder: Path) -> list[Path]:
    """The RPMs of the repository at `ref`, downloaded into `folder`."""
    written = await pull_files(client, ref, folder, only=RPM_MEDIA_TYPE)
    return [folder / title for title in written]


async def push(
    client: Client,
    ref: RemoteRef,
    inputs: Sequence[Path],
    *,
    base: RemoteRef | None = None,
    mode: str = "auto",
    progress: Progress = no_progress,
) -> RpmPushResult:
    """Push the RPMs (files, or every `*.rpm` below a folder) of `inputs`, with those of the
    repository `base`, as the RPM repository `ref`; everything is checked and the metadata
    made before anything is pushed, and the index last."""
    if ref.digest is not None:
        raise BadReference(f"{ref}: a repository is pushed to a tag, not a digest")
    paths: list[Path] = []
    for given in inputs:
        if given.is_dir():
            paths += sorted(p for p in given.rglob("*.rpm") if p.is_file())
        elif given.exists():
            paths.append(given)
        else:
            raise NotFound(f"no such file or folder: {given}")
    with tempfile.TemporaryDirectory(prefix="ocinest-rpm-") as tmp:
        if base is not None:
            paths = await existing_packages(client, base, Path(tmp) / "base") + paths
        if not paths:
            raise RpmError("no RPM packages given")
        read = await asyncio.gather(*(asyncio.to_thread(read_package, p) for p in paths))
        packages = check_packages(read)
        stage = Path(tmp) / "repo"
        stage.mkdir()
        titles = await asyncio.to_thread(make_metadata, packages, stage)
        newest = max(p.build_time for p in packages)
        return await _publish(client, ref, packages, stage, titles, newest, mode, progress)


async def _publish(
    client: Client,
    ref: RemoteRef,
    packages: list[Package],
    stage: Path,
    titles: list[str],
    newest: int,
    mode: str,
    progress: Progress,
) -> RpmPushResult:
    parent = client.registry(ref.host).repository(ref.repository)
    parent.declare("pull", "push")
    for path in {p.child_path for p in packages} | {RPM_REPODATA_PATH}:
        parent.child(path).declare("pull", "push")
    stats = Stats()
    limit = asyncio.Semaphore(client.options.concurrency)

    async def package_node(p: Package) -> Node:
        async with limit:
            node = await _push_artifact(
                parent.child(p.child_path),
                [(p.path.name, stage / p.path.name, RPM_MEDIA_TYPE)],
                RPM_PACKAGE_ARTIFACT_TYPE,
                p.annotations(),
                p.tag,
                stats,
                progress,
            )
        node.child_path = p.child_path
        return node

    children = list(await asyncio.gather(*(package_node(p) for p in packages)))
    repodata = await _push_artifact(
        parent.child(RPM_REPODATA_PATH),
        [(t, stage / t, _metadata_type(t)) for t in titles],
        RPM_REPODATA_ARTIFACT_TYPE,
        {CREATED_ANNOTATION: _iso(newest)},
        None,
        stats,
        progress,
    )
    repodata.child_path = RPM_REPODATA_PATH
    children.append(repodata)
    annotations = {CREATED_ANNOTATION: _iso(newest)}
    body = parent_index(
        [c.descriptor() for c in children],
        artifact_type=RPM_REPOSITORY_ARTIFACT_TYPE,
        annotations=annotations,
    )
    root = node_of(parent, Fetched(body, mt.OCI_INDEX, Digest.of(body)))
    root.artifact_type = RPM_REPOSITORY_ARTIFACT_TYPE
    root.children = children
    tag = ref.tag or "latest"
    resolved = await resolve_mode(parent, mode)
    if resolved == "native":  # the children are in place already: only the index is left
        await parent.put_manifest(body, mt.OCI_INDEX, tag, root=True)
        stats.manifests_pushed += 1
        progress(ProgressEvent.manifest(root.digest, len(body), parent.display))
    else:  # compat: the Copier also places each child in the parent repository
        async with Copier(
            mode=resolved, concurrency=client.options.concurrency, progress=progress, stats=stats
        ) as copier:
            await copier.copy(root, parent, tag)
    pinned = ref.with_(tag=None, digest=None).pinned(root.digest)
    return RpmPushResult(pinned, root.digest, packages, stats, resolved)


async def pull_files(
    client: Client, ref: RemoteRef, folder: Path, *, only: str | None = None
) -> list[str]:
    """Write every titled file of the tree at `ref` to `folder` at its title (only layers of
    media type `only`, when given); returns the titles written."""
    repo = open_repository(client, ref)
    repo.declare("pull")
    root = await walk(repo, ref.reference, concurrency=client.options.concurrency)
    files: dict[str, tuple[Repository, Digest, int]] = {}
    for node in root.walk():
        for layer in node.blobs():
            title = layer.annotations.get(TITLE_ANNOTATION)
            if title is None or (only is not None and layer.media_type != only):
                continue
            problem = title_problem(title)
            if problem:
                raise ClientError(f"{node.repo.display}@{node.digest}: title {title!r}: {problem}")
            known = files.setdefault(title, (node.repo, layer.digest, layer.size))
            if known[1] != layer.digest:
                raise ClientError(
                    f"title {title!r} names two files in the tree: {known[1]} and {layer.digest}"
                )
    folder.mkdir(parents=True, exist_ok=True)
    limit = asyncio.Semaphore(client.options.concurrency)

    async def one(title: str, repo: Repository, digest: Digest, size: int) -> None:
        dest = folder / title
        dest.parent.mkdir(parents=True, exist_ok=True)
        async with limit:
            await repo.fetch_blob(digest, size, dest, no_progress)

    await asyncio.gather(*(one(t, *where) for t, where in files.items()))
    return sorted(files)
