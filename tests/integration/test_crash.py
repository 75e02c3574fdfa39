"""SIGKILL at random moments of a mixed workload (uploads, chunked uploads, mounts, manifest
and tag pushes, tag deletes, garbage collection), many times over: every acknowledged write
reads back byte for byte, nothing unacknowledged is half visible, and fsck stays clean."""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, free_port, workload
from tests.manifests import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, sha256


@dataclass
class Ledger:
    """What the server acknowledged, and what was only attempted."""

    blobs: dict[tuple[str, str], bytes] = field(default_factory=dict)
    attempted: set[tuple[str, str]] = field(default_factory=set)
    tags: dict[tuple[str, str], bytes] = field(default_factory=dict)
    deleted: set[tuple[str, str]] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _blob(c: httpx.Client, rnd: random.Random, ledger: Ledger, repo: str) -> tuple[str, int]:
    data = rnd.randbytes(rnd.randint(1, 1 << 20))
    digest = sha256(data)
    with ledger.lock:
        ledger.attempted.add((repo, digest))
    if rnd.random() < 0.5:
        r = c.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
    else:
        r = c.post(f"/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202
        location = r.headers["Location"]
        cut = len(data) // 2
        r = c.patch(
            location, content=data[:cut], headers={"Content-Range": f"0-{cut - 1}"} if cut else {}
        )
        assert r.status_code == 202
        r = c.put(r.headers["Location"], params={"digest": digest}, content=data[cut:])
    assert r.status_code == 201, r.text
    with ledger.lock:
        ledger.blobs[(repo, digest)] = data
    return digest, len(data)


def _manifest(c: httpx.Client, rnd: random.Random, ledger: Ledger, repo: str, tag: str) -> None:
    config, config_size = _blob(c, rnd, ledger, repo)
    layer, layer_size = _blob(c, rnd, ledger, repo)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config, "size": config_size},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer, "size": layer_size}],
        }
    ).encode()
    r = c.put(f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    with ledger.lock:
        ledger.tags[(repo, tag)] = body


def _mount(c: httpx.Client, rnd: random.Random, ledger: Ledger, repo: str) -> None:
    with ledger.lock:
        if not ledger.blobs:
            return
        source, digest = rnd.choice(sorted(ledger.blobs))
        data = ledger.blobs[(source, digest)]
        ledger.attempted.add((repo, digest))
    r = c.post(f"/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": source})
    assert r.status_code == 201, r.text
    with ledger.lock:
        ledger.blobs[(repo, digest)] = data


def _workload(url: str, seed: int, ledger: Ledger) -> None:
    rnd = random.Random(seed)
    with httpx.Client(base_url=url, timeout=10) as c:
        try:
            for n in itertools.count():
                repo = f"crash/r{rnd.randint(0, 3)}"
                tag = f"t{seed}-{n}"  # one writer per tag: acknowledgements are ordered
                action = rnd.random()
                if action < 0.5:
                    _blob(c, rnd, ledger, repo)
                elif action < 0.65:
                    _mount(c, rnd, ledger, repo)
                elif action < 0.9:
                    _manifest(c, rnd, ledger, repo, tag)
                else:
                    # A tag pushed then deleted: once the DELETE is acknowledged it stays gone.
                    _manifest(c, rnd, ledger, repo, tag)
                    with ledger.lock:
                        del ledger.tags[(repo, tag)]
                    r = c.delete(f"/v2/{repo}/manifests/{tag}")
                    assert r.status_code == 202, r.text
                    with ledger.lock:
                        ledger.deleted.add((repo, tag))
        except httpx.TransportError:
            return  # the server was killed
        except AssertionError as exc:
            ledger.errors.append(repr(exc))


