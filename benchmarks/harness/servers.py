"""Server processes on loopback ports: ocinest, the reference (distribution 2.8, Debian's
`docker-registry`) and, for the rpm scenario, Debian's nginx; started and stopped by their pids
only."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (field 3 onwards)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def children(pid: int) -> list[int]:
    """The live child processes of `pid`."""
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if int(_stat_fields(int(entry.name))[1]) == pid:
                        found.append(int(entry.name))
    return found


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and its live children."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in [pid, *children(pid)]:
        with contextlib.suppress(OSError):
            fields = _stat_fields(p)
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, UnicodeDecodeError):
        return ""


_STARTED: list[Server] = []


class Server:
    """A server process on a loopback port, started and stopped by its pid only; it is up once
    a GET of `health` answers 200."""

    def __init__(
        self,
        label: str,
        argv: list[str],
        port: int,
        log_path: Path,
        env: dict[str, str] | None = None,
        health: str = "/v2/",
    ) -> None:
        self.label = label
        self.argv = argv
        self.port = port
        self.log_path = log_path
        self.env = env
        self.health = health
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
                conn.request("GET", self.health)
                if conn.getresponse().status == 200:
                    conn.close()
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.label} did not answer on {self.base}")

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid) if self.proc else 0.0

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


def stop_all() -> None:
    """Stop every server started so far (at exit, and on failure)."""
    for server in reversed(_STARTED):
        with contextlib.suppress(Exception):
            server.stop()


@contextlib.contextmanager
def serving(server: Server, scratch: Path | None = None) -> Iterator[Server]:
    """`server`, started; stopped at the end, and then its `scratch` folder removed."""
    server.start()
    try:
        yield server
    finally:
        server.stop()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


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


def ocinest_config_server(
    label: str, data: Path, logs: Path, settings: dict[str, Any], env: dict[str, str]
) -> Server:
    """`ocinest serve --config FILE`, one worker, with `settings` (shared stores) added."""
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


def nginx_server(label: str, root: Path, logs: Path, health: str) -> Server:
    """Debian's nginx serving the folder `root` as static files, in the foreground, with a
    config of its own beside `root` (pid file and temporary folders there too). As in Debian's
    nginx.conf: sendfile and tcp_nopush on. As ocinest in the harness: one worker process, no
    access log. Run as root, its workers stay root, so that they read the scratch folder (mode
    700); its errors go to its log."""
    port = free_port()
    home = root.parent / f"{label}-home"
    home.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{label}.log"
    temps = "".join(
        f"    {kind}_temp_path {home / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = home / "nginx.conf"
    config.write_text(
        "daemon off;\n"
        "worker_processes 1;\n"
        + ("user root;\n" if os.geteuid() == 0 else "")
        + f"pid {home / 'nginx.pid'};\n"
        f"error_log {log_path} warn;\n"
        "events {\n    worker_connections 1024;\n}\n"
        "http {\n"
        "    access_log off;\n"
        "    sendfile on;\n"
        "    tcp_nopush on;\n"
        "    default_type application/octet-stream;\n"
        f"{temps}"
        f"    server {{\n        listen 127.0.0.1:{port};\n        root {root};\n    }}\n"
        "}\n"
    )
    argv = ["nginx", "-e", str(log_path), "-p", str(home), "-c", str(config)]
    return Server(label, argv, port, log_path, health=health)


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
