"""podman (rootful, vfs storage, no systemd) against a live ocinest: an image built offline
goes into podman's store, up to the registry, is removed locally and pulled back whole."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from interop_helpers import Podman, Skopeo, registry_ref, umoci_image
from tests.manifests import DOCKER_MANIFEST, NESTED_ANNOTATION, OCI_INDEX, OCI_MANIFEST, sha256

ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST])


def inspect(podman: Podman, ref: str) -> dict[str, Any]:
    doc: list[dict[str, Any]] = json.loads(podman("image", "inspect", ref).stdout)
    assert len(doc) == 1
    return doc[0]


def test_push_remove_pull_round_trip(
    server: Any, client: httpx.Client, podman: Podman, tmp_path: Path
) -> None:
    src = umoci_image(
        podman.layouts / "src",
        "v1",
        [{"etc/motd": b"pushed by podman\n"}, {"usr/share/doc/x.txt": b"x" * 100_000}],
        workdir=tmp_path,
        labels={"org.example.interop": "podman"},
    )
    src_manifest = src.json_blob(src.descriptor("v1")["digest"])
    image_id = src_manifest["config"]["digest"].split(":", 1)[1]

    # Into podman's store from the OCI layout; podman's image ID is the config's digest.
    podman.transfer("pull", f"oci:{src.path}:v1")
    assert podman.images() == [image_id]

    repo = "podman/nested/app"
    ref = f"{server.host}/{repo}:v1"
    podman("tag", image_id, ref)
    digestfile = tmp_path / "pushed.digest"
    podman.transfer("push", "--digestfile", digestfile, ref)
    pushed = digestfile.read_text().strip()
    assert pushed.startswith("sha256:")

    # The registry holds what podman says it pushed.
    r = client.get(f"/v2/{repo}/manifests/v1", headers={"Accept": ACCEPT})
    assert r.status_code == 200, r.text
    assert r.headers["Docker-Content-Digest"] == pushed == sha256(r.content)
    manifest = r.json()
    assert manifest["config"]["digest"] == f"sha256:{image_id}"
    assert len(manifest["layers"]) == 2
    for blob in [manifest["config"], *manifest["layers"]]:
        head = client.head(f"/v2/{repo}/blobs/{blob['digest']}")
        assert head.status_code == 200
        assert int(head.headers["Content-Length"]) == blob["size"]

    # Gone locally...
    podman("rmi", "--all", "--force")
    assert podman.images() == []
    assert podman("image", "exists", ref, check=False).returncode == 1

    # ...and back from the registry, the same image.
    podman.transfer("pull", ref)
    assert podman.images() == [image_id]
    info = inspect(podman, ref)
    assert info["Id"] == image_id
    assert info["Digest"] == pushed
    assert f"{server.host}/{repo}@{pushed}" in info["RepoDigests"]
    assert info["Labels"]["org.example.interop"] == "podman"
    assert info["Architecture"] == "amd64"

    # By digest as well, after another removal.
    podman("rmi", "--all", "--force")
    podman.transfer("pull", f"{server.host}/{repo}@{pushed}")
    assert podman.images() == [image_id]

    # The catalog and the tag list, through podman search.
    found = podman("search", "--tls-verify=false", "--format", "{{.Name}}", f"{server.host}/")
    assert f"{server.host}/{repo}" in found.stdout.split()
    listed = podman(
        "search", "--tls-verify=false", "--list-tags", "--format", "json", f"{server.host}/{repo}"
    )
    assert json.loads(listed.stdout) == [{"Name": f"{server.host}/{repo}", "Tags": ["v1"]}]


def test_push_as_docker_schema2(
    server: Any, client: httpx.Client, podman: Podman, tmp_path: Path
) -> None:
    """podman push --format v2s2: a Docker schema 2 manifest, pulled back to the same image."""
    src = umoci_image(
        podman.layouts / "src", "v1", [{"hello": b"docker format\n"}], workdir=tmp_path
    )
    image_id = src.json_blob(src.descriptor("v1")["digest"])["config"]["digest"].split(":")[1]
    podman.transfer("pull", f"oci:{src.path}:v1")

    repo = "podman/docker-format/app"
    ref = f"{server.host}/{repo}:v2s2"
    podman("tag", image_id, ref)
    digestfile = tmp_path / "pushed.digest"
    podman.transfer("push", "--format", "v2s2", "--digestfile", digestfile, ref)
    pushed = digestfile.read_text().strip()

    r = client.get(f"/v2/{repo}/manifests/v2s2", headers={"Accept": ACCEPT})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == DOCKER_MANIFEST
    assert r.headers["Docker-Content-Digest"] == pushed == sha256(r.content)
    assert r.json()["mediaType"] == DOCKER_MANIFEST

    podman("rmi", "--all", "--force")
    podman.transfer("pull", ref)
    info = inspect(podman, ref)
    assert info["Id"] == image_id
    assert info["Digest"] == pushed
    assert info["ManifestType"] == DOCKER_MANIFEST


def test_pull_of_missing_tag_fails_cleanly(server: Any, podman: Podman) -> None:
    out = podman("pull", "--tls-verify=false", f"{server.host}/podman/none:nope", check=False)
    assert out.returncode != 0
    assert "manifest unknown" in out.stderr.lower(), out.stderr
    assert podman.images() == []


def test_pull_platform_image_through_nested_index(
    server: Any, client: httpx.Client, podman: Podman, skopeo: Skopeo, tmp_path: Path
) -> None:
    """podman pulls an ocinest nested index from the parent repository: it picks its
    platform's child, which lives in P/<child>, and reads it through P by digest."""
    parent = "podman/ko-build"
    children = []
    image_ids = {}
    for app, arch in (("app1", "amd64"), ("app2", "arm64")):
        layout = umoci_image(
            tmp_path / app, "v1", [{f"bin/{app}": app.encode()}], workdir=tmp_path,
            architecture=arch,
        )  # fmt: skip
        skopeo(
            "copy", "--dest-tls-verify=false", f"oci:{layout.path}:v1",
            registry_ref(server.host, f"{parent}/{app}", "v1"),
        )  # fmt: skip
        desc = layout.descriptor("v1")
        image_ids[arch] = layout.json_blob(desc["digest"])["config"]["digest"].split(":")[1]
        children.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": desc["digest"],
                "size": desc["size"],
                "platform": {"architecture": arch, "os": "linux"},
                "annotations": {NESTED_ANNOTATION: app},
            }
        )
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})
    r = client.put(
        f"/v2/{parent}/manifests/build-1", content=index, headers={"Content-Type": OCI_INDEX}
    )
    assert r.status_code == 201, r.text

    ref = f"{server.host}/{parent}:build-1"
    for arch in ("amd64", "arm64"):
        podman.transfer("pull", "--arch", arch, "--os", "linux", ref)
        info = inspect(podman, ref)
        assert info["Id"] == image_ids[arch]
        assert info["Architecture"] == arch
        podman("rmi", "--all", "--force")
