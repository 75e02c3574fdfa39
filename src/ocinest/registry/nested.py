"""The nested extension's tree endpoint: `GET /v2/<name>/_ocinest/tree/<reference>`.

The whole resolved tree in one request, answered from the metadata store with one query per
level of the tree.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ocinest.oci import mediatypes as mt
from ocinest.oci.digest import Digest
from ocinest.oci.errors import ErrorCode, OCIError
from ocinest.oci.manifest import NESTED_ANNOTATION
from ocinest.oci.names import is_tag
from ocinest.oci.nested import DISCOVERY_HEADERS
from ocinest.registry.listing import count_param
from ocinest.registry.state import registry

NESTED_HEADER = DISCOVERY_HEADERS

Node = dict[str, Any]


def _children(node: Node, doc: dict[str, Any]) -> list[Node]:
    children = []
    for desc in doc.get("manifests", []):
        annotations = desc.get("annotations") or {}
        child_path = annotations.get(NESTED_ANNOTATION)
        repository = (
            node["repository"] if child_path is None else f"{node['repository']}/{child_path}"
        )
        children.append(
            {
                "repository": repository,
                "digest": desc["digest"],
                "mediaType": desc["mediaType"],
                "size": desc["size"],
                "artifactType": desc.get("artifactType"),
                "platform": desc.get("platform"),
            }
        )
    return children


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
    etag = f'"{root_manifest.digest}"'
    headers = {"ETag": etag, **NESTED_HEADER}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)

    depth_limit = count_param(request, "depth", config.tree_max_depth)
    explicit_depth = "depth" in request.query
    root: Node = {
        "repository": root_manifest.repository,
        "digest": root_manifest.digest,
        "platform": None,
        "artifactType": None,
    }
    level = [root]
    count = 1
    depth = 0
    while level:
        found = await reg.meta.manifest_nodes(list({(n["repository"], n["digest"]) for n in level}))
        below: list[Node] = []
        for node in level:
            info = found[(node["repository"], node["digest"])]
            doc = json.loads(info.content)
            node.update(
                mediaType=info.media_type,
                size=info.size,
                # The descriptor's, else the manifest's own field (no config fallback).
                artifactType=node["artifactType"] or doc.get("artifactType"),
                annotations=doc.get("annotations") or {},
                referrers=info.referrers,
                children=[],
            )
            if info.media_type not in mt.INDEXES:
                continue
            children = _children(node, doc)
            if children and depth == depth_limit:
                if not explicit_depth:
                    raise OCIError(
                        ErrorCode.TREE_TOO_LARGE,
                        f"the tree of {name}:{reference} is deeper than {depth_limit} levels "
                        "(tree_max_depth); ask for less with ?depth=N",
                    )
                node["truncated"] = True
                continue
            node["children"] = children
            below.extend(children)
        count += len(below)
        if count > config.tree_max_nodes:
            raise OCIError(
                ErrorCode.TREE_TOO_LARGE,
                f"the tree of {name}:{reference} has more than {config.tree_max_nodes} nodes "
                "(tree_max_nodes)",
            )
        level = below
        depth += 1
    return web.json_response(root, headers=headers)
