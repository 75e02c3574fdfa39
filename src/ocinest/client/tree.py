"""Nested trees: walking one manifest by manifest (any registry, any layout), reading one from
ocinest's tree endpoint, and drawing one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ocinest.oci import mediatypes as mt
from ocinest.oci.digest import Digest
from ocinest.oci.errors import OCIError
from ocinest.oci.manifest import Descriptor, Manifest, parse_manifest
from ocinest.oci.names import child_path_problem
from ocinest.oci.nested import (
    NESTED_ANNOTATION,
    TREE_MANIFESTS,
    TREE_TAGS,
    TreeNode,
    nested_descriptor,
)

from .base import Fetched, Repository
from .errors import ClientError, NetworkError, NotFound, RegistryError


@dataclass
class Node:
    """One manifest of a tree, where it lives, and what its parent's descriptor said."""

    repo: Repository  # where the manifest lives
    media_type: str
    digest: Digest
    size: int
    manifest: Manifest | None = None  # parsed; None when read from the tree endpoint
    child_path: str | None = None  # the nested path relative to the parent, if nested
    platform: dict[str, Any] | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)  # the manifest's own
    children: list[Node] = field(default_factory=list)
    referrers: list[Node] = field(default_factory=list)
    referrer_count: int | None = None
    truncated: bool = False
    # A descriptor of the parent whose manifest was never pushed (a sparse index): no
    # manifest, nothing below it.
    missing: bool = False
    # The tags of its repository that point at it, where the tree endpoint listed them
    # (None: not known; ask the repository).
    tags: list[str] | None = None

    @property
    def body(self) -> bytes | None:
        return self.manifest.raw if self.manifest is not None else None

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEXES

    @property
    def path(self) -> str:
        """The nested path of the node's repository below the tree's root."""
        return self.repo.nested_path

    def blobs(self) -> list[Descriptor]:
        """The config and layers of an image manifest (none for an index)."""
        if self.manifest is None:
            return []
        return [r.descriptor for r in self.manifest.references if r.kind == "blob"]

    def walk(self) -> Iterator[Node]:
        """Every node, parents first (referrers after the node they refer to)."""
        yield self
        for r in self.referrers:
            yield from r.walk()
        for c in self.children:
            yield from c.walk()

    def descriptor(self) -> dict[str, Any]:
        """This node as a descriptor in an index (nested annotation when it has a path)."""
        return nested_descriptor(
            self.media_type,
            self.digest,
            self.size,
            self.child_path,
            artifact_type=self.artifact_type,
            platform=self.platform,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "repository": self.repo.display,
            "path": self.path,
            "digest": str(self.digest),
            "mediaType": self.media_type,
            "size": self.size,
            "artifactType": self.artifact_type,
            "platform": self.platform,
            "annotations": self.annotations,
        }
        if self.child_path is not None:
            out["childPath"] = self.child_path
        if self.referrer_count is not None:
            out["referrers"] = self.referrer_count
        if self.referrers:
            out["referrerManifests"] = [r.to_json() for r in self.referrers]
        if self.truncated:
            out["truncated"] = True
        if self.missing:
            out["missing"] = True
        out["children"] = [c.to_json() for c in self.children]
        return out


def artifact_type_of(manifest: Manifest) -> str | None:
    """A manifest's artifact type as a descriptor would carry it: its `artifactType`, else
    (an artifact in the OCI 1.0 style) a config media type that is not an image's."""
    if manifest.artifact_type in mt.IMAGE_CONFIGS | {mt.OCI_EMPTY}:
        return None
    return manifest.artifact_type


def node_of(
    repo: Repository,
    fetched: Fetched,
    desc: Descriptor | None = None,
    child_path: str | None = None,
) -> Node:
    """The node of a fetched manifest, parsed and validated."""
    try:
        manifest = parse_manifest(fetched.body, fetched.media_type, fetched.digest)
    except OCIError as exc:
        raise ClientError(
            f"manifest {fetched.digest} in {repo.display} is invalid: {exc.errors[0].detail}"
        ) from None
    return Node(
        repo=repo,
        media_type=fetched.media_type,
        digest=fetched.digest,
        size=fetched.size,
        manifest=manifest,
        child_path=child_path,
        platform=desc.platform if desc else None,
        artifact_type=(desc.artifact_type if desc else None) or artifact_type_of(manifest),
        annotations=dict(manifest.annotations),
    )


