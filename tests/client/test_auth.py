"""Credentials (Docker's config.json, podman's auth.json, REGISTRY_AUTH_FILE, credential
helpers), challenges, and the Docker token flow against a live distribution with token auth."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocinest.client.auth import Credentials, find_credentials, parse_challenge, store_credentials
from tests.conftest import Server, free_port

from .conftest import Cli, Distribution
from .helpers import Tree
from .servers import TokenServer


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write(path: Path, doc: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def test_parse_challenge() -> None:
    c = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:a/b:pull,push repository:c:pull"'
    )
    assert c is not None and c.scheme == "bearer"
    assert c.params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:a/b:pull,push repository:c:pull",
    }
    basic = parse_challenge('Basic realm="test"')
    assert basic is not None and basic.scheme == "basic" and basic.params == {"realm": "test"}
    assert parse_challenge("") is None
    odd = parse_challenge('Bearer realm="x\\"y", error=insufficient_scope')
    assert odd is not None and odd.params == {"realm": 'x"y', "error": "insufficient_scope"}


def test_credentials_from_docker_and_podman_files(
    private_credentials: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = private_credentials
    write(
        home / ".docker" / "config.json",
        {"auths": {"https://reg.example": {"auth": b64("docker:d")}}},
    )
    assert find_credentials("reg.example") == Credentials("docker", "d")
    # podman's runtime auth.json wins over Docker's.
    write(
        home / "run" / "containers" / "auth.json",
        {"auths": {"reg.example": {"auth": b64("podman:p")}}},
    )
    assert find_credentials("reg.example") == Credentials("podman", "p")
    # A repository-scoped entry (podman) wins for its repositories only.
    write(
        home / "run" / "containers" / "auth.json",
        {
            "auths": {
                "reg.example": {"auth": b64("podman:p")},
                "reg.example/team": {"auth": b64("team:t")},
            }
        },
    )
    assert find_credentials("reg.example", "team/app") == Credentials("team", "t")
    assert find_credentials("reg.example", "other/app") == Credentials("podman", "p")
    # REGISTRY_AUTH_FILE first of all.
    explicit = home / "elsewhere.json"
    write(explicit, {"auths": {"reg.example": {"username": "env", "password": "e"}}})
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(explicit))
    assert find_credentials("reg.example") == Credentials("env", "e")
    # Docker Hub's historical key.
    write(
        home / ".docker" / "config.json",
        {"auths": {"https://index.docker.io/v1/": {"auth": b64("hub:h")}}},
    )
    assert find_credentials("docker.io") == Credentials("hub", "h")
    assert find_credentials("unknown.example") is None


def test_credential_helper(private_credentials: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = private_credentials / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-fake"
    helper.write_text(
        "#!/bin/sh\nread server\n"
        'if [ "$server" = "helped.example" ]; then\n'
        '  echo \'{"Username":"hu","Secret":"hs"}\'; exit 0\n'
        "fi\n"
        "echo 'credentials not found' ; exit 1\n"
    )
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    write(
        private_credentials / ".docker" / "config.json", {"credHelpers": {"helped.example": "fake"}}
    )
    assert find_credentials("helped.example") == Credentials("hu", "hs")
    write(private_credentials / ".docker" / "config.json", {"credsStore": "fake"})
    assert find_credentials("helped.example") == Credentials("hu", "hs")
    assert find_credentials("other.example") is None


def test_store_credentials_is_private(private_credentials: Path) -> None:
    path = store_credentials("reg.example:5000", Credentials("u", "p"))
    assert path == private_credentials / ".config" / "ocinest" / "auth.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert find_credentials("reg.example:5000") == Credentials("u", "p")


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[tuple[Distribution, TokenServer]]:
    folder = tmp_path / "token"
    folder.mkdir()
    tokens = TokenServer(folder, {"alice": "wonderland"})
    tokens.start()
    d = Distribution(tmp_path / "distribution-token", free_port())
    d.root.mkdir()
    d.token = {
        "realm": f"{tokens.url}/token",
        "service": tokens.service,
        "issuer": tokens.issuer,
        "rootcertbundle": str(tokens.cert),
    }
    d.start()
    yield d, tokens
    d.stop()
    tokens.stop()


def test_token_flow_against_distribution(
    server: Server,
    ko_tree: Tree,
    token_registry: tuple[Distribution, TokenServer],
    cli: Cli,
    private_credentials: Path,
) -> None:
    reg, tokens = token_registry
    src = f"{server.host}/myrepo/ko-build:build-1"
    # Anonymous: the token service grants pull only, so the push is denied, in one line.
    out = cli("copy", src, f"{reg.host}/ci/ko-build", check=False)
    assert out.returncode == 3, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "ocinest login" in out.stderr
    # With podman's auth.json: the copy goes through.
    write(
        private_credentials / "run" / "containers" / "auth.json",
        {"auths": {reg.host: {"auth": b64("alice:wonderland")}}},
    )
    tokens.requests.clear()
    cli("copy", "--referrers", src, f"{reg.host}/ci/ko-build")
    # One token request asked for the parent and its children at once.
    scoped = [r["scopes"] for r in tokens.requests if r["user"] == "alice"]
    assert scoped
    first = next(s for s in scoped if s)
    assert {
        "repository:ci/ko-build:pull,push",
        "repository:ci/ko-build/app1:pull,push",
        "repository:ci/ko-build/app2:pull,push",
    } <= set(first)
    # Only a handful of token requests for the whole tree.
    assert len(tokens.requests) <= 3
    # The tree is there (read back through the token flow too).
    tree = json.loads(cli("tree", "--json", f"{reg.host}/ci/ko-build:build-1").stdout)
    assert tree["digest"] == ko_tree.digest
    assert [c["childPath"] for c in tree["children"]] == ["app1", "app2"]
    # ocinest login checks credentials with the token service.
    bad = cli("login", reg.host, "-u", "alice", "--password-stdin", stdin="wrong\n", check=False)
    assert bad.returncode == 3 and "refused the credentials" in bad.stderr
    good = cli("login", reg.host, "-u", "alice", "--password-stdin", stdin="wonderland\n")
    assert "Login succeeded" in good.stdout


@pytest.fixture
def tls_distribution(tmp_path: Path) -> Iterator[Distribution]:
    folder = tmp_path / "tls"
    folder.mkdir()
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
            "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    d = Distribution(folder / "registry", free_port(), tls=(cert, key))
    d.root.mkdir()
    d.start()
    yield d
    d.stop()


def test_tls_with_a_ca_file(tls_distribution: Distribution, cli: Cli, tmp_path: Path) -> None:
    reg = tls_distribution
    assert reg.tls is not None
    cert = reg.tls[0]
    f = tmp_path / "f.txt"
    f.write_text("over TLS")
    pinned = cli("push", "--ca-file", str(cert), f"{reg.host}/tls/files:v1", str(f)).stdout.strip()
    assert pinned.startswith(f"{reg.host}/tls/files@sha256:")
    tree = json.loads(
        cli("tree", "--json", "--ca-file", str(cert), f"{reg.host}/tls/files:v1").stdout
    )
    assert f"{reg.host}/tls/files@{tree['digest']}" == pinned
    # Another CA: the certificate is not trusted, in one line.
    other = tmp_path / "other.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
            str(tmp_path / "other.key"), "-out", str(other), "-days", "2", "-subj", "/CN=other",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    out = cli("tree", "--ca-file", str(other), f"{reg.host}/tls/files:v1", check=False)
    assert out.returncode == 5 and len(out.stderr.strip().splitlines()) == 1
    assert "not trusted" in out.stderr and "--ca-file" in out.stderr


def test_repository_scoped_credentials_are_sent_for_that_repository(
    basic_distribution: Distribution, cli: Cli, private_credentials: Path, tmp_path: Path
) -> None:
    """podman's auth.json keys may name a namespace; the most specific key wins for requests
    to repositories below it, the host's entry for the rest."""
    host = basic_distribution.host
    write(
        private_credentials / "run" / "containers" / "auth.json",
        {
            "auths": {
                host: {"auth": b64("alice:wrong")},
                f"{host}/team": {"auth": b64("alice:s3cret")},
            }
        },
    )
    f = tmp_path / "f.txt"
    f.write_text("scoped")
    pushed = cli("push", f"{host}/team/app:v1", str(f), "--json")
    assert json.loads(pushed.stdout)["reference"].startswith(f"{host}/team/app@sha256:")
    refused = cli("push", f"{host}/other/app:v1", str(f), check=False)
    assert refused.returncode == 3, refused.stderr
    assert "wrong user name or password" in refused.stderr
