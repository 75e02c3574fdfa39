"""Repository names: what the spec's grammar admits, and NAME_INVALID for the rest, on every
route, including dot segments sent as-is over a raw connection."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Server, push_blob
from tests.integration.ocihttp import (
    assert_api_header,
    assert_error,
    assert_status,
    raw_request,
    unknown_digest,
)
from tests.manifests import sha256

UPLOAD_ID = "0b9a3a5e-6f1e-4d8c-9c3b-1f2e3d4c5b6a"

VALID = [
    "a",
    "0",
    "a/b/c/d/e",
    "a-b",
    "a--b",
    "a__b",
    "a_b",
    "a.b",
    "a.b-c_d__e",
    "x" * 255,
    "a" * 127 + "/" + "b" * 127,
]

INVALID = [
    "Upper",
    "a/B",
    "-a",
    "a-",
    "_a",
    "a_",
    ".a",
    "a.",
    "a..b",
    "a___b",
    "a.-b",
    "a-.b",
    "a_-b",
    "a//b",
    "a/",
    "a%20b",
    "a%00b",
    "a%ffb",
    "a+b",
    "a:b",
    "a@b",
    "x" * 256,
    "a" * 128 + "/" + "b" * 127,
]


def routes(name: str) -> list[tuple[str, str]]:
    return [
        ("GET", f"/v2/{name}/tags/list"),
        ("POST", f"/v2/{name}/blobs/uploads/"),
        ("GET", f"/v2/{name}/blobs/uploads/{UPLOAD_ID}"),
        ("PATCH", f"/v2/{name}/blobs/uploads/{UPLOAD_ID}"),
        ("PUT", f"/v2/{name}/blobs/uploads/{UPLOAD_ID}?digest={unknown_digest()}"),
        ("DELETE", f"/v2/{name}/blobs/uploads/{UPLOAD_ID}"),
        ("GET", f"/v2/{name}/blobs/{unknown_digest()}"),
        ("HEAD", f"/v2/{name}/blobs/{unknown_digest()}"),
        ("DELETE", f"/v2/{name}/blobs/{unknown_digest()}"),
        ("GET", f"/v2/{name}/manifests/latest"),
        ("HEAD", f"/v2/{name}/manifests/latest"),
        ("PUT", f"/v2/{name}/manifests/latest"),
        ("DELETE", f"/v2/{name}/manifests/latest"),
        ("GET", f"/v2/{name}/referrers/{unknown_digest()}"),
    ]


@pytest.mark.parametrize("name", VALID, ids=lambda n: n if len(n) < 40 else f"len{len(n)}")
def test_valid_names_work(client: httpx.Client, name: str) -> None:
    data = name.encode()
    digest = push_blob(client, name, data)
    r = client.get(f"/v2/{name}/blobs/{digest}")
    assert_status(r, 200)
    assert r.content == data
    assert name in client.get("/v2/_catalog").json()["repositories"]


@pytest.mark.parametrize("name", INVALID, ids=lambda n: n if len(n) < 40 else f"len{len(n)}")
def test_invalid_names_on_tags_and_uploads(client: httpx.Client, name: str) -> None:
    assert_error(client.get(f"/v2/{name}/tags/list"), 400, "NAME_INVALID")
    assert_error(client.post(f"/v2/{name}/blobs/uploads/"), 400, "NAME_INVALID")
    r = client.post(f"/v2/{name}/blobs/uploads/", params={"digest": sha256(b"x")}, content=b"x")
    assert_error(r, 400, "NAME_INVALID")


@pytest.mark.parametrize("name", ["Upper/Case", "a..b", "x" * 256])
def test_invalid_name_on_every_route(client: httpx.Client, name: str) -> None:
    for method, path in routes(name):
        assert_error(client.request(method, path), 400, "NAME_INVALID")


def test_invalid_names_leave_nothing_behind(client: httpx.Client) -> None:
    for name in INVALID[:5]:
        client.post(f"/v2/{name}/blobs/uploads/", params={"digest": sha256(b"x")}, content=b"x")
    assert client.get("/v2/_catalog").json() == {"repositories": []}


@pytest.mark.parametrize(
    "path",
    [
        "/v2/foo/../bar/tags/list",
        "/v2/foo/./bar/tags/list",
        "/v2/../foo/tags/list",
        "/v2/./foo/tags/list",
        "/v2/foo/..",
        "/v2/foo/%2e%2e/bar/tags/list",
        "/v2/foo/../bar/blobs/uploads/",
        f"/v2/foo/../bar/blobs/{'sha256:' + 'a' * 64}",
        "/v2/foo/../bar/manifests/latest",
        f"/v2/foo/../bar/referrers/{'sha256:' + 'a' * 64}",
    ],
)
def test_dot_segments_are_name_invalid(server: Server, path: str) -> None:
    method = "POST" if path.endswith("/uploads/") else "GET"
    r = raw_request(server, method, path)
    if path == "/v2/foo/..":
        # No route ends in a name: an unknown endpoint.
        assert r.status == 404, r.body
    else:
        assert r.status == 400, (path, r.status, r.body)
        assert r.json()["errors"][0]["code"] == "NAME_INVALID"
    assert_api_header(r)


def test_dot_segments_do_not_reach_another_repository(server: Server, client: httpx.Client) -> None:
    data = b"bar's blob"
    digest = push_blob(client, "bar", data)
    r = raw_request(server, "GET", f"/v2/foo/../bar/blobs/{digest}")
    assert r.status == 400
    assert r.json()["errors"][0]["code"] == "NAME_INVALID"
    r = raw_request(server, "GET", f"/v2/bar/blobs/{digest}")
    assert r.status == 200
    assert r.body == data
