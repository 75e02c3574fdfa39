"""Content for the storage suite: blobs through a BlobStore's upload sessions, and manifests
(parsed as the registry parses them) over blobs linked in a MetaStore."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

from ocinest.oci.digest import Digest
from ocinest.oci.manifest import NESTED_ANNOTATION, Manifest, parse_manifest
from ocinest.storage.blobs import BlobStore
from ocinest.storage.meta import MetaStore

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    """A request body arriving in `parts`."""
    for part in parts:
        yield part


async def read_all(blobs: BlobStore, digest: Digest, start: int, end: int) -> bytes:
    return b"".join([chunk async for chunk in blobs.read(digest, start, end)])


async def upload(blobs: BlobStore, data: bytes, algorithm: str = "sha256") -> Digest:
    """A whole upload session as the registry runs it: start, append, verify, publish, and
    abort (which drops the session once the blob is published); returns the digest."""
    upload_id = uuid.uuid4().hex
    digest = Digest.of(data, algorithm)
    await blobs.start_upload(upload_id)
    assert await blobs.append(upload_id, 0, chunks(data)) == len(data)
    assert await blobs.verify(upload_id, digest) == len(data)
    blobs.publish(upload_id, digest)
    await blobs.abort(upload_id)
    return digest


def _publish() -> None:
    """A blob's content as the MetaStore tests see it: already stored."""


async def link(meta: MetaStore, repository: str, data: bytes) -> dict[str, Any]:
    """Link `data` as a blob of `repository`; returns its descriptor."""
    digest = Digest.of(data)
    assert await meta.link_blob(repository, digest, len(data), _publish)
    return {"mediaType": OCI_LAYER, "digest": str(digest), "size": len(data)}


def descriptor(manifest: Manifest, child: str | None = None) -> dict[str, Any]:
    """A descriptor of `manifest`; nested, in the child repository `child`, when given."""
    found: dict[str, Any] = {
        "mediaType": manifest.media_type,
        "digest": str(manifest.digest),
        "size": manifest.size,
    }
    if child is not None:
        found["annotations"] = {NESTED_ANNOTATION: child}
    return found


def image_manifest(
    config: dict[str, Any], layers: Iterable[dict[str, Any]], **extra: Any
) -> Manifest:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {**config, "mediaType": OCI_CONFIG},
        "layers": list(layers),
        **extra,
    }
    return parse_manifest(json.dumps(doc).encode(), OCI_MANIFEST)


def index_manifest(manifests: Iterable[dict[str, Any]], **extra: Any) -> Manifest:
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(manifests), **extra}
    return parse_manifest(json.dumps(doc).encode(), OCI_INDEX)


async def image(meta: MetaStore, repository: str, **extra: Any) -> Manifest:
    """A small image whose config and layer are linked in `repository` (not pushed)."""
    config = await link(meta, repository, json.dumps({"n": uuid.uuid4().hex}).encode())
    layer = await link(meta, repository, os.urandom(64))
    return image_manifest(config, [layer], **extra)


async def push_image(
    meta: MetaStore, repository: str, tag: str | None = None, **extra: Any
) -> Manifest:
    manifest = await image(meta, repository, **extra)
    await meta.put_manifest(repository, manifest, tag)
    return manifest


def blob_digests(manifest: Manifest) -> list[Digest]:
    """The digests of an image's config and layers."""
    return [ref.descriptor.digest for ref in manifest.references]
