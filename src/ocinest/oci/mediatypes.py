"""Media types the registry knows."""

from __future__ import annotations

import json
import re

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

IMAGE_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFESTS = IMAGE_MANIFESTS | INDEXES

# RFC 6838 type/subtype, as the image spec's descriptor.md restricts mediaType.
_MEDIA_TYPE_RE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\Z"
)


def is_media_type(value: object) -> bool:
    return isinstance(value, str) and bool(_MEDIA_TYPE_RE.match(value))


def bare(content_type: str) -> str:
    """The media type of a Content-Type header, without parameters."""
    return content_type.split(";", 1)[0].strip().lower()


OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
IMAGE_CONFIGS = frozenset({OCI_CONFIG, DOCKER_CONFIG})


def sniff(body: bytes, content_type: str = "") -> str | None:
    """A manifest's media type: the Content-Type when it names one, else the document's
    `mediaType`, else index or image manifest by its fields; None when it is not JSON."""
    media_type = bare(content_type) if content_type else ""
    if media_type in MANIFESTS:
        return media_type
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared in MANIFESTS:
        return declared
    return OCI_INDEX if "manifests" in doc else OCI_MANIFEST
