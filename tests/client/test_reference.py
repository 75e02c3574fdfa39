"""References as users write them, and the OCI layout as a repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocinest.client import (
    BadReference,
    LayoutRef,
    LayoutRepository,
    NotFound,
    RemoteRef,
    parse_reference,
)
from ocinest.client.reference import is_local_host
from ocinest.oci.digest import Digest

from .helpers import arun

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "127.0.0.1:5000/myrepo/ko-build:build-1",
            RemoteRef("127.0.0.1:5000", "myrepo/ko-build", "build-1"),
        ),
        ("localhost/a", RemoteRef("localhost", "a")),
        ("reg.example/a/b/c@" + D, RemoteRef("reg.example", "a/b/c", None, Digest.parse(D))),
        ("reg.example:443/a:v1@" + D, RemoteRef("reg.example:443", "a", "v1", Digest.parse(D))),
        ("alpine", RemoteRef("docker.io", "library/alpine")),
        ("alpine:3.20", RemoteRef("docker.io", "library/alpine", "3.20")),
        ("user/app:v1", RemoteRef("docker.io", "user/app", "v1")),
        ("index.docker.io/user/app", RemoteRef("docker.io", "user/app")),
        ("[::1]:5000/x:y", RemoteRef("[::1]:5000", "x", "y")),
        ("oci:./build", LayoutRef(Path("./build"))),
        ("oci:/tmp/build:v1", LayoutRef(Path("/tmp/build"), "v1")),
        ("oci:/tmp/build@" + D, LayoutRef(Path("/tmp/build"), None, Digest.parse(D))),
        ("oci:rel/dir.v2/x:tag", LayoutRef(Path("rel/dir.v2/x"), "tag")),
    ],
)
def test_parse(text: str, expected: object) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        " reg.example/a",
        "reg.example/A",
        "reg.example/a:",
        "reg.example/a:-x",
        "reg.example/a@sha256:abc",
        "reg.example/a@md5:" + "a" * 32,
        "https://reg.example/a",
        "reg.example/",
        "reg.example/a//b",
        "bad_host.example:x/a",
        "oci:",
        "oci:dir:bad tag",
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(BadReference) as info:
        parse_reference(text)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("invalid reference")


def test_str_round_trip() -> None:
    for text in ("127.0.0.1:5000/a/b:v1", "reg.example/a@" + D, "oci:/tmp/x:v1"):
        assert str(parse_reference(text)) == text


def test_local_hosts_use_plain_http() -> None:
    assert is_local_host("localhost:5000")
    assert is_local_host("127.0.0.1")
    assert is_local_host("127.1.2.3:80")
    assert is_local_host("[::1]:5000")
    assert not is_local_host("reg.example")
    assert not is_local_host("10.0.0.1:5000")


def test_layout_repository(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        LayoutRepository(tmp_path / "absent")
    layout = LayoutRepository(tmp_path / "l", create=True)
    body = (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}'
    )

    async def go() -> None:
        digest = await layout.put_manifest(
            body, "application/vnd.oci.image.index.v1+json", "v1", root=True
        )
        assert (await layout.get_manifest("v1")).body == body
        assert (await layout.get_manifest(str(digest))).body == body
        assert (await layout.get_manifest(None)).digest == digest
        assert await layout.tags() == ["v1"]
        # Re-tagging replaces the entry.
        await layout.put_manifest(body, "application/vnd.oci.image.index.v1+json", "v1", root=True)
        assert len(layout.store.read_index()["manifests"]) == 1
        with pytest.raises(NotFound):
            await layout.get_manifest("v2")
        # A corrupt blob is refused, never returned.
        path = layout.store.blob_path(digest)
        path.write_bytes(body + b" ")
        with pytest.raises(Exception, match="does not match"):
            await layout.get_manifest("v1")

    arun(go())
