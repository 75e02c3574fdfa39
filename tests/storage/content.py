"""Content for the storage suite: blobs through a BlobStore's upload sessions, and manifests
(parsed as the registry parses them) over blobs linked in a MetaStore."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

from ocinest.oci.digest import Digest
from ocinest.oci.manifest import Manifest, parse_manifest
from ocinest.storage.blobs import BlobStore
from ocinest.storage.meta import MetaStore
from tests import manifests
from tests.manifests import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST


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
    assert await meta.link_blob(repository, Digest.of(data), len(data), _publish)
    return manifests.descriptor(data, OCI_LAYER)


def descriptor(manifest: Manifest, child: str | None = None) -> dict[str, Any]:
    """A descriptor of `manifest`; nested, in the child repository `child`, when given."""
    if child is None:
        return manifests.descriptor(manifest.raw, manifest.media_type)
    return manifests.nested(manifest.raw, child, manifest.media_type)


def image_manifest(
    config: dict[str, Any], layers: Iterable[dict[str, Any]], **extra: Any
) -> Manifest:
    body = manifests.image_manifest({**config, "mediaType": OCI_CONFIG}, layers, **extra)
    return parse_manifest(body, OCI_MANIFEST)


def index_manifest(children: Iterable[dict[str, Any]], **extra: Any) -> Manifest:
    return parse_manifest(manifests.index_manifest(*children, **extra), OCI_INDEX)


async def image(meta: MetaStore, repository: str, **extra: Any) -> Manifest:
    """A small image whose config and layer are linked in `repository` (not pushed)."""
    config = await link(meta, repository, manifests.dumps({"n": uuid.uuid4().hex}))
    layer = await link(meta, repository, os.urandom(64))
    return image_manifest(config, [layer], **extra)


async def push_image(
    meta: MetaStore, repository: str, tag: str | None = None, **extra: Any
) -> Manifest:
    manifest = await image(meta, repository, **extra)
    await meta.put_manifest(repository, manifest, [tag] if tag else [])
    return manifest


def blob_digests(manifest: Manifest) -> list[Digest]:
    """The digests of an image's config and layers."""
    return [ref.descriptor.digest for ref in manifest.references]
