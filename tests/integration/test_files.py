"""The files view (contract rule 9): a pinned tree's layers served by their titles."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from tests.authkit import USERS, ec_key, write_htpasswd, write_key
from tests.conftest import (
    Server,
    error_codes,
    free_port,
    push_artifact,
    push_index,
)
from tests.integration.ocihttp import raw_request
from tests.manifests import index_manifest, nested, sha256

RPM = b"\xed\xab\xee\xdb" + bytes(range(256)) * 8
REPOMD = b"<repomd>one</repomd>\n"
CREATED = "2024-05-01T12:00:00Z"


def push_tree(
    client: httpx.Client, repo: str, rpm: bytes, repomd: bytes, tag: str = "latest", **more: bytes
) -> str:
    _, b1 = push_artifact(client, f"{repo}/hello", {"hello-1.0-1.noarch.rpm": rpm})
    _, b2 = push_artifact(client, f"{repo}/repodata", {"repodata/repomd.xml": repomd, **more})
    body = index_manifest(
        nested(b1, "hello"),
        nested(b2, "repodata"),
        annotations={"org.opencontainers.image.created": CREATED},
    )
    r = push_index(client, repo, tag, body)
    assert r.status_code == 201, r.text
    return sha256(body)


@pytest.fixture
def tree(client: httpx.Client) -> str:
    return push_tree(client, "myrpmrepo", RPM, REPOMD)


def test_files_by_digest_are_immutable(client: httpx.Client, tree: str) -> None:
    r = client.get(f"/_ocinest/files/myrpmrepo@{tree}/repodata/repomd.xml")
    assert r.status_code == 200, r.text
    assert r.content == REPOMD
    assert r.headers["ETag"] == f'"{sha256(REPOMD)}"'
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert r.headers["Last-Modified"] == "Wed, 01 May 2024 12:00:00 GMT"
    assert r.headers["Content-Type"] == "application/xml"

    r = client.get(f"/_ocinest/files/myrpmrepo@{tree}/hello-1.0-1.noarch.rpm")
    assert r.content == RPM and r.headers["Content-Type"] == "application/x-rpm"
    r = client.head(f"/_ocinest/files/myrpmrepo@{tree}/hello-1.0-1.noarch.rpm")
    assert r.status_code == 200 and r.headers["Content-Length"] == str(len(RPM))
    assert r.content == b""

    r = client.get(
        f"/_ocinest/files/myrpmrepo@{tree}/repodata/repomd.xml",
        headers={"If-None-Match": f'"{sha256(REPOMD)}"'},
    )
    assert r.status_code == 304
    metrics = client.get("/metrics").text
    assert 'route="files",status="200"' in metrics and 'route="files",status="304"' in metrics


def test_range(client: httpx.Client, tree: str) -> None:
    url = f"/_ocinest/files/myrpmrepo@{tree}/hello-1.0-1.noarch.rpm"
    r = client.get(url, headers={"Range": "bytes=4-9"})
    assert r.status_code == 206
    assert r.content == RPM[4:10]
    assert r.headers["Content-Range"] == f"bytes 4-9/{len(RPM)}"
    r = client.get(url, headers={"Range": f"bytes={len(RPM)}-"})
    assert r.status_code == 416 and error_codes(r) == ["RANGE_INVALID"]


def test_tag_resolved_per_request(client: httpx.Client, tree: str) -> None:
    url = "/_ocinest/files/myrpmrepo:latest/repodata/repomd.xml"
    r = client.get(url)
    assert r.content == REPOMD and r.headers["Cache-Control"] == "no-cache"
    newer = push_tree(client, "myrpmrepo", RPM, b"<repomd>two</repomd>\n")
    assert newer != tree
    assert client.get(url).content == b"<repomd>two</repomd>\n"
    # The old digest still serves the old files.
    old = client.get(f"/_ocinest/files/myrpmrepo@{tree}/repodata/repomd.xml")
    assert old.content == REPOMD


def test_listing(client: httpx.Client) -> None:
    digest = push_tree(client, "listed", RPM, REPOMD, **{"repodata/<b>odd&.xml": b"x"})
    r = client.get(f"/_ocinest/files/listed@{digest}/")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert 'href="repodata/"' in r.text and 'href="hello-1.0-1.noarch.rpm"' in r.text
    r = client.get(f"/_ocinest/files/listed@{digest}/repodata", follow_redirects=False)
    assert r.status_code == 301
    assert r.headers["Location"] == f"/_ocinest/files/listed@{digest}/repodata/"
    r = client.get(f"/_ocinest/files/listed@{digest}/repodata/")
    assert "&lt;b&gt;odd&amp;.xml" in r.text and "<b>" not in r.text
    assert 'href="%3Cb%3Eodd%26.xml"' in r.text and 'href="../"' in r.text
    assert client.get(f"/_ocinest/files/listed@{digest}/repodata/%3Cb%3Eodd%26.xml").content == b"x"


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("repodata/primary.xml.gz", 404, "BLOB_UNKNOWN"),
        ("repodata/../hello-1.0-1.noarch.rpm", 404, "BLOB_UNKNOWN"),
        ("repodata/%2E%2E/hello-1.0-1.noarch.rpm", 404, "BLOB_UNKNOWN"),
        ("repodata//repomd.xml", 404, "BLOB_UNKNOWN"),
        ("repodata%2Frepomd.xml", 400, "NAME_INVALID"),
        ("..%2F..%2Fetc%2Fpasswd", 400, "NAME_INVALID"),
    ],
)
def test_paths_outside_the_tree(
    server: Server, tree: str, path: str, status: int, code: str
) -> None:
    r = raw_request(server, "GET", f"/_ocinest/files/myrpmrepo@{tree}/{path}")
    assert r.status == status, r.body
    assert r.headers["Content-Type"] == "application/json"
    assert [e["code"] for e in r.json()["errors"]] == [code]


def test_unknown_root_and_bad_references(client: httpx.Client, tree: str) -> None:
    r = client.get(f"/_ocinest/files/myrpmrepo@{sha256(b'none')}/repodata/repomd.xml")
    assert r.status_code == 404 and error_codes(r) == ["MANIFEST_UNKNOWN"]
    r = client.get("/_ocinest/files/myrpmrepo:nope/repodata/repomd.xml")
    assert r.status_code == 404 and error_codes(r) == ["MANIFEST_UNKNOWN"]
    r = client.get("/_ocinest/files/myrpmrepo/repodata/repomd.xml")
    assert r.status_code == 400 and error_codes(r) == ["NAME_INVALID"]
    r = client.get("/_ocinest/files/myrpmrepo@sha256:xyz/repodata/repomd.xml")
    assert r.status_code == 400 and error_codes(r) == ["DIGEST_INVALID"]
    r = client.put(f"/_ocinest/files/myrpmrepo@{tree}/repodata/repomd.xml", content=b"x")
    assert r.status_code == 405 and error_codes(r) == ["UNSUPPORTED"]


def test_title_repeated_with_other_content_is_a_conflict(client: httpx.Client) -> None:
    _, b1 = push_artifact(client, "clash/a", {"repodata/repomd.xml": b"one"})
    _, b2 = push_artifact(client, "clash/b", {"repodata/repomd.xml": b"two"})
    body = index_manifest(nested(b1, "a"), nested(b2, "b"))
    assert push_index(client, "clash", "v1", body).status_code == 201
    r = client.get("/_ocinest/files/clash:v1/repodata/repomd.xml")
    assert r.status_code == 409, r.text
    detail = r.json()["errors"][0]["detail"]
    assert "repodata/repomd.xml" in detail and "clash/a" in detail and "clash/b" in detail
    # The same content twice is no conflict.
    _, b3 = push_artifact(client, "same/a", {"x.txt": b"one"})
    _, b4 = push_artifact(client, "same/b", {"x.txt": b"one"})
    assert push_index(client, "same", "v1", index_manifest(nested(b3, "a"), nested(b4, "b")))
    assert client.get("/_ocinest/files/same:v1/x.txt").content == b"one"


# Authorization

POLICY = """
rules:
  - subjects: [alice]
    repositories: ["**"]
    actions: [pull, push]
  - subjects: [bob]
    repositories: ["myrpmrepo"]
    actions: [pull]
