"""Two `ocinest serve` processes on different ports over the same stores (whatever the
configuration under test: SQLite + filesystem, PostgreSQL + filesystem, PostgreSQL + S3),
a client's requests alternating between them."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, free_port, push_image
from tests.manifests import OCI_MANIFEST, sha256

pytestmark = pytest.mark.stores  # run again on S3 + PostgreSQL (see .ci/run)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    a = Server(tmp_path / "data", free_port())
    b = Server(tmp_path / "data", free_port(), settings=dict(a.settings))
    a.start()
    b.start()
    yield a, b
    a.stop()
    b.stop()


def test_requests_alternate_between_processes(pair: tuple[Server, Server]) -> None:
    a, b = pair
    with httpx.Client(timeout=60) as c:
        data = os.urandom(3 * 1024 * 1024 + 17)
        # An upload started on one process, continued and finished on the other.
        location = c.post(f"{a.url}/v2/shared/blobs/uploads/").headers["Location"]
        step = 1024 * 1024
        for i, start in enumerate(range(0, len(data), step)):
            chunk = data[start : start + step]
            server = (b, a)[i % 2]
            r = c.patch(
                server.url + location,
                content=chunk,
                headers={"Content-Range": f"{start}-{start + len(chunk) - 1}"},
            )
            assert r.status_code == 202, r.text
            location = r.headers["Location"]
            # The status is the same, asked of either.
            for other in (a, b):
                assert c.get(other.url + location).headers["Range"] == f"0-{start + len(chunk) - 1}"
        r = c.put(b.url + location, params={"digest": sha256(data)})
        assert r.status_code == 201, r.text
        for server in (a, b):
            assert c.get(f"{server.url}/v2/shared/blobs/{sha256(data)}").content == data
        # A manifest pushed on one, read on the other, its tag moved on the other.
        with httpx.Client(base_url=a.url, timeout=60) as on_a:
            digest, body = push_image(on_a, "shared", tag="v1")
        r = c.get(f"{b.url}/v2/shared/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert r.content == body and r.headers["Docker-Content-Digest"] == digest
        with httpx.Client(base_url=b.url, timeout=60) as on_b:
            digest2, _ = push_image(on_b, "shared", tag="v1")
        r = c.get(f"{a.url}/v2/shared/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert r.headers["Docker-Content-Digest"] == digest2
        assert c.get(f"{a.url}/v2/shared/tags/list").json()["tags"] == ["v1"]


def test_process_killed_mid_upload_client_resumes_on_the_other(pair: tuple[Server, Server]) -> None:
    a, b = pair
    data = os.urandom(8 * 1024 * 1024)
    with httpx.Client(timeout=60) as c:
        location = c.post(f"{a.url}/v2/resume/blobs/uploads/").headers["Location"]
        first = 2 * 1024 * 1024
        r = c.patch(a.url + location, content=data[:first])
        assert r.status_code == 202
        # A PATCH that dies with its process: part of its body sent, then SIGKILL.
        sock = socket.create_connection(("127.0.0.1", a.port))
        head = (
            f"PATCH {location} HTTP/1.1\r\nHost: {a.host}\r\n"
            f"Content-Length: {len(data) - first}\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        sock.sendall(head.encode() + data[first : first + 3 * 1024 * 1024])
        time.sleep(0.3)
        a.kill()
        sock.close()
        # The client asks the other process where the upload stands, and goes on from there.
        r = c.get(b.url + location)
        assert r.status_code == 204
        done = int(r.headers["Range"].split("-")[1]) + 1
        assert first <= done <= first + 3 * 1024 * 1024
        r = c.patch(
            b.url + r.headers["Location"],
            content=data[done:],
            headers={"Content-Range": f"{done}-{len(data) - 1}"},
        )
        assert r.status_code == 202, r.text
        r = c.put(b.url + r.headers["Location"], params={"digest": sha256(data)})
        assert r.status_code == 201, r.text
        assert c.get(f"{b.url}/v2/resume/blobs/{sha256(data)}").content == data
    a.start()  # and the killed one, back, agrees
    with httpx.Client(timeout=60) as c:
        assert c.get(f"{a.url}/v2/resume/blobs/{sha256(data)}").content == data
