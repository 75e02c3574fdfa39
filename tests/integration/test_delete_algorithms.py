"""Deletes after the 2026 push paths (a push by digest with `tag` parameters, a push by tag
with `digest-algorithm`): the same content stored under sha256 and sha512 is two manifests
(or blobs), and neither blocks the other's delete; a deleted blob nothing in the repository
references is gone at once (HEAD 404), one still referenced goes with the last manifest that
does."""

from __future__ import annotations

import os

import httpx

from tests.conftest import oci_image, push_manifest
from tests.integration.ocihttp import assert_error, assert_status
from tests.manifests import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    descriptor,
    digest_of,
    dumps,
    image_manifest,
)
from tests.manifests import index_manifest as make_index

OTHER = {"sha256": "sha512", "sha512": "sha256"}


def push_both_ways(client: httpx.Client, repo: str, body: bytes, media_type: str) -> None:
    """`body` under sha256 (by digest, tag `v-sha256`) and under sha512 (by tag `v-sha512`,
    asking for it)."""
    r = push_manifest(
        client, repo, digest_of(body, "sha256"), body, media_type, [("tag", "v-sha256")]
    )
    assert_status(r, 201)
    r = push_manifest(client, repo, "v-sha512", body, media_type, [("digest-algorithm", "sha512")])
    assert_status(r, 201)
    assert r.headers["Docker-Content-Digest"] == digest_of(body, "sha512")


def push_blob_as(client: httpx.Client, repo: str, data: bytes, algorithm: str) -> str:
    digest = digest_of(data, algorithm)
    r = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
    assert_status(r, 201)
    return digest


def test_a_copy_under_another_algorithm_never_blocks_a_delete(
    client: httpx.Client, algorithm: str
) -> None:
    """The index references the manifest under `algorithm`; the copy under the other
    algorithm is deleted freely, the referenced one only once the index is gone."""
    repo = f"del/copies-{algorithm}"
    body = oci_image(client, repo)
    push_both_ways(client, repo, body, OCI_MANIFEST)
    referenced, other = digest_of(body, algorithm), digest_of(body, OTHER[algorithm])
    index = make_index({**descriptor(body), "digest": referenced})
    r = push_manifest(client, repo, "set", index, OCI_INDEX, [("digest-algorithm", algorithm)])
    assert_status(r, 201)
    index_digest = r.headers["Docker-Content-Digest"]

    assert_status(client.delete(f"/v2/{repo}/manifests/{other}"), 202)
    assert_error(client.get(f"/v2/{repo}/manifests/{other}"), 404, "MANIFEST_UNKNOWN")
    assert_error(client.head(f"/v2/{repo}/manifests/v-{OTHER[algorithm]}"), 404, "")
    assert client.get(f"/v2/{repo}/manifests/v-{algorithm}").content == body
    assert_error(client.delete(f"/v2/{repo}/manifests/{referenced}"), 409, "DENIED")
    assert_status(client.delete(f"/v2/{repo}/manifests/{index_digest}"), 202)
    assert_status(client.delete(f"/v2/{repo}/manifests/{referenced}"), 202)
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] in (None, [])


def test_a_deleted_blob_is_gone_at_once(client: httpx.Client, algorithm: str) -> None:
    repo = f"del/blob-{algorithm}"
    data = os.urandom(700)
    digest = push_blob_as(client, repo, data, algorithm)
    other = push_blob_as(client, repo, data, OTHER[algorithm])  # the same bytes
    push_blob_as(client, f"{repo}/elsewhere", data, algorithm)
    assert_status(client.delete(f"/v2/{repo}/blobs/{digest}"), 202)
    assert_error(client.head(f"/v2/{repo}/blobs/{digest}"), 404, "")
    assert_error(client.get(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_error(client.delete(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_status(client.head(f"/v2/{repo}/blobs/{other}"), 200)
    assert_status(client.head(f"/v2/{repo}/elsewhere/blobs/{digest}"), 200)


def test_a_referenced_blob_goes_with_the_last_manifest_of_either_algorithm(
    client: httpx.Client, algorithm: str
) -> None:
    """Blobs named by `algorithm` digests, in a manifest stored under both algorithms."""
    repo = f"del/held-{algorithm}"
    config = dumps({"architecture": "amd64", "os": "linux", "n": os.urandom(8).hex()})
    layer = os.urandom(300)
    blobs = [push_blob_as(client, repo, data, algorithm) for data in (config, layer)]
    body = image_manifest(
        {"mediaType": OCI_CONFIG, "digest": blobs[0], "size": len(config)},
        [{"mediaType": OCI_LAYER, "digest": blobs[1], "size": len(layer)}],
    )
    push_both_ways(client, repo, body, OCI_MANIFEST)
    for digest in blobs:
        assert_status(client.delete(f"/v2/{repo}/blobs/{digest}"), 202)
        assert_status(client.head(f"/v2/{repo}/blobs/{digest}"), 200)  # deferred
    assert_status(client.delete(f"/v2/{repo}/manifests/{digest_of(body, 'sha512')}"), 202)
    for digest in blobs:  # the sha256 copy still references them
        assert_status(client.head(f"/v2/{repo}/blobs/{digest}"), 200)
    assert_status(client.delete(f"/v2/{repo}/manifests/{digest_of(body, 'sha256')}"), 202)
    for digest in blobs:
        assert_error(client.head(f"/v2/{repo}/blobs/{digest}"), 404, "")
