"""The edges of HTTP at the application: answers outside the registry's routes (unknown paths,
wrong methods, aiohttp's own errors) are OCI error bodies too; Range on blob GETs per RFC 9110;
a chunk whose body disagrees with its Content-Range is refused without being appended."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.authkit import ec_key, write_htpasswd, write_key
from tests.conftest import Server, free_port, push_blob
from tests.integration.ocihttp import allowed, assert_error, assert_status, start_upload
from tests.manifests import sha256

# Errors outside the registry's own routes


def test_unknown_path_is_an_oci_404(client: httpx.Client) -> None:
    # ("/" leads to the web pages: see test_ui.py, which also checks it with `ui: false`.)
    for path in ["/v3/", "/foo", "/v1/", "/v2foo", "/foo%0A", "/healthz%0D", "/v2/%0A"]:
        for method in ("GET", "HEAD", "DELETE"):
            r = client.request(method, path)
            entries = assert_error(r, 404, "UNSUPPORTED")
            assert r.headers["Content-Type"] == "application/json"
            if method != "HEAD":
                assert entries[0]["detail"].startswith("no such endpoint: /"), entries


def test_newline_in_a_repository_name_is_name_invalid(client: httpx.Client) -> None:
    for method, path in [
        ("GET", "/v2/foo%0A/tags/list"),
        ("GET", "/v2/a%0Db/tags/list"),
        ("POST", "/v2/a%0Ab/blobs/uploads/"),
        ("GET", "/v2/%0A/x/manifests/latest"),
    ]:
        entries = assert_error(client.request(method, path), 400, "NAME_INVALID")
        assert "invalid repository name" in entries[0]["detail"]


def test_newline_in_a_digest_is_digest_invalid(client: httpx.Client) -> None:
    digest = push_blob(client, "edges/nl", b"a blob")
    assert_error(client.get(f"/v2/edges/nl/blobs/{digest}%0A"), 400, "DIGEST_INVALID")


def test_wrong_method_outside_v2_is_an_oci_405(client: httpx.Client) -> None:
    for method, path, allow in [
        ("POST", "/healthz", {"GET", "HEAD"}),
        ("DELETE", "/healthz", {"GET", "HEAD"}),
        ("PUT", "/metrics", {"GET", "HEAD"}),
        ("DELETE", "/auth/token", {"GET", "POST"}),
    ]:
        r = client.request(method, path)
        entries = assert_error(r, 405, "UNSUPPORTED")
        assert allowed(r) == allow
        assert entries[0]["detail"].startswith(f"{method} is not supported here; allowed: ")


def test_wrong_method_inside_v2_keeps_its_allow_header(client: httpx.Client) -> None:
    r = client.post(f"/v2/edges/m/blobs/{sha256(b'x')}")
    assert_error(r, 405, "UNSUPPORTED")
    assert allowed(r) == {"GET", "HEAD", "DELETE"}


def test_token_endpoint_without_token_auth_is_an_oci_404(client: httpx.Client) -> None:
    for method in ("GET", "POST"):
        entries = assert_error(client.request(method, "/auth/token"), 404, "UNSUPPORTED")
        assert entries[0]["detail"] == "no such endpoint: /auth/token"


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[Server]:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"ann": "secret"})
    key = write_key(tmp_path / "token.pem", ec_key())
    srv = Server(
        tmp_path / "data", free_port(), ["--htpasswd", str(htpasswd), "--token-key", str(key)]
    )
    srv.start()
    yield srv
    srv.stop()


def test_body_past_aiohttp_limit_is_an_oci_413(token_server: Server) -> None:
    """aiohttp itself refuses a form body past its size limit; the answer is still OCI's."""
    form = {"grant_type": "password", "username": "ann", "password": "x" * (2 << 20)}
    r = httpx.post(f"{token_server.url}/auth/token", data=form, timeout=30)
    entries = assert_error(r, 413, "SIZE_INVALID")
    assert "exceeded" in entries[0]["detail"]
    # The endpoint itself still works.
    r = httpx.get(f"{token_server.url}/auth/token", auth=("ann", "secret"), timeout=30)
    assert_status(r, 200)
    assert r.json()["token"]


