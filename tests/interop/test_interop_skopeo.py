"""skopeo (containers/image) against a live ocinest: images built offline with umoci go up
to nested repository names and come back byte-for-byte, single images and multi-platform
indexes; tags are listed, manifests deleted by digest."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from interop_helpers import Layout, Skopeo, assert_same_image, registry_ref, umoci_image
from tests.manifests import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    NESTED_ANNOTATION,
    OCI_INDEX,
    OCI_MANIFEST,
    sha256,
)

pytestmark = pytest.mark.stores  # run again on S3 + PostgreSQL (see .ci/run)

# Nested names, and names whose components are the API's own path words, which the
# registry's router must not mistake for the endpoint.
NESTED_NAMES = [
    "myrepo/ko-build/app1",
    "a/b/c/d/e/f/g/deep",
    "ns/blobs/uploads/manifests/tags/list/referrers",
]


def small_image(tmp_path: Path, tag: str = "v1", **kw: Any) -> Layout:
    return umoci_image(
        tmp_path / "src",
        tag,
        [{"etc/hello.txt": b"hello from ocinest interop\n", "bin/tool": b"#!/bin/sh\necho hi\n"}],
        workdir=tmp_path,
        **kw,
    )


def raw_manifest(client: httpx.Client, repo: str, ref: str) -> httpx.Response:
    r = client.get(
        f"/v2/{repo}/manifests/{ref}",
        headers={
            "Accept": ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])
        },
    )
    return r


@pytest.mark.parametrize("repo", NESTED_NAMES)
def test_copy_up_and_back_is_identical(
    server: Any, client: httpx.Client, skopeo: Skopeo, tmp_path: Path, repo: str
) -> None:
    src = small_image(tmp_path)
    desc = src.descriptor("v1")
    dest = registry_ref(server.host, repo, "v1")

    skopeo("copy", "--dest-tls-verify=false", f"oci:{src.path}:v1", dest)

    # What the registry serves is exactly the manifest umoci wrote.
    raw = skopeo("inspect", "--raw", "--tls-verify=false", dest).stdout.encode()
    assert raw == src.blob(desc["digest"])
    r = raw_manifest(client, repo, "v1")
    assert r.status_code == 200, r.text
    assert r.content == raw
    assert r.headers["Docker-Content-Digest"] == desc["digest"]
    assert r.headers["Content-Type"] == OCI_MANIFEST
    manifest = json.loads(raw)
    for blob in [manifest["config"], *manifest["layers"]]:
        b = client.get(f"/v2/{repo}/blobs/{blob['digest']}")
        assert b.status_code == 200
        assert b.content == src.blob(blob["digest"])

    inspect = json.loads(skopeo("inspect", "--tls-verify=false", dest).stdout)
    assert inspect["Digest"] == desc["digest"]
    assert inspect["Architecture"] == "amd64"
    assert inspect["Layers"] == [layer["digest"] for layer in manifest["layers"]]

    back = Layout(tmp_path / "back")
    skopeo("copy", "--src-tls-verify=false", dest, f"oci:{back.path}:v1")
    assert_same_image(src, "v1", back, "v1")

    # By digest too.
    by_digest = registry_ref(server.host, repo, desc["digest"])
    skopeo("copy", "--src-tls-verify=false", by_digest, f"oci:{back.path}:bydigest")
    assert_same_image(src, "v1", back, "bydigest")


def test_large_layer_round_trip(
    server: Any, client: httpx.Client, skopeo: Skopeo, tmp_path: Path
) -> None:
    """Several MiB of incompressible data, in more than one layer: the upload streams in
    more than one read, and every byte comes back."""
    src = umoci_image(
        tmp_path / "src",
        "big",
        [{"data/random.bin": os.urandom(6 * 1024 * 1024)}, {"data/small.txt": b"second layer\n"}],
        workdir=tmp_path,
    )
    dest = registry_ref(server.host, "big/images/blobby", "big")
    skopeo("copy", "--dest-tls-verify=false", f"oci:{src.path}:big", dest)
    back = Layout(tmp_path / "back")
    skopeo("copy", "--src-tls-verify=false", dest, f"oci:{back.path}:big")
    blobs = assert_same_image(src, "big", back, "big")
    assert max(len(b) for b in blobs.values()) > 6 * 1024 * 1024


def test_multi_platform_index_copy_all(
    server: Any, client: httpx.Client, skopeo: Skopeo, tmp_path: Path
) -> None:
    layout = tmp_path / "src"
    for arch in ("amd64", "arm64"):
        umoci_image(
            layout,
            arch,
            [{"etc/arch.txt": f"built for {arch}\n".encode()}],
            workdir=tmp_path,
            architecture=arch,
        )
    src = Layout(layout)
    index_digest = src.add_index(
        "multi",
        [
            ("amd64", {"architecture": "amd64", "os": "linux"}),
            ("arm64", {"architecture": "arm64", "os": "linux"}),
        ],
    )
    children = {arch: src.descriptor(arch)["digest"] for arch in ("amd64", "arm64")}
    repo = "myrepo/ko-build/multi"
    dest = registry_ref(server.host, repo, "multi")

    out = skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{src.path}:multi", dest)
    assert out.returncode == 0

    raw = skopeo("inspect", "--raw", "--tls-verify=false", dest).stdout.encode()
    assert sha256(raw) == index_digest
    assert raw == src.blob(index_digest)
    r = raw_manifest(client, repo, "multi")
    assert r.headers["Content-Type"] == OCI_INDEX
    assert r.headers["Docker-Content-Digest"] == index_digest
    for arch, digest in children.items():
        r = raw_manifest(client, repo, digest)
        assert r.status_code == 200, (arch, r.text)
        assert r.content == src.blob(digest)

    # The whole index comes back identical.
    back = Layout(tmp_path / "back")
    skopeo("copy", "--all", "--src-tls-verify=false", dest, f"oci:{back.path}:multi")
    blobs = assert_same_image(src, "multi", back, "multi")
    assert set(children.values()) <= set(blobs)

    # Without --all, the client picks one platform out of the index the registry served.
    for arch, digest in children.items():
        one = Layout(tmp_path / f"one-{arch}")
        skopeo(
            "--override-arch",
            arch,
            "--override-os",
            "linux",
            "copy",
            "--src-tls-verify=false",
            dest,
            f"oci:{one.path}:{arch}",
        )
        assert one.descriptor(arch)["digest"] == digest
        assert_same_image(src, arch, one, arch)
        info = json.loads(
            skopeo("--override-arch", arch, "inspect", "--tls-verify=false", dest).stdout
        )
        assert info["Architecture"] == arch
        # skopeo reports the digest of the manifest the reference names: the index.
        assert info["Digest"] == index_digest

    # Deleting the index by digest leaves its children; they can go afterwards.
    skopeo("delete", "--tls-verify=false", registry_ref(server.host, repo, index_digest))
    assert raw_manifest(client, repo, index_digest).status_code == 404
    for digest in children.values():
        assert raw_manifest(client, repo, digest).status_code == 200
        skopeo("delete", "--tls-verify=false", registry_ref(server.host, repo, digest))
        assert raw_manifest(client, repo, digest).status_code == 404


def test_list_tags_and_delete_by_digest(
    server: Any, client: httpx.Client, skopeo: Skopeo, tmp_path: Path
) -> None:
    repo = "team/ko-build/app2"
    one = umoci_image(tmp_path / "one", "v1", [{"f": b"one\n"}], workdir=tmp_path)
    two = umoci_image(tmp_path / "two", "v2", [{"f": b"two\n"}], workdir=tmp_path)
    d1, d2 = one.descriptor("v1")["digest"], two.descriptor("v2")["digest"]
    assert d1 != d2
    for layout, src_tag, tags in ((one, "v1", ["v1", "latest"]), (two, "v2", ["v2", "stable"])):
        for tag in tags:
            skopeo(
                "copy",
                "--dest-tls-verify=false",
                f"oci:{layout.path}:{src_tag}",
                registry_ref(server.host, repo, tag),
            )

    listed = json.loads(
        skopeo("list-tags", "--tls-verify=false", f"docker://{server.host}/{repo}").stdout
    )
    assert listed["Repository"] == f"{server.host}/{repo}"
    assert sorted(listed["Tags"]) == ["latest", "stable", "v1", "v2"]

    # Delete the first image by digest: it and the tags that named it are gone.
    skopeo("delete", "--tls-verify=false", registry_ref(server.host, repo, d1))
    r = raw_manifest(client, repo, d1)
    assert r.status_code == 404
    assert [e["code"] for e in r.json()["errors"]] == ["MANIFEST_UNKNOWN"]
    for tag in ("v1", "latest"):
        assert raw_manifest(client, repo, tag).status_code == 404
    gone = skopeo(
        "inspect", "--raw", "--tls-verify=false", registry_ref(server.host, repo, d1), check=False
    )
    assert gone.returncode != 0
    assert "manifest unknown" in gone.stderr.lower(), gone.stderr

    listed = json.loads(
        skopeo("list-tags", "--tls-verify=false", f"docker://{server.host}/{repo}").stdout
    )
    assert sorted(listed["Tags"]) == ["stable", "v2"]
    # The other image is untouched.
    raw = skopeo(
        "inspect", "--raw", "--tls-verify=false", registry_ref(server.host, repo, "stable")
    ).stdout.encode()
    assert sha256(raw) == d2

    # Deleting it again is a manifest-unknown error, reported by the client.
    again = skopeo("delete", "--tls-verify=false", registry_ref(server.host, repo, d1), check=False)
    assert again.returncode != 0


def test_list_tags_of_unknown_repository_fails(
    server: Any, client: httpx.Client, skopeo: Skopeo
) -> None:
    out = skopeo(
        "list-tags", "--tls-verify=false", f"docker://{server.host}/no/such/repo", check=False
    )
    assert out.returncode != 0
    assert "404" in out.stderr, out.stderr
    r = client.get("/v2/no/such/repo/tags/list")
    assert r.status_code == 404
    assert [e["code"] for e in r.json()["errors"]] == ["NAME_UNKNOWN"]


def test_registry_to_registry_copy_between_nested_repos(
    server: Any, client: httpx.Client, skopeo: Skopeo, tmp_path: Path
) -> None:
    """docker:// to docker:// on the same registry (the client may mount blobs across
    repositories instead of uploading them again): the copy keeps every digest."""
    src = small_image(tmp_path)
    digest = src.descriptor("v1")["digest"]
    a = registry_ref(server.host, "org/src/app", "v1")
    b = registry_ref(server.host, "org/dst/deeper/app", "copied")
    skopeo("copy", "--dest-tls-verify=false", f"oci:{src.path}:v1", a)
    skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false", a, b)
    r = raw_manifest(client, "org/dst/deeper/app", "copied")
    assert r.status_code == 200
    assert r.headers["Docker-Content-Digest"] == digest
    back = Layout(tmp_path / "back")
    skopeo("copy", "--src-tls-verify=false", b, f"oci:{back.path}:v1")
    assert_same_image(src, "v1", back, "v1")


def test_docker_schema2_conversion_round_trip(
    server: Any, client: httpx.Client, skopeo: Skopeo, tmp_path: Path
) -> None:
    """skopeo converts the OCI image to a Docker schema 2 manifest on the way up; the
    registry stores and serves that manifest as such, and the config is unchanged."""
    src = small_image(tmp_path)
    config_digest = src.json_blob(src.descriptor("v1")["digest"])["config"]["digest"]
    dest = registry_ref(server.host, "docker/converted/app", "v2s2")
    skopeo("copy", "--format", "v2s2", "--dest-tls-verify=false", f"oci:{src.path}:v1", dest)
    r = raw_manifest(client, "docker/converted/app", "v2s2")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == DOCKER_MANIFEST
    doc = r.json()
    assert doc["mediaType"] == DOCKER_MANIFEST
    assert doc["config"]["digest"] == config_digest
    assert r.headers["Docker-Content-Digest"] == sha256(r.content)
    raw = skopeo("inspect", "--raw", "--tls-verify=false", dest).stdout.encode()
    assert raw == r.content


def test_docker_manifest_list_round_trip(
    server: Any, client: httpx.Client, skopeo: Skopeo, tmp_path: Path
) -> None:
    """A multi-platform image converted to a Docker manifest list of schema 2 manifests on
    the way up, and fetched back whole (to a dir: copy, which keeps manifests as served)."""
    layout = tmp_path / "src"
    for arch in ("amd64", "arm64"):
        umoci_image(
            layout,
            arch,
            [{"etc/arch.txt": f"docker list, {arch}\n".encode()}],
            workdir=tmp_path,
            architecture=arch,
        )
    src = Layout(layout)
    src.add_index(
        "multi",
        [
            ("amd64", {"architecture": "amd64", "os": "linux"}),
            ("arm64", {"architecture": "arm64", "os": "linux"}),
        ],
    )
    repo = "docker/list/app"
    dest = registry_ref(server.host, repo, "list")
    digestfile = tmp_path / "digest"
    skopeo(
        "copy", "--all", "--format", "v2s2", "--digestfile", digestfile,
        "--dest-tls-verify=false", f"oci:{src.path}:multi", dest,
    )  # fmt: skip
    pushed = digestfile.read_text().strip()

    r = raw_manifest(client, repo, "list")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == DOCKER_MANIFEST_LIST
    assert r.headers["Docker-Content-Digest"] == pushed == sha256(r.content)
    listed = r.json()
    assert listed["mediaType"] == DOCKER_MANIFEST_LIST
    arches = {m["platform"]["architecture"]: m for m in listed["manifests"]}
    assert sorted(arches) == ["amd64", "arm64"]
    for arch, desc in arches.items():
        assert desc["mediaType"] == DOCKER_MANIFEST
        child = raw_manifest(client, repo, desc["digest"])
        assert child.status_code == 200
        assert child.headers["Content-Type"] == DOCKER_MANIFEST
        assert sha256(child.content) == desc["digest"]
        assert len(child.content) == desc["size"]
        # The config is the one umoci wrote, unchanged by the conversion.
        src_config = src.json_blob(src.descriptor(arch)["digest"])["config"]["digest"]
        assert child.json()["config"]["digest"] == src_config

    back = tmp_path / "back"
    skopeo("copy", "--all", "--src-tls-verify=false", dest, f"dir:{back}")
    assert (back / "manifest.json").read_bytes() == r.content
    for desc in arches.values():
        hex_ = desc["digest"].split(":", 1)[1]
        assert sha256((back / f"{hex_}.manifest.json").read_bytes()) == desc["digest"]


def test_zstd_layers_round_trip(
    server: Any, client: httpx.Client, skopeo: Skopeo, tmp_path: Path
) -> None:
    """Layers recompressed with zstd on the way up: the registry takes any layer media
    type, and the image comes back as pushed."""
    src = small_image(tmp_path)
    repo = "zstd/app"
    dest = registry_ref(server.host, repo, "v1")
    skopeo(
        "copy", "--dest-compress-format", "zstd", "--dest-tls-verify=false",
        f"oci:{src.path}:v1", dest,
    )  # fmt: skip
    r = raw_manifest(client, repo, "v1")
    assert r.status_code == 200
    manifest = r.json()
    assert [layer["mediaType"] for layer in manifest["layers"]] == [
        "application/vnd.oci.image.layer.v1.tar+zstd"
    ]
    layer = client.get(f"/v2/{repo}/blobs/{manifest['layers'][0]['digest']}")
    assert layer.content[:4] == b"\x28\xb5\x2f\xfd"  # the zstd frame magic
    back = Layout(tmp_path / "back")
    skopeo("copy", "--src-tls-verify=false", dest, f"oci:{back.path}:v1")
    assert back.descriptor("v1")["digest"] == r.headers["Docker-Content-Digest"]
    assert back.blob(back.descriptor("v1")["digest"]) == r.content
    assert back.blob(manifest["layers"][0]["digest"]) == layer.content


def test_nested_index_is_readable_by_stock_clients(
    server: Any, client: httpx.Client, skopeo: Skopeo, tmp_path: Path
) -> None:
    """ocinest's nested index (docs/nested-index.md): the children live in P/app1 and P/app2,
    the index in P names them by child path. A client that knows nothing of nesting reads
    the whole tree through P by digest, and gets every byte as pushed."""
    parent = "myrepo/ko-build"
    layouts: dict[str, Layout] = {}
    for app, arch in (("app1", "amd64"), ("app2", "arm64")):
        layouts[app] = umoci_image(
            tmp_path / app,
            "v1",
            [{f"ko-app/{app}": f"binary of {app}\n".encode()}],
            workdir=tmp_path,
            architecture=arch,
        )
        skopeo(
            "copy", "--dest-tls-verify=false", f"oci:{layouts[app].path}:v1",
            registry_ref(server.host, f"{parent}/{app}", "v1"),
        )  # fmt: skip

    manifests = []
    for app, arch in (("app1", "amd64"), ("app2", "arm64")):
        desc = layouts[app].descriptor("v1")
        manifests.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": desc["digest"],
                "size": desc["size"],
                "platform": {"architecture": arch, "os": "linux"},
                "annotations": {NESTED_ANNOTATION: app},
            }
        )
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests},
        separators=(",", ":"),
    ).encode()
    r = client.put(
        f"/v2/{parent}/manifests/build-1", content=index, headers={"Content-Type": OCI_INDEX}
    )
    assert r.status_code == 201, r.text
    index_digest = sha256(index)
    assert r.headers["Docker-Content-Digest"] == index_digest

    # skopeo fetches the index from P, then each child and its blobs from P by digest.
    dest = registry_ref(server.host, parent, "build-1")
    back = Layout(tmp_path / "back")
    skopeo("copy", "--all", "--src-tls-verify=false", dest, f"oci:{back.path}:build-1")
    top = back.descriptor("build-1")
    assert (top["digest"], top["size"]) == (index_digest, len(index))
    assert back.blob(index_digest) == index
    blobs = back.closure(index_digest, OCI_INDEX)
    for app, layout in layouts.items():
        src_blobs = layout.closure(layout.descriptor("v1")["digest"], OCI_MANIFEST)
        for digest, data in src_blobs.items():
            assert blobs[digest] == data, (app, digest)

    # Platform selection through the parent picks the child in its nested repository.
    for app, arch in (("app1", "amd64"), ("app2", "arm64")):
        info = json.loads(
            skopeo("--override-arch", arch, "inspect", "--tls-verify=false", dest).stdout
        )
        assert info["Architecture"] == arch
        assert info["Layers"] == [
            layer["digest"]
            for layer in layouts[app].json_blob(layouts[app].descriptor("v1")["digest"])["layers"]
        ]

    # The parent's tags are its own; the children's tags stay in the children.
    listed = json.loads(
        skopeo("list-tags", "--tls-verify=false", f"docker://{server.host}/{parent}").stdout
    )
    assert listed["Tags"] == ["build-1"]
