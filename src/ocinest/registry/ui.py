"""The web UI: read-only pages under `/ui/`, rendered on the server (they read without
JavaScript), every asset in the package.

* `/ui/`: the repositories the caller can pull, nested ones under their parents; a filter
  (substring) and paging (`last`, `n`).
* `/ui/<name>`: a repository's tags (digest, media type, artifact type, size), paged, and the
  repositories nested below it.
* `/ui/<name>/-/manifest/<reference>`: a manifest or index: descriptors, annotations, config,
  layers, referrers, and pull commands.
* `/ui/<name>/-/tree/<reference>`: the nested tree from the tree endpoint, collapsible.

(`-` cannot be a component of a repository name, so `/-/` ends one.) Every page is
authorized as the API request that reads the same content (`authorize`), with the caller
identified by Basic credentials (the browser's own prompt) in token mode too; a page shows
nothing that the API would refuse. Errors are HTML pages here, and OCI JSON everywhere else.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from ocinest.oci import mediatypes as mt
from ocinest.oci.digest import Digest, DigestError
from ocinest.oci.errors import ErrorCode, OCIError
from ocinest.oci.names import is_tag, validate_name
from ocinest.oci.nested import NESTED_ANNOTATION, TITLE_ANNOTATION, TreeNode
from ocinest.registry import nested, observability
from ocinest.registry.auth import IDENTITY
from ocinest.registry.authorize import LOGIN, PULL, authorize
from ocinest.registry.errors import storage_error
from ocinest.registry.listing import count_param, visible_repositories
from ocinest.registry.pages import render
from ocinest.registry.state import registry
from ocinest.storage.errors import StorageError

PREFIX = "/ui/"
# Entries on a page unless `n` asks for another number, and the most it may ask for.
PAGE = 100
MAX_PAGE = 1000
# Repositories a filtered catalog reads from the store at a time.
FILTER_BATCH = 1000
# The manifest page shows a manifest's JSON up to this many characters.
MAX_SHOWN_JSON = 64 << 10

_TYPE_NAMES = {
    mt.OCI_MANIFEST: "OCI image",
    mt.OCI_INDEX: "OCI index",
    mt.DOCKER_MANIFEST: "Docker image",
    mt.DOCKER_MANIFEST_LIST: "Docker list",
}

Page = Callable[..., Awaitable[web.StreamResponse]]


def href(name: str, *rest: str) -> str:
    """The page of repository `name` (and below it, `-/<rest>...`)."""
    path = PREFIX + urllib.parse.quote(name)
    return path + "/-/" + "/".join(urllib.parse.quote(r, safe=":") for r in rest) if rest else path


def _query(**params: object) -> str:
    return "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v not in (None, "")})


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def type_name(media_type: str, artifact_type: str | None = None) -> str:
    return artifact_type or _TYPE_NAMES.get(media_type, media_type)


def platform_name(platform: object) -> str:
    if not isinstance(platform, dict):
        return ""
    parts = [platform.get("os"), platform.get("architecture"), platform.get("variant")]
    return "/".join(str(p) for p in parts if p)


def _content_size(doc: dict[str, Any], size: int) -> int:
    """A manifest's bytes and those its descriptors give (config and layers, or children)."""
    descriptors = [doc.get("config") or {}, *(doc.get("layers") or [])]
    descriptors += doc.get("manifests") or []
    return size + sum(int(d.get("size", 0)) for d in descriptors if isinstance(d, dict))


def _page_size(request: web.Request) -> int:
    if not request.query.get("n"):
        return PAGE
    return count_param(request, "n", MAX_PAGE) or PAGE


