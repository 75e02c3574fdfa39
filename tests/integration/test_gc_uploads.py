"""GC against uploads in flight: an upload is never taken for crash debris, whatever the grace
window; only data no session names, and old enough, is."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, StoredBlobs, error_codes, free_port, push_image, workload
from tests.integration.test_gc import gc, layers_of
from tests.manifests import sha256

pytestmark = pytest.mark.stores  # run again on S3 + PostgreSQL (see .ci/run)

UPLOADERS = 6
ITERATIONS = workload(40)


def slowly(data: bytes) -> Iterator[bytes]:
    """The body in a few pieces with pauses: an upload that stays in flight for a while,
    its data file long untouched (the server writes in batches)."""
    step = len(data) // 4 + 1
    for start in range(0, len(data), step):
        time.sleep(0.05)
        yield data[start : start + step]


def test_gc_with_no_grace_never_breaks_an_upload(server: Server, client: httpx.Client) -> None:
    # Content a tagged image references: uploading it again must always work and it must
    # stay readable, however often GC runs.
    _, body = push_image(client, "up/kept", tag="v1", layers=[os.urandom(2048) for _ in range(4)])
    referenced = layers_of(body)
    stored: dict[str, bytes] = {}
    for digest in referenced:
        stored[digest] = client.get(f"/v2/up/kept/blobs/{digest}").content

    stop = threading.Event()
    reports: list[dict[str, object]] = []
    answers: list[tuple[str, int, str]] = []
    pushed: list[tuple[str, str, bytes]] = []

    def collector() -> None:
        while not stop.is_set():
            reports.append(gc(server, "--grace", "0s"))

    def uploader(n: int) -> None:
        rnd = random.Random(n)
        with httpx.Client(base_url=server.url, timeout=60) as c:
            for i in range(ITERATIONS):
                repo = "up/kept" if i % 3 == 0 else f"up/r{n}"
                if repo == "up/kept":
                    digest = rnd.choice(referenced)
                    data = stored[digest]
                else:
                    data = os.urandom(rnd.randint(1, 256 << 10))
                    digest = sha256(data)
                if i % 2:
                    how = "monolithic"
                    r = c.post(
                        f"/v2/{repo}/blobs/uploads/",
                        params={"digest": digest},
                        content=slowly(data),
                    )
                else:
                    how = "post+put"
                    r = c.post(f"/v2/{repo}/blobs/uploads/")
                    if r.status_code == 202:
                        r = c.put(
                            r.headers["Location"], params={"digest": digest}, content=slowly(data)
                        )
                answers.append((how, r.status_code, r.text[:300]))
                pushed.append((repo, digest, data))

    gc_thread = threading.Thread(target=collector)
    gc_thread.start()
    threads = [threading.Thread(target=uploader, args=(n,)) for n in range(UPLOADERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    gc_thread.join()

    assert len(answers) == UPLOADERS * ITERATIONS
    assert [a for a in answers if a[1] != 201] == []
    assert len(reports) >= 2, "GC hardly ran beside the uploads"
    # Every blob is readable after, unless a GC run says it took it (no grace: unreferenced
    # content goes); referenced content never goes.
    collected = {b["digest"] for report in reports for b in report["blobs"]}  # type: ignore[attr-defined]
    assert collected, "GC took nothing: the test meant nothing"
    assert not collected & set(referenced)
    for repo, digest, data in pushed:
        if digest in collected:
            continue
        r = client.get(f"/v2/{repo}/blobs/{digest}")
        assert r.status_code == 200, (repo, digest, r.text)
        assert r.content == data
    # No upload left data behind.
    assert StoredBlobs(server).uploads() == []


def test_only_old_data_no_session_names_is_debris(tmp_path: Path) -> None:
    # Debris is made by hand in the upload folder, so: the filesystem store.
    server = Server(tmp_path / "data", free_port(), settings={"storage": "filesystem"})
    server.start()
    try:
        with httpx.Client(base_url=server.url) as client:
            uploads = server.data / "uploads"
            old, young = str(uuid.uuid4()), str(uuid.uuid4())
            an_hour_ago = time.time() - 3600
            for name in (old, young):
                (uploads / name).write_bytes(b"left by a crash")
            os.utime(uploads / old, (an_hour_ago, an_hour_ago))
            # A session that has not moved for an hour is still a session.
            location = client.post("/v2/d/blobs/uploads/").headers["Location"]
            session = location.rsplit("/", 1)[1]
            assert client.patch(location, content=b"part one").status_code == 202
            os.utime(uploads / session, (an_hour_ago, an_hour_ago))

            report = gc(server, "--grace", "0s")
            assert report["uploads"] == [old]
            assert sorted(p.name for p in uploads.iterdir()) == sorted([young, session])
            data = b"part one, and two"
            r = client.put(location, params={"digest": sha256(data)}, content=b", and two")
            assert r.status_code == 201, r.text
            assert client.get(f"/v2/d/blobs/{sha256(data)}").content == data

            # A session whose data went away behind the server's back is an OCI error.
            location = client.post("/v2/d/blobs/uploads/").headers["Location"]
            (uploads / location.rsplit("/", 1)[1]).unlink()
            r = client.put(location, params={"digest": sha256(b"")}, content=b"")
            assert r.status_code == 404 and error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
    finally:
        server.stop()
