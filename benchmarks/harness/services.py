"""The scale-out scenario's shared stores: one PostgreSQL database and one S3 bucket, taken
from the environment (as CI provides them) or started here, on ports of their own."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from harness.common import ROOT, log
from harness.servers import cmdline, proc_cpu

PG_PORT = 56432  # CI uses 55432
RGW_PORT = 7490  # CI uses 7480
MON_PORTS = (3310, 6799)  # CI's Ceph uses 3300 and 6789
AWS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
SCRIPTS = ROOT / "scripts"


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
            self._start_postgres(taken)
        if self.s3 is None:
            self._start_ceph(taken)

    def _start_postgres(self, taken: set[int]) -> None:
        pg_dir = self._service_dir() / "pg"
        port = pick_port(PG_PORT, taken)
        log(f"scale-out: starting a throw-away PostgreSQL on 127.0.0.1:{port}")
        out = subprocess.run(
            ["bash", str(SCRIPTS / "postgres.sh"), "start", str(pg_dir), str(port)],
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

    def _start_ceph(self, taken: set[int]) -> None:
        ceph_dir = self._service_dir() / "ceph"
        rgw = pick_port(RGW_PORT, taken)
        mon2, mon1 = (pick_port(p, taken) for p in MON_PORTS)
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
                ["bash", str(SCRIPTS / "ceph-s3-start.sh")],
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
            f"started here (scripts/ceph-s3-start.sh: 1 mon, 1 memstore OSD, radosgw on port {rgw})"
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
        return {name: sum(proc_cpu(pid) for pid in pids) for name, pids in self.pids.items()}

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
                self._remove_bucket(self.bucket, self.s3)
            except Exception as exc:
                log(f"scale-out: could not remove bucket {self.bucket}: {exc}")

    @staticmethod
    def _remove_bucket(bucket: str, s3config: dict[str, str]) -> None:
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=s3config["S3_ENDPOINT"],
            region_name=s3config.get("AWS_DEFAULT_REGION", "us-east-1"),
            aws_access_key_id=s3config["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=s3config["AWS_SECRET_ACCESS_KEY"],
        )
        with contextlib.suppress(s3.exceptions.NoSuchBucket):
            for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
                for u in page.get("Uploads", []):
                    s3.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
            s3.delete_bucket(Bucket=bucket)

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
                    ["bash", str(SCRIPTS / "ceph-s3-stop.sh")],
                    env={**os.environ, "S3_DIR": str(ceph_dir)},
                    capture_output=True,
                    timeout=120,
                )
        if "postgres" in self.pids:
            with contextlib.suppress(Exception):
                subprocess.run(
                    ["bash", str(SCRIPTS / "postgres.sh"), "stop", str(self.dir / "pg")],
                    capture_output=True,
                    timeout=120,
                )
        # Whatever outlived its script, by pid, and only if it is still ours (its command
        # line names our folder).
        for pid in [pid for pids in self.pids.values() for pid in pids]:
            if str(self.dir) in cmdline(pid):
                log(f"scale-out: pid {pid} outlived its stop script; killing it")
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)
        log("scale-out: services stopped")