def _collector(server: Server, stop: threading.Event, procs: list[subprocess.Popen[bytes]]) -> None:
    """Garbage collection running beside the workload, killed with the server."""
    while not stop.is_set():
        proc = subprocess.Popen(
            [sys.executable, "-m", "ocinest", "gc", *server.cli_args(), "--delete-untagged"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        proc.wait()


def _verify(server: Server, ledger: Ledger) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for (repo, digest), data in ledger.blobs.items():
            r = c.get(f"/v2/{repo}/blobs/{digest}")
            assert r.status_code == 200, (repo, digest)
            assert r.content == data
        for (repo, tag), body in ledger.tags.items():
            r = c.get(f"/v2/{repo}/manifests/{tag}")
            assert r.status_code == 200, (repo, tag)
            assert r.content == body
        for repo, tag in ledger.deleted:
            assert c.get(f"/v2/{repo}/manifests/{tag}").status_code == 404, (repo, tag)
        # What was attempted but not acknowledged is either absent or whole.
        for repo, digest in ledger.attempted - set(ledger.blobs):
            r = c.get(f"/v2/{repo}/blobs/{digest}")
            assert r.status_code in (200, 404)
            if r.status_code == 200:
                assert sha256(r.content) == digest


@pytest.mark.stores  # run again on S3 + PostgreSQL (see .ci/run)
def test_sigkill_during_writes_loses_nothing_acknowledged(server: Server) -> None:
    ledger = Ledger()
    rnd = random.Random(1217)
    rounds = workload(10)
    for round_ in range(rounds):
        stop = threading.Event()
        gc_procs: list[subprocess.Popen[bytes]] = []
        threads = [
            threading.Thread(target=_workload, args=(server.url, round_ * 100 + i, ledger))
            for i in range(4)
        ]
        threads.append(threading.Thread(target=_collector, args=(server, stop, gc_procs)))
        for t in threads:
            t.start()
        # Kill once this round has had work acknowledged (the last round: once the whole run
        # did enough to mean anything), then at a random point a little later; so the test
        # means the same on a fast machine and on a loaded one.
        target, last = _acknowledged(ledger) + 4, round_ == rounds - 1
        _wait_until(
            lambda target=target, last=last: (
                _acknowledged(ledger) >= target
                and (not last or _enough(ledger) or bool(ledger.errors))
            )
        )
        time.sleep(rnd.uniform(0.0, 1.0))
        server.kill()
        stop.set()
        for proc in gc_procs:
            proc.kill()
        for t in threads:
            t.join(timeout=60)
            assert not t.is_alive()
        assert not ledger.errors
        server.start()
        _verify(server, ledger)
        check = subprocess.run(
            [sys.executable, "-m", "ocinest", "fsck", *server.cli_args()],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, check.stdout + check.stderr
    assert _enough(ledger), "the workload did too little to mean anything"


def _acknowledged(ledger: Ledger) -> int:
    with ledger.lock:
        return len(ledger.blobs) + len(ledger.tags) + len(ledger.deleted)


def _enough(ledger: Ledger) -> bool:
    with ledger.lock:
        return len(ledger.blobs) > 20 and len(ledger.tags) > 3 and bool(ledger.deleted)


def _wait_until(condition: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the workload made no progress"
        time.sleep(0.05)


@pytest.fixture
def filesystem_server(tmp_path: Path) -> Iterator[Server]:
    """A server on the filesystem blob store, whatever the run's configuration."""
    srv = Server(tmp_path / "data", free_port(), settings={"storage": "filesystem"})
    srv.start()
    yield srv
    srv.stop()


def test_chunked_upload_killed_mid_patch_resumes_from_the_bytes_kept(
    filesystem_server: Server,
) -> None:
    # A PATCH is not fsynced: what the upload reports after a crash must be what it holds,
    # with a hash state to match, so that resuming from the reported offset gives the digest.
    # A property of the filesystem store's upload files (so not marked `stores`).
    server = filesystem_server
    data = random.Random(17).randbytes(6 << 20)
    digest = sha256(data)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        done = c.post("/v2/crash/chunked/blobs/uploads/")
        assert done.status_code == 202
        location = done.headers["Location"]
        upload_file = server.data / "uploads" / location.rsplit("/", 1)[1]
        first = 1 << 20
        r = c.patch(location, content=data[:first], headers={"Content-Range": f"0-{first - 1}"})
        assert r.status_code == 202 and r.headers["Range"] == f"0-{first - 1}"
        release = threading.Event()

        def body() -> Iterator[bytes]:
            yield data[first : 3 << 20]
            release.wait(30)  # the server dies while this PATCH is open
            yield data[3 << 20 :]

        def patch() -> None:
            with contextlib.suppress(httpx.HTTPError):
                c.patch(location, content=body())

        sender = threading.Thread(target=patch)
        sender.start()
        _wait_until(lambda: upload_file.stat().st_size > first)
        server.kill()
        release.set()
        sender.join(timeout=60)
        assert not sender.is_alive()
    server.start()
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.get(location)
        assert r.status_code == 204
        kept = int(r.headers["Range"].split("-")[1]) + 1
        assert first < kept <= 3 << 20
        assert kept == upload_file.stat().st_size
        assert upload_file.read_bytes() == data[:kept]
        # The rest in two chunks: the first rebuilds the hash state from the file.
        middle = kept + (len(data) - kept) // 2
        r = c.patch(
            location, content=data[kept:middle], headers={"Content-Range": f"{kept}-{middle - 1}"}
        )
        assert r.status_code == 202 and r.headers["Range"] == f"0-{middle - 1}"
        r = c.put(location, params={"digest": digest}, content=data[middle:])
        assert r.status_code == 201, r.text
        assert c.get(f"/v2/crash/chunked/blobs/{digest}").content == data
        assert not upload_file.exists()
