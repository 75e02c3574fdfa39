"""`--workers N`: N processes share the port; an upload may move between them."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, free_port, push_image
from tests.manifests import sha256

pytestmark = pytest.mark.stores  # run again on S3 + PostgreSQL (see .ci/run)


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_two_workers_share_uploads_and_metadata(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", free_port(), ["--workers", "2"])
    server.start()
    try:
        assert server.proc is not None
        workers = _children(server.proc.pid)
        assert len(workers) == 2
        # No keep-alive: every request is a new connection, spread by the kernel.
        with httpx.Client(
            base_url=server.url, limits=httpx.Limits(max_keepalive_connections=0)
        ) as c:
            for i in range(20):
                data = os.urandom(100_000 + i)
                location = c.post("/v2/w/blobs/uploads/").headers["Location"]
                for start in range(0, len(data), 30_000):
                    chunk = data[start : start + 30_000]
                    r = c.patch(
                        location,
                        content=chunk,
                        headers={"Content-Range": f"{start}-{start + len(chunk) - 1}"},
                    )
                    assert r.status_code == 202, r.text
                    location = r.headers["Location"]
                r = c.put(location, params={"digest": sha256(data)})
                assert r.status_code == 201, r.text
                assert c.get(f"/v2/w/blobs/{sha256(data)}").content == data
            _, body = push_image(c, "w", tag="v1")
            assert all(c.get("/v2/w/manifests/v1").content == body for _ in range(10))
        # A worker that dies is replaced.
        os.kill(workers[0], signal.SIGKILL)
        for _ in range(100):
            now = _children(server.proc.pid)
            if len(now) == 2 and workers[0] not in now:
                break
            time.sleep(0.05)
        replaced = _children(server.proc.pid)
        assert len(replaced) == 2 and workers[0] not in replaced
        with httpx.Client(base_url=server.url) as c:
            assert c.get("/v2/w/manifests/v1").status_code == 200
    finally:
        server.stop()
    # The workers stop with the server.
    assert not any(Path(f"/proc/{pid}").exists() for pid in replaced)
