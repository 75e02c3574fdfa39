"""Example-based tests of the pure OCI model (ocinest.oci): digests, names and tags, media
types, manifest parsing and the error body. The property-based tests are in
test_properties.py; these pin down specific cases of the spec."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from ocinest.oci import mediatypes as mt
from ocinest.oci.digest import Digest, DigestError, new_hasher
from ocinest.oci.errors import ErrorCode, ErrorDetail, OCIError
from ocinest.oci.manifest import (
    MAX_MANIFEST_SIZE,
    NESTED_ANNOTATION,
    check_child_paths,
    parse_manifest,
)
from ocinest.oci.names import MAX_NAME_LENGTH, child_path_problem, is_tag, validate_name
from tests.manifests import dumps, sha256

HEX64 = "a" * 64
HEX128 = "b" * 128


def desc(media_type: str = "application/vnd.oci.image.layer.v1.tar", n: int = 0) -> dict[str, Any]:
    data = f"content {n}".encode()
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}


def image(**extra: Any) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": desc(mt.OCI_MANIFEST.replace("manifest", "config"), 0),
        "layers": [desc(n=1), desc(n=2)],
        **extra,
    }


def index(**extra: Any) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [desc(mt.OCI_MANIFEST, 3), desc(mt.OCI_MANIFEST, 4)],
        **extra,
    }


def invalid(doc_or_raw: Any, content_type: str | None = mt.OCI_MANIFEST) -> OCIError:
    data = doc_or_raw if isinstance(doc_or_raw, bytes) else dumps(doc_or_raw)
    with pytest.raises(OCIError) as info:
        parse_manifest(data, content_type)
    return info.value


# Digests


@pytest.mark.parametrize("value", [f"sha256:{HEX64}", f"sha512:{HEX128}"])
def test_digest_parse_round_trips(value: str) -> None:
    d = Digest.parse(value)
    assert str(d) == value
    assert d.algorithm == value.split(":")[0]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "sha256",
        "sha256:",
        ":" + HEX64,
        "sha256:xyz",
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:" + "A" * 64,
        "SHA256:" + HEX64,
        "sha512:" + HEX64,
        "md5:" + "0" * 32,
        "sha256:" + HEX64 + "\n",
        "sha256:" + "a" * 300,
    ],
    ids=lambda v: ascii(v if len(v) < 24 else v[:20] + "..." + v[-3:]),
)
def test_digest_parse_rejects(value: str) -> None:
    with pytest.raises(DigestError, match="digest"):
        Digest.parse(value)


def test_digest_of() -> None:
    assert str(Digest.of(b"")) == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert str(Digest.of(b"x", "sha512")) == "sha512:" + hashlib.sha512(b"x").hexdigest()


def test_looks_like_digest() -> None:
    assert Digest.looks_like("sha256:abc")
    assert not Digest.looks_like("latest")


def test_new_hasher() -> None:
    h = new_hasher()
    h.update(b"abc")
    assert h.hexdigest() == hashlib.sha256(b"abc").hexdigest()
    with pytest.raises(DigestError, match="md5"):
        new_hasher("md5")


# Names, tags, child paths


@pytest.mark.parametrize(
    "name", ["a", "0", "a/b/c", "a-b", "a--b", "a__b", "a.b", "x" * MAX_NAME_LENGTH]
)
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "A", "a/B", "-a", "a-", "a..b", "a___b", "a//b", "a/", "/a", "a/../b", "x" * 256, "a\n"],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(OCIError) as info:
        validate_name(name)
    assert info.value.code is ErrorCode.NAME_INVALID


@pytest.mark.parametrize("tag", ["latest", "v1.0", "_x", "A-b_c.d", "a" * 128, "0"])
def test_valid_tags(tag: str) -> None:
    assert is_tag(tag)


@pytest.mark.parametrize(
    "tag", ["", ".x", "-x", "a" * 129, "a/b", "a:b", "a b", "é", "latest\n", "\nlatest"]
)
def test_invalid_tags(tag: str) -> None:
    assert not is_tag(tag)


@pytest.mark.parametrize("child", ["app", "app/sub", "a.b-c"])
def test_valid_child_paths(child: str) -> None:
    assert child_path_problem("parent", child) is None


@pytest.mark.parametrize("child", ["", "/app", "app/", "a//b", ".", "..", "a/../b", "App", "app\n"])
def test_invalid_child_paths(child: str) -> None:
    assert child_path_problem("parent", child) is not None


def test_child_path_too_long_in_full() -> None:
    assert child_path_problem("p" * 250, "child") is not None
    assert child_path_problem("p" * 249, "child") is None


# Media types


def test_bare_media_type() -> None:
    assert mt.bare("Application/Vnd.OCI.Image.Manifest.v1+json; charset=utf-8") == mt.OCI_MANIFEST


@pytest.mark.parametrize("value", [mt.OCI_MANIFEST, "application/x", "text/plain"])
def test_media_types(value: str) -> None:
    assert mt.is_media_type(value)


@pytest.mark.parametrize("value", ["", "nope", "a/", "/b", "a/b/c", "a b/c", None, 5])
def test_not_media_types(value: object) -> None:
    assert not mt.is_media_type(value)


# Manifests


def test_image_manifest_references_config_then_layers() -> None:
    doc = image()
    data = dumps(doc)
    m = parse_manifest(data, mt.OCI_MANIFEST)
    assert m.media_type == mt.OCI_MANIFEST
    assert m.digest == Digest.of(data)
    assert m.raw == data
    assert m.size == len(data)
    assert not m.is_index
    assert [r.kind for r in m.references] == ["blob", "blob", "blob"]
    assert [str(r.descriptor.digest) for r in m.references] == [
        doc["config"]["digest"],
        *(layer["digest"] for layer in doc["layers"]),
    ]
    assert m.subject is None


def test_artifact_type_defaults_to_config_media_type() -> None:
    m = parse_manifest(dumps(image()), mt.OCI_MANIFEST)
    assert m.artifact_type == image()["config"]["mediaType"]
    m = parse_manifest(dumps(image(artifactType="application/vnd.x")), mt.OCI_MANIFEST)
    assert m.artifact_type == "application/vnd.x"


def test_index_references_manifests() -> None:
    m = parse_manifest(dumps(index(artifactType="application/vnd.bundle")), mt.OCI_INDEX)
    assert m.is_index
    assert [r.kind for r in m.references] == ["manifest", "manifest"]
    assert all(r.child is None for r in m.references)
    assert m.artifact_type == "application/vnd.bundle"


def test_subject_and_annotations() -> None:
    subject = desc(mt.OCI_MANIFEST, 9)
    m = parse_manifest(dumps(image(subject=subject, annotations={"k": "v"})), mt.OCI_MANIFEST)
    assert m.subject is not None
    assert str(m.subject.digest) == subject["digest"]
    assert m.annotations == {"k": "v"}


@pytest.mark.parametrize(
    ("doc", "content_type", "expected"),
    [
        (image(), None, mt.OCI_MANIFEST),
        ({k: v for k, v in image().items() if k != "mediaType"}, None, mt.OCI_MANIFEST),
        ({k: v for k, v in index().items() if k != "mediaType"}, None, mt.OCI_INDEX),
        (image(mediaType=mt.DOCKER_MANIFEST), mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST),
        (
            index(mediaType=mt.DOCKER_MANIFEST_LIST),
            mt.DOCKER_MANIFEST_LIST,
            mt.DOCKER_MANIFEST_LIST,
        ),
        (image(), mt.OCI_MANIFEST + "; charset=utf-8", mt.OCI_MANIFEST),
    ],
)
def test_media_type_resolution(
    doc: dict[str, Any], content_type: str | None, expected: str
) -> None:
    assert parse_manifest(dumps(doc), content_type).media_type == expected


def test_digest_algorithm_follows_the_requested_digest() -> None:
    data = dumps(image())
    m = parse_manifest(data, mt.OCI_MANIFEST, Digest.parse(f"sha512:{HEX128}"))
    assert str(m.digest) == "sha512:" + hashlib.sha512(data).hexdigest()


def test_foreign_layers_with_urls_are_not_references() -> None:
    foreign = {
        **desc("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", 7),
        "urls": ["https://example.com/l"],
    }
    doc = image(mediaType=mt.DOCKER_MANIFEST, layers=[desc(n=1), foreign])
    m = parse_manifest(dumps(doc), mt.DOCKER_MANIFEST)
    assert len(m.references) == 2  # the config and the one distributable layer


def test_nested_child_annotation() -> None:
    child = {**desc(mt.OCI_MANIFEST, 5), "annotations": {NESTED_ANNOTATION: "app"}}
    m = parse_manifest(dumps(index(manifests=[child])), mt.OCI_INDEX)
    assert m.references[0].child == "app"
    assert check_child_paths("parent", m) == []
    bad = {**desc(mt.OCI_MANIFEST, 5), "annotations": {NESTED_ANNOTATION: "../x"}}
    m = parse_manifest(dumps(index(manifests=[bad])), mt.OCI_INDEX)
    errors = check_child_paths("parent", m)
    assert len(errors) == 1
    assert errors[0].code is ErrorCode.MANIFEST_INVALID


@pytest.mark.parametrize(
    ("doc", "content_type"),
    [
        (b"{", mt.OCI_MANIFEST),
        (b"[]", mt.OCI_MANIFEST),
        (b"[" * 100_000, mt.OCI_MANIFEST),
        (image(schemaVersion=1), mt.OCI_MANIFEST),
        (image(schemaVersion="2"), mt.OCI_MANIFEST),
        (image(), "application/vnd.foo+json"),
        (image(), mt.DOCKER_SCHEMA1),
        (image(), mt.DOCKER_SCHEMA1_SIGNED),
        (image(mediaType=mt.OCI_INDEX), mt.OCI_MANIFEST),
        (image(mediaType="application/vnd.foo+json"), None),
        (image(config=None), mt.OCI_MANIFEST),
        (image(config={**desc(), "digest": "sha256:xyz"}), mt.OCI_MANIFEST),
        (image(config={**desc(), "size": -1}), mt.OCI_MANIFEST),
        (image(config={**desc(), "size": True}), mt.OCI_MANIFEST),
        (image(config={**desc(), "mediaType": "nope"}), mt.OCI_MANIFEST),
        (image(layers={}), mt.OCI_MANIFEST),
        (image(manifests=[]), mt.OCI_MANIFEST),
        (image(annotations={"k": 1}), mt.OCI_MANIFEST),
        (image(artifactType="nope"), mt.OCI_MANIFEST),
        (index(config=desc()), mt.OCI_INDEX),
        (index(manifests=[{**desc(mt.OCI_MANIFEST), "platform": {"os": "linux"}}]), mt.OCI_INDEX),
        (index(mediaType=mt.DOCKER_MANIFEST_LIST, artifactType="a/b"), mt.DOCKER_MANIFEST_LIST),
        ({"schemaVersion": 2}, None),
    ],
)
def test_invalid_manifests(doc: Any, content_type: str | None) -> None:
    err = invalid(doc, content_type)
    assert err.code is ErrorCode.MANIFEST_INVALID
    assert err.status == 400


def test_manifest_size_limit() -> None:
    doc = image(annotations={"pad": ""})
    pad = MAX_MANIFEST_SIZE - len(dumps(doc))
    at_limit = dumps(image(annotations={"pad": "x" * pad}))
    assert len(at_limit) == MAX_MANIFEST_SIZE
    parse_manifest(at_limit, mt.OCI_MANIFEST)
    err = invalid(dumps(image(annotations={"pad": "x" * (pad + 1)})))
    assert err.code is ErrorCode.SIZE_INVALID
    assert err.status == 413


# Errors


def test_error_body() -> None:
    err = OCIError(ErrorCode.BLOB_UNKNOWN, "no such blob", headers={"X": "y"})
    assert err.status == 404
    assert err.headers == {"X": "y"}
    assert err.to_json() == {
        "errors": [
            {
                "code": "BLOB_UNKNOWN",
                "message": "blob unknown to registry",
                "detail": "no such blob",
            }
        ]
    }


def test_many_errors_keep_their_order_and_status() -> None:
    err = OCIError.many(
        [
            ErrorDetail(ErrorCode.MANIFEST_BLOB_UNKNOWN, "a"),
            ErrorDetail(ErrorCode.MANIFEST_BLOB_UNKNOWN, "b"),
        ],
        status=400,
    )
    assert err.status == 400
    assert [e["detail"] for e in err.to_json()["errors"]] == ["a", "b"]


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (ErrorCode.BLOB_UPLOAD_UNKNOWN, 404),
        (ErrorCode.DIGEST_INVALID, 400),
        (ErrorCode.MANIFEST_UNKNOWN, 404),
        (ErrorCode.NAME_INVALID, 400),
        (ErrorCode.NAME_UNKNOWN, 404),
        (ErrorCode.DENIED, 403),
        (ErrorCode.UNSUPPORTED, 405),
        (ErrorCode.RANGE_INVALID, 416),
        (ErrorCode.PAGINATION_NUMBER_INVALID, 400),
    ],
)
def test_default_statuses(code: ErrorCode, status: int) -> None:
    assert code.status == status
    assert code.message
