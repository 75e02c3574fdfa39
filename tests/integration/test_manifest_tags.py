"""The 2026 distribution-spec additions to manifest push: tags as `tag` parameters of a push
by digest (each confirmed by an `OCI-Tag` header), a push by tag under another digest
algorithm (`digest-algorithm`), and `Docker-Content-Digest` on every GET and HEAD; each with
sha256 and sha512."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.conftest import oci_image, push_blob, push_image, push_manifest
from tests.integration.ocihttp import assert_error, assert_status
from tests.manifests import digest_of

pytestmark = pytest.mark.stores  # run again on S3 + PostgreSQL (see .ci/run)


def unpushed(client: httpx.Client, repo: str, algorithm: str) -> tuple[bytes, str]:
    """A small image's manifest, its blobs pushed, and its digest under `algorithm`."""
    body = oci_image(client, repo)
    return body, digest_of(body, algorithm)


def tags_of(client: httpx.Client, repo: str) -> list[str]:
    r = client.get(f"/v2/{repo}/tags/list")
    assert_status(r, 200)
    tags: list[str] = r.json()["tags"] or []
    return tags


def assert_served(client: httpx.Client, repo: str, ref: str, body: bytes, digest: str) -> None:
    """GET and HEAD of the manifest at `ref` answer it under `digest`."""
    for method in ("GET", "HEAD"):
        r = client.request(method, f"/v2/{repo}/manifests/{ref}")
        assert_status(r, 200)
        assert r.headers["Docker-Content-Digest"] == digest
        assert r.headers["Content-Length"] == str(len(body))
        assert r.content == (body if method == "GET" else b"")


def test_a_push_by_digest_points_each_tag_parameter_at_it(
    client: httpx.Client, algorithm: str
) -> None:
    repo = f"spec/tags-{algorithm}"
    body, digest = unpushed(client, repo, algorithm)
    params = [("tag", "v1"), ("tag", "v1.2"), ("tag", "latest"), ("tag", "v1")]
    r = push_manifest(client, repo, digest, body, params=params)
    assert_status(r, 201)
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Location"] == f"/v2/{repo}/manifests/{digest}"
    # One OCI-Tag header per tag pushed, each once, in the order asked.
    assert r.headers.get_list("OCI-Tag") == ["v1", "v1.2", "latest"]
    assert tags_of(client, repo) == ["latest", "v1", "v1.2"]
    for ref in ("v1", "v1.2", "latest", digest):
        assert_served(client, repo, ref, body, digest)
    # Another manifest pushed with one of those tags moves just that tag.
    other, other_digest = unpushed(client, repo, algorithm)
    r = push_manifest(client, repo, other_digest, other, params=[("tag", "latest")])
    assert_status(r, 201)
    assert r.headers.get_list("OCI-Tag") == ["latest"]
    assert_served(client, repo, "latest", other, other_digest)
    assert_served(client, repo, "v1", body, digest)
    # A push by digest without tag parameters confirms none.
    r = push_manifest(client, repo, digest, body)
    assert_status(r, 201)
    assert "OCI-Tag" not in r.headers


def test_an_invalid_tag_parameter_refuses_the_whole_push(
    client: httpx.Client, algorithm: str
) -> None:
    repo = f"spec/badtag-{algorithm}"
    push_image(client, repo, "kept")
    body, digest = unpushed(client, repo, algorithm)
    for bad in ("-dash", "a" * 129, "sp ace", "", "x:y"):
        r = push_manifest(client, repo, digest, body, params=[("tag", "ok"), ("tag", bad)])
        assert_error(r, 400, "MANIFEST_INVALID")
        assert "OCI-Tag" not in r.headers
    # Nothing was stored: no manifest, no tag.
    assert_error(client.get(f"/v2/{repo}/manifests/{digest}"), 404, "MANIFEST_UNKNOWN")
    assert tags_of(client, repo) == ["kept"]


def test_tag_parameters_belong_to_a_push_by_digest(client: httpx.Client) -> None:
    repo = "spec/bytag"
    body = oci_image(client, repo)
    r = push_manifest(client, repo, "v1", body, params=[("tag", "v2")])
    assert_error(r, 400, "MANIFEST_INVALID")
    assert_error(client.get(f"/v2/{repo}/manifests/v1"), 404, "MANIFEST_UNKNOWN")


def test_a_push_by_tag_stores_the_digest_algorithm_asked_for(
    client: httpx.Client, algorithm: str
) -> None:
    repo = f"spec/alg-{algorithm}"
    body, digest = unpushed(client, repo, algorithm)
    r = push_manifest(client, repo, "v1", body, params=[("digest-algorithm", algorithm)])
    assert_status(r, 201)
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Location"] == f"/v2/{repo}/manifests/{digest}"
    assert "OCI-Tag" not in r.headers
    assert_served(client, repo, "v1", body, digest)
    assert_served(client, repo, digest, body, digest)
    if algorithm != "sha256":  # stored under the digest asked for, not also under sha256
        sha256 = digest_of(body, "sha256")
        assert_error(client.get(f"/v2/{repo}/manifests/{sha256}"), 404, "MANIFEST_UNKNOWN")


def test_a_digest_algorithm_must_be_supported_and_agree(client: httpx.Client) -> None:
    repo = "spec/alg-bad"
    body = oci_image(client, repo)
    for algorithm in ("md5", "SHA512", "sha384", ""):
        r = push_manifest(client, repo, "v1", body, params=[("digest-algorithm", algorithm)])
        assert_error(r, 400, "DIGEST_INVALID")
    # A push by digest names its algorithm; a different digest-algorithm contradicts it.
    r = push_manifest(
        client, repo, digest_of(body, "sha256"), body, params=[("digest-algorithm", "sha512")]
    )
    assert_error(r, 400, "DIGEST_INVALID")
    assert tags_of(client, repo) == []


def test_every_blob_get_and_head_answers_its_digest(client: httpx.Client, algorithm: str) -> None:
    repo = f"spec/blob-{algorithm}"
    data = os.urandom(1000)
    if algorithm == "sha256":
        digest = push_blob(client, repo, data)
    else:
        digest = digest_of(data, algorithm)
        r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
        assert_status(r, 201)
    url = f"/v2/{repo}/blobs/{digest}"
    for method, headers, status, content in (
        ("GET", {}, 200, data),
        ("HEAD", {}, 200, b""),
        ("GET", {"Range": "bytes=10-19"}, 206, data[10:20]),
    ):
        r = client.request(method, url, headers=headers)
        assert_status(r, status)
        assert r.headers["Docker-Content-Digest"] == digest
        assert r.content == content