# Range on blob GET

SIZE = 100


SATISFIABLE = [
    ("bytes=0-9", 0, 9),
    ("bytes=-5", 95, 99),  # suffix
    ("bytes=5-", 5, 99),  # open
    ("bytes=0-", 0, 99),
    ("bytes=90-500", 90, 99),  # end past the blob: clamped
    ("bytes=-500", 0, 99),  # suffix longer than the blob: all of it
    ("bytes=99-99", 99, 99),
    ("BYTES=3-4", 3, 4),  # the unit is case-insensitive
    ("bytes=3-4,", 3, 4),  # an empty list element does not count
]
IGNORED = [
    "items=0-5",  # another unit
    "bytes=0-1,5-6",  # several ranges: answered whole, never as multipart
    "bytes=0-1, 200-300",
    "bytes=5-3",  # last before first: invalid
    "bytes=abc",
    "bytes=--1",
    "bytes=1-2-3",
    "bytes",
    "bytes=",
    "=0-5",
]
UNSATISFIABLE = ["bytes=100-", "bytes=100-200", "bytes=500-", "bytes=-0"]


@pytest.fixture
def blob(client: httpx.Client) -> tuple[str, bytes]:
    data = os.urandom(SIZE)
    return f"/v2/edges/range/blobs/{push_blob(client, 'edges/range', data)}", data


def test_satisfiable_range_is_206(client: httpx.Client, blob: tuple[str, bytes]) -> None:
    path, data = blob
    for range_header, start, end in SATISFIABLE:
        r = client.get(path, headers={"Range": range_header})
        assert_status(r, 206)
        assert r.headers["Content-Range"] == f"bytes {start}-{end}/{SIZE}", range_header
        assert r.headers["Content-Length"] == str(end - start + 1), range_header
        assert r.content == data[start : end + 1], range_header


def test_invalid_or_multiple_ranges_are_ignored(
    client: httpx.Client, blob: tuple[str, bytes]
) -> None:
    path, data = blob
    for range_header in IGNORED:
        r = client.get(path, headers={"Range": range_header})
        assert_status(r, 200)
        assert "Content-Range" not in r.headers, range_header
        assert r.content == data, range_header


def test_unsatisfiable_range_is_416_with_oci_body(
    client: httpx.Client, blob: tuple[str, bytes]
) -> None:
    path, _ = blob
    for range_header in UNSATISFIABLE:
        r = client.get(path, headers={"Range": range_header})
        entries = assert_error(r, 416, "RANGE_INVALID")
        assert r.headers["Content-Range"] == f"bytes */{SIZE}", range_header
        assert range_header in entries[0]["detail"]


def test_head_ignores_range(client: httpx.Client, blob: tuple[str, bytes]) -> None:
    path, _ = blob
    for range_header in ("bytes=0-9", "bytes=500-"):
        r = client.head(path, headers={"Range": range_header})
        assert_status(r, 200)
        assert r.headers["Content-Length"] == str(SIZE)
        assert r.headers["Accept-Ranges"] == "bytes"
        assert "Content-Range" not in r.headers
        assert r.content == b""


def test_ranges_of_an_empty_blob(client: httpx.Client) -> None:
    path = f"/v2/edges/empty/blobs/{push_blob(client, 'edges/empty', b'')}"
    r = client.get(path, headers={"Range": "bytes=0-"})
    assert_error(r, 416, "RANGE_INVALID")
    assert r.headers["Content-Range"] == "bytes */0"
    # A suffix is satisfiable, but there is no byte range to name: the whole (empty) blob.
    r = client.get(path, headers={"Range": "bytes=-5"})
    assert_status(r, 200)
    assert r.content == b""


@pytest.mark.stores
def test_range_deep_in_a_large_blob(client: httpx.Client) -> None:
    """Past the store's read batches, and across them."""
    data = os.urandom(9 << 20)
    path = f"/v2/edges/large/blobs/{push_blob(client, 'edges/large', data)}"
    start, end = (4 << 20) - 3, (8 << 20) + 7
    r = client.get(path, headers={"Range": f"bytes={start}-{end}"})
    assert_status(r, 206)
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
    assert r.content == data[start : end + 1]
    r = client.get(path)
    assert_status(r, 200)
    assert r.content == data


