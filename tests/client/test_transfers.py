"""What goes over the wire: a copy of a 100-child tree moves every blob once and a second copy
none (counted by real proxies in front of both registries); into ocinest, no per-manifest
existence checks; chunked uploads; the bound on parallel uploads; progress callbacks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

from ocinest.client import Client, Options, ProgressEvent, copy, parse_reference, push_files
from ocinest.client.auth import Credentials
from tests.authkit import write_htpasswd
from tests.conftest import Server, free_port, push_image, push_manifest
from tests.manifests import OCI_INDEX, index_manifest, nested, sha256

from .conftest import Distribution
from .helpers import arun, get_manifest
from .servers import CountingProxy

CHILDREN = 100


def hundred_children(client: httpx.Client, parent: str) -> tuple[str, dict[str, int]]:
    """parent:v1 pinning c000…c099; each child has its own config and layer, and all share one
    base layer. Returns the index digest and every distinct blob with its size."""
    base = os.urandom(20_000)
    blobs: dict[str, int] = {sha256(base): len(base)}
    descs = []
    for i in range(CHILDREN):
        own = os.urandom(1000 + i)
        _, body = push_image(client, f"{parent}/c{i:03d}", layers=[base, own])
        doc = json.loads(body)
        for d in [doc["config"], *doc["layers"]]:
            blobs[d["digest"]] = d["size"]
        descs.append(nested(body, f"c{i:03d}"))
    body = index_manifest(*descs)
    r = push_manifest(client, parent, "v1", body, OCI_INDEX)
    assert r.status_code == 201, r.text
    return sha256(body), blobs


def test_copy_of_100_children_moves_each_blob_once_and_then_none(
    server: Server, client: httpx.Client, distribution: Distribution
) -> None:
    root, blobs = hundred_children(client, "big/tree")
    with CountingProxy(server.url) as src, CountingProxy(distribution.url) as dst:

        def run_copy() -> Any:
            async def go() -> Any:
                async with Client(Options(concurrency=4)) as c:
                    return await copy(
                        c,
                        parse_reference(f"{src.host}/big/tree:v1"),
                        parse_reference(f"{dst.host}/mirror/tree"),
                    )

            return arun(go())

        first = run_copy()
        assert str(first.digest) == root and first.mode == "compat"
        # Every distinct blob uploaded exactly once, and downloaded exactly once.
        assert dict(dst.counts.blob_uploads) == {d: 1 for d in blobs}
        assert dst.counts.blob_bytes_up == sum(blobs.values())
        assert src.counts.blob_bytes_down == sum(blobs.values())
        # The shared base layer reached the other children (and, compat, the parent) by mounts.
        assert first.stats.blobs_uploaded == len(blobs)
        assert first.stats.blobs_mounted > 0
        # Uploads in parallel, within the bound.
        assert 1 <= dst.counts.max_inflight_uploads <= 4
        # The source's tree endpoint brought every manifest and the children's tags: no
        # manifest GET, no tag list, no HEAD of a tag (the ping and the tree, then blobs).
        assert src.counts.requests == {"GET other": 2, "GET blob": len(blobs)}

        src.counts.reset()
        dst.counts.reset()
        second = run_copy()
        assert str(second.digest) == root
        assert dst.counts.blob_bytes_up == 0
        assert src.counts.blob_bytes_down == 0
        assert not [k for k in dst.counts.requests if k.endswith(" upload")]
        assert second.stats.blobs_uploaded == 0 and second.stats.blobs_mounted == 0
        assert second.stats.manifests_pushed == 1  # only the tag is set again

    # The mirror is whole.
    r = httpx.get(f"{distribution.url}/v2/mirror/tree/manifests/v1", headers={"Accept": OCI_INDEX})
    assert sha256(r.content) == root
    c042 = json.loads(r.content)["manifests"][42]["digest"]
    assert get_manifest(distribution.url, "mirror/tree/c042", c042).status_code == 200
    assert get_manifest(distribution.url, "mirror/tree", c042).status_code == 200  # compat


def test_copy_into_ocinest_asks_nothing_per_manifest_and_a_second_copy_sends_nothing(
    server: Server, client: httpx.Client, second_server: Server
) -> None:
    root, blobs = hundred_children(client, "big/tree")
    with CountingProxy(second_server.url) as dst:

        def run_copy(target: str) -> Any:
            async def go() -> Any:
                async with Client(Options()) as c:
                    return await copy(
                        c,
                        parse_reference(f"{server.host}/big/tree:v1"),
                        parse_reference(f"{dst.host}/{target}"),
                    )

            return arun(go())

        first = run_copy("mirror/tree")
        assert str(first.digest) == root and first.mode == "native"
        # A fresh destination: no HEAD at all (each would answer 404); the tree endpoint said
        # what it holds (nothing), and the mounts answered for the blobs.
        assert dst.counts.requests["HEAD manifest"] == 0
        assert dst.counts.requests["HEAD blob"] == 0
        assert dict(dst.counts.blob_uploads) == {d: 1 for d in blobs}
        assert dst.counts.requests["PUT manifest"] == CHILDREN + 1

        dst.counts.reset()
        second = run_copy("mirror/tree")
        assert dst.counts.blob_bytes_up == 0
        assert not [k for k in dst.counts.requests if k.endswith(" upload")]
        # The ping, the tree at the root's digest (all of it there), the tag.
        assert dst.counts.requests == {"GET other": 2, "PUT manifest": 1}
        assert second.stats.manifests_skipped == CHILDREN

        dst.counts.reset()
        elsewhere = run_copy("other/place")  # the blobs are in mirror/tree/*: all mounted
        assert dst.counts.blob_bytes_up == 0 and not dst.counts.blob_uploads
        assert elsewhere.stats.blobs_uploaded == 0
        assert elsewhere.stats.blobs_mounted == len(blobs) + CHILDREN - 1  # base in each child
    r = httpx.get(f"{second_server.url}/v2/other/place/_ocinest/tree/v1")
    assert r.status_code == 200 and len(r.json()["children"]) == CHILDREN


def test_chunked_upload_and_progress(
    server: Server, distribution: Distribution, tmp_path: Path
) -> None:
    data = os.urandom(300_000)
    f = tmp_path / "big.bin"
    f.write_bytes(data)
    for upstream in (server.url, distribution.url):
        with CountingProxy(upstream) as proxy:
            events: list[ProgressEvent] = []

            async def go(host: str = proxy.host, events: list[ProgressEvent] = events) -> Any:
                async with Client(Options(chunk_size=64 * 1024)) as c:
                    return await push_files(
                        c,
                        parse_reference(f"{host}/chunked/files:v1"),
                        [(f, None)],
                        progress=events.append,
                    )

            result = arun(go())
            assert proxy.counts.requests["PATCH upload"] == 5  # 300 000 bytes in 64 KiB chunks
            layer = json.loads(result.body)["layers"][0]["digest"]
            got = httpx.get(f"{upstream}/v2/chunked/files/blobs/{layer}", follow_redirects=True)
            assert got.content == data
            moved = sum(e.amount for e in events if e.kind == "advance" and str(e.digest) == layer)
            assert moved == len(data)
            assert [e.outcome for e in events if e.kind == "done" and str(e.digest) == layer] == [
                "uploaded"
            ]


def test_large_blob_between_registries_is_spooled_and_chunked(
    server: Server, client: httpx.Client, distribution: Distribution
) -> None:
    """A blob above the in-memory limit goes through a verified temporary file, then up in
    PATCH chunks."""
    big = os.urandom(2_500_000)
    digest, _ = push_image(client, "large/app", tag="v1", layers=[big])
    with CountingProxy(distribution.url) as dst:

        async def go() -> Any:
            async with Client(Options(chunk_size=1 << 20)) as c:
                return await copy(
                    c,
                    parse_reference(f"{server.host}/large/app:v1"),
                    parse_reference(f"{dst.host}/large/copy"),
                )

        result = arun(go())
        assert str(result.digest) == digest
        assert dst.counts.requests["PATCH upload"] == 3  # 2.5 MB in 1 MiB chunks
    got = httpx.get(f"{distribution.url}/v2/large/copy/blobs/{sha256(big)}")
    assert got.content == big


def test_chunked_upload_resumes_after_a_dropped_connection(
    server: Server, distribution: Distribution, tmp_path: Path
) -> None:
    data = os.urandom(300_000)
    f = tmp_path / "big.bin"
    f.write_bytes(data)
    for upstream in (server.url, distribution.url):
        with CountingProxy(upstream, drop_patch=3) as proxy:

            async def go(host: str = proxy.host) -> Any:
                async with Client(Options(chunk_size=64 * 1024, backoff=0.01)) as c:
                    return await push_files(c, parse_reference(f"{host}/resumed/f:v1"), [(f, None)])

            result = arun(go())
            # Five chunks, the third sent twice (once broken off, never forwarded); one status
            # request to learn where to resume.
            assert proxy._patches == 6
            assert proxy.counts.requests["PATCH upload"] == 5
            assert proxy.counts.requests["GET upload"] == 1
            assert proxy.counts.requests["POST upload"] == 2  # the empty config and the file
        layer = json.loads(result.body)["layers"][0]["digest"]
        got = httpx.get(f"{upstream}/v2/resumed/f/blobs/{layer}", follow_redirects=True)
        assert got.content == data


def test_a_copy_through_the_parents_grant_alone_carries_no_child_tags(
    tmp_path: Path, second_server: Server
) -> None:
    """carol may pull `src` and, through it (rule 4), its children, but not the children's
    repositories themselves: their tags are not hers to read, so none are carried, and the
    copy still succeeds."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "rules:\n"
        "  - {subjects: [alice], repositories: ['**'], actions: [pull, push]}\n"
        "  - {subjects: [carol], repositories: [src], actions: [pull]}\n"
    )
    users = {"alice": "wonderland", "carol": "christmas"}
    htpasswd = write_htpasswd(tmp_path / "htpasswd", users)
    source = Server(
        tmp_path / "auth-data", free_port(), ["--htpasswd", str(htpasswd), "--policy", str(policy)]
    )
    source.start()
    try:
        with httpx.Client(base_url=source.url, auth=("alice", users["alice"])) as alice:
            _, app = push_image(alice, "src/app", tag="v1")
            assert push_manifest(alice, "src", "set", index_manifest(nested(app, "app")), OCI_INDEX)

        async def go(user: str) -> Any:
            creds = {source.host: Credentials(user, users[user])}
            async with Client(Options(credentials=creds)) as c:
                return await copy(
                    c,
                    parse_reference(f"{source.host}/src:set"),
                    parse_reference(f"{second_server.host}/{user}/set"),
                )

        assert arun(go("carol")).stats.tags_pushed == 0
        assert get_manifest(second_server.url, "carol/set/app", "v1").status_code == 404
        assert arun(go("alice")).stats.tags_pushed == 1
        assert get_manifest(second_server.url, "alice/set/app", "v1").status_code == 200
    finally:
        source.stop()
