"""Parsing and validating manifests: OCI image manifest and index, Docker schema2 and list."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from ocinest.oci import mediatypes as mt
from ocinest.oci.digest import CANONICAL, Digest, DigestError, check_algorithm
from ocinest.oci.errors import ErrorCode, OCIError
from ocinest.oci.names import child_path_problem
from ocinest.oci.nested import NESTED_ANNOTATION as NESTED_ANNOTATION  # re-exported

MAX_MANIFEST_SIZE = 4 * 1024 * 1024


def _invalid(detail: str) -> OCIError:
    return OCIError(ErrorCode.MANIFEST_INVALID, detail)


class _NotJSON(ValueError):
    """Input Python's json module takes but RFC 8259 does not."""


def _no_constant(name: str) -> object:
    raise _NotJSON(f"{name} is not a JSON number")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _NotJSON(f"duplicate key {key[:200]!r}")
            seen.add(key)
    return doc


_DECODER = json.JSONDecoder(parse_constant=_no_constant, object_pairs_hook=_object)
# A \u escape of a UTF-16 surrogate: only then can a string hold an unpaired one.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def parse_json(raw: bytes) -> Any:
    """`raw` as RFC 8259 JSON: UTF-8 without a byte order mark, no NaN or Infinity, no
    duplicate keys in any object and no unpaired surrogate in any string (where Python's
    json module takes all of these, and duplicates make parsers disagree on which value
    counts). Raises ValueError saying what is wrong."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raise _NotJSON("it starts with a byte order mark (JSON is UTF-8 without one)")
    if b"\0" in raw:  # never in JSON text; UTF-16 and UTF-32 are full of them
        raise _NotJSON("it holds NUL bytes (JSON is UTF-8, not UTF-16 or UTF-32)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _NotJSON(f"it is not UTF-8 (byte {exc.start}: {exc.reason})") from None
    doc = _DECODER.decode(text)
    if _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise _NotJSON("a string holds an unpaired UTF-16 surrogate escape") from None
    return doc


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()
    platform: dict[str, Any] | None = None  # an index's descriptors only

    @classmethod
    def parse(cls, raw: object, where: str) -> Descriptor:
        if not isinstance(raw, dict):
            raise _invalid(f"{where}: a descriptor must be a JSON object")
        media_type = raw.get("mediaType")
        if not mt.is_media_type(media_type):
            raise _invalid(f"{where}: invalid or missing mediaType {media_type!r}")
        assert isinstance(media_type, str)
        digest_raw = raw.get("digest")
        if not isinstance(digest_raw, str):
            raise _invalid(f"{where}: missing digest")
        try:
            digest = Digest.parse(digest_raw)
        except DigestError as exc:
            raise _invalid(f"{where}: {exc}") from None
        size = raw.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _invalid(f"{where}: size must be a non-negative integer, got {size!r}")
        artifact_type = raw.get("artifactType")
        if artifact_type is not None and not mt.is_media_type(artifact_type):
            raise _invalid(f"{where}: invalid artifactType {artifact_type!r}")
        annotations = _annotations(raw.get("annotations"), where)
        urls = raw.get("urls") or []
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise _invalid(f"{where}: urls must be a list of strings")
        return cls(media_type, digest, size, artifact_type, annotations, tuple(urls))


def _annotations(raw: object, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise _invalid(f"{where}: annotations must map strings to strings")
    return dict(raw)


@dataclass(frozen=True)
class Reference:
    """Something a manifest needs to exist: a blob in its repository, or a manifest in
    its repository (`child` None) or, for a nested descriptor, in the child repository."""

    kind: str  # "blob" | "manifest"
    descriptor: Descriptor
    child: str | None = None


@dataclass(frozen=True)
class Manifest:
    """A parsed, validated manifest with what the registry needs to know of it."""

    media_type: str
    digest: Digest
    raw: bytes
    references: tuple[Reference, ...]
    subject: Descriptor | None
    artifact_type: str | None
    annotations: dict[str, str]

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEXES


def parse_manifest(
    raw: bytes, content_type: str | None, digest: Digest | str | None = None
) -> Manifest:
    """Parse and validate a manifest pushed with `content_type`.

    `digest` is the digest the client named, or only the algorithm it asked for (the
    `digest-algorithm` parameter): the manifest's digest is of that algorithm; otherwise
    sha256.
    """
    if len(raw) > MAX_MANIFEST_SIZE:
        raise OCIError(
            ErrorCode.SIZE_INVALID,
            f"manifest is {len(raw)} bytes; the limit is {MAX_MANIFEST_SIZE}",
            status=413,
        )
    try:
        doc = parse_json(raw)
    except (ValueError, RecursionError) as exc:
        raise _invalid(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _invalid("manifest must be a JSON object")
    media_type = _media_type(doc, content_type)
    if doc.get("schemaVersion") != 2:
        raise _invalid(f"schemaVersion must be 2, got {doc.get('schemaVersion')!r}")
    annotations = _annotations(doc.get("annotations"), "annotations")
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not mt.is_media_type(artifact_type):
        raise _invalid(f"invalid artifactType {artifact_type!r}")
    subject = None
    if doc.get("subject") is not None:
        subject = Descriptor.parse(doc["subject"], "subject")
    references: list[Reference]
    if media_type in mt.IMAGE_MANIFESTS:
        references = _image_references(doc)
        config = references[0].descriptor
        if artifact_type is None and media_type == mt.OCI_MANIFEST:
            artifact_type = config.media_type
    else:
        if media_type == mt.DOCKER_MANIFEST_LIST and artifact_type is not None:
            raise _invalid("a Docker manifest list has no artifactType")
        references = _index_references(doc)
    algorithm = digest if isinstance(digest, str) else digest.algorithm if digest else CANONICAL
    computed = Digest.of(raw, check_algorithm(algorithm))
    return Manifest(
        media_type, computed, raw, tuple(references), subject, artifact_type, annotations
    )


def _media_type(doc: dict[str, Any], content_type: str | None) -> str:
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    header = mt.bare(content_type) if content_type else None
    if header in (mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED) or declared in (
        mt.DOCKER_SCHEMA1,
        mt.DOCKER_SCHEMA1_SIGNED,
    ):
        raise _invalid("Docker schema1 manifests are not supported; push schema2 or OCI")
    if header in mt.MANIFESTS:
        if declared is not None and declared != header:
            raise _invalid(f"mediaType {declared!r} does not match Content-Type {header!r}")
        media_type = header
    elif header and header not in ("application/json", "application/octet-stream"):
        raise _invalid(
            f"unsupported manifest media type {header!r}; "
            f"supported: {', '.join(sorted(mt.MANIFESTS))}"
        )
    elif declared in mt.MANIFESTS:
        media_type = declared
    elif declared is not None:
        raise _invalid(f"unsupported manifest mediaType {declared!r}")
    elif "manifests" in doc:
        media_type = mt.OCI_INDEX
    elif "config" in doc:
        media_type = mt.OCI_MANIFEST
    else:
        raise _invalid("cannot tell the manifest's media type: no Content-Type or mediaType")
    # The fields of the other kind must not be there.
    if media_type in mt.INDEXES and ("config" in doc or "layers" in doc):
        raise _invalid(f"a {media_type} has no config or layers")
    if media_type in mt.IMAGE_MANIFESTS and "manifests" in doc:
        raise _invalid(f"a {media_type} has no manifests")
    return media_type


def _image_references(doc: dict[str, Any]) -> list[Reference]:
    config = Descriptor.parse(doc.get("config"), "config")
    layers_raw = doc.get("layers")
    if not isinstance(layers_raw, list):
        raise _invalid("layers must be an array")
    references = [Reference("blob", config)]
    for i, raw in enumerate(layers_raw):
        layer = Descriptor.parse(raw, f"layers[{i}]")
        # Foreign (non-distributable) layers with URLs live outside the registry.
        if layer.urls and ("foreign" in layer.media_type or "nondistributable" in layer.media_type):
            continue
        references.append(Reference("blob", layer))
    return references


def _index_references(doc: dict[str, Any]) -> list[Reference]:
    manifests_raw = doc.get("manifests")
    if not isinstance(manifests_raw, list):
        raise _invalid("manifests must be an array")
    references = []
    for i, raw in enumerate(manifests_raw):
        where = f"manifests[{i}]"
        desc = Descriptor.parse(raw, where)
        if isinstance(raw, dict) and raw.get("platform") is not None:
            _check_platform(raw["platform"], where)
            desc = replace(desc, platform=dict(raw["platform"]))
        child = desc.annotations.get(NESTED_ANNOTATION)
        references.append(Reference("manifest", desc, child))
    return references


def _check_platform(raw: object, where: str) -> None:
    if not isinstance(raw, dict):
        raise _invalid(f"{where}: platform must be an object")
    for key in ("architecture", "os"):
        if not isinstance(raw.get(key), str):
            raise _invalid(f"{where}: platform.{key} must be a string")


def check_child_paths(repository: str, manifest: Manifest) -> list[OCIError]:
    """`MANIFEST_INVALID` errors for each nested descriptor whose child path is invalid."""
    errors = []
    for ref in manifest.references:
        if ref.child is None:
            continue
        problem = child_path_problem(repository, ref.child)
        if problem:
            errors.append(_invalid(f"{NESTED_ANNOTATION}={ref.child!r}: {problem}"))
    return errors
