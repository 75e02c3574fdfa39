"""Online garbage collection, fsck, and delete safety under concurrency."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    Server,
    StoredBlobs,
    push_blob,
    push_image,
    push_index,
    push_manifest,
    workload,
)
from tests.manifests import OCI_INDEX, OCI_MANIFEST, descriptor, index_manifest, nested, sha256

pytestmark = pytest.mark.stores  # run again on S3 + PostgreSQL (see .ci/run)


def ocinest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocinest", *args], capture_output=True, text=True, timeout=300
    )


def gc(server: Server, *args: str) -> dict[str, object]:
    r = ocinest("gc", *server.cli_args(), "--json", *args)
    assert r.returncode == 0, r.stderr
    report: dict[str, object] = json.loads(r.stdout)
    return report


def fsck(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return ocinest("fsck", *server.cli_args(), *args)


def layers_of(body: bytes) -> list[str]:
    doc = json.loads(body)
    return [doc["config"]["digest"], *[layer["digest"] for layer in doc["layers"]]]


def readable(client: httpx.Client, repo: str, body: bytes) -> bool:
    """The manifest and all its blobs can be read from `repo`."""
    digest = sha256(body)
    if client.get(f"/v2/{repo}/manifests/{digest}").status_code != 200:
        return False
    return all(client.get(f"/v2/{repo}/blobs/{d}").status_code == 200 for d in layers_of(body))


def test_gc_keeps_what_tags_reach(server: Server, client: httpx.Client) -> None:
    # A tagged multi-arch index with untagged children.
    _, amd_body = push_image(client, "multi")
    _, arm_body = push_image(client, "multi")
    multi = index_manifest(descriptor(amd_body), descriptor(arm_body))
    assert push_index(client, "multi", "v1", multi).status_code == 201
    # A tagged nested parent whose children are untagged, one of them itself nested.
    _, leaf_body = push_image(client, "p/c/leaf")
    mid = index_manifest(nested(leaf_body, "leaf"))
    assert push_index(client, "p/c", None, mid).status_code == 201
    top = index_manifest(nested(mid, "c", OCI_INDEX))
    assert push_index(client, "p", "v1", top).status_code == 201
    # A referrer of live content.
    empty = push_blob(client, "multi", b"{}")
    sig = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sig",
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": empty,
                "size": 2,
            },
            "layers": [
                {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}
            ],
            "subject": descriptor(multi, OCI_INDEX),
        }
    ).encode()
    assert push_manifest(client, "multi", sha256(sig), sig).status_code == 201
    # Truly unreachable: an untagged image, and a blob no manifest references.
    lost, lost_body = push_image(client, "junk")
    stray = push_blob(client, "junk", b"stray")

    report = gc(server, "--delete-untagged", "--grace", "0s")

    assert readable(client, "multi", amd_body) and readable(client, "multi", arm_body)
    assert readable(client, "p/c/leaf", leaf_body)
    assert readable(client, "p", leaf_body)  # through the parent
    assert client.get(f"/v2/p/c/manifests/{sha256(mid)}").status_code == 200
    assert client.get(f"/v2/multi/manifests/{sha256(sig)}").status_code == 200
    assert client.get(f"/v2/junk/manifests/{lost}").status_code == 404
    for digest in [*layers_of(lost_body), stray]:
        assert client.get(f"/v2/junk/blobs/{digest}").status_code == 404
    assert {m["digest"] for m in report["manifests"]} == {lost}  # type: ignore[index, union-attr]
    gone = {b["digest"] for b in report["blobs"]}  # type: ignore[index, union-attr]
    assert gone == {*layers_of(lost_body), stray}
    assert fsck(server).returncode == 0


def test_grace_window_and_dry_run(server: Server, client: httpx.Client) -> None:
    lost, lost_body = push_image(client, "junk")
    # Young content survives the default grace window of an hour.
    report = gc(server, "--delete-untagged")
    assert report["manifests"] == [] and report["blobs"] == []
    # A dry run reports, with sizes, and deletes nothing.
    report = gc(server, "--delete-untagged", "--grace", "0", "--dry-run")
    assert report["dry_run"] is True
    assert [m["digest"] for m in report["manifests"]] == [lost]  # type: ignore[index, union-attr]
    assert sum(b["size"] for b in report["blobs"]) > 0  # type: ignore[index, union-attr]
    assert readable(client, "junk", lost_body)
    # Without --delete-untagged untagged manifests stay.
    assert gc(server, "--grace", "0")["manifests"] == []
    assert readable(client, "junk", lost_body)


def test_a_deletion_a_crash_undid_is_done_again_by_the_next_gc(
    server: Server, client: httpx.Client
) -> None:
    data = b"deleted, then back after a crash"
    digest = push_blob(client, "undone", data)
    assert client.delete(f"/v2/undone/blobs/{digest}").status_code == 202
    report = gc(server, "--grace", "0")
    assert [b["digest"] for b in report["blobs"]] == [digest]  # type: ignore[index, union-attr]
    stored = StoredBlobs(server)
    assert not stored.exists(digest)
    # A deletion is not made durable: after a crash the content may be back, named by no row.
    stored.put(digest, data)
    assert client.head(f"/v2/undone/blobs/{digest}").status_code == 404
    report = gc(server, "--grace", "0")
    assert [b["digest"] for b in report["blobs"]] == [digest]  # type: ignore[index, union-attr]
    assert not stored.exists(digest)
    # And a push of the same bytes meanwhile is whole.
    stored.put(digest, data)
    assert push_blob(client, "again", data) == digest
    assert client.get(f"/v2/again/blobs/{digest}").content == data


def test_expired_upload_sessions_are_purged(server: Server, client: httpx.Client) -> None:
    server.stop()
    server.configure(upload_ttl="0s")
    server.start()
    location = client.post("/v2/up/blobs/uploads/").headers["Location"]
    assert client.patch(location, content=b"partial").status_code == 202
    assert len(gc(server)["uploads"]) == 1  # type: ignore[arg-type]
    assert client.get(location).status_code == 404


def test_gc_while_pushing_never_breaks_a_manifest(server: Server, client: httpx.Client) -> None:
    shared_layer = b"shared layer bytes" * 100
    errors: list[str] = []

    def pusher(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            for i in range(workload(16)):
                try:
                    repo = f"busy/r{n % 3}"
                    push_image(c, repo, tag=f"t{i % 4}", layers=[shared_layer])
                except AssertionError as exc:
                    errors.append(repr(exc))

    threads = [threading.Thread(target=pusher, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    # A grace window longer than one push takes (on S3 too): content pushed for a manifest
    # not yet written is never taken, while manifests untagged by moved tags go.
    GRACE = "3s"
    deleted = 0
    while any(t.is_alive() for t in threads):
        deleted += len(gc(server, "--delete-untagged", "--grace", GRACE)["manifests"])  # type: ignore[arg-type]
    for t in threads:
        t.join()
    time.sleep(3.1)
    deleted += len(gc(server, "--delete-untagged", "--grace", GRACE)["manifests"])  # type: ignore[arg-type]
    assert not errors
    assert deleted > 0
    # Every tag points at a manifest whose content is all there.
    for n in range(3):
        repo = f"busy/r{n}"
        for tag in client.get(f"/v2/{repo}/tags/list").json()["tags"]:
            r = client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
            assert r.status_code == 200
            assert readable(client, repo, r.content)
    assert fsck(server).returncode == 0


def test_hundred_concurrent_pushers_of_one_blob(server: Server) -> None:
    data = b"the same blob" * 5000
    digest = sha256(data)
    statuses: list[int] = []

    def push() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            r = c.post("/v2/same/blobs/uploads/")
            r = c.patch(r.headers["Location"], content=data)
            r = c.put(r.headers["Location"], params={"digest": digest})
            statuses.append(r.status_code)

    threads = [threading.Thread(target=push) for _ in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [201] * 100
    with httpx.Client(base_url=server.url) as c:
        assert c.get(f"/v2/same/blobs/{digest}").content == data
    stored = StoredBlobs(server)
    assert stored.digests() == [digest]
    assert stored.uploads() == []


def test_fsck_finds_and_repairs_corruption(server: Server, client: httpx.Client) -> None:
    digest, body = push_image(client, "x", tag="v1")
    layer = json.loads(body)["layers"][0]["digest"]
    stored = StoredBlobs(server)
    stored.corrupt(layer)
    r = fsck(server)
    assert r.returncode == 1
    assert f"corrupt blob: {layer}" in r.stdout
    r = fsck(server, "--repair")
    assert f"dropped blob {layer}" in r.stdout
    assert f"dangling reference: x@{digest} -> blob" in r.stdout  # the manifest needs a re-push
    assert not stored.exists(layer)
    assert client.get(f"/v2/x/blobs/{layer}").status_code == 404


def test_fsck_and_gc_need_data(tmp_path: Path) -> None:
    r = ocinest("fsck", "--data", str(tmp_path / "none"))
    assert r.returncode == 1
    assert "no registry data" in r.stderr
    assert "Traceback" not in r.stderr
    r = ocinest("gc", "--data", str(tmp_path), "--grace", "soon")
    assert r.returncode == 2
    assert "not a duration" in r.stderr
