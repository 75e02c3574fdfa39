#!/usr/bin/env python3
"""ocinest benchmarks: ocinest against the reference registry (CNCF distribution 2.8, Debian's
`docker-registry`) and against the machine's own limits, as ratios measured side by side.

    python benchmarks/run.py [--smoke] [--out DIR] [--only NAMES] [--keep]

Installs what it needs when missing (apt: docker-registry, wrk; pip: matplotlib), starts
ocinest and the reference on free loopback ports with data in a temporary folder, runs every
scenario interleaved (ocinest, reference, ocinest, reference, ...) for several rounds, and
prints a table of medians, min-max and ratios with the goals beside them. Writes
results.json, table.md and chart.png to --out (default benchmarks/results/).

The ratio column is always "how many times better ocinest is": ocinest / reference for
rates, reference / ocinest for times. `--smoke` runs every scenario tiny (seconds) so that
CI keeps the harness alive; its numbers mean nothing.

The scale-out scenario compares ocinest with itself instead: 2 `ocinest serve` processes
against 1, over one shared PostgreSQL database and S3 bucket (the ratio is 2 processes /
1 process). It uses OCINEST_TEST_POSTGRES and S3_ENDPOINT (+ AWS keys) when set, and
otherwise starts a throw-away PostgreSQL and Ceph S3 itself (scripts/), except in smoke mode,
where it is skipped without them.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime
import functools
import hashlib
import http.client
import json
import os
import platform
import queue
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MATPLOTLIB_PIN = "matplotlib==3.11.2"
MiB = 1 << 20

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
NESTED_ANNOTATION = "dev.ocinest.repository"
ACCEPT_MANIFESTS = ", ".join(
    [
        OCI_MANIFEST,
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)

T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[bench {time.monotonic() - T0:6.1f}s] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True)
class Params:
    rounds: int
    blob_mib: int
    chunk_mib: int
    small_count: int
    small_size: int
    push_concurrency: int
    manifest_count: int
    get_concurrency: int
    get_seconds: float
    get_warmup: float
    tags: int
    repos: int
    page: int
    tree_sizes: tuple[int, ...]
    tree_reps: int
    gc_repos: int
    gc_per_repo: int
    gc_rounds: int
    gc_push_gap: float
    copy_children: int
    copy_rounds: int
    scale_rounds: int
    scale_blobs: int  # 1 MiB blobs pushed per scale-out push run
    scale_push_concurrency: int
    scale_warmup: bool


FULL = Params(
    rounds=5,
    blob_mib=256,
    chunk_mib=16,
    small_count=1000,
    small_size=1024,
    push_concurrency=16,
    manifest_count=1000,
    get_concurrency=32,
    get_seconds=5.0,
    get_warmup=1.0,
    tags=10_000,
    repos=10_000,
    page=1000,
    tree_sizes=(10, 100, 1000),
    tree_reps=5,
    gc_repos=100,
    gc_per_repo=1000,
    gc_rounds=3,
    gc_push_gap=0.1,
    copy_children=100,
    copy_rounds=3,
    scale_rounds=5,
    scale_blobs=160,
    scale_push_concurrency=8,
    scale_warmup=True,
)
SMOKE = Params(
    rounds=2,
    blob_mib=8,
    chunk_mib=2,
    small_count=40,
    small_size=1024,
    push_concurrency=8,
    manifest_count=40,
    get_concurrency=32,
    get_seconds=1.0,
    get_warmup=0.2,
    tags=300,
    repos=300,
    page=100,
    tree_sizes=(5, 10, 20),
    tree_reps=3,
    gc_repos=2,
    gc_per_repo=400,
    gc_rounds=1,
    gc_push_gap=0.05,
    copy_children=5,
    copy_rounds=1,
    scale_rounds=1,
    scale_blobs=8,
    scale_push_concurrency=8,
    scale_warmup=False,
)

SCENARIOS = (
    "ceiling",
    "upload",
    "download",
    "push",
    "manifest-put",
    "manifest-get",
    "tags",
    "catalog",
    "tree",
    "tree-scale",
    "copy",
    "gc",
    "scale-out",
)


# --------------------------------------------------------------------------------------------
# Installing what is missing


def ensure_project_python() -> None:
    """Run under the interpreter that has ocinest (the repository's .venv when there is one)."""
    try:
        import ocinest  # noqa: F401
    except ImportError:
        venv = ROOT / ".venv" / "bin" / "python"
        if venv.exists() and Path(sys.executable).resolve() != venv.resolve():
            os.execv(str(venv), [str(venv), str(Path(__file__).resolve()), *sys.argv[1:]])
        sys.exit("ocinest is not importable: install the project (pip install -e .) first")


def ensure_pip(module: str, requirement: str) -> None:
    try:
        __import__(module)
    except ImportError:
        log(f"pip: installing {requirement}")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", requirement],
            check=True,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )


def ensure_apt(tools: dict[str, str]) -> list[str]:
    """Install the Debian packages of the missing `tools` (command -> package); returns the
    commands still missing afterwards."""
    missing = {cmd: pkg for cmd, pkg in tools.items() if shutil.which(cmd) is None}
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        packages = sorted(set(missing.values()))
        log(f"apt: installing {' '.join(packages)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for attempt in range(3):
            ok = (
                subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True).returncode
                == 0
                and subprocess.run(
                    ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
                    env=env,
                    capture_output=True,
                ).returncode
                == 0
            )
            if ok:
                break
            time.sleep(3 * (attempt + 1))
    return [cmd for cmd in tools if shutil.which(cmd) is None]


def copy_command_available() -> bool:
    """Whether this build of ocinest has the recursive-copy client (`ocinest copy`)."""
    probe = subprocess.run(
        [sys.executable, "-m", "ocinest", "copy", "--help"], capture_output=True, timeout=60
    )
    return probe.returncode == 0


# --------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and its live children."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                stat = Path(entry.path, "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == pid:
                    pids.append(int(entry.name))
    for p in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


_STARTED: list[Server] = []


class Server:
    """A registry process on a loopback port, started and stopped by its pid only."""

    def __init__(
        self,
        label: str,
        argv: list[str],
        port: int,
        log_path: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.label = label
        self.argv = argv
        self.port = port
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        logf = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.argv,
            stdout=logf,
            stderr=logf,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=self.env,
        )
        logf.close()
        _STARTED.append(self)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.label} exited with {self.proc.returncode}; see {self.log_path}:\n"
                    + self.log_path.read_text()[-2000:]
                )
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/v2/")
                if conn.getresponse().status == 200:
                    conn.close()
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.label} did not answer on {self.base}")

    def cpu(self) -> float:
        return _proc_cpu(self.proc.pid) if self.proc else 0.0

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _stop_all() -> None:
    for server in reversed(_STARTED):
        with contextlib.suppress(Exception):
            server.stop()


def ocinest_server(label: str, data: Path, logs: Path, workers: int = 1) -> Server:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "ocinest",
        "serve",
        "--addr",
        f"127.0.0.1:{port}",
        "--data",
        str(data),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    return Server(label, argv, port, logs / f"{label}.log")


def reference_server(label: str, root: Path, logs: Path) -> Server:
    """distribution 2.8 with a filesystem root, deletes enabled, no access log (as ocinest)."""
    port = free_port()
    config = root.parent / f"{label}-config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {root}\n"
        "  delete:\n    enabled: true\n"
        "  cache:\n    blobdescriptor: inmemory\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    return Server(label, ["docker-registry", "serve", str(config)], port, logs / f"{label}.log")


# --------------------------------------------------------------------------------------------
# The scale-out scenario's shared stores: one PostgreSQL database and one S3 bucket, taken
# from the environment (as CI provides them) or started here, on ports of their own.

SCALE_PG_PORT = 56432  # CI uses 55432
SCALE_RGW_PORT = 7490  # CI uses 7480
SCALE_MON_PORTS = (3310, 6799)  # CI's Ceph uses 3300 and 6789
AWS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


class ServiceError(Exception):
    """A service the scale-out scenario needs could not be started; the message says why."""


def pick_port(preferred: int, taken: set[int]) -> int:
    """`preferred` when nothing listens there, else the next free port above it."""
    for port in range(preferred, preferred + 200):
        if port in taken:
            continue
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise ServiceError(f"no free port in {preferred}-{preferred + 199}")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, UnicodeDecodeError):
        return ""


