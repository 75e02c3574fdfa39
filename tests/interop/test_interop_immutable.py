"""Immutable tags seen by stock clients: a push that would move one fails, and skopeo, podman
and oras-py each print the registry's reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import oras.client
import pytest
from interop_helpers import Layout, Podman, Skopeo, registry_ref, umoci_image

REASON = "is immutable: it points at sha256:"


@pytest.fixture
def immutable(server: Any) -> Any:
    server.stop()
    server.configure(immutable_tags=[{"repositories": ["rel/**"], "tags": ["v1"]}])
    server.start()
    return server


def two_images(base: Path, workdir: Path) -> Layout:
    """An OCI layout holding two different images, tagged a and b."""
    umoci_image(base, "a", [{"a.txt": b"first\n"}], workdir=workdir)
    return umoci_image(base, "b", [{"b.txt": b"second\n"}], workdir=workdir)


def test_skopeo(immutable: Any, client: httpx.Client, skopeo: Skopeo, tmp_path: Path) -> None:
    layout = two_images(tmp_path / "layout", tmp_path)
    dest = registry_ref(immutable.host, "rel/app", "v1")
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout.path}:a", dest)
    before = client.get("/v2/rel/app/manifests/v1").content
    skopeo("copy", "--dest-tls-verify=false", f"oci:{layout.path}:a", dest)  # same bytes: fine
    r = skopeo("copy", "--dest-tls-verify=false", f"oci:{layout.path}:b", dest, check=False)
    assert r.returncode != 0
    assert f"denied: tag rel/app:v1 {REASON}" in r.stderr
    assert client.get("/v2/rel/app/manifests/v1").content == before


def test_podman(immutable: Any, podman: Podman, tmp_path: Path) -> None:
    layout = two_images(podman.layouts / "src", tmp_path)
    ref = f"{immutable.host}/rel/app:v1"
    for tag in ("a", "b"):
        podman.transfer("pull", f"oci:{layout.path}:{tag}")
    first, second = (
        layout.json_blob(layout.descriptor(tag)["digest"])["config"]["digest"] for tag in "ab"
    )
    podman("tag", first, ref)
    podman.transfer("push", ref)
    podman("tag", second, ref)
    r = podman("push", "--tls-verify=false", ref, check=False)
    assert r.returncode != 0
    assert f"denied: tag rel/app:v1 {REASON}" in r.stderr


def test_oras_py(
    immutable: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)  # oras-py only pushes files below the working directory
    c = oras.client.OrasClient(hostname=immutable.host, insecure=True)
    target = f"{immutable.host}/rel/rpms:v1"
    (tmp_path / "one.txt").write_bytes(b"one\n")
    (tmp_path / "two.txt").write_bytes(b"two\n")
    assert c.push(target=target, files=["one.txt"]).status_code == 201
    with pytest.raises(ValueError, match="Conflict"):
        c.push(target=target, files=["two.txt"])
    # oras-py logs each error's message, as an error.
    logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert [m for m in logged if m.startswith(f"tag rel/rpms:v1 {REASON}")], logged
