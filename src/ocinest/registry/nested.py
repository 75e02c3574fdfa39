"""The nested extension's tree endpoint: `GET /v2/<name>/_ocinest/tree/<reference>`.

The whole resolved tree in one request, answered from the metadata store with one query per
level of the tree. Each distinct manifest is parsed once however often the tree names it, and
the parse is kept for later requests (`_ParsedCache`). The answer is bounded in depth, nodes
and bytes: its size is counted while it is built, so an answer past `tree_max_bytes` is
refused before it is ever made. Parsing and serializing run off the event loop, on the
registry's one CPU thread (`Registry.cpu`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from ocinest.oci import mediatypes as mt
from ocinest.oci.digest import Digest
from ocinest.oci.errors import ErrorCode, OCIError
from ocinest.oci.names import is_tag
from ocinest.oci.nested import (
    DISCOVERY_HEADERS,
    NESTED_ANNOTATION,
    TREE_MANIFESTS,
    TREE_TAGS,
    TreeNode,
)
from ocinest.registry.authorize import PULL
from ocinest.registry.config import Config
from ocinest.registry.listing import count_param
from ocinest.registry.metrics import TREE_BYTES
from ocinest.registry.state import access, registry
from ocinest.storage.meta import ManifestNode

NESTED_HEADER = DISCOVERY_HEADERS

Node = TreeNode  # the wire type of the answer, shared with the client
Key = tuple[str, str]  # (repository, digest)


def _node(
    repository: str,
    digest: str,
    media_type: str,
    size: int,
    artifact_type: str | None = None,
    platform: dict[str, Any] | None = None,
) -> Node:
    """A node as its parent's descriptor gives it, in the answer's order of fields."""
    return {
        "repository": repository,
        "digest": digest,
        "mediaType": media_type,
        "size": size,
        "artifactType": artifact_type,
        "platform": platform,
        "annotations": {},
        "referrers": 0,
        "children": [],
    }


@dataclass(frozen=True)
class _Parsed:
    """What the tree shows of one stored manifest."""

    media_type: str
    size: int
    artifact_type: str | None
    annotations: dict[str, Any]
    annotations_bytes: int  # of the annotations, serialized
    referrers: int
    children: list[Node]  # as the index's descriptors give them

    @classmethod
    def of(cls, info: ManifestNode) -> _Parsed:
        doc = json.loads(info.content)
        annotations = doc.get("annotations") or {}
        children = []
        if info.media_type in mt.INDEXES:
            for desc in doc.get("manifests", []):
                child_path = (desc.get("annotations") or {}).get(NESTED_ANNOTATION)
                repository = (
                    info.repository if child_path is None else f"{info.repository}/{child_path}"
                )
                children.append(
                    _node(
                        repository,
                        desc["digest"],
                        desc["mediaType"],
                        desc["size"],
                        desc.get("artifactType"),
                        desc.get("platform"),
                    )
                )
        return cls(
            info.media_type,
            info.size,
            doc.get("artifactType"),
            annotations,
            len(json.dumps(annotations)),
            info.referrers,
            children,
        )


class _ParsedCache:
    """The parsed manifests of recent trees, least recently used first out, bounded by the
    bytes of the manifests they were parsed from. A digest names the same bytes for ever, so
    an entry never goes stale; the repository is in the key because children's repositories
    are found from it. Referrer counts change, so they are taken from each request's rows."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self._entries: OrderedDict[Key, tuple[_Parsed, int]] = OrderedDict()
        self._lock = threading.Lock()  # one process may hold several registries' CPU threads

    def parsed(self, info: ManifestNode) -> _Parsed:
        key = (info.repository, info.digest)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return replace(entry[0], referrers=info.referrers)
        parsed = _Parsed.of(info)  # outside the lock: the slow part
        cost = len(info.content)
        if cost <= self.budget:
            with self._lock:
                if key not in self._entries:
                    self._entries[key] = (parsed, cost)
                    self.used += cost
                while self.used > self.budget:
                    self.used -= self._entries.popitem(last=False)[1][1]
        return parsed


_PARSED = _ParsedCache(16 << 20)


