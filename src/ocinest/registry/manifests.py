"""Manifest routes (GET/HEAD/PUT/DELETE by tag or digest) and the referrers API."""

from __future__ import annotations

import functools
import json

from aiohttp import web
from multidict import CIMultiDict

from ocinest.oci import mediatypes as mt
from ocinest.oci.digest import CANONICAL, Digest, check_algorithm
from ocinest.oci.errors import ErrorCode, ErrorDetail, OCIError
from ocinest.oci.manifest import MAX_MANIFEST_SIZE, check_child_paths, parse_manifest
from ocinest.oci.names import is_tag
from ocinest.registry.state import access, registry
from ocinest.storage.meta import StoredManifest


def _unknown(name: str, reference: str) -> OCIError:
    return OCIError(ErrorCode.MANIFEST_UNKNOWN, f"manifest {reference[:200]!r} is not in {name}")


def _immutable(name: str, tag: str, reason: str) -> OCIError:
    """A refused push or delete of an immutable tag: 409 DENIED, the reason in `message`
    (which stock clients print; they leave out the detail)."""
    text = f"tag {name}:{tag} is immutable: {reason}"
    return OCIError.many([ErrorDetail(ErrorCode.DENIED, text, text)], status=409)


def _acceptable(request: web.Request, media_type: str) -> bool:
    """Whether the client's Accept headers admit `media_type` (no Accept admits all)."""
    accepted = _accepted(tuple(request.headers.getall("Accept", ())))
    return not accepted or not accepted.isdisjoint((media_type, "*/*", "application/*"))


@functools.lru_cache(maxsize=256)  # clients send the same few headers again and again
def _accepted(headers: tuple[str, ...]) -> frozenset[str]:
    """The media types that Accept headers name."""
    named = {mt.bare(item) for header in headers for item in header.split(",")}
    named.discard("")
    return frozenset(named)


async def get_manifest(request: web.Request, name: str, reference: str) -> web.Response:
    if Digest.looks_like(reference):
        Digest.parse(reference)
    elif not is_tag(reference):
        raise _unknown(name, reference)
    stored = await registry(request).meta.get_manifest(name, reference)
    if stored is None:
        raise _unknown(name, reference)
    if not _acceptable(request, stored.media_type):
        raise OCIError(
            ErrorCode.MANIFEST_UNKNOWN,
            f"manifest {reference} is a {stored.media_type}, which the Accept header excludes",
        )
    return _manifest_response(request, stored)


def _manifest_response(request: web.Request, stored: StoredManifest) -> web.Response:
    headers = {
        "Content-Type": stored.media_type,
        "Docker-Content-Digest": stored.digest,
        "ETag": f'"{stored.digest}"',
    }
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(stored.content))
        return web.Response(status=200, headers=headers)
    return web.Response(status=200, body=stored.content, headers=headers)


async def _read_manifest_body(request: web.Request) -> bytes:
    too_big = OCIError(
        ErrorCode.SIZE_INVALID,
        f"manifest exceeds the limit of {MAX_MANIFEST_SIZE} bytes",
        status=413,
    )
    if request.content_length is not None and request.content_length > MAX_MANIFEST_SIZE:
        raise too_big
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > MAX_MANIFEST_SIZE:
            raise too_big
    return bytes(body)


def _invalid_tag(tag: str) -> OCIError:
    return OCIError(
        ErrorCode.MANIFEST_INVALID,
        f"invalid tag {tag[:200]!r}: tags match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}",
    )


def _push_target(request: web.Request, reference: str) -> tuple[list[str], Digest | str]:
    """The tags a push points at the manifest, and the digest it names or the algorithm
    it asks for. A push by digest may carry tags as `tag` parameters (each answered with an
    `OCI-Tag` header); a push by tag may ask for a `digest-algorithm`."""
    query = request.query
    algorithm = query.get("digest-algorithm")
    tags = list(dict.fromkeys(query.getall("tag", [])))  # in order, each once
    for tag in tags:
        if not is_tag(tag):
            raise _invalid_tag(tag)
    if Digest.looks_like(reference):
        requested = Digest.parse(reference)
        if algorithm is not None and algorithm != requested.algorithm:
            raise OCIError(
                ErrorCode.DIGEST_INVALID,
                f"digest-algorithm {algorithm[:100]!r} differs from the digest {requested}",
            )
        return tags, requested
    if not is_tag(reference):
        raise _invalid_tag(reference)
    if tags:
        raise OCIError(
            ErrorCode.MANIFEST_INVALID,
            f"tag parameters are for a push by digest; this push is by the tag {reference!r}",
        )
    return [reference], check_algorithm(CANONICAL if algorithm is None else algorithm)


