"""The tree endpoint is bounded in bytes as well as nodes: an index naming one large child
thousands of times cannot make an answer many times the size of what is stored, nor stall
the server while it is refused."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, error_codes, free_port, push_image, push_index
from tests.manifests import OCI_INDEX, descriptor, index_manifest, nested, sha256

ANNOTATION = 300_000
REPEATS = 3_000


def peak_rss(server: Server) -> int:
    """The server process's peak resident memory, in bytes (Linux)."""
    assert server.proc is not None
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def test_one_child_named_thousands_of_times(server: Server, client: httpx.Client) -> None:
    _, child_body = push_image(client, "amp/c", annotations={"big": "x" * ANNOTATION})
    parent = index_manifest(*[nested(child_body, "c") for _ in range(REPEATS)])
    assert push_index(client, "amp", "wide", parent).status_code == 201
    stored = len(parent) + len(child_body)
    before = peak_rss(server)

    answers: list[httpx.Response] = []

    def attack() -> None:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            answers.append(c.get("/v2/amp/_ocinest/tree/wide"))

    attackers = [threading.Thread(target=attack) for _ in range(8)]
    for t in attackers:
        t.start()
    # The server keeps answering while the attack runs.
    health = 0
    with httpx.Client(base_url=server.url, timeout=5) as c:
        while any(t.is_alive() for t in attackers):
            assert c.get("/healthz").status_code == 200
            health += 1
    for t in attackers:
        t.join()
    assert health > 0
    assert len(answers) == 8
    for r in answers:
        assert r.status_code == 413, r.text[:200]
        assert r.headers["Content-Type"].startswith("application/json")
        assert error_codes(r) == ["TREE_TOO_LARGE"]
        detail = r.json()["errors"][0]["detail"]
        assert "amp:wide" in detail and f"{16 << 20} bytes (tree_max_bytes)" in detail
    # Eight refusals did not each build the ~900 MB answer: memory grew by far less than
    # one such answer (or even 16 MiB per request plus what is stored, many times over).
    grown = peak_rss(server) - before
    assert grown < 400 << 20, f"peak RSS grew by {grown >> 20} MiB ({stored} bytes stored)"
    # A shallow look is still possible, and small.
    r = client.get("/v2/amp/_ocinest/tree/wide", params={"depth": 0})
    assert r.status_code == 200
    assert r.json()["truncated"] is True and r.json()["children"] == []


def tree_of_three(client: httpx.Client) -> httpx.Response:
    """Push t -> (t/a, t/b -> (two platform images)); its tree's answer."""
    _, a_body = push_image(client, "t/a", annotations={"note": "é" * 50})
    _, amd = push_image(client, "t/b")
    _, arm = push_image(client, "t/b")
    b = index_manifest(
        descriptor(amd, platform={"architecture": "amd64", "os": "linux"}),
        descriptor(arm, platform={"architecture": "arm64", "os": "linux"}),
    )
    assert push_index(client, "t/b", "latest", b).status_code == 201
    top = index_manifest(nested(a_body, "a"), nested(b, "b", OCI_INDEX))
    assert push_index(client, "t", "v1", top).status_code == 201
    r = client.get("/v2/t/_ocinest/tree/v1")
    assert r.status_code == 200
    return r


def test_the_byte_bound_is_the_size_of_the_answer(server: Server, client: httpx.Client) -> None:
    whole = tree_of_three(client)
    size = len(whole.content)
    etag = whole.headers["ETag"]
    tree = whole.json()
    assert [c["repository"] for c in tree["children"]] == ["t/a", "t/b"]
    assert len(tree["children"][1]["children"]) == 2

    # Exactly at the bound: the same answer, the same ETag and 304.
    server.stop()
    server.configure(tree_max_bytes=size)
    server.start()
    with httpx.Client(base_url=server.url) as c:
        r = c.get("/v2/t/_ocinest/tree/v1")
        assert r.status_code == 200
        assert r.content == whole.content and r.headers["ETag"] == etag
        assert c.get("/v2/t/_ocinest/tree/v1", headers={"If-None-Match": etag}).status_code == 304

    # One byte less: refused, and a shallower look fits.
    server.stop()
    server.configure(tree_max_bytes=size - 1)
    server.start()
    with httpx.Client(base_url=server.url) as c:
        r = c.get("/v2/t/_ocinest/tree/v1")
        assert r.status_code == 413 and error_codes(r) == ["TREE_TOO_LARGE"]
        assert f"more than {size - 1} bytes (tree_max_bytes)" in r.json()["errors"][0]["detail"]
        # A conditional request needs no tree at all.
        assert c.get("/v2/t/_ocinest/tree/v1", headers={"If-None-Match": etag}).status_code == 304
        shallow = c.get("/v2/t/_ocinest/tree/v1", params={"depth": 1})
        assert shallow.status_code == 200
        assert shallow.json()["children"][1]["truncated"] is True


