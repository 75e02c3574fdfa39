"""How stock skopeo and podman read the two shapes of a parent that `ocinest index create`
builds on a live ocinest: a set (artifactType `application/vnd.dev.ocinest.set.v1+json`,
nested descriptors without `platform`) and, with `--platforms`, one multi-platform image of
nested single-platform children.

What is asserted is what the installed tools do (podman 4.3.1, skopeo 1.9.3). For the set
they do NOT refuse: containers/image ignores `artifactType` and, finding no entry for the
wanted platform, falls back to the first entry without a platform, so `podman pull --arch
arm64` of the set pulls its first member (an amd64 image) with only a warning, and `skopeo
inspect` / `skopeo copy` (without `--all`) read that member as "the image". `skopeo copy
--all` copies the whole set, unchanged."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
from interop_helpers import Layout, Podman, Skopeo, run, umoci_image

SET_TYPE = "application/vnd.dev.ocinest.set.v1+json"
ACCEPT = "application/vnd.oci.image.index.v1+json"


def ocinest(*args: str) -> str:
    """The ocinest command line (the worktree's, through PYTHONPATH); its standard output."""
    return run([sys.executable, "-m", "ocinest", *args], env=dict(os.environ)).stdout.strip()


def push_platform_images(
    skopeo: Skopeo, host: str, layout: Path, workdir: Path, repos: dict[str, str]
) -> dict[str, tuple[str, str]]:
    """Build an amd64 and an arm64 image with umoci and push them with skopeo to each of
    `repos` (arch -> repository, tag v1). Returns arch -> (manifest digest, config digest)."""
    out = {}
    for arch, repo in repos.items():
        image = umoci_image(
            layout, arch, [{f"etc/{arch}": arch.encode()}], workdir=workdir, architecture=arch
        )
        skopeo(
            "copy", "--dest-tls-verify=false", f"oci:{layout}:{arch}", f"docker://{host}/{repo}:v1"
        )
        desc = image.descriptor(arch)
        out[arch] = (desc["digest"], image.json_blob(desc["digest"])["config"]["digest"])
    return out


def index_at(server: Any, repo: str, digest: str) -> dict[str, Any]:
    r = httpx.get(f"{server.url}/v2/{repo}/manifests/{digest}", headers={"Accept": ACCEPT})
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def image_ids(podman: Podman) -> list[str]:
    return sorted(podman.images())


def test_stock_tools_take_the_first_member_of_a_set(
    server: Any, skopeo: Skopeo, podman: Podman, tmp_path: Path
) -> None:
    images = push_platform_images(
        skopeo,
        server.host,
        podman.layouts / "src",
        tmp_path,
        {"amd64": "ko-build/app1", "arm64": "ko-build/app2"},
    )
    pinned = ocinest("index", "create", f"{server.host}/ko-build:b1", "app1=:v1", "app2=:v1")
    digest = pinned.split("@", 1)[1]
    doc = index_at(server, "ko-build", digest)
    assert doc["artifactType"] == SET_TYPE
    assert all("platform" not in m for m in doc["manifests"])
    amd_manifest, amd_config = images["amd64"]
    arm_manifest, arm_config = images["arm64"]
    assert [m["digest"] for m in doc["manifests"]] == [amd_manifest, arm_manifest]

    # podman pull --arch arm64: not refused; the first member (amd64) is pulled, with a warning.
    out = podman.transfer("pull", "--arch", "arm64", pinned)
    assert "does not match the expected platform" in out.stderr
    assert image_ids(podman) == [amd_config.split(":", 1)[1]]
    podman("rmi", "--all", "--force")
    # Plain podman pull: the same first member.
    podman.transfer("pull", pinned)
    assert image_ids(podman) == [amd_config.split(":", 1)[1]]

    # skopeo inspect reads the first member as the image of the set's digest.
    seen = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{pinned}").stdout)
    assert seen["Digest"] == digest and seen["Architecture"] == "amd64"
    arm = json.loads(
        skopeo(
            "--override-arch", "arm64", "inspect", "--tls-verify=false", f"docker://{pinned}"
        ).stdout
    )
    assert arm["Architecture"] == "amd64"

    # skopeo copy without --all: the first member alone.
    one = tmp_path / "one"
    skopeo("copy", "--src-tls-verify=false", f"docker://{pinned}", f"oci:{one}:x")
    assert Layout(one).descriptor("x")["digest"] == amd_manifest

    # skopeo copy --all: the whole set, the same index bytes.
    whole = Layout(tmp_path / "whole")
    skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{pinned}", f"oci:{whole.path}:x")
    assert whole.descriptor("x")["digest"] == digest
    blobs = whole.closure(digest, ACCEPT)
    assert {amd_manifest, arm_manifest, amd_config, arm_config} <= set(blobs)


def test_platforms_parent_is_pulled_as_a_multi_platform_image(
    server: Any, skopeo: Skopeo, podman: Podman, tmp_path: Path
) -> None:
    images = push_platform_images(
        skopeo,
        server.host,
        podman.layouts / "src",
        tmp_path,
        {"amd64": "multi/app/amd64", "arm64": "multi/app/arm64"},
    )
    pinned = ocinest(
        "index", "create", f"{server.host}/multi/app:v1", "amd64=:v1", "arm64=:v1", "--platforms"
    )
    digest = pinned.split("@", 1)[1]
    doc = index_at(server, "multi/app", digest)
    assert "artifactType" not in doc
    assert [m["platform"]["architecture"] for m in doc["manifests"]] == ["amd64", "arm64"]

    for arch in ("arm64", "amd64"):
        podman.transfer("pull", "--arch", arch, pinned)
        assert images[arch][1].split(":", 1)[1] in image_ids(podman)
    assert len(image_ids(podman)) == 2
    info = json.loads(podman("image", "inspect", images["arm64"][1].split(":", 1)[1]).stdout)[0]
    assert info["Architecture"] == "arm64"

    seen = json.loads(
        skopeo(
            "--override-arch", "arm64", "inspect", "--tls-verify=false", f"docker://{pinned}"
        ).stdout
    )
    assert seen["Architecture"] == "arm64"

    whole = Layout(tmp_path / "whole")
    skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{pinned}", f"oci:{whole.path}:x")
    assert whole.descriptor("x")["digest"] == digest
    blobs = whole.closure(digest, ACCEPT)
    assert {m for arch in images for m in images[arch]} <= set(blobs)