async def put_manifest(request: web.Request, name: str, reference: str) -> web.Response:
    reg = registry(request)
    tags, requested = _push_target(request, reference)
    manifest = parse_manifest(
        await _read_manifest_body(request), request.headers.get("Content-Type"), requested
    )
    if isinstance(requested, Digest) and manifest.digest != requested:
        raise OCIError(
            ErrorCode.DIGEST_INVALID,
            f"manifest has digest {manifest.digest}, not {requested}",
        )
    problems = check_child_paths(name, manifest)
    if problems:
        raise OCIError.many([p.errors[0] for p in problems])
    # No probing: referencing a child needs an explicit pull grant on it, checked before
    # anything is looked up, so the answer is the same whether the child exists or not.
    can = access(request).can
    denied = [
        ErrorDetail(
            ErrorCode.DENIED,
            f"referencing {child} from an index needs pull access to it",
        )
        for child in sorted({f"{name}/{r.child}" for r in manifest.references if r.child})
        if not can(child, "pull")
    ]
    if denied:
        raise OCIError.many(denied)
    pinned = {tag for tag in tags if reg.config.immutable_tags(name, tag)}

    def on_move(tag: str, current: str) -> None:
        if tag in pinned:
            raise _immutable(name, tag, f"it points at {current}; push under a new tag")

    await reg.meta.put_manifest(
        name,
        manifest,
        tags,
        on_move if pinned else None,
        sparse=reg.config.allow_sparse,
        max_reach=reg.config.tree_max_reach,
    )
    headers = CIMultiDict(
        {
            "Location": f"/v2/{name}/manifests/{manifest.digest}",
            "Docker-Content-Digest": str(manifest.digest),
        }
    )
    if manifest.subject is not None:
        headers["OCI-Subject"] = str(manifest.subject.digest)
    if isinstance(requested, Digest):  # the tag parameters, each confirmed
        for tag in tags:
            headers.add("OCI-Tag", tag)
    return web.Response(status=201, headers=headers)


async def delete_manifest(request: web.Request, name: str, reference: str) -> web.Response:
    reg = registry(request)
    meta, immutable = reg.meta, reg.config.immutable_tags
    if Digest.looks_like(reference):

        def on_untag(tag: str) -> None:
            if immutable(name, tag):
                raise _immutable(name, tag, f"it points at {reference}, which cannot be deleted")

        await meta.delete_manifest(name, Digest.parse(reference), on_untag)
    elif is_tag(reference):
        if immutable(name, reference):
            if await meta.get_manifest(name, reference) is None:
                raise _unknown(name, reference)
            raise _immutable(name, reference, "it cannot be deleted")
        await meta.delete_tag(name, reference)
    else:
        raise _unknown(name, reference)
    return web.Response(status=202)


async def get_referrers(request: web.Request, name: str, digest: str) -> web.Response:
    subject = Digest.parse(digest)
    artifact_type = request.query.get("artifactType") or None
    referrers = await registry(request).meta.list_referrers(name, subject, artifact_type)
    manifests = []
    for r in referrers:
        entry: dict[str, object] = {"mediaType": r.media_type, "digest": r.digest, "size": r.size}
        if r.artifact_type:
            entry["artifactType"] = r.artifact_type
        if r.annotations:
            entry["annotations"] = r.annotations
        manifests.append(entry)
    body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
    headers = {"Content-Type": mt.OCI_INDEX}
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    return web.Response(status=200, body=json.dumps(body).encode(), headers=headers)
