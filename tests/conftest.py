"""Shared fixtures: a live `ocinest serve` over real HTTP, and helpers to push content."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import itertools
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from ocinest.oci.nested import TITLE_ANNOTATION
from tests.manifests import (
    ALGORITHMS,
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    EMPTY_JSON,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    descriptor,
    dumps,
    image_manifest,
    sha256,
)

_ports = itertools.count()
# Loopback ports 20000-31999 (below the kernel's ephemeral range) in blocks of 500: each
# pytest-xdist worker of a run takes its own block, and each run starts at a block of its own
# (from xdist's run id, or the process id), so that parallel workers never pick the same port
# and two test runs on one machine rarely do.
_BLOCK, _BLOCKS = 500, 24


def _port_block() -> int:
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    return (int(hashlib.sha256(run.encode()).hexdigest(), 16) + worker) % _BLOCKS


def free_port() -> int:
    """A free loopback port from this worker's own block (see above)."""
    base = 20000 + _port_block() * _BLOCK
    for _ in range(_BLOCK):
        port = base + next(_ports) % _BLOCK
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def workload(full: int) -> int:
    """How many rounds or iterations a stress test runs: `full` on filesystem + SQLite, half
    (at least 2) on the second pass on S3 + PostgreSQL (see .ci/run). There each step costs
    several times more, and the property checked is the same; half the rounds keep the run
    within its time budget."""
    second_pass = os.environ.get("OCINEST_TEST_STORAGE") == "s3"
    return max(2, full // 2) if second_pass else full


def backend_settings() -> dict[str, object]:
    """The storage settings of the configuration under test, each server on fresh, empty
    stores: OCINEST_TEST_METADATA=postgres (with OCINEST_TEST_POSTGRES, an admin DSN) and
    OCINEST_TEST_STORAGE=s3 (with S3_ENDPOINT and the AWS_* keys)."""
    settings: dict[str, object] = {}
    if os.environ.get("OCINEST_TEST_METADATA") == "postgres":
        import psycopg

        # A schema of its own (far cheaper to make than a database), as its search path.
        admin = os.environ["OCINEST_TEST_POSTGRES"]
        name = f"t_{uuid.uuid4().hex}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {name}".encode())
        dsn = f"{admin}{'&' if '?' in admin else '?'}options=-csearch_path%3D{name}"
        settings |= {"metadata": "postgres", "postgres_dsn": dsn}
    if os.environ.get("OCINEST_TEST_STORAGE") == "s3":
        settings |= {
            "storage": "s3",
            "s3_endpoint": os.environ["S3_ENDPOINT"],
            "s3_bucket": f"t-{uuid.uuid4().hex[:24]}",
            "s3_part_size": 5 << 20,
        }
    return settings


