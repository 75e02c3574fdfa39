"""Bad input never gives a 500, a hang or a traceback: clients that go away mid-request,
garbage headers and bodies, absurd numbers. The tests of clients that go away check that the
server still answers, that nothing partial is visible, and that its log holds no traceback
and no 500."""

from __future__ import annotations

import json
import os
import socket
import time

import httpx
import pytest

from tests.conftest import Server, oci_image, push_blob, push_manifest
from tests.integration.ocihttp import (
    assert_error,
    assert_status,
    send_partial_and_close,
    server_log,
    start_upload,
    wait_until_healthy,
)
from tests.manifests import OCI_CONFIG, OCI_MANIFEST, sha256

HUGE = "9" * 5000


def assert_clean_log(server: Server, settle: float = 0.5) -> None:
    """No traceback and no 500 in the server's log (after `settle` seconds for requests
    broken off just before to be finished)."""
    time.sleep(settle)
    log = server_log(server)
    at = log.find("Traceback")
    assert at < 0, "the server logged a traceback:\n" + log[max(at - 300, 0) :][:2500]
    assert '"status": 500' not in log, "the server logged a 500 answer"


def stable_range(client: httpx.Client, location: str) -> int:
    """The size of an upload once it stops changing (a broken-off request may still be
    finishing its writes), checking the status answers on the way."""
    previous = None
    for _ in range(50):
        r = client.get(location)
        assert_status(r, 204)
        end = int(r.headers["Range"].split("-")[1])
        size = 0 if r.headers["Range"] == "0-0" else end + 1
        if size == previous:
            return size
        previous = size
        time.sleep(0.1)
    raise AssertionError("the upload's size does not settle")


# Clients that go away


