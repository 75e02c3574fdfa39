"""The nested extension's wire contract, shared by the registry and the client: annotation
keys, the discovery header, the tree endpoint's path and answer, the referrers tag scheme, and
pure builders for the manifests a client writes (parent index, artifact, fallback referrers
index). No I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypedDict

from ocinest.oci import mediatypes as mt
from ocinest.oci.digest import Digest

# Annotation keys
NESTED_ANNOTATION = "dev.ocinest.repository"  # on a nested descriptor: the child path
SUBJECT_ANNOTATION = "dev.ocinest.subject"  # on a layout's index.json entry: a referrer's subject
TITLE_ANNOTATION = "org.opencontainers.image.title"

# Discovery: `GET /v2/` answers with this header where the extension is on.
NESTED_HEADER = "Ocinest-Nested"
NESTED_HEADER_VALUE = "1"
DISCOVERY_HEADERS: Mapping[str, str] = {NESTED_HEADER: NESTED_HEADER_VALUE}

# The tree endpoint: `GET /v2/<name>/_ocinest/tree/<reference>`.
TREE_SEGMENT = "_ocinest/tree"
TREE_ROUTE = rf"^/v2/(?P<name>.+)/{TREE_SEGMENT}/(?P<reference>[^/]+)\Z"
# Its options (`?manifests=1`, `?tags=1`), each also the key of what it adds to the answer:
# at the root, every distinct manifest's bytes by digest, as JSON strings; on each node whose
# repository the caller may pull, that repository's tags pointing at the node's digest.
TREE_MANIFESTS: Final = "manifests"
TREE_TAGS: Final = "tags"

ORAS_DEFAULT_ARTIFACT_TYPE = "application/vnd.unknown.artifact.v1"
# A parent index over children of different applications: a set, not one image.
SET_ARTIFACT_TYPE = "application/vnd.dev.ocinest.set.v1+json"
EMPTY_JSON = b"{}"


def tree_path(name: str, reference: str) -> str:
    """The path of the tree endpoint for `name` at `reference`."""
    return f"/v2/{name}/{TREE_SEGMENT}/{reference}"


class TreeNode(TypedDict, total=False):
    """One node of the tree endpoint's answer."""

    repository: str
    digest: str
    mediaType: str
    size: int
    artifactType: str | None
    platform: dict[str, Any] | None
    annotations: dict[str, str]
    referrers: int
    truncated: bool
    missing: bool
    tags: list[str]  # with ?tags=1
    manifests: dict[str, str]  # with ?manifests=1, at the root only
    children: list[TreeNode]


def parse_tree_node(raw: object) -> TreeNode:
    """A tree endpoint answer, checked for the fields every node has."""
    if not isinstance(raw, dict):
        raise ValueError("a tree node must be a JSON object")
    for key, kind in (("repository", str), ("digest", str)):
        if not isinstance(raw.get(key), kind):
            raise ValueError(f"a tree node has no {key}")
    children = raw.get("children") or []
    if not isinstance(children, list):
        raise ValueError("a tree node's children must be a list")
    node: TreeNode = {k: v for k, v in raw.items() if k != "children"}  # type: ignore[assignment]
    node["children"] = [parse_tree_node(c) for c in children]
    return node


def fallback_tag(digest: Digest) -> str:
    """The referrers tag scheme's tag for `digest` (`sha256-<hex>`)."""
    return f"{digest.algorithm}-{digest.encoded}"[:128]


def descriptor(
    media_type: str,
    digest: Digest,
    size: int,
    *,
    artifact_type: str | None = None,
    platform: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A descriptor in the field order the client writes."""
    desc: dict[str, Any] = {"mediaType": media_type}
    if artifact_type:
        desc["artifactType"] = artifact_type
    desc["digest"] = str(digest)
    desc["size"] = size
    if platform:
        desc["platform"] = dict(platform)
    if annotations:
        desc["annotations"] = dict(annotations)
    return desc


def nested_descriptor(
    media_type: str,
    digest: Digest,
    size: int,
    child_path: str | None,
    *,
    artifact_type: str | None = None,
    platform: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A descriptor of a parent index: nested (annotated) when it has a child path."""
    return descriptor(
        media_type,
        digest,
        size,
        artifact_type=artifact_type,
        platform=platform,
        annotations={NESTED_ANNOTATION: child_path} if child_path else None,
    )


def _document(doc: dict[str, Any], annotations: Mapping[str, str] | None) -> bytes:
    if annotations:
        doc["annotations"] = dict(sorted(annotations.items()))
    return json.dumps(doc, indent=2).encode() + b"\n"


def parent_index(
    descriptors: Sequence[Mapping[str, Any]],
    *,
    platforms: bool = False,
    artifact_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> bytes:
    """The parent index over `descriptors`, in order. Deterministic bytes.

    A set by default: the index carries `artifact_type` (SET_ARTIFACT_TYPE unless another is
    named) and its descriptors no `platform`, so that no runtime takes it for one
    multi-platform image and pulls a member by platform. With `platforms`, one multi-platform
    image: every descriptor has its platform, and the index no artifactType."""
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX}
    if platforms:
        if artifact_type:
            raise ValueError("a multi-platform image has no artifactType")
        if not all(d.get("platform") for d in descriptors):
            raise ValueError("every descriptor of a multi-platform image needs a platform")
        manifests = [dict(d) for d in descriptors]
    else:
        doc["artifactType"] = artifact_type or SET_ARTIFACT_TYPE
        manifests = [{k: v for k, v in d.items() if k != "platform"} for d in descriptors]
    doc["manifests"] = manifests
    return _document(doc, annotations)


def empty_config() -> dict[str, Any]:
    """The descriptor of the empty JSON config (`{}`)."""
    return descriptor(mt.OCI_EMPTY, Digest.of(EMPTY_JSON), len(EMPTY_JSON))


def artifact_manifest(
    layers: Sequence[Mapping[str, Any]],
    *,
    artifact_type: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> bytes:
    """An artifact (ORAS style): an image manifest with the empty config and `layers`."""
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": artifact_type or ORAS_DEFAULT_ARTIFACT_TYPE,
        "config": empty_config(),
        "layers": [dict(layer) for layer in layers],
    }
    return _document(doc, annotations)


def fallback_referrers_index(existing: bytes | None, referrer: Mapping[str, Any]) -> bytes | None:
    """The referrers tag scheme's index with `referrer` added to `existing` (None: a new
    index); None when it is listed already."""
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
    if existing is not None:
        loaded = json.loads(existing)
        if isinstance(loaded, dict):
            doc = loaded
    entries = [e for e in doc.get("manifests") or [] if isinstance(e, dict)]
    if any(e.get("digest") == referrer.get("digest") for e in entries):
        return None
    doc["manifests"] = [*entries, dict(referrer)]
    return json.dumps(doc, separators=(",", ":")).encode()


# RPM repositories (`ocinest rpm`): the parent index, each package's artifact (one layer of
# RPM_MEDIA_TYPE, the type Konflux's RPM pipelines use) and the repodata artifact.
RPM_REPOSITORY_ARTIFACT_TYPE = "application/vnd.dev.ocinest.rpm.repository.v1"
RPM_PACKAGE_ARTIFACT_TYPE = "application/vnd.dev.ocinest.rpm.package.v1"
RPM_REPODATA_ARTIFACT_TYPE = "application/vnd.dev.ocinest.rpm.repodata.v1"
RPM_MEDIA_TYPE = "application/x-rpm"
RPM_REPODATA_PATH = "repodata"  # the child path of the repodata, and its titles' folder
