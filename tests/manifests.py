"""The OCI documents every test suite builds, without I/O: media types, digests, descriptors,
image manifests and indexes (compact JSON, as most clients write it).

Pushing them over HTTP is tests/conftest.py's part; the storage suite parses them
(tests/storage/content.py)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from ocinest.oci.nested import NESTED_ANNOTATION as NESTED_ANNOTATION  # re-exported

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

# The empty JSON object, as the config (or layer) of an artifact with nothing else to say.
EMPTY_JSON = b"{}"
EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

Descriptor = dict[str, Any]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


ALGORITHMS = ["sha256", "sha512"]  # the digest algorithms the 2026 tests run under


def digest_of(data: bytes, algorithm: str) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def descriptor(data: bytes, media_type: str = OCI_MANIFEST, **extra: Any) -> Descriptor:
    """The descriptor of `data` (a manifest's bytes unless `media_type` says otherwise)."""
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


def nested(body: bytes, child: str, media_type: str = OCI_MANIFEST, **extra: Any) -> Descriptor:
    """The descriptor of a nested child: the manifest `body`, in the child repository `child`."""
    return descriptor(body, media_type, annotations={NESTED_ANNOTATION: child}, **extra)


def platforms(children: Iterable[bytes], media_type: str = OCI_MANIFEST) -> list[Descriptor]:
    """Descriptors of `children`, each with a platform of its own (arch0, arch1... on linux)."""
    return [
        descriptor(child, media_type, platform={"architecture": f"arch{i}", "os": "linux"})
        for i, child in enumerate(children)
    ]


def image_manifest(config: Descriptor, layers: Iterable[Descriptor], **extra: Any) -> bytes:
    """An OCI image manifest; `config` is given the config media type unless it has one."""
    return dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, **config},
            "layers": list(layers),
            **extra,
        }
    )


def index_manifest(*manifests: Descriptor, **extra: Any) -> bytes:
    return dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(manifests), **extra}
    )