def _render(request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
    nonce = secrets.token_urlsafe(16)
    body = render(
        template,
        nonce=nonce,
        user=request.get(IDENTITY) and request[IDENTITY].user,
        href=href,
        human_size=human_size,
        type_name=type_name,
        platform_name=platform_name,
        **values,
    )
    headers = {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
            "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-cache",
    }
    return web.Response(
        text="" if request.method == "HEAD" else body,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers=headers,
    )


# The catalog


@dataclass
class _Entry:
    name: str
    label: str  # the name below its parent on the page
    children: list[_Entry] = field(default_factory=list)


def nest(names: Iterable[str]) -> list[_Entry]:
    """Each repository under the nearest of its ancestors that is in `names`."""
    entries: dict[str, _Entry] = {}
    roots: list[_Entry] = []
    for name in sorted(names):
        parts = name.split("/")
        parent = next(
            (
                entries[ancestor]
                for i in range(len(parts) - 1, 0, -1)
                if (ancestor := "/".join(parts[:i])) in entries
            ),
            None,
        )
        entry = _Entry(name, name if parent is None else name[len(parent.name) + 1 :])
        (roots if parent is None else parent.children).append(entry)
        entries[name] = entry
    return roots


async def catalog_page(request: web.Request) -> web.Response:
    await authorize(request, "catalog", LOGIN, {})
    limit = _page_size(request)
    wanted = request.query.get("q", "").strip()
    last = request.query.get("last") or None
    names = await visible_repositories(
        request,
        limit,
        last,
        (lambda name: wanted in name) if wanted else None,
        batch=FILTER_BATCH if wanted else 0,
    )
    more = names[limit:]
    names = names[:limit]
    following = _query(q=wanted, last=names[-1], n=request.query.get("n")) if more else None
    return _render(
        request,
        "catalog.html",
        title="Repositories",
        filter=wanted,
        entries=nest(names),
        count=len(names),
        following=following,
        first=_query(q=wanted, n=request.query.get("n")) if last else None,
    )


# A repository


async def repository_page(request: web.Request, name: str) -> web.Response:
    await authorize(request, "tags", PULL, {"name": name})
    reg = registry(request)
    limit = _page_size(request)
    last = request.query.get("last") or None
    tags = await reg.meta.list_tags_pushed(name, limit + 1, last)
    if tags is None:
        raise OCIError(ErrorCode.NAME_UNKNOWN, f"repository {name} is not known")
    rows = []
    for tag, pushed in tags[:limit]:
        manifest = await reg.meta.get_manifest(name, tag)
        if manifest is None:  # untagged since it was listed
            continue
        doc = json.loads(manifest.content)
        rows.append(
            {
                "tag": tag,
                "digest": manifest.digest,
                "media_type": manifest.media_type,
                "artifact_type": doc.get("artifactType"),
                "size": _content_size(doc, len(manifest.content)),
                "index": manifest.media_type in mt.INDEXES,
                "pushed": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(pushed)),
            }
        )
    prefix = name + "/"
    below = await visible_repositories(request, PAGE, prefix, prefix=prefix)
    n = request.query.get("n")
    return _render(
        request,
        "repository.html",
        title=name,
        name=name,
        rows=rows,
        following=_query(last=tags[limit - 1][0], n=n) if len(tags) > limit else None,
        first=_query(n=n) if last else None,
        below=nest(r[len(prefix) :] for r in below[:PAGE]),
        below_more=_query(q=prefix) if len(below) > PAGE else None,
    )


# A manifest


def _check_reference(reference: str) -> None:
    if Digest.looks_like(reference):
        Digest.parse(reference)
    elif not is_tag(reference):
        raise OCIError(ErrorCode.MANIFEST_UNKNOWN, f"invalid reference {reference[:200]!r}")