class SharedStores:
    """PostgreSQL and S3 for the scale-out scenario.

    From the environment when it has them: OCINEST_TEST_POSTGRES (an admin DSN: a fresh
    database is created in it, and dropped at the end) and S3_ENDPOINT with the AWS_* keys
    (a fresh bucket, emptied and removed at the end). Otherwise started here with
    scripts/postgres.sh and scripts/ceph-s3-start.sh, under a folder of /tmp that the
    `postgres` user can traverse, and stopped (by their scripts, then by pid) at the end."""

    def __init__(self) -> None:
        self.admin_dsn = os.environ.get("OCINEST_TEST_POSTGRES") or None
        self.s3: dict[str, str] | None = None
        if os.environ.get("S3_ENDPOINT") and all(os.environ.get(k) for k in AWS_KEYS):
            self.s3 = {
                k: os.environ[k]
                for k in ("S3_ENDPOINT", *AWS_KEYS, "AWS_DEFAULT_REGION")
                if os.environ.get(k)
            }
        self.origin: dict[str, str] = {
            "postgres": "environment (OCINEST_TEST_POSTGRES)" if self.admin_dsn else "",
            "s3": "environment (S3_ENDPOINT)" if self.s3 else "",
        }
        self.dir: Path | None = None
        self.pids: dict[str, list[int]] = {}  # service started here -> its daemons' pids
        self.database: str | None = None
        self.bucket: str | None = None
        self._stopped = False

    @staticmethod
    def missing_from_environment() -> list[str]:
        names = ["OCINEST_TEST_POSTGRES", "S3_ENDPOINT", *AWS_KEYS]
        return [n for n in names if not os.environ.get(n)]

    def _service_dir(self) -> Path:
        if self.dir is None:
            # PostgreSQL runs as its own user: every parent must be traversable by it.
            self.dir = Path(tempfile.mkdtemp(prefix="ocinest-bench-svc-", dir="/tmp"))
            self.dir.chmod(0o755)
        return self.dir

    def start(self) -> None:
        """Start what the environment does not provide."""
        taken: set[int] = set()
        if self.admin_dsn is None:
            pg_dir = self._service_dir() / "pg"
            port = pick_port(SCALE_PG_PORT, taken)
            log(f"scale-out: starting a throw-away PostgreSQL on 127.0.0.1:{port}")
            out = subprocess.run(
                ["bash", str(ROOT / "scripts" / "postgres.sh"), "start", str(pg_dir), str(port)],
                capture_output=True,
                text=True,
                timeout=300,
            )
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = int((pg_dir / "data" / "postmaster.pid").read_text().split()[0])
                self.pids["postgres"] = [pid]
            self.pids.setdefault("postgres", [])
            if out.returncode != 0 or not out.stdout.strip():
                raise ServiceError(
                    f"scripts/postgres.sh start failed ({out.returncode}): {out.stderr[-1500:]}"
                )
            self.admin_dsn = out.stdout.strip().splitlines()[-1]
            self.origin["postgres"] = f"started here (scripts/postgres.sh, port {port})"
        if self.s3 is None:
            ceph_dir = self._service_dir() / "ceph"
            rgw = pick_port(SCALE_RGW_PORT, taken)
            mon2, mon1 = (pick_port(p, taken) for p in SCALE_MON_PORTS)
            log(f"scale-out: starting a throw-away Ceph S3 (radosgw on 127.0.0.1:{rgw})")
            self.pids["ceph"] = []
            env = {
                **os.environ,
                "S3_DIR": str(ceph_dir),
                "RGW_PORT": str(rgw),
                "MON_PORT_V2": str(mon2),
                "MON_PORT_V1": str(mon1),
            }
            try:
                out = subprocess.run(
                    ["bash", str(ROOT / "scripts" / "ceph-s3-start.sh")],
                    capture_output=True,
                    text=True,
                    timeout=600,
                    env=env,
                )
            finally:
                self.pids["ceph"] = self._ceph_pids(ceph_dir)
            if out.returncode != 0:
                raise ServiceError(
                    f"scripts/ceph-s3-start.sh failed ({out.returncode}): {out.stderr[-1500:]}"
                )
            values: dict[str, str] = {}
            for line in (ceph_dir / "env").read_text().splitlines():
                key, sep, value = line.removeprefix("export ").partition("=")
                if sep:
                    values[key.strip()] = value.strip()
            self.s3 = values
            self.origin["s3"] = (
                f"started here (scripts/ceph-s3-start.sh: 1 mon, 1 memstore OSD, radosgw on "
                f"port {rgw})"
            )

    @staticmethod
    def _ceph_pids(ceph_dir: Path) -> list[int]:
        """The daemons of the Ceph under `ceph_dir`: its pid files, also those that the
        start script had not yet listed when it failed."""
        pids: set[int] = set()
        files = [ceph_dir / "pids", *sorted((ceph_dir / "run").glob("*.pid"))]
        for f in files:
            with contextlib.suppress(OSError):
                pids |= {int(x) for x in f.read_text().split() if x.isdigit()}
        return sorted(pids)

    @property
    def s3_endpoint(self) -> str:
        assert self.s3 is not None
        return self.s3["S3_ENDPOINT"]

    def server_env(self) -> dict[str, str]:
        """The environment of a registry process: the S3 keys, and no OCINEST_* variable
        (they would override its configuration file)."""
        assert self.s3 is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCINEST_")}
        env.update({k: v for k, v in self.s3.items() if k.startswith("AWS_")})
        env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        return env

    def fresh(self) -> tuple[str, str]:
        """A new, empty database (its DSN) and a new bucket name (the first registry process
        creates the bucket)."""
        import psycopg
        from psycopg.conninfo import make_conninfo

        assert self.admin_dsn is not None
        tag = os.urandom(8).hex()
        self.database = f"ocinest_bench_{tag}"
        with psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=20) as conn:
            conn.execute(f"CREATE DATABASE {self.database}".encode())
        self.bucket = f"ocinest-bench-{tag}"
        return make_conninfo(self.admin_dsn, dbname=self.database), self.bucket

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by the services started here (PostgreSQL with its
        backends, the Ceph daemons)."""
        return {name: sum(_proc_cpu(pid) for pid in pids) for name, pids in self.pids.items()}

    def _drop_fresh(self) -> None:
        """Remove the database and the bucket made in services this harness did not start
        (those it started go whole)."""
        if self.database and "postgres" not in self.pids and self.admin_dsn:
            try:
                import psycopg

                with psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=20) as c:
                    c.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)".encode())
            except Exception as exc:
                log(f"scale-out: could not drop database {self.database}: {exc}")
        if self.bucket and "ceph" not in self.pids and self.s3:
            try:
                import boto3

                s3 = boto3.client(
                    "s3",
                    endpoint_url=self.s3_endpoint,
                    region_name=self.s3.get("AWS_DEFAULT_REGION", "us-east-1"),
                    aws_access_key_id=self.s3["AWS_ACCESS_KEY_ID"],
                    aws_secret_access_key=self.s3["AWS_SECRET_ACCESS_KEY"],
                )
                with contextlib.suppress(s3.exceptions.NoSuchBucket):
                    uploads = s3.get_paginator("list_multipart_uploads")
                    for page in uploads.paginate(Bucket=self.bucket):
                        for u in page.get("Uploads", []):
                            s3.abort_multipart_upload(
                                Bucket=self.bucket, Key=u["Key"], UploadId=u["UploadId"]
                            )
                    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
                        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                        if keys:
                            s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})
                    s3.delete_bucket(Bucket=self.bucket)
            except Exception as exc:
                log(f"scale-out: could not remove bucket {self.bucket}: {exc}")

    def stop(self) -> None:
        """Idempotent: remove what was made in borrowed services, stop the services started
        here by their scripts, then end by pid any daemon of theirs still alive."""
        if self._stopped:
            return
        self._stopped = True
        self._drop_fresh()
        if self.dir is None:
            return
        if "ceph" in self.pids:
            ceph_dir = self.dir / "ceph"
            self.pids["ceph"] = sorted(set(self.pids["ceph"]) | set(self._ceph_pids(ceph_dir)))
            with contextlib.suppress(Exception):
                subprocess.run(
                    ["bash", str(ROOT / "scripts" / "ceph-s3-stop.sh")],
                    env={**os.environ, "S3_DIR": str(ceph_dir)},
                    capture_output=True,
                    timeout=120,
                )
        if "postgres" in self.pids:
            with contextlib.suppress(Exception):
                subprocess.run(
                    ["bash", str(ROOT / "scripts" / "postgres.sh"), "stop", str(self.dir / "pg")],
                    capture_output=True,
                    timeout=120,
                )
        # Whatever outlived its script, by pid, and only if it is still ours (its command
        # line names our folder).
        for pid in [pid for pids in self.pids.values() for pid in pids]:
            if str(self.dir) in _cmdline(pid):
                log(f"scale-out: pid {pid} outlived its stop script; killing it")
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)
        log("scale-out: services stopped")


def log_exceptions(servers: Iterable[Server], limit: int = 5) -> list[str]:
    """The distinct exception lines (`module.Error: message`) in the servers' logs, with
    their counts, most frequent first."""
    counts: dict[str, int] = {}
    pattern = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Failure|Timeout)\w*: .*")
    for server in servers:
        with contextlib.suppress(OSError):
            for line in server.log_path.read_text(errors="replace").splitlines():
                if pattern.match(line):
                    counts[line[:240]] = counts.get(line[:240], 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
    return [f"{n}x {line}" for line, n in ranked]


def ocinest_scale_server(
    label: str, data: Path, logs: Path, settings: dict[str, Any], env: dict[str, str]
) -> Server:
    """`ocinest serve --config FILE`, one worker, over shared stores given in `settings`."""
    port = free_port()
    data.mkdir(parents=True, exist_ok=True)
    config = data.parent / f"{label}.yaml"
    doc = {
        "addr": f"127.0.0.1:{port}",
        "data": str(data),
        "workers": 1,
        "access_log": False,
        "log_level": "warning",
        **settings,
    }
    # JSON scalars are YAML scalars: one `key: value` line each.
    config.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in doc.items()))
    argv = [sys.executable, "-m", "ocinest", "serve", "--config", str(config)]
    return Server(label, argv, port, logs / f"{label}.log", env=env)


# --------------------------------------------------------------------------------------------
# A plain HTTP/1.1 client (http.client, keep-alive): cheap enough not to be the bottleneck
# for large transfers and sequential walks, and the same for both registries.


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes


class Http:
    def __init__(self, base: str, timeout: float = 600) -> None:
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def _conn(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    @staticmethod
    def path_of(url: str) -> str:
        u = urllib.parse.urlsplit(url)
        return u.path + (f"?{u.query}" if u.query else "")

    def open(
        self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> http.client.HTTPResponse:
        headers = dict(headers or {})
        if body is not None and "Content-Length" not in headers:
            headers["Content-Length"] = str(memoryview(body).nbytes)
        for attempt in (0, 1):
            try:
                conn = self._conn()
                conn.request(method, self.path_of(url), body=body, headers=headers)
                return conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def request(
        self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Resp:
        r = self.open(method, url, body, headers)
        data = r.read()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, data)

    def expect(self, status: int, method: str, url: str, body: Any = None, **headers: str) -> Resp:
        r = self.request(method, url, body, {k.replace("_", "-"): v for k, v in headers.items()})
        if r.status != status:
            raise RuntimeError(f"{method} {url}: {r.status} (wanted {status}): {r.body[:300]!r}")
        return r


def sha256(data: Any) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def with_digest(location: str, digest: str) -> str:
    sep = "&" if urllib.parse.urlsplit(location).query else "?"
    return f"{location}{sep}digest={urllib.parse.quote(digest)}"


def push_blob(h: Http, repo: str, data: Any, digest: str | None = None) -> str:
    digest = digest or sha256(data)
    loc = h.expect(202, "POST", f"/v2/{repo}/blobs/uploads/").headers["location"]
    h.expect(201, "PUT", with_digest(loc, digest), data, Content_Type="application/octet-stream")
    return digest


def push_chunked(h: Http, repo: str, data: memoryview, chunk: int, digest: str) -> None:
    loc = h.expect(202, "POST", f"/v2/{repo}/blobs/uploads/").headers["location"]
    for offset in range(0, len(data), chunk):
        part = data[offset : offset + chunk]
        r = h.expect(
            202,
            "PATCH",
            loc,
            part,
            Content_Type="application/octet-stream",
            Content_Range=f"{offset}-{offset + len(part) - 1}",
        )
        loc = r.headers["location"]
    h.expect(201, "PUT", with_digest(loc, digest), b"")


def mount_blob(h: Http, repo: str, digest: str, source: str) -> None:
    q = urllib.parse.urlencode({"mount": digest, "from": source})
    h.expect(201, "POST", f"/v2/{repo}/blobs/uploads/?{q}")


def image_manifest(config: tuple[str, int], layer: tuple[str, int], **annotations: str) -> bytes:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config[0], "size": config[1]},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer[0], "size": layer[1]}],
    }
    if annotations:
        doc["annotations"] = annotations
    return json.dumps(doc).encode()


def put_manifest(h: Http, repo: str, ref: str, body: bytes, media_type: str = OCI_MANIFEST) -> None:
    h.expect(201, "PUT", f"/v2/{repo}/manifests/{ref}", body, Content_Type=media_type)


def push_base_image(
    h: Http, repo: str, tag: str | None = None, seed: str | None = None
) -> tuple[tuple[str, int], ...]:
    """A config and a layer (their content made from `seed`, by default the repository's
    name) in `repo`, and an image of them tagged `tag`; returns their descriptors."""
    seed = seed or repo
    config = json.dumps({"architecture": "amd64", "os": "linux", "bench": seed}).encode()
    layer = hashlib.sha256(seed.encode()).digest() * 32
    cd = (push_blob(h, repo, config), len(config))
    ld = (push_blob(h, repo, layer), len(layer))
    if tag is not None:
        put_manifest(h, repo, tag, image_manifest(cd, ld))
    return cd, ld


def parallel(
    base: str, items: Iterable[Any], fn: Callable[[Http, Any], None], workers: int = 8
) -> float:
    """Run fn(http, item) for every item on `workers` keep-alive connections; seconds taken."""
    local = threading.local()
    clients: list[Http] = []

    def run(item: Any) -> None:
        if not hasattr(local, "h"):
            local.h = Http(base)
            clients.append(local.h)
        fn(local.h, item)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(run, items):
            pass
    for c in clients:
        c.close()
    return time.perf_counter() - start


def _put_tag(h: Http, tag: str, repo: str, body: bytes) -> None:
    put_manifest(h, repo, tag, body)


def _mount_into(h: Http, repo: str, digest: str, source: str) -> None:
    mount_blob(h, repo, digest, source)


def next_link(headers: dict[str, str]) -> str | None:
    link = headers.get("link")
    if not link:
        return None
    m = re.search(r"<([^>]+)>\s*;\s*rel=\"?next\"?", link)
    return m.group(1) if m else None


def list_all(h: Http, first: str, key: str) -> list[str]:
    """Follow `Link: rel=next` from `first`; every `key` entry of every page."""
    out: list[str] = []
    url: str | None = first
    while url is not None:
        r = h.expect(200, "GET", url)
        out += json.loads(r.body)[key] or []
        url = next_link(r.headers)
    return out


@dataclass
class SeededTree:
    parent: str
    first: str  # the first child's repository, which holds the blobs the children use
    bodies: list[bytes]
    entries: list[dict[str, Any]]


def seed_nested_tree(base: str, n: int) -> SeededTree:
    """In ocinest: an index tagged `latest` in tree/nN whose N image manifests each live in
    their own repository tree/nN/cXXXXX (blobs mounted from the first)."""
    parent = f"tree/n{n}"
    kids = [f"c{i:05d}" for i in range(n)]
    first = f"{parent}/{kids[0]}"
    h = Http(base)
    cd, ld = push_base_image(h, first)
    h.close()
    bodies = [image_manifest(cd, ld, **{"bench.child": str(i)}) for i in range(n)]

    def child(h: Http, i: int) -> None:
        repo = f"{parent}/{kids[i]}"
        if i:
            mount_blob(h, repo, cd[0], first)
            mount_blob(h, repo, ld[0], first)
        put_manifest(h, repo, sha256(bodies[i]), bodies[i])

    parallel(base, range(n), child)
    entries = [{"mediaType": OCI_MANIFEST, "digest": sha256(b), "size": len(b)} for b in bodies]
    nested = [
        {**e, "annotations": {NESTED_ANNOTATION: k}} for e, k in zip(entries, kids, strict=True)
    ]
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": nested})
    h = Http(base)
    put_manifest(h, parent, "latest", index.encode(), OCI_INDEX)
    tree = json.loads(h.expect(200, "GET", f"/v2/{parent}/_ocinest/tree/latest").body)
    h.close()
    if len(tree["children"]) != n:
        raise RuntimeError(f"tree of {parent}: {len(tree['children'])} children, not {n}")
    return SeededTree(parent, first, bodies, entries)


def seed_plain_tree(base: str, tree: SeededTree) -> None:
    """In the reference, which refuses nested indexes: the same child manifests (same bytes,
    same digests) in the parent repository itself, under a plain index tagged `latest`."""
    h = Http(base)
    push_base_image(h, tree.parent, seed=tree.first)
    h.close()
    bodies = tree.bodies
    parallel(
        base,
        range(len(bodies)),
        lambda h, i: put_manifest(h, tree.parent, sha256(bodies[i]), bodies[i]),
    )
    plain = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": tree.entries})
    h = Http(base)
    put_manifest(h, tree.parent, "latest", plain.encode(), OCI_INDEX)
    h.close()


@dataclass
class CopyTree:
    parent: str
    children: list[tuple[str, str]]  # repository, digest
    bytes: int


def seed_copy_tree(base: str, n: int) -> CopyTree:
    """In ocinest: copy/src (an index tagged `latest`) over n images at copy/src/cXXXXX,
    each of a shared 1 MiB base layer, its own 64 KiB layer and its own config."""
    parent = "copy/src"
    first = f"{parent}/c00000"
    h = Http(base)
    shared = hashlib.sha256(b"copy base").digest() * (MiB // 32)
    shared_d = push_blob(h, first, shared)
    h.close()
    digests: list[str] = [""] * n
    sizes: list[int] = [0] * n

    def child(h: Http, i: int) -> None:
        repo = f"{parent}/c{i:05d}"
        if i:
            mount_blob(h, repo, shared_d, first)
        config = json.dumps({"architecture": "amd64", "os": "linux", "child": i}).encode()
        layer = hashlib.sha256(f"copy layer {i}".encode()).digest() * 2048
        cd = push_blob(h, repo, config)
        ld = push_blob(h, repo, layer)
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": len(config)},
            "layers": [
                {"mediaType": OCI_LAYER, "digest": shared_d, "size": len(shared)},
                {"mediaType": OCI_LAYER, "digest": ld, "size": len(layer)},
            ],
        }
        body = json.dumps(doc).encode()
        digests[i] = sha256(body)
        sizes[i] = len(body) + len(config) + len(layer)
        put_manifest(h, repo, digests[i], body)

    parallel(base, range(n), child)
    nested = [
        {
            "mediaType": OCI_MANIFEST,
            "digest": digests[i],
            "size": 0,
            "annotations": {NESTED_ANNOTATION: f"c{i:05d}"},
        }
        for i in range(n)
    ]
    h = Http(base)
    for i, entry in enumerate(nested):
        r = h.expect(200, "HEAD", f"/v2/{parent}/c{i:05d}/manifests/{digests[i]}")
        entry["size"] = int(r.headers["content-length"])
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": nested})
    put_manifest(h, parent, "latest", index.encode(), OCI_INDEX)
    h.close()
    children = [(f"{parent}/c{i:05d}", digests[i]) for i in range(n)]
    return CopyTree(parent, children, len(shared) + sum(sizes) + len(index))


def run_copy(source: str, destination: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "ocinest", "copy", "--json", source, destination],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"ocinest copy failed ({out.returncode}): {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def sh(*argv: str) -> None:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {out.stderr[-2000:]}")


def check_tree(base: str, parent: str, n: int) -> None:
    h = Http(base)
    tree = json.loads(h.expect(200, "GET", f"/v2/{parent}/_ocinest/tree/latest").body)
    h.close()
    if len(tree["children"]) != n:
        raise RuntimeError(f"copied tree has {len(tree['children'])} children, not {n}")


def upload_requests(base: str) -> int:
    """Blob upload requests (POST, PATCH, PUT of uploads) the server has answered, from its
    Prometheus metrics."""
    h = Http(base)
    text = h.expect(200, "GET", "/metrics").body.decode()
    h.close()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("ocinest_http_requests_total{") and re.search(
            r'route="upload(_start)?"', line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


# --------------------------------------------------------------------------------------------
# Results


@dataclass
class Row:
    """One line of the table: ocinest's samples against a baseline's (or alone)."""

    id: str
    title: str
    unit: str
    higher_better: bool
    ours: list[float]
    base: list[float] | None = None
    base_name: str = "reference"
    ceiling: list[float] | None = None  # for "% of the machine's ceiling"
    goal: str = ""
    min_ratio: float | None = None
    min_ceiling_pct: float | None = None
    max_value: float | None = None
    must_be_zero: bool = False
    note: str = ""
    checks: list[dict[str, Any]] = field(default_factory=list)

    @staticmethod
    def med(xs: list[float] | None) -> float | None:
        return statistics.median(xs) if xs else None

    @property
    def ratio(self) -> float | None:
        a, b = self.med(self.ours), self.med(self.base)
        if a is None or b is None or a <= 0 or b <= 0:
            return None
        return a / b if self.higher_better else b / a

    @property
    def ceiling_pct(self) -> float | None:
        a, c = self.med(self.ours), self.med(self.ceiling)
        return None if a is None or not c else 100 * a / c

    def evaluate(self) -> None:
        self.checks = []
        value = self.med(self.ours)
        if self.min_ratio is not None and self.ratio is not None:
            self.checks.append(
                {
                    "goal": f">= {self.min_ratio:g}x {self.base_name}",
                    "value": f"{self.ratio:.2f}x",
                    "met": self.ratio >= self.min_ratio,
                    "shortfall": f"{self.ratio / self.min_ratio:.0%} of the goal",
                }
            )
        if self.min_ceiling_pct is not None and self.ceiling_pct is not None:
            self.checks.append(
                {
                    "goal": f">= {self.min_ceiling_pct:g}% of ceiling",
                    "value": f"{self.ceiling_pct:.0f}%",
                    "met": self.ceiling_pct >= self.min_ceiling_pct,
                    "shortfall": f"{self.min_ceiling_pct - self.ceiling_pct:.0f} points short",
                }
            )
        if self.max_value is not None and value is not None:
            self.checks.append(
                {
                    "goal": f"< {self.max_value:g} {self.unit}",
                    "value": f"{value:.3g} {self.unit}",
                    "met": value < self.max_value,
                    "shortfall": f"{value / self.max_value:.1f}x the limit",
                }
            )

        if self.must_be_zero and value is not None:
            self.checks.append(
                {
                    "goal": f"0 {self.unit}",
                    "value": f"{value:g} {self.unit}",
                    "met": max(self.ours) == 0,
                    "shortfall": f"{max(self.ours):g} {self.unit} at most",
                }
            )

    @property
    def met(self) -> bool | None:
        return None if not self.checks else all(c["met"] for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            ours_median=self.med(self.ours),
            base_median=self.med(self.base),
            ratio=self.ratio,
            ceiling_pct=self.ceiling_pct,
            met=self.met,
        )
        return d


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def cell(xs: list[float] | None) -> str:
    if not xs:
        return "-"
    if len(xs) == 1:
        return fmt(xs[0])
    return f"{fmt(statistics.median(xs))} [{fmt(min(xs))}-{fmt(max(xs))}]"


def table(rows: list[Row]) -> str:
    head = [
        "scenario",
        "unit",
        "ocinest median [min-max]",
        "baseline median [min-max]",
        "x better",
        "% ceiling",
        "goal",
        "met",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        met = {True: "yes", False: "**NO**", None: ""}[r.met]
        base = f"{r.base_name}: {cell(r.base)}" if r.base else "-"
        lines.append(
            "| "
            + " | ".join(
                [
                    r.title,
                    r.unit,
                    cell(r.ours),
                    base,
                    f"{r.ratio:.2f}x" if r.ratio is not None else "-",
                    f"{r.ceiling_pct:.0f}%" if r.ceiling_pct is not None else "-",
                    r.goal or "-",
                    met,
                ]
            )
            + " |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The machine's ceiling: sha256, write+fsync, and the upload path without HTTP.

_SENDER = r"""
import os, socket, sys
port, size = int(sys.argv[1]), int(sys.argv[2])
data = os.urandom(1 << 20) * (size >> 20)
s = socket.create_connection(("127.0.0.1", port))
s.recv(1)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
s.recv(1)
"""

_FILE_SENDER = r"""
import os, socket, sys
port, path = int(sys.argv[1]), sys.argv[2]
fd = os.open(path, os.O_RDONLY)
size = os.fstat(fd).st_size
s = socket.create_connection(("127.0.0.1", port))
s.recv(1)
offset = 0
while offset < size:
    offset += os.sendfile(s.fileno(), fd, offset, size - offset)
