"""Real clients authenticate against ocinest over TLS with a test CA, in Basic and token
modes: skopeo (--creds and an auth file), podman login, oras-py and the ocinest client."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import oras.client
import pytest
from interop_helpers import Podman, Skopeo, umoci_image
from tests.authkit import ec_key, write_ca_and_cert, write_htpasswd, write_key
from tests.conftest import Server, free_port

USER, PASSWORD = "alice", "s3cret-pass"


@pytest.fixture(params=["basic", "token"])
def secured(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    """A TLS registry that wants credentials; yields it and a folder holding its CA as
    ca.crt (the cert-dir form skopeo and podman read)."""
    ca, cert, key = write_ca_and_cert(tmp_path / "certs")
    args = ["--tls-cert", str(cert), "--tls-key", str(key)]
    args += ["--htpasswd", str(write_htpasswd(tmp_path / "htpasswd", {USER: PASSWORD}))]
    if request.param == "token":
        args += ["--token-key", str(write_key(tmp_path / "token.pem", ec_key()))]
    srv = Server(tmp_path / "data", free_port(), args, ca=ca)
    srv.start()
    cert_dir = tmp_path / "cert-dir"
    cert_dir.mkdir()
    (cert_dir / "ca.crt").write_bytes(ca.read_bytes())
    yield srv, cert_dir
    srv.stop()


def _image(tmp_path: Path) -> Path:
    layout = tmp_path / "src"
    umoci_image(layout, "v1", [{"hello.txt": b"hello, auth\n"}], workdir=tmp_path)
    return layout


def _authfile(path: Path, host: str) -> Path:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return path


def test_skopeo_with_creds_and_with_an_auth_file(
    secured: tuple[Server, Path], skopeo: Skopeo, tmp_path: Path
) -> None:
    server, cert_dir = secured
    layout = _image(tmp_path)
    dest = f"docker://{server.host}/auth/skopeo:v1"
    # No credentials: refused.
    r = skopeo("copy", "--dest-cert-dir", cert_dir, f"oci:{layout}:v1", dest, check=False)
    assert r.returncode != 0
    assert any(w in r.stderr.lower() for w in ("authentication required", "unauthorized", "denied"))
    skopeo(
        "copy",
        "--dest-cert-dir",
        cert_dir,
        "--dest-creds",
        f"{USER}:{PASSWORD}",
        f"oci:{layout}:v1",
        dest,
    )
    authfile = _authfile(tmp_path / "auth.json", server.host)
    out = tmp_path / "back"
    skopeo("copy", "--src-cert-dir", cert_dir, "--src-authfile", authfile, dest, f"oci:{out}:v1")
    assert (
        json.loads((out / "index.json").read_text())["manifests"][0]["digest"]
        == json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    )


def test_podman_login_push_pull(
    secured: tuple[Server, Path], podman: Podman, tmp_path: Path
) -> None:
    server, cert_dir = secured
    layout = umoci_image(
        podman.layouts / "img", "v1", [{"a.txt": b"podman auth\n"}], workdir=tmp_path
    )
    podman("pull", "--signature-policy", podman.policy, f"oci:{layout.path}:v1")
    ref = f"{server.host}/auth/podman:v1"
    image_id = podman.images()[0]
    podman("tag", image_id, ref)
    authfile = tmp_path / "podman-auth.json"
    r = podman("push", "--cert-dir", cert_dir, "--authfile", authfile, ref, check=False)
    assert r.returncode != 0  # not logged in yet
    podman(
        "login",
        "--cert-dir",
        cert_dir,
        "--authfile",
        authfile,
        "-u",
        USER,
        "-p",
        PASSWORD,
        server.host,
    )
    podman(
        "push",
        "--cert-dir",
        cert_dir,
        "--authfile",
        authfile,
        "--signature-policy",
        podman.policy,
        ref,
    )
    podman("rmi", "--force", ref)
    podman(
        "pull",
        "--cert-dir",
        cert_dir,
        "--authfile",
        authfile,
        "--signature-policy",
        podman.policy,
        ref,
    )
    assert image_id in podman.images()


def test_oras_py_login_push_pull(
    secured: tuple[Server, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, cert_dir = secured
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_dir / "ca.crt"))
    monkeypatch.chdir(tmp_path)
    Path("hello-1.0.rpm").write_bytes(b"not really an rpm\n" * 100)
    # oras-py must be told which scheme to use: its default is the token flow.
    basic = "--token-key" not in server.args
    client = oras.client.OrasClient(
        hostname=server.host, auth_backend="basic" if basic else "token"
    )
    if basic:
        client.login(username=USER, password=PASSWORD, hostname=server.host)
    else:
        # oras-py 0.2 keeps its first token and asks for another only after a 403, while the
        # token specification (and ocinest, and distribution) answer a missing scope with
        # 401: hand it a token for the whole job, as `oras login` with a registry token does.
        r = httpx.get(
            f"{server.url}/auth/token",
            params={"service": "ocinest", "scope": "repository:auth/oras/hello:pull,push"},
            auth=(USER, PASSWORD),
            verify=ssl.create_default_context(cafile=str(cert_dir / "ca.crt")),
        )
        client.auth.set_token_auth(r.json()["token"])
    target = f"{server.host}/auth/oras/hello:1.0"
    assert client.push(target=target, files=["hello-1.0.rpm"]).status_code == 201
    pulled = client.pull(target=target, outdir=str(tmp_path / "out"))
    assert Path(pulled[0]).read_bytes() == Path("hello-1.0.rpm").read_bytes()


def test_ocinest_client_login_push_tree(secured: tuple[Server, Path], tmp_path: Path) -> None:
    server, cert_dir = secured
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config"), "HOME": str(tmp_path)}
    ca = str(cert_dir / "ca.crt")
    payload = tmp_path / "data.txt"
    payload.write_text("pushed by the ocinest client\n")

    def ocinest(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ocinest", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    ref = f"{server.host}/auth/client:v1"
    r = ocinest("push", ref, str(payload), "--ca-file", ca)
    assert r.returncode == 3, r.stderr  # the exit status of an authentication failure
    assert "Traceback" not in r.stderr
    r = ocinest("login", server.host, "-u", USER, "-p", "wrong", "--ca-file", ca)
    assert r.returncode == 3, r.stderr
    r = ocinest("login", server.host, "-u", USER, "-p", PASSWORD, "--ca-file", ca)
    assert r.returncode == 0, r.stderr
    r = ocinest("push", ref, str(payload), "--ca-file", ca)
    assert r.returncode == 0, r.stderr
    pinned = r.stdout.strip().splitlines()[-1]
    assert "@sha256:" in pinned
    with httpx.Client(verify=ssl.create_default_context(cafile=ca), auth=(USER, PASSWORD)) as c:
        if "token" in " ".join(server.args):
            token = c.get(
                f"{server.url}/auth/token",
                params={"service": "ocinest", "scope": "repository:auth/client:pull"},
            ).json()["token"]
            c.auth = None
            c.headers["Authorization"] = f"Bearer {token}"
        r2 = c.get(f"{server.url}/v2/auth/client/manifests/v1")
        assert r2.status_code == 200
        assert r2.headers["Docker-Content-Digest"] == pinned.split("@")[1]