def _descriptors(name: str, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """An index's descriptors as the page lists them, each with the page of its target."""
    shown = []
    for desc in doc.get("manifests") or []:
        annotations = desc.get("annotations") or {}
        child = annotations.get(NESTED_ANNOTATION)
        repository = f"{name}/{child}" if child else name
        shown.append({**desc, "repository": repository, "child": child})
    return shown


def pull_commands(request: web.Request, name: str, digest: str, index: bool) -> list[str]:
    ref = f"{request.host}/{name}@{digest}"
    plain = request.scheme == "http"
    tls = " --tls-verify=false" if plain else ""
    folder = name.rsplit("/", 1)[-1]
    return [
        f"podman pull{tls} {ref}",
        f"skopeo copy{' --all' if index else ''}{' --src-tls-verify=false' if plain else ''}"
        f" docker://{ref} oci:{folder}",
        f"ocinest pull {ref} -o {folder}{' --referrers' if index else ''}",
    ]


async def manifest_page(request: web.Request, name: str, reference: str) -> web.Response:
    _check_reference(reference)
    await authorize(request, "manifest", PULL, {"name": name, "reference": reference})
    reg = registry(request)
    manifest = await reg.meta.get_manifest(name, reference)
    if manifest is None:
        raise OCIError(ErrorCode.MANIFEST_UNKNOWN, f"manifest {reference!r} is not in {name}")
    doc = json.loads(manifest.content)
    index = manifest.media_type in mt.INDEXES
    referrers = await reg.meta.list_referrers(name, Digest.parse(manifest.digest), None)
    text = json.dumps(doc, indent=2)
    return _render(
        request,
        "manifest.html",
        title=f"{name}@{manifest.digest}",
        name=name,
        reference=reference,
        manifest=manifest,
        size=len(manifest.content),
        total=_content_size(doc, len(manifest.content)),
        index=index,
        doc=doc,
        config=doc.get("config"),
        layers=doc.get("layers") or [],
        descriptors=_descriptors(name, doc),
        subject=doc.get("subject"),
        annotations=doc.get("annotations") or {},
        referrers=referrers,
        commands=pull_commands(request, name, manifest.digest, index),
        json_text=text[:MAX_SHOWN_JSON],
        json_cut=len(text) > MAX_SHOWN_JSON,
        title_key=TITLE_ANNOTATION,
        nested_key=NESTED_ANNOTATION,
        can_list=reg.auth.can(request[IDENTITY], manifest.repository, PULL),
    )


# A nested tree


@dataclass
class TreeView:
    """What the tree page draws beside the tree endpoint's nodes: each node's size with its
    config and layers, the total of the distinct content, and where links may go."""

    sizes: dict[tuple[str, str], int]
    total: int
    nodes: int
    listable: set[str]


async def _tree_view(request: web.Request, root: TreeNode) -> TreeView:
    reg = registry(request)
    nodes: list[TreeNode] = []
    level = [root]
    while level:
        nodes += level
        level = [child for node in level for child in node["children"]]
    images = sorted(
        {
            (n["repository"], n["digest"])
            for n in nodes
            if n["mediaType"] in mt.IMAGE_MANIFESTS and not n.get("missing")
        }
    )
    found = await reg.meta.manifest_nodes(images)
    sizes: dict[tuple[str, str], int] = {}
    blobs: dict[str, int] = {}
    manifests: dict[str, int] = {}
    for node in nodes:
        key = (node["repository"], node["digest"])
        manifests[node["digest"]] = node["size"]
        sizes[key] = node["size"]
        info = found.get(key)
        if info is None:
            continue
        doc = json.loads(info.content)
        for desc in [doc.get("config") or {}, *(doc.get("layers") or [])]:
            if isinstance(desc, dict) and "digest" in desc:
                blobs[desc["digest"]] = desc.get("size", 0)
                sizes[key] += desc.get("size", 0)
    identity = request[IDENTITY]
    listable = {n["repository"] for n in nodes if reg.auth.can(identity, n["repository"], PULL)}
    return TreeView(sizes, sum(manifests.values()) + sum(blobs.values()), len(nodes), listable)


async def tree_page(request: web.Request, name: str, reference: str) -> web.Response:
    await authorize(request, "tree", PULL, {"name": name})
    if "If-None-Match" in request.headers:  # for the tree endpoint's ETag, not this page's
        headers = CIMultiDict(request.headers)
        del headers["If-None-Match"]
        request = request.clone(headers=headers)
    answer = await nested.get_tree(request, name, reference)
    assert answer.body is not None and isinstance(answer.body, bytes)
    root: TreeNode = json.loads(answer.body)
    view = await _tree_view(request, root)
    return _render(
        request,
        "tree.html",
        title=f"tree of {name}:{reference}" if is_tag(reference) else f"tree of {name}@{reference}",
        name=name,
        reference=reference,
        root=root,
        view=view,
    )


# Dispatch

_ROUTES: list[tuple[str, str, Page]] = [
    ("ui-catalog", r"^/ui/\Z", catalog_page),
    ("ui-tree", r"^/ui/(?P<name>.+)/-/tree/(?P<reference>[^/]+)\Z", tree_page),
    ("ui-manifest", r"^/ui/(?P<name>.+)/-/manifest/(?P<reference>[^/]+)\Z", manifest_page),
    ("ui-repository", r"^/ui/(?P<name>[^/].*?)/?\Z", repository_page),
]
_PAGES = [(route, re.compile(pattern, re.DOTALL), page) for route, pattern, page in _ROUTES]


def error_page(request: web.Request, err: OCIError) -> web.Response:
    response = _render(
        request,
        "error.html",
        status=err.status,
        title=f"{err.status} {err.code.name}",
        errors=[e.to_json() for e in err.errors],
    )
    response.headers.update(err.headers)
    return response


async def serve(request: web.Request) -> web.StreamResponse:
    request[observability.ROUTE] = "ui"
    reg = registry(request)
    try:
        if request.method not in ("GET", "HEAD"):
            raise OCIError(
                ErrorCode.UNSUPPORTED,
                f"{request.method} is not supported here; the pages are read-only",
                status=405,
                headers={"Allow": "GET, HEAD"},
            )
        path = urllib.parse.unquote(request.raw_path.split("?", 1)[0])
        for route, pattern, page in _PAGES:
            m = pattern.match(path)
            if m is None:
                continue
            request[observability.ROUTE] = route
            params = m.groupdict()
            if "name" in params:
                validate_name(params["name"])
            request[IDENTITY] = await reg.auth.identify_basic(request)
            return await page(request, **params)
        raise OCIError(ErrorCode.NAME_UNKNOWN, f"no such page: {path[:200]}", status=404)
    except OCIError as err:
        identity = request.get(IDENTITY)
        if err.status == 401 and identity is not None and identity.user is not None:
            # Signed in, but not allowed: the browser must not ask for a password again.
            denied = err.errors[0].detail
            return error_page(request, OCIError(ErrorCode.DENIED, denied, status=403))
        return error_page(request, reg.auth.basic_challenge(err))
    except StorageError as err:
        return error_page(request, storage_error(err))
    except DigestError as err:
        return error_page(request, OCIError(ErrorCode.DIGEST_INVALID, str(err)))


async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound(PREFIX)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", home)
    app.router.add_get("/ui", home)
    app.router.add_route("*", PREFIX + "{tail:(?s:.*)}", serve)