@pytest.mark.parametrize(
    "options", [{"manifests": "1"}, {"tags": "1"}, {"manifests": "1", "tags": "1"}]
)
def test_what_the_options_add_is_counted_against_the_byte_bound(
    server: Server, client: httpx.Client, options: dict[str, str]
) -> None:
    tree_of_three(client)
    whole = client.get("/v2/t/_ocinest/tree/v1", params=options)
    assert whole.status_code == 200
    for bound, status in ((len(whole.content), 200), (len(whole.content) - 1, 413)):
        server.stop()
        server.configure(tree_max_bytes=bound)
        server.start()
        with httpx.Client(base_url=server.url) as c:
            r = c.get("/v2/t/_ocinest/tree/v1", params=options)
            assert r.status_code == status, r.text
            if status == 200:
                assert r.content == whole.content
            else:
                assert error_codes(r) == ["TREE_TOO_LARGE"]


def test_a_child_not_in_the_store_is_marked_missing(tmp_path: Path) -> None:
    # What a sparse descriptor's target never pushed looks like, made here by taking the
    # child's row out of the metadata behind the server's back (so: SQLite).
    server = Server(tmp_path / "data", free_port(), settings={"metadata": "sqlite"})
    server.start()
    try:
        with httpx.Client(base_url=server.url) as client:
            gone, gone_body = push_image(client, "s/gone")
            _, kept_body = push_image(client, "s/kept")
            top = index_manifest(nested(gone_body, "gone"), nested(kept_body, "kept"))
            assert push_index(client, "s", "v1", top).status_code == 201
            with sqlite3.connect(server.data / "meta.db") as db:
                db.execute("DELETE FROM manifests WHERE digest = ?", (gone,))
            deadline = time.monotonic() + 10
            while client.get(f"/v2/s/gone/manifests/{gone}").status_code != 404:
                assert time.monotonic() < deadline
            r = client.get("/v2/s/_ocinest/tree/v1")
            assert r.status_code == 200, r.text
            missing, present = r.json()["children"]
            assert missing["missing"] is True
            assert (missing["digest"], missing["size"]) == (gone, len(gone_body))
            assert missing["children"] == [] and missing["repository"] == "s/gone"
            assert "missing" not in present
            assert present["annotations"] == json.loads(kept_body).get("annotations", {})
    finally:
        server.stop()


def test_a_push_that_would_reach_more_than_tree_max_reach_is_refused(tmp_path: Path) -> None:
    # Each image is 3 (manifest, config, layer): the index over three reaches 9; the index
    # above it reaches that index too, 10. A deep tree pays its whole closure at every
    # level, so the bound is on what one push makes readable, however deep.
    server = Server(tmp_path / "data", free_port(), settings={"tree_max_reach": 9})
    server.start()
    try:
        with httpx.Client(base_url=server.url) as c:
            images = [push_image(c, f"d/x/c{i}")[1] for i in range(3)]
            mid = index_manifest(*[nested(body, f"c{i}") for i, body in enumerate(images)])
            assert push_index(c, "d/x", "v1", mid).status_code == 201
            top = index_manifest(nested(mid, "x", OCI_INDEX))
            r = push_index(c, "d", "v1", top)
            assert r.status_code == 413
            assert r.headers["Content-Type"].startswith("application/json")
            assert error_codes(r) == ["TREE_TOO_LARGE"]
            error = r.json()["errors"][0]
            assert "more than 9 manifests and blobs" in error["message"]
            assert "tree_max_reach" in error["detail"]
            # Nothing of the refused push is stored: no tag, no manifest, no reach.
            assert c.get("/v2/d/manifests/v1").status_code == 404
            assert c.head(f"/v2/d/manifests/{sha256(top)}").status_code == 404
            assert c.head(f"/v2/d/manifests/{sha256(images[0])}").status_code == 404
        server.stop()
        server.configure(tree_max_reach=10)
        server.start()
        with httpx.Client(base_url=server.url) as c:
            assert push_index(c, "d", "v1", top).status_code == 201
            assert c.head(f"/v2/d/manifests/{sha256(images[0])}").status_code == 200
    finally:
        server.stop()
