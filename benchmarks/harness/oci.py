"""OCI media types and the manifests the benchmarks push (no I/O: loadgen.py and seed_gc.py
use these too)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
NESTED_ANNOTATION = "dev.ocinest.repository"
# What a stock client (skopeo, containerd) accepts on a manifest GET.
ACCEPT_MANIFESTS = ", ".join(
    [
        OCI_MANIFEST,
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)

Descriptor = tuple[str, int]  # digest, size


def sha256(data: Any) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_manifest(config: Descriptor, *layers: Descriptor, **annotations: str) -> bytes:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config[0], "size": config[1]},
        "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": s} for d, s in layers],
    }
    if annotations:
        doc["annotations"] = annotations
    return json.dumps(doc).encode()


def image_index(manifests: list[dict[str, Any]], **annotations: str) -> bytes:
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    if annotations:
        doc["annotations"] = annotations
    return json.dumps(doc).encode()