s.shutdown(socket.SHUT_WR)
s.recv(1)
"""

# The download client's (and the download ceiling's) receive buffer.
SINK = 1 * MiB


def ceiling_sha256(buf: memoryview) -> float:
    start = time.perf_counter()
    hashlib.sha256(buf).digest()
    return len(buf) / MiB / (time.perf_counter() - start)


def ceiling_write_fsync(buf: memoryview, directory: Path) -> float:
    path = directory / "ceiling-write"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        start = time.perf_counter()
        for offset in range(0, len(buf), MiB):
            view = buf[offset : offset + MiB]
            while view:
                view = view[os.write(fd, view) :]
        os.fsync(fd)
        seconds = time.perf_counter() - start
    finally:
        os.close(fd)
        path.unlink()
    return len(buf) / MiB / seconds


def _upload_path_once(size: int, directory: Path, batch: int) -> float:
    path = directory / "ceiling-upload"
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        sender = subprocess.Popen([sys.executable, "-c", _SENDER, str(port), str(size)])
        try:
            conn, _ = listener.accept()
            with conn:
                # A few batches in flight: large ones fall out of the CPU caches between
                # the receive, the hash and the write, and the path gets slower.
                buffers = [bytearray(batch) for _ in range(max(6, (4 * MiB) // batch))]
                work: queue.Queue[memoryview | None] = queue.Queue(maxsize=len(buffers) - 3)

                def consume() -> None:
                    h = hashlib.sha256()
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    try:
                        while (item := work.get()) is not None:
                            h.update(item)
                            view = item
                            while view:
                                view = view[os.write(fd, view) :]
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                    h.hexdigest()

                worker = threading.Thread(target=consume)
                worker.start()
                start = time.perf_counter()
                conn.sendall(b"g")
                received, i = 0, 0
                while True:
                    buf = memoryview(buffers[i % len(buffers)])
                    filled = 0
                    while filled < batch:
                        n = conn.recv_into(buf[filled:])
                        if n == 0:
                            break
                        filled += n
                    if filled:
                        work.put(buf[:filled])
                        received += filled
                        i += 1
                    if filled < batch:
                        break
                work.put(None)
                worker.join()
                seconds = time.perf_counter() - start
                conn.sendall(b"k")
        finally:
            sender.wait(timeout=60)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    if received != size:
        raise RuntimeError(f"ceiling upload received {received} of {size} bytes")
    return size / MiB / seconds


def ceiling_upload_path(size: int, directory: Path) -> float:
    """socket -> sha256 -> write -> fsync with no HTTP, pipelined as a server would (one
    thread receives while another hashes and writes), from a sender in another process;
    the better of 256 KiB and 1 MiB batches."""
    return max(_upload_path_once(size, directory, b) for b in (256 * 1024, MiB))


def ceiling_download_path(path: Path) -> float:
    """A file in the page cache, sendfile() to a loopback socket, received into the download
    client's buffer: a download with no HTTP."""
    size = path.stat().st_size
    sink = memoryview(bytearray(SINK))
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        sender = subprocess.Popen([sys.executable, "-c", _FILE_SENDER, str(port), str(path)])
        try:
            conn, _ = listener.accept()
            with conn:
                start = time.perf_counter()
                conn.sendall(b"g")
                got = 0
                while n := conn.recv_into(sink):
                    got += n
                seconds = time.perf_counter() - start
                conn.sendall(b"k")
        finally:
            sender.wait(timeout=60)
    if got != size:
        raise RuntimeError(f"ceiling download received {got} of {size} bytes")
    return size / MiB / seconds