class _Tree:
    """One request's tree, built level by level, with its bounds counted as it grows."""

    def __init__(
        self,
        config: Config,
        what: str,
        depth_limit: int,
        explicit_depth: bool,
        manifests: bool,
    ) -> None:
        self.config = config
        self.what = what
        self.depth_limit = depth_limit
        self.explicit_depth = explicit_depth
        self.parsed: dict[Key, _Parsed | None] = {}  # None: not in the store
        self.nodes = 1
        self.bytes = 0  # of the answer so far, exactly as json.dumps writes it
        # With ?manifests=1: each distinct manifest's bytes as text, by digest.
        self.contents: dict[str, str] | None = None
        if manifests:
            self.contents = {}
            self.grow(len(f', "{TREE_MANIFESTS}": {{}}'))

    def _too_large(self, bound: str) -> OCIError:
        return OCIError(ErrorCode.TREE_TOO_LARGE, f"the tree of {self.what} {bound}")

    def expand(self, level: list[Node], found: dict[Key, ManifestNode], depth: int) -> list[Node]:
        """Fill in the nodes of `level` from their manifests; returns the level below."""
        # In order, so the answer (and, with tags, its ETag) is the same from every worker.
        for key in sorted({(n["repository"], n["digest"]) for n in level} - self.parsed.keys()):
            info = found.get(key)
            self.parsed[key] = None if info is None else _PARSED.parsed(info)
            if info is not None and self.contents is not None:
                self._content(info)
        below: list[Node] = []
        for node in level:
            parsed = self.parsed[(node["repository"], node["digest"])]
            if parsed is None:
                node["missing"] = True  # a sparse descriptor whose target was never pushed
            else:
                node["mediaType"], node["size"] = parsed.media_type, parsed.size
                # The descriptor's, else the manifest's own field (no config fallback).
                node["artifactType"] = node["artifactType"] or parsed.artifact_type
                node["annotations"], node["referrers"] = parsed.annotations, parsed.referrers
                below += self._children(node, parsed, depth)
            self._count(node, parsed)
        return below

    def _children(self, node: Node, parsed: _Parsed, depth: int) -> list[Node]:
        if not parsed.children:
            return []
        if depth == self.depth_limit:
            if not self.explicit_depth:
                raise self._too_large(
                    f"is deeper than {self.depth_limit} levels (tree_max_depth); "
                    "ask for less with ?depth=N"
                )
            node["truncated"] = True
            return []
        self.nodes += len(parsed.children)
        if self.nodes > self.config.tree_max_nodes:
            raise self._too_large(
                f"has more than {self.config.tree_max_nodes} nodes (tree_max_nodes)"
            )
        children = [child.copy() for child in parsed.children]
        node["children"] = children
        return children

    def _content(self, info: ManifestNode) -> None:
        """Add a manifest's bytes to the answer, once per digest. Manifests are UTF-8 JSON
        (the registry refuses any other), so a JSON string carries them exactly."""
        assert self.contents is not None
        if info.digest in self.contents:
            return
        try:
            text = info.content.decode()
        except UnicodeDecodeError:  # never stored so; the client GETs what is not here
            return
        between = 2 if self.contents else 0  # ", " after the one before
        self.contents[info.digest] = text
        self.grow(between + len(json.dumps(info.digest)) + 2 + len(json.dumps(text)))  # ": "

    def _count(self, node: Node, parsed: _Parsed | None) -> None:
        """Add the node's own bytes: all but its children, each counted on its own level,
        and the ", " between them."""
        empty = {**node, "annotations": {}, "children": []}
        self.grow(
            len(json.dumps(empty))
            - 2
            + (parsed.annotations_bytes if parsed else 2)
            + 2 * max(len(node["children"]) - 1, 0)
        )

    def grow(self, size: int) -> None:
        """Count `size` more bytes of the answer, refusing it past `tree_max_bytes`."""
        self.bytes += size
        if self.bytes > self.config.tree_max_bytes:
            raise self._too_large(
                f"takes more than {self.config.tree_max_bytes} bytes (tree_max_bytes); "
                "ask for less with ?depth=N"
            )


async def _add_tags(request: web.Request, tree: _Tree, nodes: list[Node]) -> None:
    """Give each of `nodes` whose repository the caller may pull (itself, not through the
    parent: rule 4 grants no tags) the tags there that point at its digest."""
    can = access(request).can
    nodes = [n for n in nodes if not n.get("missing") and can(n["repository"], PULL)]
    keys = sorted({(n["repository"], n["digest"]) for n in nodes})
    found = await registry(request).meta.tags_by_digest(keys)
    for node in nodes:
        node[TREE_TAGS] = found.get((node["repository"], node["digest"]), [])
        tree.grow(len(f', "{TREE_TAGS}": ') + len(json.dumps(node[TREE_TAGS])))


def _serialize(root: Node, hashed: bool) -> tuple[bytes, str]:
    """The answer's bytes and, when `hashed`, a hash of them."""
    body = json.dumps(root).encode()
    return body, hashlib.sha256(body).hexdigest()[:32] if hashed else ""


async def get_tree(request: web.Request, name: str, reference: str) -> web.Response:
    reg = registry(request)
    config = reg.config
    if Digest.looks_like(reference):
        Digest.parse(reference)
    elif not is_tag(reference):
        raise OCIError(ErrorCode.MANIFEST_UNKNOWN, f"invalid reference {reference[:200]!r}")
    root_manifest = await reg.meta.get_manifest(name, reference)
    if root_manifest is None:
        raise OCIError(ErrorCode.MANIFEST_UNKNOWN, f"manifest {reference!r} is not in {name}")
    manifests, tags = (request.query.get(k) in ("1", "true") for k in (TREE_MANIFESTS, TREE_TAGS))
    headers = {"ETag": f'"{root_manifest.digest}"', **NESTED_HEADER}
    if not tags and request.headers.get("If-None-Match") == headers["ETag"]:
        return web.Response(status=304, headers=headers)

    tree = _Tree(
        config,
        f"{name}:{reference}",
        count_param(request, "depth", config.tree_max_depth),
        "depth" in request.query,
        manifests,
    )
    root = _node(
        root_manifest.repository,
        root_manifest.digest,
        root_manifest.media_type,
        len(root_manifest.content),
    )
    loop = asyncio.get_running_loop()
    level = [root]
    nodes: list[Node] = []  # every node of the answer (a child named twice is two)
    depth = 0
    while level:
        nodes += level
        wanted = {(n["repository"], n["digest"]) for n in level} - tree.parsed.keys()
        found = await reg.meta.manifest_nodes(sorted(wanted))
        level = await loop.run_in_executor(reg.cpu, tree.expand, level, found, depth)
        depth += 1
    if tree.contents is not None:
        root[TREE_MANIFESTS] = tree.contents
    if tags:
        await _add_tags(request, tree, nodes)
    body, answer_hash = await loop.run_in_executor(reg.cpu, _serialize, root, tags)
    if answer_hash:  # tags move: the ETag names this answer, not only the root
        headers["ETag"] = f'"{root_manifest.digest};{answer_hash}"'
        if request.headers.get("If-None-Match") == headers["ETag"]:
            return web.Response(status=304, headers=headers)
    TREE_BYTES.observe(len(body))
    return web.Response(body=body, content_type="application/json", headers=headers)
