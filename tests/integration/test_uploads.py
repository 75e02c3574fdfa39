"""Blob uploads: monolithic, POST+PUT, streamed and chunked PATCH, status, cancel, digest
checks, sessions across restarts, and cross-repository mounts."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Server, push_blob
from tests.integration.ocihttp import (
    UPLOAD_LOCATION,
    assert_error,
    assert_status,
    sha512,
    start_upload,
    unknown_digest,
)
from tests.manifests import sha256

pytestmark = pytest.mark.stores  # run again on S3 + PostgreSQL (see .ci/run)


def assert_session(r: httpx.Response, repo: str, status: int, size: int) -> str:
    """An upload-session answer: status, Location, Range and Docker-Upload-UUID."""
    assert_status(r, status)
    location = r.headers["Location"]
    m = UPLOAD_LOCATION.match(location)
    assert m is not None, location
    assert m.group("name") == repo
    assert r.headers["Docker-Upload-UUID"] == m.group("id")
    assert r.headers["Range"] == f"0-{max(size - 1, 0)}"
    return location


def assert_blob(client: httpx.Client, repo: str, data: bytes) -> None:
    r = client.get(f"/v2/{repo}/blobs/{sha256(data)}")
    assert_status(r, 200)
    assert r.content == data


def assert_no_blob(client: httpx.Client, repo: str, digest: str) -> None:
    assert_error(client.get(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")


# Starting a session


def test_post_starts_session(client: httpx.Client) -> None:
    r = client.post("/v2/up/start/blobs/uploads/")
    location = assert_session(r, "up/start", 202, 0)
    assert r.headers["Range"] == "0-0"
    assert r.content == b""
    status = client.get(location)
    assert_session(status, "up/start", 204, 0)


def test_post_without_trailing_slash(client: httpx.Client) -> None:
    assert_session(client.post("/v2/up/noslash/blobs/uploads"), "up/noslash", 202, 0)


def test_sessions_are_distinct(client: httpx.Client) -> None:
    a = start_upload(client, "up/distinct")
    b = start_upload(client, "up/distinct")
    assert a != b


# Monolithic


def test_monolithic_post(client: httpx.Client) -> None:
    data = os.urandom(2048)
    digest = sha256(data)
    r = client.post("/v2/up/mono/blobs/uploads/", params={"digest": digest}, content=data)
    assert_status(r, 201)
    assert r.headers["Location"] == f"/v2/up/mono/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    assert_blob(client, "up/mono", data)


def test_monolithic_post_wrong_digest(client: httpx.Client) -> None:
    data = os.urandom(100)
    claimed = sha256(b"something else")
    r = client.post("/v2/up/monowrong/blobs/uploads/", params={"digest": claimed}, content=data)
    assert_error(r, 400, "DIGEST_INVALID")
    assert_no_blob(client, "up/monowrong", claimed)
    assert_no_blob(client, "up/monowrong", sha256(data))


@pytest.mark.parametrize("digest", ["sha256:xyz", "md5:" + "0" * 32, "", "sha256:" + "a" * 63])
def test_monolithic_post_malformed_digest(client: httpx.Client, digest: str) -> None:
    r = client.post("/v2/up/monobad/blobs/uploads/", params={"digest": digest}, content=b"data")
    assert_error(r, 400, "DIGEST_INVALID")


def test_post_then_put_whole_blob(client: httpx.Client) -> None:
    data = os.urandom(4000)
    digest = sha256(data)
    location = start_upload(client, "up/postput")
    r = client.put(location, params={"digest": digest}, content=data)
    assert_status(r, 201)
    assert r.headers["Location"] == f"/v2/up/postput/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    assert_blob(client, "up/postput", data)


def test_put_location_with_existing_query(client: httpx.Client) -> None:
    """Clients append `digest` to whatever Location says, with & or ?."""
    data = b"query string"
    location = start_upload(client, "up/query")
    r = client.put(f"{location}?digest={sha256(data)}", content=data)
    assert_status(r, 201)
    assert_blob(client, "up/query", data)


# Streamed PATCH (no Content-Range)


def test_streamed_patches_append(client: httpx.Client) -> None:
    repo = "up/stream"
    parts = [os.urandom(1000), os.urandom(1), os.urandom(3000)]
    location = start_upload(client, repo)
    size = 0
    for part in parts:
        size += len(part)
        r = client.patch(location, content=part)
        location = assert_session(r, repo, 202, size)
        assert r.content == b""
    data = b"".join(parts)
    assert_session(client.get(location), repo, 204, len(data))
    r = client.put(location, params={"digest": sha256(data)})
    assert_status(r, 201)
    assert r.headers["Docker-Content-Digest"] == sha256(data)
    assert_blob(client, repo, data)


def test_streamed_patch_with_chunked_transfer_encoding(client: httpx.Client) -> None:
    repo = "up/te"
    pieces = [os.urandom(700_000) for _ in range(3)]

    def body() -> Iterator[bytes]:
        yield from pieces

    location = start_upload(client, repo)
    r = client.patch(location, content=body())
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    location = assert_session(r, repo, 202, 2_100_000)
    data = b"".join(pieces)
    assert_status(client.put(location, params={"digest": sha256(data)}), 201)
    assert_blob(client, repo, data)


def test_large_streamed_upload(client: httpx.Client) -> None:
    repo = "up/large"
    data = os.urandom(6 * 1024 * 1024 + 5)
    location = start_upload(client, repo)
    r = client.patch(location, content=data)
    location = assert_session(r, repo, 202, len(data))
    assert_status(client.put(location, params={"digest": sha256(data)}), 201)
    assert_blob(client, repo, data)


# Chunked PATCH (Content-Range)


def test_chunked_upload_with_content_range(client: httpx.Client) -> None:
    repo = "up/chunked"
    data = os.urandom(100)
    location = start_upload(client, repo)
    for start, end in ((0, 29), (30, 30), (31, 99)):
        chunk = data[start : end + 1]
        r = client.patch(
            location,
            content=chunk,
            headers={"Content-Range": f"{start}-{end}", "Content-Type": "application/octet-stream"},
        )
        location = assert_session(r, repo, 202, end + 1)
        assert r.headers["Range"] == f"0-{end}"
    r = client.put(location, params={"digest": sha256(data)}, headers={"Content-Length": "0"})
    assert_status(r, 201)
    assert_blob(client, repo, data)


def test_put_with_final_chunk(client: httpx.Client) -> None:
    repo = "up/finalchunk"
    data = os.urandom(500)
    location = start_upload(client, repo)
    location = assert_session(client.patch(location, content=data[:200]), repo, 202, 200)
    r = client.put(location, params={"digest": sha256(data)}, content=data[200:])
    assert_status(r, 201)
    assert r.headers["Location"] == f"/v2/{repo}/blobs/{sha256(data)}"
    assert_blob(client, repo, data)


def test_put_final_chunk_with_content_range(client: httpx.Client) -> None:
    repo = "up/finalrange"
    data = os.urandom(50)
    location = start_upload(client, repo)
    location = assert_session(
        client.patch(location, content=data[:20], headers={"Content-Range": "0-19"}), repo, 202, 20
    )
    r = client.put(
        location,
        params={"digest": sha256(data)},
        content=data[20:],
        headers={"Content-Range": "20-49"},
    )
    assert_status(r, 201)
    assert_blob(client, repo, data)


@pytest.mark.parametrize(("start", "end"), [(10, 19), (6, 9), (0, 4), (4, 8), (1, 1)])
def test_chunk_not_at_current_size_is_416(client: httpx.Client, start: int, end: int) -> None:
    repo = "up/order"
    location = start_upload(client, repo)
    location = assert_session(client.patch(location, content=b"x" * 5), repo, 202, 5)
    r = client.patch(
        location, content=b"y" * (end - start + 1), headers={"Content-Range": f"{start}-{end}"}
    )
    assert_error(r, 416, "RANGE_INVALID")
    assert r.headers["Range"] == "0-4"
    # The upload is unchanged.
    assert_session(client.get(location), repo, 204, 5)


def test_out_of_order_first_chunk_is_416(client: httpx.Client) -> None:
    repo = "up/order0"
    location = start_upload(client, repo)
    r = client.patch(location, content=b"z" * 10, headers={"Content-Range": "10-19"})
    assert_error(r, 416, "RANGE_INVALID")
    assert r.headers["Range"] == "0-0"
    assert_session(client.get(location), repo, 204, 0)


def test_retried_chunk_is_416_and_upload_can_continue(client: httpx.Client) -> None:
    repo = "up/retry"
    data = os.urandom(40)
    location = start_upload(client, repo)
    first = {"Content-Range": "0-19"}
    location = assert_session(
        client.patch(location, content=data[:20], headers=first), repo, 202, 20
    )
    r = client.patch(location, content=data[:20], headers=first)
    assert_error(r, 416, "RANGE_INVALID")
    assert r.headers["Range"] == "0-19"
    r = client.patch(location, content=data[20:], headers={"Content-Range": "20-39"})
    location = assert_session(r, repo, 202, 40)
    assert_status(client.put(location, params={"digest": sha256(data)}), 201)
    assert_blob(client, repo, data)


@pytest.mark.parametrize(
    "content_range",
    ["abc", "5-2", "-5", "0-", "0-x", "1-2-3", "bytes=abc", "0 - 4", "", "\u00b2-\u00b3"],
)
def test_malformed_content_range_is_416(client: httpx.Client, content_range: str) -> None:
    repo = "up/badrange"
    location = start_upload(client, repo)
    location = assert_session(client.patch(location, content=b"abc"), repo, 202, 3)
    r = client.patch(
        location, content=b"x" * 5, headers={"Content-Range": content_range.encode("latin-1")}
    )
    assert_error(r, 416, "RANGE_INVALID")
    assert r.headers["Range"] == "0-2"
    assert_session(client.get(location), repo, 204, 3)


@pytest.mark.parametrize(("content_range", "body"), [("0-9", b"x" * 5), ("0-4", b"x" * 9)])
def test_content_range_disagreeing_with_length_is_416(
    client: httpx.Client, content_range: str, body: bytes
) -> None:
    repo = "up/rangelen"
    location = start_upload(client, repo)
    r = client.patch(location, content=body, headers={"Content-Range": content_range})
    assert_error(r, 416, "RANGE_INVALID")
    assert r.headers["Range"] == "0-0"
    assert_session(client.get(location), repo, 204, 0)


# Status, finishing, cancelling


def test_get_upload_status(client: httpx.Client) -> None:
    repo = "up/status"
    location = start_upload(client, repo)
    client.patch(location, content=b"0123456789")
    r = client.get(location)
    assert_session(r, repo, 204, 10)
    assert r.content == b""


def test_put_without_digest_is_400_and_upload_survives(client: httpx.Client) -> None:
    repo = "up/nodigest"
    data = b"no digest given"
    location = start_upload(client, repo)
    location = assert_session(client.patch(location, content=data), repo, 202, len(data))
    assert_error(client.put(location), 400, "DIGEST_INVALID")
    assert_session(client.get(location), repo, 204, len(data))
    assert_status(client.put(location, params={"digest": sha256(data)}), 201)
    assert_blob(client, repo, data)


def test_put_with_mismatched_digest_is_400(client: httpx.Client) -> None:
    repo = "up/mismatch"
    data = b"the real content"
    claimed = sha256(b"other content")
    location = start_upload(client, repo)
    r = client.put(location, params={"digest": claimed}, content=data)
    assert_error(r, 400, "DIGEST_INVALID")
    assert_no_blob(client, repo, claimed)
    assert_no_blob(client, repo, sha256(data))


@pytest.mark.parametrize("digest", ["sha256:xyz", "md5:" + "0" * 32, ""])
def test_put_with_malformed_digest_is_400(client: httpx.Client, digest: str) -> None:
    location = start_upload(client, "up/malformed")
    r = client.put(location, params={"digest": digest}, content=b"data")
    assert_error(r, 400, "DIGEST_INVALID")


def test_session_is_gone_after_put(client: httpx.Client) -> None:
    repo = "up/done"
    data = b"finished"
    location = start_upload(client, repo)
    assert_status(client.put(location, params={"digest": sha256(data)}, content=data), 201)
    assert_error(client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.patch(location, content=b"more"), 404, "BLOB_UPLOAD_UNKNOWN")
    r = client.put(location, params={"digest": sha256(data)}, content=data)
    assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN")
    assert_blob(client, repo, data)


def test_cancel_upload(client: httpx.Client) -> None:
    repo = "up/cancel"
    data = b"cancelled content"
    location = start_upload(client, repo)
    client.patch(location, content=data)
    r = client.delete(location)
    assert_status(r, 204)
    assert r.content == b""
    assert_error(client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.patch(location, content=b"x"), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.put(location, params={"digest": sha256(data)}), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.delete(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_no_blob(client, repo, sha256(data))


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_upload_used_under_another_repository_is_404(client: httpx.Client, method: str) -> None:
    data = b"belongs to a"
    location = start_upload(client, "up/owner")
    location = assert_session(client.patch(location, content=data), "up/owner", 202, len(data))
    upload_id = location.rsplit("/", 1)[1]
    for other in ("up/other", "up/owner/child", "up"):
        r = client.request(
            method,
            f"/v2/{other}/blobs/uploads/{upload_id}",
            params={"digest": sha256(data)} if method == "PUT" else None,
            content=b"x" if method == "PATCH" else None,
        )
        assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN")
    # The owner's session is untouched.
    assert_session(client.get(location), "up/owner", 204, len(data))
    assert_status(client.put(location, params={"digest": sha256(data)}), 201)
    assert_no_blob(client, "up/other", sha256(data))


@pytest.mark.parametrize(
    "upload_id",
    [
        "not-a-uuid",
        "3f2b8a4e-6c1d-4e5f-9a7b-0c8d2e4f6a1b",  # well formed, never issued
        "3F2B8A4E-6C1D-4E5F-9A7B-0C8D2E4F6A1B",
        "00000000-0000-0000-0000-000000000000",
        "%2e%2e",
        "x" * 300,
    ],
)
@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_unknown_or_invalid_upload_id_is_404(
    client: httpx.Client, method: str, upload_id: str
) -> None:
    start_upload(client, "up/invalid")
    r = client.request(
        method,
        f"/v2/up/invalid/blobs/uploads/{upload_id}",
        params={"digest": unknown_digest()} if method == "PUT" else None,
        content=b"x" if method == "PATCH" else None,
    )
    assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN")


def test_upload_session_survives_restart(server: Server, client: httpx.Client) -> None:
    repo = "up/restart"
    data = os.urandom(3000)
    location = start_upload(client, repo)
    r = client.patch(location, content=data[:1000], headers={"Content-Range": "0-999"})
    location = assert_session(r, repo, 202, 1000)

    server.stop()
    server.start()

    assert_session(client.get(location), repo, 204, 1000)
    r = client.patch(location, content=data[1000:2000], headers={"Content-Range": "1000-1999"})
    location = assert_session(r, repo, 202, 2000)

    server.stop()
    server.start()

    r = client.put(location, params={"digest": sha256(data)}, content=data[2000:])
    assert_status(r, 201)
    assert_blob(client, repo, data)


def test_streamed_session_survives_restart(server: Server, client: httpx.Client) -> None:
    repo = "up/restart2"
    data = os.urandom(2500)
    location = start_upload(client, repo)
    location = assert_session(client.patch(location, content=data[:1200]), repo, 202, 1200)
    server.stop()
    server.start()
    location = assert_session(client.patch(location, content=data[1200:]), repo, 202, 2500)
    assert_status(client.put(location, params={"digest": sha256(data)}), 201)
    assert_blob(client, repo, data)


def test_wrong_digest_after_restart_is_rejected(server: Server, client: httpx.Client) -> None:
    repo = "up/restart3"
    data = os.urandom(100)
    location = start_upload(client, repo)
    location = assert_session(client.patch(location, content=data), repo, 202, 100)
    server.stop()
    server.start()
    claimed = sha256(data + b"!")
    assert_error(client.put(location, params={"digest": claimed}), 400, "DIGEST_INVALID")
    assert_no_blob(client, repo, claimed)


# Cross-repository mount


def test_mount_from_repository_with_blob(client: httpx.Client) -> None:
    data = os.urandom(256)
    digest = push_blob(client, "mnt/src", data)
    r = client.post("/v2/mnt/dst/blobs/uploads/", params={"mount": digest, "from": "mnt/src"})
    assert_status(r, 201)
    assert r.headers["Location"] == f"/v2/mnt/dst/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    assert_blob(client, "mnt/dst", data)
    # The mount is a link of its own: deleting the source's keeps it.
    assert_status(client.delete(f"/v2/mnt/src/blobs/{digest}"), 202)
    assert_blob(client, "mnt/dst", data)


@pytest.mark.parametrize("source", ["mnt/empty", "mnt/nosuchrepo"])
def test_mount_from_repository_without_blob_starts_upload(
    client: httpx.Client, source: str
) -> None:
    data = os.urandom(64)
    digest = push_blob(client, "mnt/elsewhere", data)
    push_blob(client, "mnt/empty", b"other")
    r = client.post("/v2/mnt/dst2/blobs/uploads/", params={"mount": digest, "from": source})
    location = assert_session(r, "mnt/dst2", 202, 0)
    assert_no_blob(client, "mnt/dst2", digest)
    # The session is a normal one.
    assert_status(client.put(location, params={"digest": digest}, content=data), 201)
    assert_blob(client, "mnt/dst2", data)


def test_mount_of_unknown_blob_starts_upload(client: httpx.Client) -> None:
    push_blob(client, "mnt/src3", b"x")
    r = client.post(
        "/v2/mnt/dst3/blobs/uploads/", params={"mount": unknown_digest(), "from": "mnt/src3"}
    )
    assert_session(r, "mnt/dst3", 202, 0)


def test_automatic_mount_without_from(client: httpx.Client) -> None:
    data = os.urandom(128)
    digest = push_blob(client, "mnt/auto/src", data)
    r = client.post("/v2/mnt/auto/dst/blobs/uploads/", params={"mount": digest})
    assert_status(r, 201)
    assert r.headers["Location"] == f"/v2/mnt/auto/dst/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    assert_blob(client, "mnt/auto/dst", data)


def test_automatic_mount_of_unknown_blob_starts_upload(client: httpx.Client) -> None:
    r = client.post("/v2/mnt/auto2/blobs/uploads/", params={"mount": unknown_digest()})
    assert_session(r, "mnt/auto2", 202, 0)


def test_mount_from_repository_where_blob_was_deleted_starts_upload(client: httpx.Client) -> None:
    data = os.urandom(32)
    digest = push_blob(client, "mnt/gone", data)
    assert_status(client.delete(f"/v2/mnt/gone/blobs/{digest}"), 202)
    r = client.post("/v2/mnt/dst4/blobs/uploads/", params={"mount": digest, "from": "mnt/gone"})
    assert_session(r, "mnt/dst4", 202, 0)
    r = client.post("/v2/mnt/dst4/blobs/uploads/", params={"mount": digest})
    assert_session(r, "mnt/dst4", 202, 0)
    assert_no_blob(client, "mnt/dst4", digest)


def test_mount_sha512_blob(client: httpx.Client) -> None:
    data = os.urandom(99)
    digest = sha512(data)
    assert_status(
        client.post("/v2/mnt/s512/blobs/uploads/", params={"digest": digest}, content=data), 201
    )
    r = client.post("/v2/mnt/s512b/blobs/uploads/", params={"mount": digest, "from": "mnt/s512"})
    assert_status(r, 201)
    assert r.headers["Location"] == f"/v2/mnt/s512b/blobs/{digest}"
    assert client.get(f"/v2/mnt/s512b/blobs/{digest}").content == data


@pytest.mark.parametrize(
    "digest",
    ["sha256:xyz", "md5:" + "0" * 32, "", sha256(b"newline") + "\n"],
    ids=["xyz", "md5", "empty", "trailing-newline"],
)
def test_mount_with_malformed_digest_is_400(client: httpx.Client, digest: str) -> None:
    r = client.post("/v2/mnt/bad/blobs/uploads/", params={"mount": digest, "from": "mnt/src"})
    assert_error(r, 400, "DIGEST_INVALID")


@pytest.mark.parametrize(
    "source",
    ["Upper/Case", "a..b", "-a", "mnt/src\n"],
    ids=["upper", "dots", "dash", "trailing-newline"],
)
def test_mount_from_invalid_name_is_400(client: httpx.Client, source: str) -> None:
    digest = push_blob(client, "mnt/src", b"mount me")
    r = client.post("/v2/mnt/bad/blobs/uploads/", params={"mount": digest, "from": source})
    assert_error(r, 400, "NAME_INVALID")
