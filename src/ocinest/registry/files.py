"""The files view (contract rule 9): `GET`/`HEAD /_ocinest/files/<P>@<digest>/<path>` and
`/_ocinest/files/<P>:<tag>/<path>` serve the files of the tree pinned by `P`'s manifest, each
layer by its `org.opencontainers.image.title` (a relative path), and an HTML listing of each
folder. This is what a stock `dnf` (or any HTTP client) uses as a `baseurl`.

Authorization is pull on `P` (rule 4: it covers what the tree reaches). dnf sends Basic
credentials, so this path takes Basic against the htpasswd users in token mode too. A tree's
path map is kept per root digest (bounded), as a tree by digest never changes.
"""

from __future__ import annotations

import json
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime

from aiohttp import web

from ocinest.oci import mediatypes as mt
from ocinest.oci.digest import Digest
from ocinest.oci.errors import ErrorCode, OCIError
from ocinest.oci.names import is_tag, validate_name
from ocinest.oci.nested import NESTED_ANNOTATION, TITLE_ANNOTATION
from ocinest.registry import observability
from ocinest.registry.auth import IDENTITY
from ocinest.registry.blobs import stream_blob
from ocinest.registry.pages import render
from ocinest.registry.state import Registry, registry

PREFIX = "/_ocinest/files/"
CREATED_ANNOTATION = "org.opencontainers.image.created"
_CACHED_TREES = 256


@dataclass(frozen=True)
class File:
    repository: str
    digest: Digest
    size: int
    media_type: str


@dataclass(frozen=True)
class Tree:
    """A pinned tree as files: each title's blob, and each folder's entries."""

    files: dict[str, File]
    folders: dict[str, set[str]]  # "" is the root; entries end with "/" when folders
    modified: str | None  # Last-Modified, from the root's created annotation


class _Conflict(Exception):
    pass


def _valid_title(title: str) -> bool:
    parts = title.split("/")
    return all(p not in ("", ".", "..") and "\\" not in p and "\0" not in p for p in parts)


def _modified(annotations: dict[str, str]) -> str | None:
    created = annotations.get(CREATED_ANNOTATION)
    if not created:
        return None
    try:
        when = datetime.fromisoformat(created)
    except ValueError:
        return None
    return format_datetime(when, usegmt=True) if when.tzinfo else None


class TreeCache:
    """Trees by (repository, root digest), the most recently used kept."""

    def __init__(self, size: int = _CACHED_TREES) -> None:
        self.size = size
        self.trees: OrderedDict[tuple[str, str], Tree] = OrderedDict()

    async def get(self, reg: Registry, repository: str, digest: str, content: bytes) -> Tree:
        key = (repository, digest)
        tree = self.trees.get(key)
        if tree is None:
            tree = await _walk(reg, repository, digest, content)
            self.trees[key] = tree
            while len(self.trees) > self.size:
                self.trees.popitem(last=False)
        self.trees.move_to_end(key)
        return tree


CACHE = web.AppKey("files_trees", TreeCache)


async def _walk(reg: Registry, repository: str, digest: str, content: bytes) -> Tree:
    """The files of the tree rooted at `repository`@`digest`, level by level."""
    root = json.loads(content)
    files: dict[str, File] = {}
    level: list[tuple[str, str]] = [(repository, digest)]
    seen: set[tuple[str, str]] = set()
    nodes = 0
    for _ in range(reg.config.tree_max_depth + 1):
        if not level:
            break
        found = await reg.meta.manifest_nodes(sorted(set(level) - seen))
        seen |= set(level)
        below: list[tuple[str, str]] = []
        for key in sorted(found):
            node = found[key]
            doc = json.loads(node.content)
            if node.media_type in mt.INDEXES:
                for desc in doc.get("manifests") or []:
                    child = (desc.get("annotations") or {}).get(NESTED_ANNOTATION)
                    below.append((f"{key[0]}/{child}" if child else key[0], desc["digest"]))
                continue
            for layer in doc.get("layers") or []:
                title = (layer.get("annotations") or {}).get(TITLE_ANNOTATION)
                if title is None:
                    continue
                _add(
                    files,
                    title,
                    File(key[0], Digest.parse(layer["digest"]), layer["size"], layer["mediaType"]),
                )
        nodes += len(below)
        if nodes > reg.config.tree_max_nodes:
            raise OCIError(
                ErrorCode.TREE_TOO_LARGE,
                f"the tree of {repository}@{digest} has more than "
                f"{reg.config.tree_max_nodes} nodes (tree_max_nodes)",
            )
        level = below
    else:
        if level:
            raise OCIError(
                ErrorCode.TREE_TOO_LARGE,
                f"the tree of {repository}@{digest} is deeper than "
                f"{reg.config.tree_max_depth} levels (tree_max_depth)",
            )
    return Tree(files, _folders(files), _modified(root.get("annotations") or {}))


def _add(files: dict[str, File], title: str, file: File) -> None:
    if not _valid_title(title):
        raise _Conflict(f"title {title[:200]!r} is not a relative path")
    known = files.get(title)
    if known is not None and known.digest != file.digest:
        raise _Conflict(
            f"title {title[:200]!r} names two files: {known.digest} in {known.repository} "
            f"and {file.digest} in {file.repository}"
        )
    files[title] = file