# --------------------------------------------------------------------------------------------
# The harness


class Bench:
    def __init__(self, params: Params, work: Path, smoke: bool) -> None:
        self.p = params
        self.work = work
        self.smoke = smoke
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.rows: list[Row] = []
        self.details: dict[str, Any] = {}
        self.skipped: dict[str, str] = {}
        self.notes: list[str] = []
        self.oci: Server | None = None
        self.ref: Server | None = None
        self.wrk = shutil.which("wrk")
        self.buf: bytearray | None = None
        self.uploaded: dict[str, str] = {}  # target label -> digest of a big blob
        self._gc_seed: tuple[Path, dict[str, Any]] | None = None
        self.load: dict[str, list[float]] = {}  # scenario -> 1-minute load average, end

    # -- servers

    def start_main(self) -> None:
        self.oci = ocinest_server("ocinest", self.work / "ocinest", self.logs).start()
        self.ref = reference_server("reference", self.work / "reference", self.logs).start()
        log(f"ocinest on {self.oci.base}, reference (distribution) on {self.ref.base}")

    @property
    def pair(self) -> list[Server]:
        assert self.oci is not None and self.ref is not None
        return [self.oci, self.ref]

    def big_buffer(self) -> bytearray:
        if self.buf is None:
            self.buf = bytearray(os.urandom(self.p.blob_mib * MiB))
        return self.buf

    def fresh_blob(self) -> tuple[memoryview, str]:
        buf = self.big_buffer()
        buf[:16] = os.urandom(16)
        mv = memoryview(buf)
        return mv, sha256(mv)

    def add(self, row: Row) -> Row:
        row.evaluate()
        self.rows.append(row)
        return row

    def rounds(self) -> Iterator[int]:
        yield from range(self.p.rounds)

    # -- scenarios

    def scenario_ceiling(self) -> None:
        buf = memoryview(self.big_buffer())
        sha, wf = [], []
        for r in self.rounds():
            sha.append(ceiling_sha256(buf))
            wf.append(ceiling_write_fsync(buf, self.work))
            log(
                f"ceiling round {r + 1}: sha256 {sha[-1]:.0f} MiB/s, write+fsync {wf[-1]:.0f} MiB/s"
            )
        self.add(Row("ceiling-sha256", "ceiling: sha256 (hashlib)", "MiB/s", True, sha))
        self.add(
            Row("ceiling-write-fsync", "ceiling: write + fsync, 1 MiB writes", "MiB/s", True, wf)
        )

    def scenario_upload(self) -> None:
        p = self.p
        size = p.blob_mib * MiB
        ceiling: list[float] = []
        samples: dict[str, dict[str, list[float]]] = {
            "mono": {"ocinest": [], "reference": []},
            "chunked": {"ocinest": [], "reference": []},
        }
        cpu: dict[str, list[float]] = {"ocinest": [], "reference": []}
        clients = {s.label: Http(s.base) for s in self.pair}
        for r in self.rounds():
            ceiling.append(ceiling_upload_path(size, self.work))
            for kind in ("mono", "chunked"):
                for server in self.pair:
                    data, digest = self.fresh_blob()
                    h = clients[server.label]
                    cpu0 = server.cpu()
                    start = time.perf_counter()
                    if kind == "mono":
                        push_blob(h, "bench/upload", data, digest)
                    else:
                        push_chunked(h, "bench/upload", data, p.chunk_mib * MiB, digest)
                    seconds = time.perf_counter() - start
                    cpu[server.label].append(server.cpu() - cpu0)
                    samples[kind][server.label].append(size / MiB / seconds)
                    self.uploaded[server.label] = digest
            log(
                f"upload round {r + 1}: ceiling {ceiling[-1]:.0f} MiB/s; mono ocinest "
                f"{samples['mono']['ocinest'][-1]:.0f} reference "
                f"{samples['mono']['reference'][-1]:.0f}; chunked ocinest "
                f"{samples['chunked']['ocinest'][-1]:.0f} reference "
                f"{samples['chunked']['reference'][-1]:.0f} MiB/s"
            )
        for h in clients.values():
            h.close()
        self.details["upload_server_cpu_s_per_upload"] = cpu
        self.add(
            Row(
                "ceiling-upload-path",
                "ceiling: socket → sha256 → write → fsync (no HTTP)",
                "MiB/s",
                True,
                ceiling,
            )
        )
        for kind, title in (
            ("mono", f"blob upload {p.blob_mib} MiB, monolithic (POST+PUT)"),
            ("chunked", f"blob upload {p.blob_mib} MiB, chunked ({p.chunk_mib} MiB PATCHes)"),
        ):
            self.add(
                Row(
                    f"upload-{kind}",
                    title,
                    "MiB/s",
                    True,
                    samples[kind]["ocinest"],
                    samples[kind]["reference"],
                    ceiling=ceiling,
                    goal=">= 2.0x ref, >= 90% ceiling",
                    min_ratio=2.0,
                    min_ceiling_pct=90,
                )
            )

    def scenario_download(self) -> None:
        p = self.p
        size = p.blob_mib * MiB
        for server in self.pair:
            if server.label not in self.uploaded:
                data, digest = self.fresh_blob()
                h = Http(server.base)
                push_blob(h, "bench/upload", data, digest)
                h.close()
                self.uploaded[server.label] = digest
        samples: dict[str, list[float]] = {"ocinest": [], "reference": []}
        ceiling: list[float] = []
        source = self.work / "ceiling-download"
        source.write_bytes(self.big_buffer())
        sink = memoryview(bytearray(SINK))
        for r in self.rounds():
            ceiling.append(ceiling_download_path(source))
            for server in self.pair:
                h = Http(server.base)
                start = time.perf_counter()
                resp = h.open("GET", f"/v2/bench/upload/blobs/{self.uploaded[server.label]}")
                if resp.status != 200:
                    raise RuntimeError(f"download from {server.label}: {resp.status}")
                got = 0
                while n := resp.readinto(sink):
                    got += n
                seconds = time.perf_counter() - start
                h.close()
                if got != size:
                    raise RuntimeError(f"download from {server.label}: {got} of {size} bytes")
                samples[server.label].append(size / MiB / seconds)
            log(
                f"download round {r + 1}: ceiling {ceiling[-1]:.0f}, ocinest "
                f"{samples['ocinest'][-1]:.0f}, reference {samples['reference'][-1]:.0f} MiB/s"
            )
        source.unlink()
        self.add(
            Row(
                "ceiling-download-path",
                "ceiling: page cache → sendfile → loopback → recv (no HTTP)",
                "MiB/s",
                True,
                ceiling,
            )
        )
        self.add(
            Row(
                "download",
                f"blob download {p.blob_mib} MiB",
                "MiB/s",
                True,
                samples["ocinest"],
                samples["reference"],
                ceiling=ceiling,
                goal=">= 2.0x ref",
                min_ratio=2.0,
            )
        )

    def loadgen(self, spec: dict[str, Any], allow_errors: bool = False) -> dict[str, Any]:
        """Run loadgen.py with `spec`; its failed operations raise unless `allow_errors` (then
        they are in the result's `errors`, and its rate counts only the operations that
        succeeded)."""
        out = subprocess.run(
            [sys.executable, str(HERE / "loadgen.py"), json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if out.returncode != 0:
            raise RuntimeError(f"loadgen failed: {out.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        if result.get("errors") and not allow_errors:
            raise RuntimeError(f"loadgen {spec['mode']}: {result['errors']} errors: {result}")
        return result

    def _rate_scenario(
        self, key: str, title: str, unit: str, spec_of: Callable[[Server, int], dict[str, Any]]
    ) -> None:
        samples: dict[str, list[float]] = {"ocinest": [], "reference": []}
        raw: dict[str, list[dict[str, Any]]] = {"ocinest": [], "reference": []}
        for r in self.rounds():
            for server in self.pair:
                cpu0 = server.cpu()
                result = self.loadgen(spec_of(server, r))
                result["server_cpu_s"] = server.cpu() - cpu0
                raw[server.label].append(result)
                samples[server.label].append(result["rate"])
            o, f = raw["ocinest"][-1], raw["reference"][-1]
            log(
                f"{key} round {r + 1}: ocinest {o['rate']:.0f}/s (p99 {o['p99_ms']:.1f} ms), "
                f"reference {f['rate']:.0f}/s (p99 {f['p99_ms']:.1f} ms)"
            )
        self.details[key] = raw
        self.add(Row(key, title, unit, True, samples["ocinest"], samples["reference"]))

    def scenario_push(self) -> None:
        p = self.p

        def spec(server: Server, r: int) -> dict[str, Any]:
            return {
                "mode": "push-blobs",
                "base": server.base,
                "repo": "bench/small",
                "count": p.small_count,
                "concurrency": p.push_concurrency,
                "size": p.small_size,
            }

        self._rate_scenario(
            "push",
            f"{p.small_size // 1024} KiB blob push (POST+PUT), {p.push_concurrency} concurrent",
            "blobs/s",
            spec,
        )

    def scenario_manifest_put(self) -> None:
        p = self.p
        bases: dict[str, tuple[tuple[str, int], ...]] = {}
        for server in self.pair:
            h = Http(server.base)
            bases[server.label] = push_base_image(h, "bench/manifests")
            h.close()

        def spec(server: Server, r: int) -> dict[str, Any]:
            (cd, cs), (ld, ls) = bases[server.label]
            return {
                "mode": "put-manifests",
                "base": server.base,
                "repo": "bench/manifests",
                "count": p.manifest_count,
                "concurrency": p.push_concurrency,
                "config_digest": cd,
                "config_size": cs,
                "layer_digest": ld,
                "layer_size": ls,
                "prefix": f"r{r}-{os.urandom(4).hex()}",
            }

        self._rate_scenario(
            "manifest-put",
            f"manifest PUT by tag, {p.push_concurrency} concurrent",
            "manifests/s",
            spec,
        )

    def _get_run(
        self,
        server: Server,
        seconds: float,
        path: str = "/v2/bench/get/manifests/latest",
        spread: list[Server] | None = None,
        threads: int = 1,
    ) -> dict[str, Any]:
        """GET `path` with get_concurrency connections for `seconds`, by wrk (`threads`
        threads) or else the aiohttp load generator. With `spread`, the connections are
        divided among those servers (wrk: thread k goes to server k modulo their number)."""
        p = self.p
        url = f"{server.base}{path}"
        if self.wrk:
            cmd = [
                self.wrk,
                f"-t{threads}",
                f"-c{p.get_concurrency}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                str(HERE / "manifest_get.lua"),
                url,
            ]
            env = {k: v for k, v in os.environ.items() if k != "WRK_TARGETS"}
            if spread:
                env["WRK_TARGETS"] = ",".join(f"127.0.0.1:{s.port}" for s in spread)
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, env=env)
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
            if line is None:
                raise RuntimeError(f"wrk printed no result: {out.stdout[-1000:]} {out.stderr}")
            w = json.loads(line[len("WRKJSON ") :])
            if w["errors_status"]:
                raise RuntimeError(f"wrk against {server.label}: non-200 answers: {w}")
            errors = sum(w[k] for k in w if k.startswith("errors_"))
            if errors:  # connections broken off: kept, counted and reported
                who = "+".join(s.label for s in spread) if spread else server.label
                self.notes.append(
                    f"manifest GET: {who} broke off connections in one run "
                    f"({errors} socket errors: {w}); see its log"
                )
                log(self.notes[-1])
            return {
                "tool": "wrk",
                "threads": threads,
                "socket_errors": errors,
                "ops": w["requests"],
                "client_cpu_s": (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime),
                "rate": w["requests"] / (w["duration_us"] / 1e6),
                "p50_ms": w["p50_us"] / 1000,
                "p99_ms": w["p99_us"] / 1000,
                "raw": w,
            }
        result = self.loadgen(
            {
                "mode": "get",
                "base": server.base,
                "bases": [s.base for s in spread] if spread else None,
                "path": path,
                "accept": ACCEPT_MANIFESTS,
                "concurrency": p.get_concurrency,
                "duration": seconds,
            }
        )
        result["tool"] = "aiohttp loadgen"
        return result

    def scenario_manifest_get(self) -> None:
        p = self.p
        for server in self.pair:
            h = Http(server.base)
            push_base_image(h, "bench/get", tag="latest")
            h.close()
        assert self.oci is not None
        two = ocinest_server("ocinest-2w", self.work / "ocinest", self.logs, workers=2).start()
        targets = [self.oci, self.pair[1], two]
        try:
            for server in targets:
                self._get_run(server, p.get_warmup)
            raw: dict[str, list[dict[str, Any]]] = {s.label: [] for s in targets}
            for r in self.rounds():
                for server in targets:
                    cpu0 = server.cpu()
                    result = self._get_run(server, p.get_seconds)
                    result["server_cpu_s"] = server.cpu() - cpu0
                    raw[server.label].append(result)
                log(
                    f"manifest GET round {r + 1}: "
                    + ", ".join(
                        f"{s.label} {raw[s.label][-1]['rate']:.0f}/s p99 "
                        f"{raw[s.label][-1]['p99_ms']:.2f} ms"
                        for s in targets
                    )
                )
        finally:
            two.stop()
        self.details["manifest-get"] = raw
        ref = raw["reference"]
        tool = ref[0]["tool"]
        for label, workers in (("ocinest", 1), ("ocinest-2w", 2)):
            ours = raw[label]
            w = f"{workers} worker{'s' if workers > 1 else ''}"
            self.add(
                Row(
                    f"manifest-get-{workers}w",
                    f"manifest GET by tag, c={p.get_concurrency} ({tool}), ocinest {w}",
                    "req/s",
                    True,
                    [x["rate"] for x in ours],
                    [x["rate"] for x in ref],
                    goal=">= 10x ref",
                    min_ratio=10,
                )
            )
            self.add(
                Row(
                    f"manifest-get-{workers}w-p50",
                    f"  … p50 latency, ocinest {w}",
                    "ms",
                    False,
                    [x["p50_ms"] for x in ours],
                    [x["p50_ms"] for x in ref],
                )
            )
            self.add(
                Row(
                    f"manifest-get-{workers}w-p99",
                    f"  … p99 latency, ocinest {w}",
                    "ms",
                    False,
                    [x["p99_ms"] for x in ours],
                    [x["p99_ms"] for x in ref],
                    goal="p99 < 10 ms",
                    max_value=10,
                )
            )

    def scenario_tags(self) -> None:
        p = self.p
        repo = "bench/tags"
        expected = {f"t{i:05d}" for i in range(p.tags)}
        for server in self.pair:
            h = Http(server.base)
            cd, ld = push_base_image(h, repo)
            h.close()
            body = image_manifest(cd, ld)
            seconds = parallel(
                server.base,
                sorted(expected),
                functools.partial(_put_tag, repo=repo, body=body),
            )
            self.details.setdefault("tags_seed_per_s", {})[server.label] = p.tags / seconds
            log(f"tags: {p.tags} tags in {server.label} in {seconds:.1f}s")
        for server in self.pair:  # one untimed listing each: connections, caches
            list_all(Http(server.base), f"/v2/{repo}/tags/list?n={p.page}", "tags")
        samples: dict[str, list[float]] = {"ocinest": [], "reference": []}
        pages: dict[str, int] = {}
        for r in self.rounds():
            for server in self.pair:
                h = Http(server.base)
                start = time.perf_counter()
                got = list_all(h, f"/v2/{repo}/tags/list?n={p.page}", "tags")
                samples[server.label].append((time.perf_counter() - start) * 1000)
                h.close()
                if set(got) != expected or len(got) != p.tags:
                    raise RuntimeError(f"tag list of {server.label}: {len(got)} tags")
            log(
                f"tags round {r + 1}: ocinest {samples['ocinest'][-1]:.1f} ms, reference "
                f"{samples['reference'][-1]:.1f} ms"
            )
        for server in self.pair:
            h = Http(server.base)
            n = 0
            url: str | None = f"/v2/{repo}/tags/list?n={p.page}"
            while url is not None:
                n += 1
                url = next_link(h.expect(200, "GET", url).headers)
            pages[server.label] = n
            h.close()
        self.details["tags_pages"] = pages
        self.add(
            Row(
                "tags",
                f"tag list, {p.tags:,} tags, n={p.page} pages (ocinest {pages['ocinest']}, "
                f"reference {pages['reference']})",
                "ms",
                False,
                samples["ocinest"],
                samples["reference"],
            )
        )

    def scenario_catalog(self) -> None:
        """On a fresh pair of registries, so that they hold exactly `repos` repositories."""
        p = self.p
        oci = ocinest_server("ocinest-catalog", self.work / "ocinest-catalog", self.logs).start()
        ref = reference_server(
            "reference-catalog", self.work / "reference-catalog", self.logs
        ).start()
        try:
            names = [f"cat/r{i:05d}" for i in range(p.repos)]
            blob = b"catalog blob\n" * 64
            for server in (oci, ref):
                h = Http(server.base)
                digest = push_blob(h, names[0], blob)
                h.close()
                seconds = parallel(
                    server.base,
                    names[1:],
                    functools.partial(_mount_into, digest=digest, source=names[0]),
                )
                log(f"catalog: {p.repos} repositories in {server.label} in {seconds:.1f}s")
            for server in (oci, ref):  # one untimed listing each: connections, caches
                list_all(Http(server.base), f"/v2/_catalog?n={p.page}", "repositories")
            samples: dict[str, list[float]] = {"ocinest": [], "reference": []}
            for r in self.rounds():
                for label, server in (("ocinest", oci), ("reference", ref)):
                    h = Http(server.base)
                    start = time.perf_counter()
                    got = list_all(h, f"/v2/_catalog?n={p.page}", "repositories")
                    samples[label].append((time.perf_counter() - start) * 1000)
                    h.close()
                    if sorted(got) != names:
                        raise RuntimeError(f"catalog of {label}: {len(got)} repositories")
                log(
                    f"catalog round {r + 1}: ocinest {samples['ocinest'][-1]:.1f} ms, "
                    f"reference {samples['reference'][-1]:.1f} ms"
                )
        finally:
            t = time.monotonic()
            oci.stop()
            log(f"catalog: ocinest stopped in {time.monotonic() - t:.1f}s")
            t = time.monotonic()
            ref.stop()
            log(f"catalog: reference stopped in {time.monotonic() - t:.1f}s")
            # Removing 10,000 repositories' folders takes this disk a minute or more: it
            # waits for the end, when nothing is measured any more.
            trash = self.work / "trash"
            trash.mkdir(exist_ok=True)
            for d in ("ocinest-catalog", "reference-catalog"):
                if (self.work / d).exists():
                    (self.work / d).rename(trash / d)
        self.add(
            Row(
                "catalog",
                f"catalog, {p.repos:,} repositories, n={p.page} pages",
                "ms",
                False,
                samples["ocinest"],
                samples["reference"],
            )
        )

    # The nested tree: ocinest holds an index in tree/nN whose N children live in
    # tree/nN/cXXXXX; the reference holds the same N child manifests (same bytes, same
    # digests) in tree/nN itself under a plain index, since it refuses nested ones.

    def _seed_tree(self, n: int) -> None:
        assert self.oci is not None and self.ref is not None
        seed_plain_tree(self.ref.base, seed_nested_tree(self.oci.base, n))

    @staticmethod
    def _walk(h: Http, parent: str) -> int:
        """What a stock client does: the index by tag, then each child by digest, in turn."""
        r = h.expect(200, "GET", f"/v2/{parent}/manifests/latest", Accept=ACCEPT_MANIFESTS)
        n = 0
        for desc in json.loads(r.body)["manifests"]:
            h.expect(
                200, "GET", f"/v2/{parent}/manifests/{desc['digest']}", Accept=ACCEPT_MANIFESTS
            )
            n += 1
        return n

    def scenario_tree(self) -> None:
        p = self.p
        assert self.oci is not None and self.ref is not None
        for n in p.tree_sizes:
            start = time.perf_counter()
            self._seed_tree(n)
            seconds = time.perf_counter() - start
            log(f"tree: seeded {n} children in both registries in {seconds:.1f}s")
        tree_ms: dict[int, list[float]] = {n: [] for n in p.tree_sizes}
        walk_oci: dict[int, list[float]] = {n: [] for n in p.tree_sizes}
        walk_ref: dict[int, list[float]] = {n: [] for n in p.tree_sizes}
        ho, hr = Http(self.oci.base), Http(self.ref.base)
        for n in p.tree_sizes:  # warm both connections and caches once
            ho.expect(200, "GET", f"/v2/tree/n{n}/_ocinest/tree/latest")
            self._walk(ho, f"tree/n{n}")
            self._walk(hr, f"tree/n{n}")
        for r in self.rounds():
            for n in p.tree_sizes:
                parent = f"tree/n{n}"
                reps = p.tree_reps if n <= 100 else max(1, p.tree_reps // 2)
                one: list[float] = []
                for _ in range(p.tree_reps):
                    start = time.perf_counter()
                    body = ho.expect(200, "GET", f"/v2/{parent}/_ocinest/tree/latest").body
                    one.append((time.perf_counter() - start) * 1000)
                    if len(body) < 2:
                        raise RuntimeError("empty tree")
                tree_ms[n].append(statistics.median(one))
                for h, sink in ((hr, walk_ref), (ho, walk_oci)):
                    one = []
                    for _ in range(reps):
                        start = time.perf_counter()
                        if self._walk(h, parent) != n:
                            raise RuntimeError(f"walk of {parent}: wrong child count")
                        one.append((time.perf_counter() - start) * 1000)
                    sink[n].append(statistics.median(one))
            log(
                f"tree round {r + 1}: "
                + "; ".join(
                    f"{n}: tree {tree_ms[n][-1]:.1f} ms, walk ocinest {walk_oci[n][-1]:.0f} ms, "
                    f"walk reference {walk_ref[n][-1]:.0f} ms"
                    for n in p.tree_sizes
                )
            )
        ho.close()
        hr.close()
        biggest = max(p.tree_sizes)
        for n in p.tree_sizes:
            goal = n == biggest
            for base, name, key in (
                (walk_ref[n], "stock walk on reference", "ref"),
                (walk_oci[n], "stock walk on ocinest", "oci"),
            ):
                self.add(
                    Row(
                        f"tree-{n}-vs-walk-{key}",
                        f"nested tree, {n:,} children: tree endpoint vs {name}",
                        "ms",
                        False,
                        tree_ms[n],
                        base,
                        base_name=name.replace("stock ", ""),
                        goal="< 50 ms, >= 20x walk" if goal else "",
                        min_ratio=20 if goal else None,
                        max_value=50 if goal else None,
                    )
                )
            self.add(
                Row(
                    f"tree-{n}-walk",
                    f"  … stock walk ({n + 1:,} manifest GETs): ocinest vs reference",
                    "ms",
                    False,
                    walk_oci[n],
                    walk_ref[n],
                )
            )

    def scenario_copy(self) -> None:
        """Recursive copy of a nested tree between two ocinest registries: one `ocinest copy`
        against what a stock client must do (a skopeo copy per child, then the index), each
        into a fresh destination; then the same `ocinest copy` again, which must re-send
        nothing (its own count, and the destination's upload requests from /metrics)."""
        p = self.p
        if not copy_command_available():
            self.skipped["copy"] = (
                "`ocinest copy` is not in this build: the recursive-copy scenario runs once it is"
            )
            log(f"copy: skipped: {self.skipped['copy']}")
            return
        skopeo = shutil.which("skopeo")
        if skopeo is None:
            self.skipped["copy"] = "skopeo is missing and could not be installed"
            log(f"copy: skipped: {self.skipped['copy']}")
            return
        assert self.oci is not None
        n = p.copy_children
        tree = seed_copy_tree(self.oci.base, n)
        src_host = f"127.0.0.1:{self.oci.port}"
        tls = ["--src-tls-verify=false", "--dest-tls-verify=false"]
        ours: list[float] = []
        loop: list[float] = []
        resent: list[float] = []
        raw: list[dict[str, Any]] = []
        for r in range(max(1, min(p.rounds, p.copy_rounds))):
            # ocinest copy, into a fresh registry
            dst = ocinest_server(f"ocinest-copy-{r}", self.work / f"copy-{r}", self.logs).start()
            try:
                target = f"127.0.0.1:{dst.port}/{tree.parent}:latest"
                start = time.perf_counter()
                first = run_copy(f"{src_host}/{tree.parent}:latest", target)
                ours.append(time.perf_counter() - start)
                check_tree(dst.base, tree.parent, n)
                uploads0 = upload_requests(dst.base)
                second = run_copy(f"{src_host}/{tree.parent}:latest", target)
                uploads = upload_requests(dst.base) - uploads0
                resent.append(float(second["stats"]["bytes_uploaded"]))
            finally:
                dst.stop()
                shutil.rmtree(self.work / f"copy-{r}", ignore_errors=True)
            # the stock loop, into another fresh registry
            dst = ocinest_server(f"ocinest-skopeo-{r}", self.work / f"skopeo-{r}", self.logs)
            dst.start()
            try:
                dhost = f"127.0.0.1:{dst.port}"
                start = time.perf_counter()
                for child, digest in tree.children:
                    sh(
                        skopeo,
                        "copy",
                        "-q",
                        "--preserve-digests",
                        *tls,
                        f"docker://{src_host}/{child}@{digest}",
                        f"docker://{dhost}/{child}@{digest}",
                    )
                sh(
                    skopeo,
                    "copy",
                    "-q",
                    "--preserve-digests",
                    "--multi-arch",
                    "index-only",
                    *tls,
                    f"docker://{src_host}/{tree.parent}:latest",
                    f"docker://{dhost}/{tree.parent}:latest",
                )
                loop.append(time.perf_counter() - start)
                check_tree(dst.base, tree.parent, n)
            finally:
                dst.stop()
                shutil.rmtree(self.work / f"skopeo-{r}", ignore_errors=True)
            raw.append(
                {
                    "copy_s": ours[-1],
                    "skopeo_loop_s": loop[-1],
                    "first_copy_stats": first["stats"],
                    "second_copy_stats": second["stats"],
                    "second_copy_upload_requests_at_destination": uploads,
                }
            )
            log(
                f"copy round {r + 1}: ocinest copy {ours[-1]:.2f}s, skopeo loop {loop[-1]:.2f}s;"
                f" second copy re-sent {resent[-1]:g} bytes, {uploads} upload requests"
            )
        self.details["copy"] = {"tree_bytes": tree.bytes, "rounds": raw}
        self.add(
            Row(
                "copy",
                f"recursive copy, {n}-child tree ({tree.bytes / MiB:.1f} MiB), ocinest to "
                "ocinest: ocinest copy vs skopeo per child + index",
                "s",
                False,
                ours,
                loop,
                base_name="skopeo loop",
                goal=">= 5x skopeo loop",
                min_ratio=5,
            )
        )
        uploads_total = sum(x["second_copy_upload_requests_at_destination"] for x in raw)
        self.add(
            Row(
                "copy-resent",
                f"  … bytes re-sent by a second copy (destination saw {uploads_total} blob "
                "upload requests)",
                "bytes",
                False,
                resent,
                goal="0 bytes",
                must_be_zero=True,
            )
        )

    def gc_seed(self) -> tuple[Path, dict[str, Any]]:
        """The GC scenario's data folder (built once, then copied for each use)."""
        if self._gc_seed is None:
            p = self.p
            seed_dir = self.work / "gc-seed"
            out = subprocess.run(
                [
                    sys.executable,
                    str(HERE / "seed_gc.py"),
                    str(seed_dir),
                    "--repos",
                    str(p.gc_repos),
                    "--manifests-per-repo",
                    str(p.gc_per_repo),
                ],
                capture_output=True,
                text=True,
                timeout=1200,
            )
            if out.returncode != 0:
                raise RuntimeError(f"seed_gc.py failed: {out.stderr[-3000:]}")
            seed = json.loads(out.stdout.strip().splitlines()[-1])
            log(
                f"gc seed: {seed['manifests']:,} manifests in {seed['repositories']} "
                f"repositories in {seed['seconds']}s (through the storage classes)"
            )
            self._gc_seed = (seed_dir, seed)
        return self._gc_seed

    def scenario_tree_scale(self) -> None:
        """The tree endpoint in a registry that holds the GC scenario's ~100k manifests, since
        its cost may grow with the registry and not only with the tree."""
        p = self.p
        seed_dir, seed = self.gc_seed()
        n = max(p.tree_sizes)
        data = self.work / "tree-scale"
        subprocess.run(["cp", "-a", str(seed_dir), str(data)], check=True)
        server = ocinest_server("ocinest-tree-scale", data, self.logs).start()
        tree_ms: list[float] = []
        walk_ms: list[float] = []
        try:
            start = time.perf_counter()
            tree = seed_nested_tree(server.base, n)
            log(f"tree-scale: seeded {n} children in {time.perf_counter() - start:.1f}s")
            h = Http(server.base)
            h.expect(200, "GET", f"/v2/{tree.parent}/_ocinest/tree/latest")
            self._walk(h, tree.parent)
            for r in self.rounds():
                one = []
                for _ in range(p.tree_reps):
                    t = time.perf_counter()
                    h.expect(200, "GET", f"/v2/{tree.parent}/_ocinest/tree/latest")
                    one.append((time.perf_counter() - t) * 1000)
                tree_ms.append(statistics.median(one))
                t = time.perf_counter()
                self._walk(h, tree.parent)
                walk_ms.append((time.perf_counter() - t) * 1000)
                log(f"tree-scale round {r + 1}: tree {tree_ms[-1]:.1f} ms, walk {walk_ms[-1]:.0f}")
            h.close()
        finally:
            server.stop()
            shutil.rmtree(data, ignore_errors=True)
        total = seed["manifests"] + n + 1
        self.add(
            Row(
                "tree-scale",
                f"nested tree, {n:,} children, registry of {total:,} manifests: tree endpoint "
                "vs stock walk on ocinest",
                "ms",
                False,
                tree_ms,
                walk_ms,
                base_name="walk on ocinest",
                goal="< 50 ms, >= 20x walk",
                min_ratio=20,
                max_value=50,
            )
        )

    def scenario_gc(self) -> None:
        p = self.p
        seed_dir, seed = self.gc_seed()
        gc_seconds: list[float] = []
        push_max: list[float] = []
        push_p50: list[float] = []
        raw: list[dict[str, Any]] = []
        for r in range(p.gc_rounds):
            data = self.work / f"gc-{r}"
            subprocess.run(["cp", "-a", str(seed_dir), str(data)], check=True)
            server = ocinest_server(f"ocinest-gc-{r}", data, self.logs).start()
            try:
                result = self._gc_round(server, data)
            finally:
                server.stop()
                shutil.rmtree(data, ignore_errors=True)
            if result["deleted_manifests"] != seed["expect_deleted_manifests"] or (
                result["deleted_blobs"] != seed["expect_deleted_blobs"]
            ):
                raise RuntimeError(f"gc deleted the wrong things: {result} vs {seed}")
            raw.append(result)
            gc_seconds.append(result["wall_s"])
            push_max.append(result["push_max_ms"])
            push_p50.append(result["push_p50_ms"])
            log(
                f"gc round {r + 1}: {result['wall_s']:.1f}s, deleted "
                f"{result['deleted_manifests']:,} manifests and {result['deleted_blobs']} blobs; "
                f"{result['pushes']} pushes during it, p50 {result['push_p50_ms']:.0f} ms, "
                f"max {result['push_max_ms']:.0f} ms"
            )
        self.details["gc"] = {"seed": seed, "rounds": raw}
        total = (
            f"{seed['manifests'] // 1000}k" if seed["manifests"] >= 10_000 else seed["manifests"]
        )
        self.add(
            Row(
                "gc",
                f"GC --delete-untagged --grace 0s, {total} manifests "
                f"({seed['expect_deleted_manifests']:,} deleted)",
                "s",
                False,
                gc_seconds,
                goal="< 60 s",
                max_value=60,
            )
        )
        pushes = sum(x["pushes"] for x in raw)
        self.add(
            Row(
                "gc-push-p50",
                f"  … push (blob + tagged manifest) while GC runs, p50 ({pushes} pushes, all ok)",
                "ms",
                False,
                push_p50,
            )
        )
        self.add(Row("gc-push-max", "  … push while GC runs, slowest", "ms", False, push_max))

    def _gc_round(self, server: Server, data: Path) -> dict[str, Any]:
        h = Http(server.base)
        repo = "gc/live"
        cd, _ = push_base_image(h, repo, tag="base")
        stop = threading.Event()
        pushes: list[tuple[str, str, float]] = []
        failures: list[str] = []

        def pusher() -> None:
            k = 0
            while not stop.is_set():
                layer = f"pushed during gc {k} {time.time_ns()}".encode()
                start = time.perf_counter()
                try:
                    lay = (push_blob(h, repo, layer), len(layer))
                    put_manifest(h, repo, f"w{k}", image_manifest(cd, lay))
                except Exception as exc:
                    failures.append(str(exc))
                else:
                    pushes.append((f"w{k}", lay[0], (time.perf_counter() - start) * 1000))
                k += 1
                stop.wait(self.p.gc_push_gap)

        thread = threading.Thread(target=pusher)
        start = time.perf_counter()
        gc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ocinest",
                "gc",
                "--data",
                str(data),
                "--delete-untagged",
                "--grace",
                "0s",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        thread.start()
        stdout, stderr = gc.communicate(timeout=1800)
        wall = time.perf_counter() - start
        stop.set()
        thread.join()
        if gc.returncode != 0:
            raise RuntimeError(f"ocinest gc failed ({gc.returncode}): {stderr[-2000:]}")
        report = json.loads(stdout)
        if failures:
            raise RuntimeError(f"{len(failures)} pushes failed while GC ran: {failures[0]}")
        if not pushes:
            raise RuntimeError("no push completed while GC ran")
        # Everything pushed during the collection is still there.
        for tag, layer, _ in pushes:
            h.expect(200, "GET", f"/v2/{repo}/manifests/{tag}", Accept=ACCEPT_MANIFESTS)
            h.expect(200, "HEAD", f"/v2/{repo}/blobs/{layer}")
        h.close()
        times = sorted(x[2] for x in pushes)
        return {
            "wall_s": wall,
            "reported_s": report["seconds"],
            "deleted_manifests": len(report["manifests"]),
            "deleted_blobs": len(report["blobs"]),
            "pushes": len(pushes),
            "push_p50_ms": statistics.median(times),
            "push_max_ms": times[-1],
        }

    # -- scale-out: one versus two `ocinest serve` processes over shared S3 + PostgreSQL

    def scenario_scale_out(self) -> None:
        """Throughput of 1 versus 2 registry processes sharing one PostgreSQL database and
        one S3 bucket, the load spread over both processes' ports (round-robin, as a load
        balancer would). The services come from the environment when it has them, else they
        are started here (not in smoke mode, which skips the scenario without them)."""
        missing = SharedStores.missing_from_environment()
        if self.smoke and missing:
            self.skipped["scale-out"] = (
                f"services absent: {', '.join(missing)} not set. Smoke mode runs it only on "
                "a PostgreSQL and an S3 that the environment provides, and starts none itself "
                "(a full run does)"
            )
            log(f"scale-out: skipped: {self.skipped['scale-out']}")
            return
        stores = SharedStores()
        atexit.register(stores.stop)
        try:
            try:
                stores.start()
            except (ServiceError, subprocess.TimeoutExpired, OSError) as exc:
                self.skipped["scale-out"] = f"could not start the services it needs: {exc}"
                log(f"scale-out: skipped: {self.skipped['scale-out']}")
                return
            self._scale_out(stores)
        finally:
            stores.stop()

    def _scale_out(self, stores: SharedStores) -> None:
        dsn, bucket = stores.fresh()
        settings = {
            "metadata": "postgres",
            "postgres_dsn": dsn,
            "storage": "s3",
            "s3_endpoint": stores.s3_endpoint,
            "s3_bucket": bucket,
        }
        log(
            f"scale-out: PostgreSQL from {stores.origin['postgres']}, database "
            f"{stores.database}; S3 from {stores.origin['s3']} at {stores.s3_endpoint}, "
            f"bucket {bucket}"
        )
        env = stores.server_env()
        servers: list[Server] = []
        try:
            for k in (1, 2):  # one after the other: the first creates the bucket
                server = ocinest_scale_server(
                    f"ocinest-s3pg-{k}", self.work / f"scale-out-{k}", self.logs, settings, env
                )
                servers.append(server.start())
            log(f"scale-out: processes on {', '.join(s.base for s in servers)}")
            self._scale_out_measure(stores, servers)
        finally:
            for server in reversed(servers):
                server.stop()

    def _scale_out_measure(self, stores: SharedStores, servers: list[Server]) -> None:
        p = self.p
        repo = "bench/scale"
        get_path = f"/v2/{repo}/manifests/latest"
        blob_size = MiB
        # The two processes see one registry: an image pushed through the first is read by
        # tag through the second, and a blob pushed through the second is in the first.
        h1, h2 = Http(servers[0].base), Http(servers[1].base)
        push_base_image(h1, repo, tag="latest")
        h2.expect(200, "GET", get_path, Accept=ACCEPT_MANIFESTS)
        digest = push_blob(h2, repo, os.urandom(4096))
        h1.expect(200, "HEAD", f"/v2/{repo}/blobs/{digest}")
        h1.close()
        h2.close()

        configs = {1: servers[:1], 2: servers}

        def push_spec(n: int, count: int) -> dict[str, Any]:
            return {
                "mode": "push-blobs",
                "base": configs[n][0].base,
                "bases": [s.base for s in configs[n]],
                "repo": f"{repo}-push",
                "count": count,
                "concurrency": p.scale_push_concurrency,
                "size": blob_size,
            }

        def get(n: int, seconds: float) -> dict[str, Any]:
            # Two wrk threads in both cases: the client is the same, only where it sends
            # its connections differs.
            return self._get_run(configs[n][0], seconds, get_path, spread=configs[n], threads=2)

        for n in configs if p.scale_warmup else ():  # connections, pools, caches
            get(n, p.get_warmup)
            self.loadgen(push_spec(n, 2 * p.scale_push_concurrency), allow_errors=True)

        raw: dict[str, dict[int, list[dict[str, Any]]]] = {
            "get": {1: [], 2: []},
            "push": {1: [], 2: []},
        }
        for r in range(p.scale_rounds):
            order = [1, 2] if r % 2 == 0 else [2, 1]  # alternate which goes first
            for kind in ("get", "push"):
                for n in order:
                    cpu0 = [s.cpu() for s in servers]
                    svc0 = stores.cpu()
                    if kind == "get":
                        result = get(n, p.get_seconds)
                    else:
                        # A failed push is counted and reported, not fatal: the rate counts
                        # the pushes that succeeded.
                        result = self.loadgen(push_spec(n, p.scale_blobs), allow_errors=True)
                    result["server_cpu_s"] = [
                        round(s.cpu() - c, 3) for s, c in zip(servers, cpu0, strict=True)
                    ]
                    result["services_cpu_s"] = {
                        k: round(v - svc0[k], 3) for k, v in stores.cpu().items()
                    }
                    result["load_average_1min"] = os.getloadavg()[0]
                    raw[kind][n].append(result)
            g, u = raw["get"], raw["push"]
            log(
                f"scale-out round {r + 1}: manifest GET 1 process {g[1][-1]['rate']:.0f}/s, "
                f"2 processes {g[2][-1]['rate']:.0f}/s; 1 MiB push 1 process "
                f"{u[1][-1]['rate']:.1f}/s, 2 processes {u[2][-1]['rate']:.1f}/s"
            )
        self.details["scale-out"] = {
            "postgres": stores.origin["postgres"],
            "s3": stores.origin["s3"],
            "processes": [{"label": s.label, "port": s.port} for s in servers],
            "load_generators": {
                "get": f"{raw['get'][1][0]['tool']}, 2 threads, {p.get_concurrency} connections",
                "push": f"aiohttp loadgen, {p.scale_push_concurrency} concurrent, round-robin",
            },
            "rounds": {kind: {f"{n}p": v for n, v in by.items()} for kind, by in raw.items()},
        }
        failed = {n: sum(x["errors"] for x in raw["push"][n]) for n in configs}
        if any(failed.values()):
            total = len(raw["push"][1]) * p.scale_blobs
            kinds = sorted(
                {x["first_error"] for n in configs for x in raw["push"][n] if x["errors"]}
            )
            self.notes.append(
                f"scale-out: pushes failed: {failed[1]} of {total} with 1 process, {failed[2]} of "
                f"{total} with 2 processes (first errors: {'; '.join(kinds)}). The registry "
                "processes logged: " + ("; ".join(log_exceptions(servers)) or "nothing")
            )
            log(self.notes[-1])
        if stores.pids:
            self.notes.append(
                "scale-out: PostgreSQL and/or Ceph were started by the harness on this machine, "
                "so they share its cores with the registry processes and the load generator; "
                "their CPU seconds per run are in results.json (details.scale-out)"
            )
        tool = raw["get"][1][0]["tool"]
        title = "scale-out, S3 + PostgreSQL, 2 processes vs 1"
        for kind, what, unit in (
            ("get", f"manifest GET by tag, c={p.get_concurrency} ({tool}, 2 threads)", "req/s"),
            (
                "push",
                f"{blob_size // MiB} MiB blob push (POST+PUT), "
                f"{p.scale_push_concurrency} concurrent",
                "blobs/s",
            ),
        ):
            two, one = raw[kind][2], raw[kind][1]
            if kind == "push" and any(failed.values()):
                what += f" (failed pushes: {failed[2]} with 2 processes, {failed[1]} with 1)"
            self.add(
                Row(
                    f"scale-out-{kind}",
                    f"{title}: {what}",
                    unit,
                    True,
                    [x["rate"] for x in two],
                    [x["rate"] for x in one],
                    base_name="1 process",
                )
            )
            self.add(
                Row(
                    f"scale-out-{kind}-p99",
                    f"  … {'manifest GET' if kind == 'get' else 'push'} p99 latency, "
                    "2 processes vs 1",
                    "ms",
                    False,
                    [x["p99_ms"] for x in two],
                    [x["p99_ms"] for x in one],
                    base_name="1 process",
                )
            )

            # CPU seconds of both registry processes per operation, in µs (GET) or ms (push)
            scale = 1e6 if kind == "get" else 1e3
            self.add(
                Row(
                    f"scale-out-{kind}-cpu",
                    "  … CPU of the registry processes (together) per "
                    + ("request" if kind == "get" else "blob"),
                    "µs" if kind == "get" else "ms",
                    False,
                    [scale * sum(x["server_cpu_s"]) / max(1, x["ops"]) for x in two],
                    [scale * sum(x["server_cpu_s"]) / max(1, x["ops"]) for x in one],
                    base_name="1 process",
                )
            )

    # -- output

    def machine(self) -> dict[str, Any]:
        cpu = "unknown"
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        mem = 0
        with contextlib.suppress(OSError, ValueError):
            mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
        fs = subprocess.run(
            ["df", "--output=fstype", str(self.work)], capture_output=True, text=True
        ).stdout.split()[-1:]
        ref = subprocess.run(["docker-registry", "--version"], capture_output=True, text=True)
        osname = "unknown"
        with contextlib.suppress(OSError):
            for line in Path("/etc/os-release").read_text().splitlines():
                if line.startswith("PRETTY_NAME="):
                    osname = line.split("=", 1)[1].strip('"')
        return {
            "cpu": cpu,
            "cores": os.cpu_count(),
            "memory_mib": mem,
            "os": osname,
            "kernel": platform.release(),
            "python": platform.python_version(),
            "filesystem": fs[0] if fs else "unknown",
            "reference": ref.stdout.strip(),
            "load_generator": "wrk 4.1 (-t1)" if self.wrk else "aiohttp loadgen",
        }

    def write(self, out: Path, elapsed: float, only: list[str]) -> None:
        out.mkdir(parents=True, exist_ok=True)
        machine = self.machine()
        date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        header = (
            f"ocinest benchmarks, {'SMOKE (numbers mean nothing)' if self.smoke else 'full run'}"
            f", {date}, {machine['cores']} cores {machine['cpu']}, "
            f"{machine['memory_mib'] // 1024} GiB, {machine['os']}, {machine['filesystem']}; "
            f"reference {machine['reference']}; {self.p.rounds} rounds interleaved, "
            f"{elapsed:.0f}s in all"
        )
        loads = [v[0] for v in self.load.values()]
        if loads:
            header += (
                f"; 1-min load average at scenario ends {min(loads):.1f}-{max(loads):.1f} "
                f"on {machine['cores']} cores (a shared machine: other work ran too)"
            )
        text = header + "\n\n" + table(self.rows) + "\n"
        text += (
            "\nx better: ocinest ÷ baseline for rates, baseline ÷ ocinest for times "
            "(> 1 means ocinest is better). % ceiling: of the no-HTTP upload path measured in "
            "the same rounds.\n"
        )
        for key, why in self.skipped.items():
            text += f"\nnot run: {key}: {why}\n"
        for note in self.notes:
            text += f"\nnote: {note}\n"
        missed = [r for r in self.rows if r.met is False]
        if missed:
            text += "\ngoals missed:\n"
            for r in missed:
                for c in r.checks:
                    if not c["met"]:
                        text += (
                            f"- {r.title.strip(' …')}: {c['goal']}, got {c['value']} "
                            f"({c['shortfall']})\n"
                        )
        print(text)
        (out / "table.md").write_text(text)
        doc = {
            "date": date,
            "mode": "smoke" if self.smoke else "full",
            "scenarios": only,
            "elapsed_s": round(elapsed, 1),
            "machine": machine,
            "load_average_at_scenario_end": self.load,
            "params": asdict(self.p),
            "rows": [r.to_json() for r in self.rows],
            "details": self.details,
            "skipped": self.skipped,
            "notes": self.notes,
        }
        (out / "results.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
        self.chart(out / "chart.png", header)
        log(f"wrote {out / 'results.json'}, {out / 'table.md'}, {out / 'chart.png'}")

    def chart(self, path: Path, header: str) -> None:
        import textwrap

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        def label(text: str) -> str:
            return "\n".join(textwrap.wrap(text.strip(" …"), 60))

        def color(met: bool | None) -> str:
            return {True: "tab:green", False: "tab:red", None: "tab:gray"}[met]

        compared = [r for r in self.rows if r.ratio is not None][::-1]
        # Absolute goals as a share of their threshold.
        absolute: list[tuple[str, float, bool]] = []
        for r in self.rows:
            for c in r.checks:
                if c["goal"].startswith("<") and r.max_value:
                    share = (r.med(r.ours) or 0) / r.max_value
                elif "ceiling" in c["goal"] and r.min_ceiling_pct:
                    share = (r.ceiling_pct or 0) / r.min_ceiling_pct
                else:
                    continue
                absolute.append((label(f"{r.title}: {c['goal']}"), share, c["met"]))
        absolute.reverse()
        height = max(6.0, 0.5 * len(compared) + 1.5)
        fig, (ax1, ax2) = plt.subplots(
            1, 2, figsize=(20, height), gridspec_kw={"width_ratios": [5, 4]}
        )
        values = [r.ratio or 0 for r in compared]
        colors = []
        for r in compared:
            ratio_checks = [c["met"] for c in r.checks if "x " in c["goal"]]
            colors.append(color(all(ratio_checks) if ratio_checks else None))
        ax1.barh([label(r.title) for r in compared], values, color=colors)
        for i, r in enumerate(compared):
            if r.min_ratio is not None:
                ax1.plot([r.min_ratio], [i], marker="|", color="black", markersize=16, mew=2)
            ax1.text(values[i], i, f" {values[i]:.2f}x", va="center", fontsize=7)
        ax1.axvline(1, color="black", lw=0.8)
        ax1.set_xscale("log")
        ax1.set_title("how many times better than the baseline (> 1: ocinest better)", fontsize=9)
        ax1.set_xlabel("ratio, log scale; | marks a goal; green met, red missed, grey no goal")
        ax1.tick_params(axis="y", labelsize=7)
        if absolute:
            ax2.barh(
                [a[0] for a in absolute],
                [a[1] for a in absolute],
                color=[color(a[2]) for a in absolute],
            )
            for i, a in enumerate(absolute):
                ax2.text(a[1], i, f" {a[1]:.2f}", va="center", fontsize=7)
            ax2.axvline(1, color="black", lw=0.8)
            ax2.set_title("absolute goals: value / threshold", fontsize=9)
            ax2.set_xlabel("'< limit' goals want < 1; '% of ceiling' goals want >= 1")
            ax2.tick_params(axis="y", labelsize=7)
        fig.suptitle("\n".join(textwrap.wrap(header, 180)), fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark ocinest against the reference registry and the machine's limits."
    )
    parser.add_argument("--smoke", action="store_true", help="every scenario tiny, in seconds")
    parser.add_argument(
        "--out", type=Path, default=HERE / "results", help="where results go [benchmarks/results]"
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated scenarios to run (default all): {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and logs")
    args = parser.parse_args()
    only = [s for s in args.only.split(",") if s] or list(SCENARIOS)
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")

    ensure_project_python()
    ensure_pip("matplotlib", MATPLOTLIB_PIN)
    tools = {"docker-registry": "docker-registry", "wrk": "wrk"}
    have_copy = "copy" in only and copy_command_available()
    if have_copy:
        tools["skopeo"] = "skopeo"
    still = ensure_apt(tools)
    if "docker-registry" in still:
        sys.exit(
            "the reference registry (Debian's docker-registry) is missing and could not be "
            "installed"
        )
    if "wrk" in still:
        log("wrk is missing: the manifest GET scenario uses the aiohttp load generator")

    params = SMOKE if args.smoke else FULL
    work = args.work or Path(tempfile.mkdtemp(prefix="ocinest-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    atexit.register(_stop_all)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench = Bench(params, work, args.smoke)
    log(f"{'smoke' if args.smoke else 'full'} run, scratch in {work}, scenarios: {', '.join(only)}")
    start = time.monotonic()
    try:
        bench.start_main()
        for name in SCENARIOS:
            if name in only:
                t = time.monotonic()
                getattr(bench, "scenario_" + name.replace("-", "_"))()
                bench.load[name] = [round(x, 2) for x in os.getloadavg()]
                seconds = time.monotonic() - t
                log(f"{name}: done in {seconds:.1f}s (load average {bench.load[name][0]})")
        bench.write(args.out, time.monotonic() - start, only)
    finally:
        _stop_all()
        if not args.keep:
            t = time.monotonic()
            log(f"removing scratch {work} (the reference's many folders take this disk minutes)")
            shutil.rmtree(work, ignore_errors=True)
            log(f"scratch {work} removed in {time.monotonic() - t:.1f}s")
        else:
            log(f"scratch kept in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