class StoredBlobs:
    """The content a server's blob store holds, looked at from outside the server."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.s3 = None
        if server.settings.get("storage") == "s3":
            import boto3

            self.s3 = boto3.client("s3", endpoint_url=str(server.settings["s3_endpoint"]))

    def _key(self, digest: str) -> str:
        algorithm, encoded = digest.split(":")
        return f"blobs/{algorithm}/{encoded[:2]}/{encoded}"

    def digests(self) -> list[str]:
        if self.s3 is None:
            root = self.server.data / "blobs"
            return sorted(
                f"{p.parent.parent.name}:{p.name}" for p in root.rglob("*") if p.is_file()
            )
        bucket = str(self.server.settings["s3_bucket"])
        listing = self.s3.list_objects_v2(Bucket=bucket, Prefix="blobs/").get("Contents", [])
        return sorted("{1}:{3}".format(*o["Key"].split("/")) for o in listing)

    def uploads(self) -> list[str]:
        if self.s3 is None:
            return [p.name for p in (self.server.data / "uploads").iterdir()]
        bucket = str(self.server.settings["s3_bucket"])
        listing = self.s3.list_objects_v2(Bucket=bucket, Prefix="uploads/").get("Contents", [])
        return [o["Key"] for o in listing]

    def exists(self, digest: str) -> bool:
        return digest in self.digests()

    def corrupt(self, digest: str) -> None:
        """Overwrite the blob's first bytes, behind the server's back."""
        if self.s3 is None:
            path = self.server.data / "blobs" / "sha256" / digest[7:9] / digest[7:]
            path.write_bytes(b"rotten" + path.read_bytes()[6:])
            return
        bucket = str(self.server.settings["s3_bucket"])
        body = self.s3.get_object(Bucket=bucket, Key=self._key(digest))["Body"].read()
        self.s3.put_object(Bucket=bucket, Key=self._key(digest), Body=b"rotten" + body[6:])

    def put(self, digest: str, data: bytes) -> None:
        """Store `data` at the digest's address, behind the server's back (what a crash that
        undid a deletion leaves)."""
        if self.s3 is None:
            path = self.server.data / "blobs" / "sha256" / digest[7:9] / digest[7:]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            return
        bucket = str(self.server.settings["s3_bucket"])
        self.s3.put_object(Bucket=bucket, Key=self._key(digest), Body=data)


@dataclass
class Server:
    """A running `ocinest serve` process, configured by a YAML file of its own."""

    data: Path
    port: int
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    # The CA that signed the server's certificate, when it serves TLS.
    ca: Path | None = None
    settings: dict[str, object] = field(default_factory=dict)
    # Whether it ever started: only a first start may move to another port.
    started: bool = False

    def __post_init__(self) -> None:
        self.settings = {"data": str(self.data), **backend_settings(), **self.settings}
        self._write_config()

    @property
    def config(self) -> Path:
        return self.data.parent / f"config-{self.port}.yaml"

    def _write_config(self) -> None:
        self.data.parent.mkdir(parents=True, exist_ok=True)
        self.config.write_text(json.dumps(self.settings))  # JSON is YAML

    def configure(self, **settings: object) -> None:
        """Change settings; they take effect at the next start."""
        self.settings.update(settings)
        self._write_config()

    def cli_args(self) -> list[str]:
        """What `ocinest gc`/`fsck` need to reach this server's stores."""
        return ["--config", str(self.config)]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.ca else 'http'}://{self.host}"

    def start(self) -> None:
        path = self.data.parent / f"server-{self.port}.log"
        log = open(path, "ab")  # noqa: SIM115
        # Only an answer after this process said it listens is its own (another program may
        # hold the port, in which case this one exits).
        offset = log.tell()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ocinest",
                "serve",
                "--addr",
                self.host,
                "--config",
                str(self.config),
                *self.args,
            ],
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 20
        with open(path, "rb") as f:
            f.seek(offset)
            seen = b""
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    code, self.proc = self.proc.returncode, None
                    if not self.started and "address already in use" in self.log_tail():
                        # Another program took the port since free_port() saw it free: a
                        # first start may move to another (a restart keeps its port).
                        self.port = free_port()
                        self._write_config()
                        return self.start()
                    pytest.fail(f"server exited with {code} at start:\n{self.log_tail()}")
                seen += f.read()
                if b"listening on" in seen and self._answers():
                    self.started = True
                    return
                time.sleep(0.01)
        self.stop(signal.SIGKILL)
        pytest.fail(f"server did not answer within 20 s of its start:\n{self.log_tail()}")

    def _answers(self) -> bool:
        """Whether GET /v2/ gets an HTTP answer (any: with auth on, it is 401)."""
        conn: http.client.HTTPConnection
        if self.ca:
            trust = ssl.create_default_context(cafile=str(self.ca))
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=2, context=trust)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", "/v2/")
            conn.getresponse().read()
            return True
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def log_tail(self) -> str:
        return (self.data.parent / f"server-{self.port}.log").read_text(errors="replace")[-3000:]

    def stop(self, sig: int = signal.SIGTERM, bound: float = 20) -> None:
        """Signal the server and wait for it; one still running `bound` seconds later is
        killed, with its workers, and the test fails."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=bound)
        except subprocess.TimeoutExpired:
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            for pid in [proc.pid, *map(int, children)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"server still running {bound} s after signal {sig}; killed it")

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as in a crash."""
        self.stop(signal.SIGKILL)


