"""Pulling, checking and deleting blobs; digest validation; per-repository visibility."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.conftest import Server, oci_image, push_blob, pushed
from tests.integration.ocihttp import (
    assert_error,
    assert_status,
    sha512,
    start_upload,
    unknown_digest,
)
from tests.manifests import sha256

pytestmark = pytest.mark.stores  # run again on S3 + PostgreSQL (see .ci/run)

MALFORMED_DIGESTS = [
    "sha256:xyz",
    "md5:" + "0" * 32,
    "sha256:" + "a" * 63,
    "sha256:" + "a" * 65,
    "sha256:" + "A" * 64,
    "sha256:" + "g" * 64,
    "sha512:" + "a" * 64,
    "sha256:",
    "notadigest",
    "SHA256:" + "a" * 64,
    "sha256:" + "a" * 300,
]


def test_get_blob(client: httpx.Client) -> None:
    data = os.urandom(1000)
    digest = push_blob(client, "blobs/get", data)
    r = client.get(f"/v2/blobs/get/blobs/{digest}")
    assert_status(r, 200)
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Content-Length"] == str(len(data))


def test_head_blob(client: httpx.Client) -> None:
    data = os.urandom(777)
    digest = push_blob(client, "blobs/head", data)
    r = client.head(f"/v2/blobs/head/blobs/{digest}")
    assert_status(r, 200)
    assert r.content == b""
    assert r.headers["Content-Length"] == "777"
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Content-Type"] == "application/octet-stream"


def test_empty_blob(client: httpx.Client) -> None:
    digest = push_blob(client, "blobs/empty", b"")
    assert digest == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    r = client.get(f"/v2/blobs/empty/blobs/{digest}")
    assert_status(r, 200)
    assert r.content == b""
    r = client.head(f"/v2/blobs/empty/blobs/{digest}")
    assert_status(r, 200)
    assert r.headers["Content-Length"] == "0"


def test_large_blob_round_trip(client: httpx.Client) -> None:
    data = os.urandom(5 * 1024 * 1024 + 123)
    digest = push_blob(client, "blobs/large", data)
    r = client.get(f"/v2/blobs/large/blobs/{digest}")
    assert_status(r, 200)
    assert sha256(r.content) == digest
    assert len(r.content) == len(data)


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [("bytes=0-9", 0, 9), ("bytes=10-19", 10, 19), ("bytes=90-", 90, 99), ("bytes=-5", 95, 99)],
)
def test_range_request(client: httpx.Client, range_header: str, start: int, end: int) -> None:
    data = os.urandom(100)
    digest = push_blob(client, "blobs/range", data)
    r = client.get(f"/v2/blobs/range/blobs/{digest}", headers={"Range": range_header})
    assert_status(r, 206)
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/100"
    assert r.content == data[start : end + 1]
    assert r.headers["Content-Length"] == str(end - start + 1)
    assert r.headers["Docker-Content-Digest"] == digest


@pytest.mark.parametrize("range_header", ["bytes=100-200", "bytes=500-"])
def test_unsatisfiable_range_is_416(client: httpx.Client, range_header: str) -> None:
    data = os.urandom(100)
    digest = push_blob(client, "blobs/range416", data)
    r = client.get(f"/v2/blobs/range416/blobs/{digest}", headers={"Range": range_header})
    assert_status(r, 416)
    assert r.headers["Content-Range"] == "bytes */100"


def test_unknown_blob_get_is_404(client: httpx.Client) -> None:
    push_blob(client, "blobs/unknown", b"something")
    assert_error(client.get(f"/v2/blobs/unknown/blobs/{unknown_digest()}"), 404, "BLOB_UNKNOWN")


def test_unknown_blob_head_is_404_without_body(client: httpx.Client) -> None:
    push_blob(client, "blobs/unknown", b"something")
    r = client.head(f"/v2/blobs/unknown/blobs/{unknown_digest()}")
    assert_error(r, 404, "BLOB_UNKNOWN")
    assert r.content == b""


def test_blob_in_unknown_repository_is_404(client: httpx.Client) -> None:
    assert_error(client.get(f"/v2/no/such/repo/blobs/{unknown_digest()}"), 404, "BLOB_UNKNOWN")


@pytest.mark.parametrize("digest", MALFORMED_DIGESTS)
def test_malformed_digest_get_is_400(client: httpx.Client, digest: str) -> None:
    assert_error(client.get(f"/v2/blobs/bad/blobs/{digest}"), 400, "DIGEST_INVALID")


@pytest.mark.parametrize("digest", MALFORMED_DIGESTS[:4])
def test_malformed_digest_head_is_400(client: httpx.Client, digest: str) -> None:
    assert_error(client.head(f"/v2/blobs/bad/blobs/{digest}"), 400, "DIGEST_INVALID")


@pytest.mark.parametrize("digest", MALFORMED_DIGESTS[:4])
def test_malformed_digest_delete_is_400(client: httpx.Client, digest: str) -> None:
    assert_error(client.delete(f"/v2/blobs/bad/blobs/{digest}"), 400, "DIGEST_INVALID")


def test_sha512_blob_monolithic_post(client: httpx.Client) -> None:
    data = os.urandom(300)
    digest = sha512(data)
    r = client.post("/v2/blobs/sha512/blobs/uploads/", params={"digest": digest}, content=data)
    assert_status(r, 201)
    assert r.headers["Location"] == f"/v2/blobs/sha512/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    r = client.get(f"/v2/blobs/sha512/blobs/{digest}")
    assert_status(r, 200)
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == digest
    r = client.head(f"/v2/blobs/sha512/blobs/{digest}")
    assert_status(r, 200)
    assert r.headers["Content-Length"] == "300"


def test_sha512_blob_via_session(client: httpx.Client) -> None:
    data = os.urandom(1234)
    digest = sha512(data)
    location = start_upload(client, "blobs/sha512s")
    r = client.patch(location, content=data[:1000])
    assert_status(r, 202)
    r = client.put(r.headers["Location"], params={"digest": digest}, content=data[1000:])
    assert_status(r, 201)
    assert r.headers["Docker-Content-Digest"] == digest
    assert client.get(f"/v2/blobs/sha512s/blobs/{digest}").content == data


def test_sha512_wrong_content_is_digest_invalid(client: httpx.Client) -> None:
    digest = sha512(b"the claimed content")
    r = client.post("/v2/blobs/sha512w/blobs/uploads/", params={"digest": digest}, content=b"x")
    assert_error(r, 400, "DIGEST_INVALID")
    assert_error(client.get(f"/v2/blobs/sha512w/blobs/{digest}"), 404, "BLOB_UNKNOWN")


def test_blob_is_visible_only_where_pushed(client: httpx.Client) -> None:
    data = os.urandom(64)
    digest = push_blob(client, "vis/a", data)
    assert_status(client.get(f"/v2/vis/a/blobs/{digest}"), 200)
    for repo in ("vis/b", "vis/a/nested", "vis"):
        assert_error(client.get(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
        assert_error(client.head(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    # Pushing the same content to b makes it visible there too.
    assert push_blob(client, "vis/b", data) == digest
    assert client.get(f"/v2/vis/b/blobs/{digest}").content == data


def test_delete_blob(client: httpx.Client) -> None:
    digest = push_blob(client, "del/blob", os.urandom(50))
    r = client.delete(f"/v2/del/blob/blobs/{digest}")
    assert_status(r, 202)
    assert_error(client.get(f"/v2/del/blob/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_error(client.head(f"/v2/del/blob/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_error(client.delete(f"/v2/del/blob/blobs/{digest}"), 404, "BLOB_UNKNOWN")


def test_delete_unknown_blob_is_404(client: httpx.Client) -> None:
    push_blob(client, "del/unknown", b"x")
    assert_error(client.delete(f"/v2/del/unknown/blobs/{unknown_digest()}"), 404, "BLOB_UNKNOWN")
    assert_error(client.delete(f"/v2/del/nosuchrepo/blobs/{unknown_digest()}"), 404, "BLOB_UNKNOWN")


def test_delete_blob_in_one_repository_keeps_it_in_another(client: httpx.Client) -> None:
    data = os.urandom(80)
    digest = push_blob(client, "del/one", data)
    push_blob(client, "del/two", data)
    assert_status(client.delete(f"/v2/del/one/blobs/{digest}"), 202)
    assert_error(client.get(f"/v2/del/one/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    r = client.get(f"/v2/del/two/blobs/{digest}")
    assert_status(r, 200)
    assert r.content == data


def test_blob_can_be_pushed_again_after_delete(client: httpx.Client) -> None:
    data = os.urandom(90)
    digest = push_blob(client, "del/again", data)
    assert_status(client.delete(f"/v2/del/again/blobs/{digest}"), 202)
    assert push_blob(client, "del/again", data) == digest
    r = client.get(f"/v2/del/again/blobs/{digest}")
    assert_status(r, 200)
    assert r.content == data


def test_deleted_blob_stays_while_a_manifest_references_it(client: httpx.Client) -> None:
    repo = "del/referenced"
    layer = os.urandom(120)
    body = oci_image(client, repo, layers=[layer])
    manifest = pushed(client, repo, "v1", body)
    layer_digest = sha256(layer)

    assert_status(client.delete(f"/v2/{repo}/blobs/{layer_digest}"), 202)
    # Still referenced by the manifest: still readable.
    r = client.get(f"/v2/{repo}/blobs/{layer_digest}")
    assert_status(r, 200)
    assert r.content == layer
    assert_status(client.head(f"/v2/{repo}/blobs/{layer_digest}"), 200)
    assert_status(client.get(f"/v2/{repo}/manifests/v1"), 200)

    # Once the manifest is gone, so is the blob.
    assert_status(client.delete(f"/v2/{repo}/manifests/{manifest}"), 202)
    assert_error(client.get(f"/v2/{repo}/blobs/{layer_digest}"), 404, "BLOB_UNKNOWN")
    assert_error(client.head(f"/v2/{repo}/blobs/{layer_digest}"), 404, "BLOB_UNKNOWN")
    assert_error(client.delete(f"/v2/{repo}/blobs/{layer_digest}"), 404, "BLOB_UNKNOWN")


def test_blob_survives_restart(server: Server, client: httpx.Client) -> None:
    data = os.urandom(4096)
    digest = push_blob(client, "restart/blob", data)
    server.stop()
    server.start()
    r = client.get(f"/v2/restart/blob/blobs/{digest}")
    assert_status(r, 200)
    assert r.content == data