# PATCH whose body disagrees with its Content-Range


def upload_size(client: httpx.Client, location: str) -> int:
    r = client.get(location)
    assert_status(r, 204)
    return held(r)


def held(r: httpx.Response) -> int:
    """The bytes an upload holds, by the answer's Range ("0-0" for none, as registries say)."""
    end = int(r.headers["Range"].split("-")[1])
    return 0 if end == 0 else end + 1


def chunked(data: bytes, piece: int = 1 << 16) -> Iterator[bytes]:
    """The body as an iterator: httpx sends it with Transfer-Encoding: chunked."""
    for i in range(0, len(data), piece):
        yield data[i : i + piece]


@pytest.mark.stores
@pytest.mark.parametrize("framing", ["chunked", "content-length"])
def test_patch_body_of_another_length_than_its_range_appends_nothing(
    client: httpx.Client, framing: str
) -> None:
    repo = "edges/patchlen"
    for declared, sent in [(10, 100), (10, 11), (10, 5), (10, 0)]:
        data = os.urandom(20 + declared)
        location = start_upload(client, repo)
        r = client.patch(location, content=data[:20], headers={"Content-Range": "0-19"})
        assert_status(r, 202)
        body = (data[20:] + os.urandom(sent))[:sent]
        r = client.patch(
            location,
            content=chunked(body) if framing == "chunked" else body,
            headers={"Content-Range": f"20-{20 + declared - 1}"},
        )
        entries = assert_error(r, 416, "RANGE_INVALID")
        assert f"is {declared} bytes" in entries[0]["detail"]
        assert r.headers["Range"] == "0-19"
        assert upload_size(client, location) == 20
        # The upload goes on from where it stood.
        rest = {"Content-Range": f"20-{len(data) - 1}"}
        r = client.patch(location, content=chunked(data[20:]), headers=rest)
        assert_status(r, 202)
        assert held(r) == len(data)
        assert_status(client.put(location, params={"digest": sha256(data)}), 201)
        assert client.get(f"/v2/{repo}/blobs/{sha256(data)}").content == data


@pytest.mark.stores
def test_final_put_longer_than_its_range_creates_nothing(client: httpx.Client) -> None:
    repo = "edges/putlen"
    data = os.urandom(10)
    location = start_upload(client, repo)
    r = client.put(
        location,
        params={"digest": sha256(data)},
        content=chunked(data + b"excess"),
        headers={"Content-Range": "0-9"},
    )
    assert_error(r, 416, "RANGE_INVALID")
    assert upload_size(client, location) == 0
    assert_error(client.get(f"/v2/{repo}/blobs/{sha256(data)}"), 404, "BLOB_UNKNOWN")
    r = client.put(
        location, params={"digest": sha256(data)}, content=data, headers={"Content-Range": "0-9"}
    )
    assert_status(r, 201)


@pytest.mark.stores
def test_large_overflowing_chunk_stores_nothing_of_it(client: httpx.Client) -> None:
    """A body that overflows only after megabytes: the chunk is refused whole (416, nothing of
    it kept, not even the range's first megabytes), and the upload resumes from where it was."""
    repo = "edges/biglen"
    data = os.urandom((3 << 20) + 12345)
    location = start_upload(client, repo)
    r = client.patch(
        location,
        content=chunked(data + os.urandom(1 << 20)),
        headers={"Content-Range": f"0-{len(data) - 1}"},
    )
    assert_error(r, 416, "RANGE_INVALID")
    size = held(r)
    assert size == 0
    assert upload_size(client, location) == size
    r = client.patch(
        location, content=data[size:], headers={"Content-Range": f"{size}-{len(data) - 1}"}
    )
    assert_status(r, 202)
    assert_status(client.put(location, params={"digest": sha256(data)}), 201)
    assert client.get(f"/v2/{repo}/blobs/{sha256(data)}").content == data