class Walker:
    """Walks a tree manifest by manifest, fetching children in parallel (bounded). Where the
    registry has the tree endpoint, one request first brings every manifest's bytes (and the
    children's tags); each is checked against its digest and used in place of a GET, so the
    tree is built and verified from the manifests either way."""

    def __init__(
        self, *, depth: int | None = None, referrers: bool = False, concurrency: int = 8
    ) -> None:
        self.depth = depth
        self.with_referrers = referrers
        self._limit = asyncio.Semaphore(max(1, concurrency))
        self._known: dict[tuple[str, str], Fetched] = {}  # (repository, reference)
        self._tags: dict[tuple[str, Digest], list[str]] = {}

    async def walk(self, repo: Repository, reference: str | None) -> Node:
        await self._prefetch(repo, reference or "latest")
        fetched = await self._get(repo, reference)
        root = node_of(repo, fetched)
        root.tags = self._tags.get((repo.display, root.digest))
        await self._expand(root, 0)
        return root

    async def _prefetch(self, repo: Repository, reference: str) -> None:
        try:
            answer = await repo.tree(reference, self.depth, manifests=True, tags=True)
        except ClientError as e:  # refused (too large, say): GET each manifest
            if isinstance(e, NetworkError) or (isinstance(e, RegistryError) and e.status >= 500):
                raise  # the registry is failing: the GETs would fail alike
            return
        contents = answer.get(TREE_MANIFESTS) if answer is not None else None
        if answer is None or not isinstance(contents, dict):
            return
        try:
            tree = from_endpoint(repo, answer)
        except (ValueError, TypeError):  # a malformed answer: GET each manifest
            return
        for node in tree.walk():
            display, digest = node.repo.display, node.digest
            text = contents.get(str(digest))
            body = text.encode() if isinstance(text, str) else b""
            media_type = mt.sniff(body, node.media_type) if body else None
            if media_type is not None and Digest.of(body, digest.algorithm) == digest:
                self._known[(display, str(digest))] = Fetched(body, media_type, digest)
                if node is tree:
                    self._known[(display, reference)] = self._known[(display, str(digest))]
            # None where the caller may not read the repository's tags (it reaches the node
            # only through the parent): none it could carry.
            self._tags[(display, digest)] = node.tags or []

    async def _get(self, repo: Repository, reference: str | None) -> Fetched:
        known = self._known.get((repo.display, reference or "latest"))
        if known is not None:
            return known
        async with self._limit:
            return await repo.get_manifest(reference)

    async def _fetch(
        self,
        repo: Repository,
        desc: Descriptor,
        child_path: str | None,
        parent: Node,
        sparse: bool = False,
    ) -> Node:
        """The node `desc` names; with `sparse` (a member of the parent's own repository),
        a missing one is a node marked missing, as a sparse index may have."""
        try:
            fetched = await self._get(repo, str(desc.digest))
        except NotFound:
            if sparse:
                return Node(
                    repo=repo,
                    media_type=desc.media_type,
                    digest=desc.digest,
                    size=desc.size,
                    platform=desc.platform,
                    artifact_type=desc.artifact_type,
                    missing=True,
                )
            what = f"child {child_path!r}" if child_path else "manifest"
            raise NotFound(
                f"{what} {desc.digest} of index {parent.digest} is missing from {repo.display}"
            ) from None
        if fetched.size != desc.size:
            raise ClientError(
                f"manifest {desc.digest} in {repo.display} is {fetched.size} bytes; the index "
                f"{parent.digest} says {desc.size}"
            )
        node = node_of(repo, fetched, desc, child_path)
        node.tags = self._tags.get((repo.display, node.digest))
        return node

    async def _expand(self, node: Node, level: int) -> None:
        tasks = []
        if self.with_referrers:
            tasks.append(self._referrers(node, level))
        if node.is_index:
            if self.depth is not None and level >= self.depth:
                node.truncated = True
            else:
                tasks.append(self._children(node, level))
        await asyncio.gather(*tasks)

    async def _children(self, node: Node, level: int) -> None:
        assert node.manifest is not None
        fetches = []
        for ref in node.manifest.references:
            repo = node.repo
            if ref.child is not None:
                problem = child_path_problem("x", ref.child)
                if problem:
                    raise ClientError(
                        f"index {node.digest} in {node.repo.display}: {NESTED_ANNOTATION}="
                        f"{ref.child!r}: {problem}"
                    )
                repo = node.repo.child(ref.child)
            # Nested children are always checked by the registry: one missing is an error.
            fetches.append(self._fetch(repo, ref.descriptor, ref.child, node, ref.child is None))
        node.children = list(await asyncio.gather(*fetches))
        await asyncio.gather(*(self._expand(c, level + 1) for c in node.children if not c.missing))

    async def _referrers(self, node: Node, level: int) -> None:
        async with self._limit:
            listed = await node.repo.referrers(node.digest)
        node.referrer_count = len(listed)
        try:
            descs = [Descriptor.parse(d, f"referrer of {node.digest}") for d in listed]
        except OCIError as exc:
            raise ClientError(
                f"the referrers of {node.digest} in {node.repo.display}: {exc.errors[0].detail}"
            ) from None
        found = await asyncio.gather(*(self._fetch(node.repo, d, None, node) for d in descs))
        for r in found:
            r.platform = None
        node.referrers = list(found)
        # A referrer's own content (an index of signatures, say) comes along; its referrers too.
        await asyncio.gather(*(self._expand(r, level) for r in node.referrers))