@pytest.mark.stores
def test_disconnect_during_monolithic_post(server: Server, client: httpx.Client) -> None:
    repo = "bad/mono"
    push_blob(client, repo, b"the repository exists")
    data = os.urandom(4 * 1024 * 1024)
    digest = sha256(data)
    send_partial_and_close(
        server,
        "POST",
        f"/v2/{repo}/blobs/uploads/?digest={digest}",
        len(data),
        data[: len(data) // 3],
        Content_Type="application/octet-stream",
    )
    assert_status(wait_until_healthy(client), 200)
    assert_error(client.get(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_error(client.head(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    # The same blob can then be pushed whole.
    assert push_blob(client, repo, data) == digest
    assert_clean_log(server)


@pytest.mark.stores
@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_disconnect_during_session_upload_is_resumable(
    server: Server, client: httpx.Client, method: str
) -> None:
    repo = "bad/session"
    data = os.urandom(3 * 1024 * 1024)
    digest = sha256(data)
    location = start_upload(client, repo)
    r = client.patch(location, content=data[:1000])
    assert_status(r, 202)
    location = r.headers["Location"]
    sent = 1000 + len(data) // 2
    query = f"?digest={digest}" if method == "PUT" else ""
    send_partial_and_close(server, method, location + query, len(data) - 1000, data[1000:sent])
    assert_status(wait_until_healthy(client), 200)
    assert_error(client.get(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")

    # The session holds a prefix of what was sent; resume from there.
    size = stable_range(client, location)
    assert 1000 <= size <= sent
    r = client.patch(
        location, content=data[size:], headers={"Content-Range": f"{size}-{len(data) - 1}"}
    )
    assert_status(r, 202)
    assert r.headers["Range"] == f"0-{len(data) - 1}"
    r = client.put(r.headers["Location"], params={"digest": digest})
    assert_status(r, 201)
    r = client.get(f"/v2/{repo}/blobs/{digest}")
    assert_status(r, 200)
    assert r.content == data
    assert_clean_log(server)


@pytest.mark.stores
def test_disconnect_before_any_body(server: Server, client: httpx.Client) -> None:
    repo = "bad/nobody"
    location = start_upload(client, repo)
    send_partial_and_close(server, "PATCH", location, 1000, b"")
    assert_status(wait_until_healthy(client), 200)
    assert stable_range(client, location) == 0
    data = b"after the broken request"
    r = client.put(location, params={"digest": sha256(data)}, content=data)
    assert_status(r, 201)
    assert_clean_log(server)


@pytest.mark.stores
def test_disconnect_during_manifest_put(server: Server, client: httpx.Client) -> None:
    repo = "bad/manifest"
    body = oci_image(client, repo)
    send_partial_and_close(
        server,
        "PUT",
        f"/v2/{repo}/manifests/v1",
        len(body),
        body[: len(body) // 2],
        Content_Type=OCI_MANIFEST,
    )
    assert_status(wait_until_healthy(client), 200)
    assert_error(client.get(f"/v2/{repo}/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    assert_error(client.get(f"/v2/{repo}/manifests/{sha256(body)}"), 404, "MANIFEST_UNKNOWN")
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == []
    assert_status(push_manifest(client, repo, "v1", body), 201)
    assert_clean_log(server)


@pytest.mark.stores
def test_stalled_client_does_not_block_others(server: Server, client: httpx.Client) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stalled:
        stalled.sendall(b"PATCH /v2/bad/stall/blobs/uploads/")  # half a request line
        location = start_upload(client, "bad/stall")
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow_body:
            slow_body.sendall(
                f"PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc".encode()
            )
            start = time.monotonic()
            for _ in range(5):
                assert_status(client.get("/v2/"), 200)
            digest = push_blob(client, "bad/stall2", b"other work goes on")
            assert_status(client.get(f"/v2/bad/stall2/blobs/{digest}"), 200)
            assert time.monotonic() - start < 20
    # Both went away; the upload the slow one was writing is still usable.
    assert stable_range(client, location) in (0, 3)
    assert_clean_log(server)


# Garbage headers


@pytest.mark.parametrize(
    "content_range",
    [f"0-{HUGE}", f"{HUGE}-1", "bytes=0-4/x", "0-4,5-9", "ÿÿ", "0-4 junk", "-", "99-"],
    ids=["huge-end", "huge-start", "bad-total", "list", "latin1", "junk", "dash", "open"],
)
def test_garbage_content_range_on_patch_is_416(client: httpx.Client, content_range: str) -> None:
    repo = "bad/range"
    location = start_upload(client, repo)
    r = client.patch(
        location, content=b"x" * 5, headers={"Content-Range": content_range.encode("latin-1")}
    )
    assert_error(r, 416, "RANGE_INVALID")
    assert r.headers["Range"] == "0-0"
    assert stable_range(client, location) == 0


def test_garbage_content_range_on_final_put_is_416(client: httpx.Client) -> None:
    repo = "bad/putrange"
    data = b"12345"
    location = start_upload(client, repo)
    r = client.put(
        location,
        params={"digest": sha256(data)},
        content=data,
        headers={"Content-Range": f"0-{HUGE}"},
    )
    assert_error(r, 416, "RANGE_INVALID")
    assert_error(client.get(f"/v2/{repo}/blobs/{sha256(data)}"), 404, "BLOB_UNKNOWN")


@pytest.mark.parametrize(
    "range_header", ["bytes=abc", "bytes=5-2", f"bytes=0-{HUGE}", "items=0-5", "bytes=--1"]
)
def test_garbage_range_on_blob_get_is_not_an_error(client: httpx.Client, range_header: str) -> None:
    data = os.urandom(100)
    digest = push_blob(client, "bad/getrange", data)
    r = client.get(f"/v2/bad/getrange/blobs/{digest}", headers={"Range": range_header})
    # Either the range is ignored (the whole blob) or it is refused as unsatisfiable.
    assert r.status_code in (200, 206, 416), r.status_code
    if r.status_code == 200:
        assert r.content == data


# Absurd numbers


@pytest.mark.parametrize("path", ["/v2/bad/n/tags/list", "/v2/_catalog"])
def test_huge_n_is_not_an_error(client: httpx.Client, path: str) -> None:
    push_blob(client, "bad/n", b"x")
    pushed_tags = oci_image(client, "bad/n")
    assert_status(push_manifest(client, "bad/n", "t", pushed_tags), 201)
    r = client.get(path, params={"n": HUGE})
    assert_status(r, 200)
    key = "tags" if "tags" in path else "repositories"
    assert r.json()[key] == (["t"] if key == "tags" else ["bad/n"])
    assert "Link" not in r.headers


def test_huge_tree_depth_is_not_an_error(client: httpx.Client) -> None:
    """The nested extension's tree endpoint caps `depth` like `n`."""
    assert_status(push_manifest(client, "bad/tree", "v1", oci_image(client, "bad/tree")), 201)
    r = client.get("/v2/bad/tree/_ocinest/tree/v1", params={"depth": HUGE})
    assert_status(r, 200)
    assert r.json()["children"] == []


@pytest.mark.parametrize(
    "depth", ["\u00b2", "\u0661", "-1", "x"], ids=["sup2", "arabic1", "-1", "x"]
)
def test_invalid_tree_depth_is_400(client: httpx.Client, depth: str) -> None:
    assert_status(push_manifest(client, "bad/tree", "v1", oci_image(client, "bad/tree")), 201)
    r = client.get("/v2/bad/tree/_ocinest/tree/v1", params={"depth": depth})
    assert_error(r, 400, "PAGINATION_NUMBER_INVALID")


# Garbage bodies


def _json_manifest_with(size: str) -> bytes:
    config = f'{{"mediaType": "{OCI_CONFIG}", "digest": "sha256:{"a" * 64}", "size": {size}}}'
    return (
        f'{{"schemaVersion": 2, "mediaType": "{OCI_MANIFEST}", "config": {config}, "layers": []}}'
    ).encode()


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        _json_manifest_with(HUGE),
        _json_manifest_with("1e999"),
        _json_manifest_with("NaN"),
        b'{"schemaVersion": 2, "x": "\xff\xfe"}',
        b"\x00" * 1000,
        os.urandom(5000),
        b"\xef\xbb\xbf{}",
    ],
    ids=[
        "deep-array",
        "deep-object",
        "huge-int",
        "inf",
        "nan",
        "bad-utf8",
        "nul",
        "random",
        "bom",
    ],
)
def test_garbage_manifest_is_manifest_invalid(client: httpx.Client, body: bytes) -> None:
    r = push_manifest(client, "bad/body", "v1", body)
    assert_error(r, 400, "MANIFEST_INVALID")


@pytest.mark.parametrize("where", ["blob", "manifest", "referrers", "mount", "digest-param"])
def test_overlong_digest_is_digest_invalid(client: httpx.Client, where: str) -> None:
    digest = "sha256:" + "a" * 5000
    if where == "blob":
        r = client.get(f"/v2/bad/long/blobs/{digest}")
    elif where == "manifest":
        r = client.get(f"/v2/bad/long/manifests/{digest}")
    elif where == "referrers":
        r = client.get(f"/v2/bad/long/referrers/{digest}")
    elif where == "mount":
        r = client.post("/v2/bad/long/blobs/uploads/", params={"mount": digest, "from": "x"})
    else:
        r = client.post("/v2/bad/long/blobs/uploads/", params={"digest": digest}, content=b"x")
    assert_error(r, 400, "DIGEST_INVALID")


def test_overlong_tag_and_name(client: httpx.Client) -> None:
    assert_error(client.get(f"/v2/bad/manifests/{'t' * 5000}"), 404, "MANIFEST_UNKNOWN")
    assert_error(client.get(f"/v2/{'n' * 5000}/tags/list"), 400, "NAME_INVALID")


def test_manifest_with_many_descriptors(client: httpx.Client) -> None:
    """Thousands of (missing) layers: one answer, one error entry each."""
    layers = [
        {"mediaType": "application/octet-stream", "digest": sha256(str(i).encode()), "size": 1}
        for i in range(5000)
    ]
    config = b'{"many": true}'
    push_blob(client, "bad/many", config)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": layers,
        }
    ).encode()
    entries = assert_error(
        push_manifest(client, "bad/many", "v1", body), 400, "MANIFEST_BLOB_UNKNOWN"
    )
    assert len(entries) == 5000
