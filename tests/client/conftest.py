"""Fixtures for the client tests: a live CNCF distribution (Debian's `docker-registry`) for
compat mode, with or without Basic auth; private credential files; trees built on a live
`ocinest serve` with plain HTTP (independent of the client under test); and the CLI run as a
real process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, free_port

from .helpers import Tree, build_tree

DOCKER_REGISTRY = "/usr/bin/docker-registry"


@pytest.fixture(autouse=True)
def private_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads or writes the real user's Docker or podman credentials."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "run"))
    monkeypatch.setenv("DOCKER_CONFIG", str(home / ".docker"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    return home


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for distribution's htpasswd (the C library's crypt does bcrypt)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))


@dataclass
class Distribution:
    """A running `docker-registry serve` (distribution 2.8) on a loopback port."""

    root: Path
    port: int
    users: dict[str, str] = field(default_factory=dict)
    token: dict[str, str] | None = None  # realm, service, issuer, rootcertbundle
    tls: tuple[Path, Path] | None = None  # certificate, key
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def log(self) -> Path:
        return self.root / "registry.log"

    def config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  accesslog:",
            "    disabled: false",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.root / 'data'}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: {self.host}",
        ]
        if self.tls:
            lines += ["  tls:", f"    certificate: {self.tls[0]}", f"    key: {self.tls[1]}"]
        if self.users:
            htpasswd = self.root / "htpasswd"
            htpasswd.write_text("".join(f"{u}:{bcrypt_hash(p)}\n" for u, p in self.users.items()))
            lines += ["auth:", "  htpasswd:", "    realm: test", f"    path: {htpasswd}"]
        elif self.token:
            lines += ["auth:", "  token:", *(f"    {k}: {v}" for k, v in self.token.items())]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        assert shutil.which(DOCKER_REGISTRY) or os.path.exists(DOCKER_REGISTRY), (
            "docker-registry is not installed (bash .ci/run installs it)"
        )
        cfg = self.root / "config.yml"
        cfg.write_text(self.config())
        log = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([DOCKER_REGISTRY, "serve", str(cfg)], stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self.log.read_text()[-2000:]}")
            try:
                r = httpx.get(self.url + "/v2/", timeout=1, verify=False)
                if r.status_code in (200, 401):
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def blob_puts(self) -> int:
        """Blob upload bodies the registry received (PUT and PATCH of uploads), from its
        access log."""
        return sum(
            1
            for line in self.log.read_text().splitlines()
            if "/blobs/uploads/" in line and ('"PUT ' in line or '"PATCH ' in line)
        )


def _distribution(tmp_path: Path, name: str, users: dict[str, str] | None = None) -> Distribution:
    root = tmp_path / name
    root.mkdir()
    d = Distribution(root, free_port(), dict(users or {}))
    d.start()
    return d


@pytest.fixture
def distribution(tmp_path: Path) -> Iterator[Distribution]:
    d = _distribution(tmp_path, "distribution")
    yield d
    d.stop()


@pytest.fixture
def basic_distribution(tmp_path: Path) -> Iterator[Distribution]:
    d = _distribution(tmp_path, "distribution-basic", {"alice": "s3cret"})
    yield d
    d.stop()


@pytest.fixture
def second_server(tmp_path: Path) -> Iterator[Server]:
    """A second, empty `ocinest serve`."""
    srv = Server(tmp_path / "data2", free_port())
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def ko_tree(client: httpx.Client) -> Tree:
    """myrepo/ko-build:build-1 on the `server`: app1 (an image, signed) and app2 (a
    two-platform index)."""
    return build_tree(client, "myrepo/ko-build", "build-1")


@dataclass
class Cli:
    """`python -m ocinest` as a real process."""

    env: dict[str, str]

    def __call__(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "ocinest", *args],
            capture_output=True,
            text=True,
            env=self.env,
            input=stdin if stdin is not None else "",
            timeout=240,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"ocinest {' '.join(args)} exited {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc


@pytest.fixture
def cli(private_credentials: Path) -> Cli:
    return Cli(dict(os.environ))