def _folders(files: dict[str, File]) -> dict[str, set[str]]:
    folders: dict[str, set[str]] = {"": set()}
    for title in files:
        parts = title.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder in files:
                raise _Conflict(f"title {folder[:200]!r} is both a file and a folder")
            folders.setdefault(folder, set())
            folders["/".join(parts[: i - 1])].add(parts[i - 1] + "/")
        folders.setdefault("/".join(parts[:-1]), set()).add(parts[-1])
    return folders


def _split(raw_path: str) -> tuple[str, str, str]:
    """(repository, reference, file path) of a raw request path; each segment decoded on its
    own, so that `%2F` never makes a separator and `..` never climbs."""
    segments = raw_path.split("?", 1)[0][len(PREFIX) :].split("/")
    decoded = [urllib.parse.unquote(s) for s in segments]
    for raw, segment in zip(segments, decoded, strict=True):
        if "/" in segment or "\0" in segment or "\\" in segment:
            raise OCIError(ErrorCode.NAME_INVALID, f"path segment {raw[:200]!r} holds a separator")
    at = next((i for i, s in enumerate(decoded) if "@" in s or ":" in s), None)
    if at is None:
        raise OCIError(
            ErrorCode.NAME_INVALID,
            "expected /_ocinest/files/<repository>@<digest>/<path> or <repository>:<tag>/<path>",
        )
    last, sep, reference = decoded[at].partition("@")
    if not sep:
        last, _, reference = decoded[at].rpartition(":")
    name = "/".join([*decoded[:at], last])
    validate_name(name)
    if Digest.looks_like(reference):
        Digest.parse(reference)
    elif not is_tag(reference):
        raise OCIError(ErrorCode.MANIFEST_UNKNOWN, f"invalid reference {reference[:200]!r}")
    path = decoded[at + 1 :]
    if any(s in (".", "..") for s in path) or any(s == "" for s in path[:-1]):
        raise _not_found("/".join(path))
    return name, reference, "/".join(path)


def _not_found(path: str) -> OCIError:
    return OCIError(ErrorCode.BLOB_UNKNOWN, f"no file {path[:200]!r} in the tree")


async def _authorize(request: web.Request, reg: Registry, name: str) -> None:
    auth = reg.auth
    identity = request[IDENTITY] = await auth.identify_basic(request)
    if not auth.can(identity, name, "pull"):
        raise auth.basic_challenge(auth.deny(identity, request, name, "pull"))


async def serve(request: web.Request) -> web.StreamResponse:
    request[observability.ROUTE] = "files"
    if request.method not in ("GET", "HEAD"):
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
    reg = registry(request)
    name, reference, path = _split(request.raw_path)
    await _authorize(request, reg, name)
    root = await reg.meta.get_manifest(name, reference)
    if root is None:
        raise OCIError(ErrorCode.MANIFEST_UNKNOWN, f"manifest {reference!r} is not in {name}")
    try:
        tree = await request.app[CACHE].get(reg, root.repository, root.digest, root.content)
    except _Conflict as exc:
        raise OCIError(
            ErrorCode.MANIFEST_INVALID,
            f"the tree of {name}@{root.digest} cannot be served as files: {exc}",
            status=409,
        ) from None
    by_digest = Digest.looks_like(reference)
    headers = {"Cache-Control": "public, max-age=31536000, immutable" if by_digest else "no-cache"}
    if tree.modified:
        headers["Last-Modified"] = tree.modified
    folder = path.removesuffix("/")
    if folder in tree.folders and folder not in tree.files:
        if path and not path.endswith("/"):
            raise web.HTTPMovedPermanently(request.path + "/")
        return _listing(request, name, reference, folder, tree, headers)
    file = tree.files.get(path)
    if file is None:
        raise _not_found(path)
    headers |= {
        "ETag": f'"{file.digest}"',
        "Content-Type": file.media_type,
        "Accept-Ranges": "bytes",
    }
    if request.headers.get("If-None-Match") == headers["ETag"]:
        return web.Response(status=304, headers=headers)
    if request.method == "HEAD":
        headers["Content-Length"] = str(file.size)
        return web.Response(status=200, headers=headers)
    return await stream_blob(request, reg, file.digest, file.size, headers)


def _listing(
    request: web.Request,
    name: str,
    reference: str,
    folder: str,
    tree: Tree,
    headers: dict[str, str],
) -> web.Response:
    entries = []
    for entry in sorted(tree.folders[folder]):
        file = tree.files.get(f"{folder}/{entry}" if folder else entry)
        entries.append(
            {
                "name": entry,
                "href": urllib.parse.quote(entry),
                "size": None if file is None else file.size,
            }
        )
    sep = "@" if Digest.looks_like(reference) else ":"
    body = render(
        "listing.html",
        title=f"{name}{sep}{reference}/{folder + '/' if folder else ''}",
        parent=bool(folder),
        entries=entries,
    )
    return web.Response(
        text="" if request.method == "HEAD" else body,
        content_type="text/html",
        charset="utf-8",
        headers=headers,
    )
