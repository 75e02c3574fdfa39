"""The scale-out stores failing for real: a PostgreSQL of the test's own stopped and restarted
(fast and immediate), a radosgw of the test's own on the Ceph cluster frozen (SIGSTOP) and
killed. What must hold: every answer during an outage is a 503 UNAVAILABLE OCI error within a
bound, naming the backend; /healthz answers at once and /readyz says which backend is down;
nothing acknowledged is lost; everything after recovery is answered normally; no blob GET is
ever a 200 followed by an error; a retried PUT completes; GC clears what failures leave.

Each PostgreSQL and each Ceph here is the test's own (scripts/postgres.sh,
scripts/ceph-s3-start.sh), so that stopping it disturbs no other test."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, error_codes, free_port, push_blob, push_image
from tests.integration.test_gc import fsck, gc, layers_of
from tests.manifests import sha256

SCRIPTS = Path(__file__).parents[2] / "scripts"
TIMEOUT = 2.0  # backend_timeout of the servers here
# An outage is answered within the backend timeout (twice, for an S3 call and its one retry),
# plus what a loaded 2-core machine adds.
BOUND = 2 * TIMEOUT + 4


class Postgres:
    """A PostgreSQL server of one test's own, made by scripts/postgres.sh."""

    def __init__(self, root: Path) -> None:
        self.dir, self.port = root, free_port()
        out = subprocess.run(
            ["bash", str(SCRIPTS / "postgres.sh"), "start", str(root), str(self.port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        self.dsn = out.stdout.strip()
        self.bin = max(Path("/usr/lib/postgresql").glob("*/bin"))

    def _ctl(self, *args: str) -> None:
        as_pg = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        cmd = [*as_pg, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-w", *args]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._ctl("-l", str(self.dir / "server.log"), "-o", options, "start")

    def close(self) -> None:
        subprocess.run(["bash", str(SCRIPTS / "postgres.sh"), "stop", str(self.dir)], timeout=120)


class Ceph:
    """A one-node Ceph S3 of the test's own (scripts/ceph-s3-start.sh), whose radosgw can be
    frozen, killed and restarted. Not the shared one: radosgw instances of a cluster notify
    each other, so freezing one would stall the others' bucket writes for 30 s."""

    ACCESS_KEY, SECRET_KEY = "faultaccess", "faultsecret1234567890"

    def __init__(self, root: Path) -> None:
        self.dir, self.port = root, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = os.environ | {
            "S3_DIR": str(root),
            "RGW_PORT": str(self.port),
            "MON_PORT_V2": str(free_port()),
            "MON_PORT_V1": str(free_port()),
            "ACCESS_KEY": self.ACCESS_KEY,
            "SECRET_KEY": self.SECRET_KEY,
        }
        out = subprocess.run(
            ["bash", str(SCRIPTS / "ceph-s3-start.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]

    def settings(self) -> dict[str, Any]:
        return {
            "storage": "s3",
            "s3_endpoint": self.url,
            "s3_access_key": self.ACCESS_KEY,
            "s3_secret_key": self.SECRET_KEY,
            "s3_bucket": f"t-{uuid.uuid4().hex[:24]}",
            "s3_part_size": 5 << 20,
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.ACCESS_KEY,
            aws_secret_access_key=self.SECRET_KEY,
            region_name="us-east-1",
        )

    def _rgw_pid(self) -> int:
        return int((self.dir / "run" / "client.rgw.a.pid").read_text())

    def signal_rgw(self, sig: int) -> None:
        os.kill(self._rgw_pid(), sig)

    def kill_rgw(self) -> None:
        pid = self._rgw_pid()
        os.kill(pid, signal.SIGKILL)
        while Path(f"/proc/{pid}").exists():
            time.sleep(0.05)

    def start_rgw(self) -> None:
        conf = str(self.dir / "ceph.conf")
        subprocess.run(["radosgw", "-c", conf, "-n", "client.rgw.a"], check=True, timeout=90)
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(self.url, timeout=1)
                return
            except httpx.TransportError:
                assert time.monotonic() < deadline, "radosgw did not answer within 60 s"
                time.sleep(0.1)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.signal_rgw(signal.SIGCONT)
            self.kill_rgw()  # (a restarted radosgw is not in the pids file)
        env = os.environ | {"S3_DIR": str(self.dir)}
        subprocess.run(["bash", str(SCRIPTS / "ceph-s3-stop.sh")], env=env, timeout=120)


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    # Not under pytest's folders: the server runs as the user postgres, who cannot enter them.
    pg = Postgres(Path(tempfile.gettempdir()) / f"ocinest-pg-{uuid.uuid4().hex}")
    yield pg
    pg.close()


@pytest.fixture(scope="module")
def ceph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ceph]:
    """A Ceph for the tests that only read and write it."""
    cluster = Ceph(tmp_path_factory.mktemp("ceph"))
    yield cluster
    cluster.close()


@pytest.fixture
def own_ceph(tmp_path: Path) -> Iterator[Ceph]:
    """A Ceph for one test that freezes and kills its radosgw."""
    cluster = Ceph(tmp_path / "ceph")
    yield cluster
    cluster.close()


def start_server(tmp_path: Path, **settings: Any) -> Server:
    server = Server(
        tmp_path / "data",
        free_port(),
        settings={"backend_timeout": TIMEOUT, "metadata": "sqlite", "storage": "filesystem"}
        | settings,
    )
    server.start()
    return server


def timed(fn: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    r = fn()
    return r, time.monotonic() - start


def assert_unavailable(r: httpx.Response, backend: str) -> None:
    assert r.status_code == 503, r.text
    assert error_codes(r) == ["UNAVAILABLE"]
    assert r.json()["errors"][0]["detail"].startswith(f"{backend} backend unavailable"), r.text
    assert r.headers["Retry-After"].isdigit()


def many(n: int, fn: Callable[[], httpx.Response]) -> list[tuple[httpx.Response, float]]:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: timed(fn), range(n)))


def readable(client: httpx.Client, repo: str, body: bytes) -> bool:
    digest = sha256(body)
    if client.get(f"/v2/{repo}/manifests/{digest}").content != body:
        return False
    return all(client.get(f"/v2/{repo}/blobs/{d}").status_code == 200 for d in layers_of(body))


# PostgreSQL


@pytest.fixture
def pg_s3_server(tmp_path: Path, postgres: Postgres, ceph: Ceph) -> Iterator[Server]:
    """A server on the test's own PostgreSQL and the module's Ceph."""
    server = start_server(
        tmp_path, metadata="postgres", postgres_dsn=postgres.dsn, **ceph.settings()
    )
    yield server
    server.stop()


def test_postgres_restarts_are_invisible_to_clients(
    pg_s3_server: Server, postgres: Postgres
) -> None:
    server = pg_s3_server
    with httpx.Client(base_url=server.url, timeout=30) as client:
        pushed = [push_image(client, "pg/app", tag="v0")]
        url = f"{server.url}/v2/pg/app/manifests/v0"
        # Every pooled connection in use once, so that all of them die with the server.
        assert all(r.status_code == 200 for r, _ in many(16, lambda: httpx.get(url)))
        for mode in ("fast", "immediate"):
            postgres.stop(mode)
            postgres.start()
            answers = many(16, lambda: httpx.get(url, timeout=30))
            assert [r.status_code for r, _ in answers] == [200] * 16, [r.text for r, _ in answers]
            pushed.append(push_image(client, "pg/app", tag=mode))
        assert all(readable(client, "pg/app", body) for _, body in pushed)
    assert fsck(server).returncode == 0


def test_postgres_down_is_503_at_once_and_recovers(tmp_path: Path, postgres: Postgres) -> None:
    server = start_server(tmp_path, metadata="postgres", postgres_dsn=postgres.dsn)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            _, body = push_image(client, "pg/app", tag="v1")
            url = f"{server.url}/v2/pg/app/manifests/v1"
            postgres.stop("fast")

            # 24 GETs at once: none queues behind another's wait; /healthz meanwhile at once.
            health: list[float] = []

            def probe() -> None:
                for _ in range(5):
                    r, seconds = timed(lambda: client.get("/healthz"))
                    assert r.status_code == 200
                    health.append(seconds)

            prober = threading.Thread(target=probe)
            prober.start()
            answers = many(24, lambda: httpx.get(url, timeout=60))
            prober.join()
            for r, seconds in answers:
                assert_unavailable(r, "metadata")
                assert seconds < BOUND, seconds
            assert max(health) < 1, health

            r = client.get("/readyz")
            assert r.status_code == 503
            assert r.json()["status"] == "unavailable"
            assert r.json()["metadata"].startswith("unavailable: metadata backend unavailable")
            assert r.json()["blobs"] == "ok"
            r, seconds = timed(lambda: client.post("/v2/pg/app/blobs/uploads/"))
            assert_unavailable(r, "metadata")
            assert seconds < BOUND

            postgres.start()
            deadline = time.monotonic() + 30
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "not ready 30 s after PostgreSQL came back"
                time.sleep(0.2)
            assert [r.status_code for r, _ in many(16, lambda: httpx.get(url))] == [200] * 16
            assert readable(client, "pg/app", body)
            push_image(client, "pg/app", tag="v2")
        assert fsck(server).returncode == 0
    finally:
        server.stop()


def test_a_retried_put_completes_after_the_database_lost_its_commit(
    pg_s3_server: Server, postgres: Postgres
) -> None:
    server = pg_s3_server
    with httpx.Client(base_url=server.url, timeout=60) as client:
        data = os.urandom(6 << 20)
        digest = sha256(data)
        location = client.post("/v2/pg/blob/blobs/uploads/").headers["Location"]

        def body_that_stops_the_database() -> Iterator[bytes]:
            yield data[: 3 << 20]
            postgres.stop("immediate")  # the session was looked up; the commit will fail
            yield data[3 << 20 :]

        r = client.put(location, params={"digest": digest}, content=body_that_stops_the_database())
        assert_unavailable(r, "metadata")
        postgres.start()
        # The client's retry of the same request, as a standard client makes it.
        r = client.put(location, params={"digest": digest}, content=data)
        assert r.status_code == 201, r.text
        assert client.get(f"/v2/pg/blob/blobs/{digest}").content == data
    assert fsck(server).returncode == 0


# S3


def test_s3_outages_are_503_within_the_bound_and_never_a_broken_200(
    tmp_path: Path, own_ceph: Ceph
) -> None:
    server = start_server(tmp_path, **own_ceph.settings())
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            big = os.urandom(64 << 20)
            big_digest = push_blob(client, "s3/app", big)
            _, body = push_image(client, "s3/app", tag="v1")
            layer = f"/v2/s3/app/blobs/{layers_of(body)[1]}"

            # Frozen mid-stream: the answer was a 200 with its length; the client gets a short
            # read within the bound, never an error answer spliced into the body.
            with client.stream("GET", f"/v2/s3/app/blobs/{big_digest}") as r:
                assert r.status_code == 200
                assert int(r.headers["Content-Length"]) == len(big)
                received = bytearray()
                chunks = r.iter_raw()
                while len(received) < 1 << 20:
                    received += next(chunks)
                own_ceph.signal_rgw(signal.SIGSTOP)
                start = time.monotonic()
                with pytest.raises(httpx.RemoteProtocolError):
                    for chunk in chunks:
                        received += chunk
                assert time.monotonic() - start < BOUND
            assert len(received) < len(big) and big.startswith(received)

            # Frozen: pushes and GETs are 503 naming the blobs within the bound; /healthz at
            # once; metadata-only answers (HEAD) still served.
            for request in (
                lambda: client.get(layer),
                lambda: client.post(
                    "/v2/s3/app/blobs/uploads/", params={"digest": sha256(b"x")}, content=b"x"
                ),
            ):
                r, seconds = timed(request)
                assert_unavailable(r, "blobs")
                assert seconds < BOUND, seconds
            r, seconds = timed(lambda: client.get("/healthz"))
            assert r.status_code == 200 and seconds < 1
            assert client.head(layer).status_code == 200
            r = client.get("/readyz")
            assert r.status_code == 503
            assert r.json()["metadata"] == "ok"
            assert r.json()["blobs"].startswith("unavailable: blobs backend unavailable")

            # Killed: refused at once, as 503.
            own_ceph.signal_rgw(signal.SIGCONT)
            own_ceph.kill_rgw()
            r, seconds = timed(lambda: client.get(layer))
            assert_unavailable(r, "blobs")
            assert seconds < BOUND
            assert client.get("/readyz").status_code == 503

            own_ceph.start_rgw()
            assert client.get("/readyz").status_code == 200
            assert client.get(f"/v2/s3/app/blobs/{big_digest}").content == big
            assert readable(client, "s3/app", body)
            push_image(client, "s3/app", tag="v2")
        assert fsck(server).returncode == 0
    finally:
        server.stop()


def test_gc_clears_what_failures_leave_in_s3(tmp_path: Path, ceph: Ceph) -> None:
    settings = ceph.settings()
    server = start_server(tmp_path, upload_debris_age=3, upload_ttl=3, **settings)
    s3 = ceph.client()
    bucket = settings["s3_bucket"]
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            _, kept = push_image(client, "gc/app", tag="v1")
            # A writer that died right after starting its multipart upload: no state, no row.
            dead = str(uuid.uuid4())
            multipart = s3.create_multipart_upload(Bucket=bucket, Key=f"uploads/{dead}/data")
            s3.upload_part(
                Bucket=bucket,
                Key=f"uploads/{dead}/data",
                UploadId=multipart["UploadId"],
                PartNumber=1,
                Body=b"part",
            )
            # A tail a writer left while its session was being dropped.
            dropped = str(uuid.uuid4())
            s3.put_object(Bucket=bucket, Key=f"uploads/{dropped}/tail.x", Body=b"tail")
            # A blob copied to its address by a commit whose metadata never committed.
            orphan = sha256(b"copied, never committed")
            s3.put_object(Bucket=bucket, Key=f"blobs/sha256/{orphan[7:9]}/{orphan[7:]}", Body=b"x")
            # A session a client abandoned.
            abandoned = client.post("/v2/gc/app/blobs/uploads/").headers["Location"]
            time.sleep(4.5)  # past every window (S3 keeps whole seconds)
            young = str(uuid.uuid4())
            s3.put_object(Bucket=bucket, Key=f"uploads/{young}/tail.y", Body=b"young")

            report = gc(server, "--grace", "0s")
            assert set(report["uploads"]) >= {dead, dropped, abandoned.rsplit("/", 1)[1]}
            assert young not in report["uploads"]
            assert orphan in [b["digest"] for b in report["blobs"]]
            assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
            assert [k for k in keys if k.startswith("uploads/")] == [f"uploads/{young}/tail.y"]
            assert f"blobs/sha256/{orphan[7:9]}/{orphan[7:]}" not in keys
            assert readable(client, "gc/app", kept)
    finally:
        server.stop()