"""


def _server(tmp_path: Path, *args: str) -> Server:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    srv = Server(tmp_path / "data", free_port(), ["--policy", str(policy), *args])
    srv.start()
    return srv


@pytest.fixture(params=["basic", "token"])
def secured(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    args = ["--htpasswd", str(write_htpasswd(tmp_path / "htpasswd", USERS))]
    if request.param == "token":
        args += ["--token-key", str(write_key(tmp_path / "token.pem", ec_key()))]
    srv = _server(tmp_path, *args)
    yield srv
    srv.stop()


def test_basic_credentials_in_basic_and_token_mode(secured: Server) -> None:
    with httpx.Client(base_url=secured.url, auth=("alice", USERS["alice"])) as alice:
        if "--token-key" in secured.args:
            repos = ("myrpmrepo", "myrpmrepo/hello", "myrpmrepo/repodata")
            scopes = [("scope", f"repository:{repo}:pull,push") for repo in repos]
            r = alice.get("/auth/token", params=[("service", "ocinest"), *scopes])
            alice.auth = None
            alice.headers["Authorization"] = f"Bearer {r.json()['token']}"
        digest = push_tree(alice, "myrpmrepo", RPM, REPOMD)
    url = f"{secured.url}/_ocinest/files/myrpmrepo@{digest}/repodata/repomd.xml"
    r = httpx.get(url)
    assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"]
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    r = httpx.get(url, auth=("bob", "wrong"))
    assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"]
    # bob may pull the parent only: that covers the files its tree reaches (rule 4).
    r = httpx.get(url, auth=("bob", USERS["bob"]))
    assert r.status_code == 200 and r.content == REPOMD
    rpm = f"{secured.url}/_ocinest/files/myrpmrepo@{digest}/hello-1.0-1.noarch.rpm"
    assert httpx.get(rpm, auth=("bob", USERS["bob"])).content == RPM
    r = httpx.get(f"{secured.url}/v2/myrpmrepo/hello/tags/list", auth=("bob", USERS["bob"]))
    assert r.status_code in (401, 403)
    other = f"{secured.url}/_ocinest/files/myrpmrepo/hello:latest/hello-1.0-1.noarch.rpm"
    r = httpx.get(other, auth=("bob", USERS["bob"]))
    assert r.status_code in (401, 403) and error_codes(r)[0] in ("UNAUTHORIZED", "DENIED")


def test_external_issuer_only_explains_basic_cannot_work(tmp_path: Path) -> None:
    public = tmp_path / "issuer.pub"
    public.write_bytes(
        ec_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    settings = {"policy": str(policy), "token_public_key": str(public)}
    srv = Server(tmp_path / "data", free_port(), settings=settings)
    srv.start()
    try:
        r = httpx.get(
            f"{srv.url}/_ocinest/files/myrpmrepo:latest/repodata/repomd.xml",
            auth=("bob", USERS["bob"]),
        )
    finally:
        srv.stop()
    assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"]
    assert "htpasswd" in r.json()["errors"][0]["detail"]