async def walk(
    repo: Repository,
    reference: str | None,
    *,
    depth: int | None = None,
    referrers: bool = False,
    concurrency: int = 8,
) -> Node:
    """The whole tree at `reference`, every manifest fetched and verified."""
    return await Walker(depth=depth, referrers=referrers, concurrency=concurrency).walk(
        repo, reference
    )


def _strings(value: object) -> list[str] | None:
    """`value` when it is a list of strings, else None."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [str(v) for v in value]
    return None


def from_endpoint(root_repo: Repository, root: TreeNode) -> Node:
    """A tree as ocinest's tree endpoint answers it (no manifests; each node's tags where the
    answer lists them)."""

    def build(d: TreeNode, repo: Repository, child_path: str | None) -> Node:
        media_type = str(d.get("mediaType"))
        artifact_type = d.get("artifactType")
        if media_type not in mt.INDEXES and artifact_type in mt.IMAGE_CONFIGS:
            artifact_type = None  # a plain image, as a walk reports it
        node = Node(
            repo=repo,
            media_type=media_type,
            digest=Digest.parse(d["digest"]),
            size=int(d.get("size") or 0),
            child_path=child_path,
            platform=d.get("platform"),
            artifact_type=artifact_type,
            annotations=dict(d.get("annotations") or {}),
            referrer_count=d.get("referrers"),
            truncated=bool(d.get("truncated")),
            missing=bool(d.get("missing")),
            tags=_strings(d.get(TREE_TAGS)),
        )
        name = d["repository"]
        for c in d.get("children") or []:
            cname = c["repository"]
            cpath = cname[len(name) + 1 :] if cname.startswith(name + "/") else None
            node.children.append(build(c, repo.child(cpath) if cpath else repo, cpath))
        return node

    return build(root, root_repo, None)


async def read_tree(
    repo: Repository, reference: str | None, *, depth: int | None = None, endpoint: bool = True
) -> Node:
    """The tree for display: the registry's tree endpoint when it has one, else a walk."""
    if endpoint:
        answer = await repo.tree(reference or "latest", depth)
        if answer is not None:
            return from_endpoint(repo, answer)
    return await walk(repo, reference, depth=depth)


def _platform(p: dict[str, Any] | None) -> str:
    if not p:
        return ""
    text = f"{p.get('os', '?')}/{p.get('architecture', '?')}"
    if p.get("variant"):
        text += f"/{p['variant']}"
    return text


def kind(node: Node) -> str:
    if node.is_index:
        return "index" if node.media_type == mt.OCI_INDEX else "manifest list"
    if node.artifact_type:
        return f"artifact {node.artifact_type}"
    return "image"


def render(node: Node, title: str) -> list[str]:
    """The tree drawn as lines of text."""

    def label(n: Node) -> str:
        head = [p for p in (n.child_path or "", _platform(n.platform)) if p]
        head += [str(n.digest), kind(n), f"{n.size} B"]
        text = "  ".join(head)
        if n.referrer_count:
            text += f"  ({n.referrer_count} referrer{'s' if n.referrer_count > 1 else ''})"
        if n.truncated:
            text += "  …"
        if n.missing:
            text += "  (never pushed)"
        return text

    lines = [f"{title}  {label(node)}"]

    def draw(n: Node, prefix: str) -> None:
        for i, c in enumerate(n.children):
            last = i == len(n.children) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{label(c)}")
            draw(c, prefix + ("    " if last else "│   "))

    draw(node, "")
    return lines