@pytest.fixture(params=ALGORITHMS)
def algorithm(request: pytest.FixtureRequest) -> str:
    """Each test taking it runs under every digest algorithm."""
    name: str = request.param
    return name


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data", free_port())
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def push_blob(client: httpx.Client, repo: str, data: bytes) -> str:
    """Monolithic POST+PUT; returns the digest."""
    digest = sha256(data)
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    r = client.put(r.headers["Location"], params={"digest": digest}, content=data)
    assert r.status_code == 201, r.text
    return digest


def oci_image(
    client: httpx.Client,
    repo: str,
    *,
    config: bytes | None = None,
    layers: list[bytes] | None = None,
    **extra: Any,
) -> bytes:
    """Push the config and layers of a small OCI image; return its manifest (not pushed)."""
    if config is None:
        config = dumps({"architecture": "amd64", "os": "linux", "n": uuid.uuid4().hex})
    layers = [os.urandom(64)] if layers is None else layers
    push_blob(client, repo, config)
    for layer in layers:
        push_blob(client, repo, layer)
    return image_manifest(
        descriptor(config, OCI_CONFIG), [descriptor(layer, OCI_LAYER) for layer in layers], **extra
    )


def docker_image(client: httpx.Client, repo: str) -> bytes:
    """Push the blobs of a small Docker schema2 image and return its manifest (not pushed)."""
    config = dumps({"architecture": "amd64", "os": "linux", "id": uuid.uuid4().hex})
    layer = uuid.uuid4().bytes * 8
    push_blob(client, repo, config)
    push_blob(client, repo, layer)
    return dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": descriptor(config, DOCKER_CONFIG),
            "layers": [descriptor(layer, DOCKER_LAYER)],
        }
    )


def push_artifact(
    client: httpx.Client, repo: str, files: dict[str, bytes], tag: str | None = None
) -> tuple[str, bytes]:
    """Push an artifact whose layers are `files`, each named by its title annotation (RPMs as
    application/x-rpm, anything else as XML), over the empty config; returns (digest, body)."""
    layers = [
        descriptor(
            data,
            "application/x-rpm" if title.endswith(".rpm") else "application/xml",
            annotations={TITLE_ANNOTATION: title},
        )
        for title, data in files.items()
    ]
    for data in [*files.values(), EMPTY_JSON]:
        push_blob(client, repo, data)
    body = image_manifest(
        descriptor(EMPTY_JSON, OCI_EMPTY), layers, artifactType="application/vnd.test.v1"
    )
    return pushed(client, repo, tag or sha256(body), body), body


def push_manifest(
    client: httpx.Client,
    repo: str,
    reference: str,
    body: bytes,
    media_type: str = OCI_MANIFEST,
    params: list[tuple[str, str]] | None = None,
) -> httpx.Response:
    """PUT a manifest; `params` are query parameters (`tag`, `digest-algorithm`)."""
    return client.put(
        f"/v2/{repo}/manifests/{reference}",
        content=body,
        headers={"Content-Type": media_type},
        params=params,
    )


def pushed(
    client: httpx.Client, repo: str, reference: str, body: bytes, media_type: str = OCI_MANIFEST
) -> str:
    """PUT a manifest that must be accepted; returns its digest."""
    r = push_manifest(client, repo, reference, body, media_type)
    assert r.status_code == 201, r.text
    return sha256(body)


def push_index(
    client: httpx.Client, repo: str, reference: str | None, body: bytes
) -> httpx.Response:
    """PUT an index, by `reference` or else by its digest."""
    return push_manifest(client, repo, reference or sha256(body), body, OCI_INDEX)


def push_image(
    client: httpx.Client, repo: str, tag: str | None = None, **extra: Any
) -> tuple[str, bytes]:
    """Push a whole small image (see oci_image); returns (digest, manifest bytes)."""
    body = oci_image(client, repo, **extra)
    return pushed(client, repo, tag or sha256(body), body), body


def error_codes(r: httpx.Response) -> list[str]:
    return [e["code"] for e in r.json()["errors"]]
