"""oras-py (the `oras` package) against a live ocinest: file artifacts with their own media
and artifact types go up and come back byte-identical; referrers are found by subject."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import oras.client
import oras.oci
import pytest
from tests.manifests import (
    EMPTY_JSON_DIGEST,
    NESTED_ANNOTATION,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    sha256,
)

RPM_LAYER = "application/x-rpm"
RPM_CONFIG = "application/vnd.ocinest.test.rpm.config.v1+json"
SIG_ARTIFACT = "application/vnd.ocinest.test.rpm-signature.v1"
SBOM_CONFIG = "application/vnd.ocinest.test.sbom.config.v1+json"


def rpm_bytes(size: int) -> bytes:
    """Something shaped like an RPM: the lead's magic, then noise."""
    return b"\xed\xab\xee\xdb\x03\x00\x00\x00" + os.urandom(size - 8)


@pytest.fixture
def oras_client(server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    # oras-py only pushes files below the working directory.
    monkeypatch.chdir(tmp_path)
    return oras.client.OrasClient(hostname=server.host, insecure=True)


def raw_manifest(client: httpx.Client, repo: str, ref: str) -> httpx.Response:
    return client.get(
        f"/v2/{repo}/manifests/{ref}", headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"}
    )


def test_push_pull_rpm_artifact(
    server: Any, client: httpx.Client, oras_client: Any, tmp_path: Path
) -> None:
    repo = "rpms/el9/x86_64/hello"
    target = f"{server.host}/{repo}:1.0-1"
    payload = rpm_bytes(200_000)
    name = "hello-1.0-1.el9.x86_64.rpm"
    (tmp_path / name).write_bytes(payload)
    config = b'{"name":"hello","version":"1.0","release":"1.el9","arch":"x86_64"}'
    (tmp_path / "rpm-config.json").write_bytes(config)

    r = oras_client.push(
        target=target,
        files=[f"{name}:{RPM_LAYER}"],
        manifest_config=f"rpm-config.json:{RPM_CONFIG}",
        manifest_annotations={"org.opencontainers.image.description": "an rpm"},
    )
    assert r.status_code == 201, r.text
    sent: bytes = r.request.body
    digest = r.headers["Docker-Content-Digest"]
    assert digest == sha256(sent)

    # The registry serves the manifest exactly as oras-py sent it.
    got = raw_manifest(client, repo, "1.0-1")
    assert got.status_code == 200, got.text
    assert got.content == sent
    assert got.headers["Content-Type"] == OCI_MANIFEST
    assert got.headers["Docker-Content-Digest"] == digest
    assert raw_manifest(client, repo, digest).content == sent
    manifest = oras_client.get_manifest(target)
    assert manifest == json.loads(sent)
    assert manifest["config"] == {
        "mediaType": RPM_CONFIG,
        "size": len(config),
        "digest": sha256(config),
    }
    [layer] = manifest["layers"]
    assert layer["mediaType"] == RPM_LAYER
    assert layer["digest"] == sha256(payload)
    assert layer["size"] == len(payload)
    assert layer["annotations"]["org.opencontainers.image.title"] == name
    assert client.get(f"/v2/{repo}/blobs/{sha256(config)}").content == config

    # Pulled back, byte-identical, under the title it was pushed with.
    out = tmp_path / "pulled"
    files = oras_client.pull(target=target, outdir=str(out))
    assert files == [str(out / name)]
    assert (out / name).read_bytes() == payload

    assert oras_client.get_tags(f"{server.host}/{repo}") == ["1.0-1"]

    # And deleted by tag (oras-py resolves the tag, then deletes the digest).
    assert oras_client.delete_tag(f"{server.host}/{repo}", "1.0-1") is True
    assert raw_manifest(client, repo, digest).status_code == 404
    assert raw_manifest(client, repo, "1.0-1").status_code == 404


def test_chunked_push(server: Any, client: httpx.Client, oras_client: Any, tmp_path: Path) -> None:
    """POST, PATCH with Content-Range chunk after chunk, then PUT: an odd-sized file in
    64 KiB chunks."""
    repo = "rpms/chunked/big"
    target = f"{server.host}/{repo}:v1"
    payload = rpm_bytes(5 * 65536 + 4321)
    (tmp_path / "big.rpm").write_bytes(payload)
    r = oras_client.push(
        target=target,
        files=[f"big.rpm:{RPM_LAYER}"],
        do_chunked=True,
        chunk_size=65536,
    )
    assert r.status_code == 201, r.text
    blob = client.get(f"/v2/{repo}/blobs/{sha256(payload)}")
    assert blob.status_code == 200
    assert blob.content == payload
    files = oras_client.pull(target=target, outdir=str(tmp_path / "out"))
    assert [Path(f).read_bytes() for f in files] == [payload]


def test_referrers_by_subject_and_artifact_type(
    server: Any, client: httpx.Client, oras_client: Any, tmp_path: Path
) -> None:
    repo = "rpms/el9/noarch/tools"
    container = oras_client.get_container(f"{server.host}/{repo}:2.0")

    # The subject: an rpm artifact.
    (tmp_path / "tools-2.0.noarch.rpm").write_bytes(rpm_bytes(10_000))
    r = oras_client.push(
        target=f"{server.host}/{repo}:2.0", files=[f"tools-2.0.noarch.rpm:{RPM_LAYER}"]
    )
    assert r.status_code == 201, r.text
    subject = oras.oci.Subject(
        OCI_MANIFEST, r.headers["Docker-Content-Digest"], len(r.request.body)
    )

    # Referrer 1, through push(): an SBOM whose config media type is its artifact type.
    (tmp_path / "sbom.json").write_text('{"packages": ["tools"]}')
    (tmp_path / "sbom-config.json").write_text("{}")
    r = oras_client.push(
        target=f"{server.host}/{repo}:sbom",
        files=["sbom.json:application/spdx+json"],
        manifest_config=f"sbom-config.json:{SBOM_CONFIG}",
        manifest_annotations={"org.example.kind": "sbom"},
        subject=subject,
    )
    assert r.status_code == 201, r.text
    assert r.headers.get("OCI-Subject") == subject.digest
    sbom_digest = r.headers["Docker-Content-Digest"]
    sbom_size = len(r.request.body)

    # Referrer 2, through oras-py's blob and manifest uploads: an image-spec 1.1 artifact
    # with a top-level artifactType and the empty config, pushed by digest (no tag).
    (tmp_path / "empty.json").write_bytes(b"{}")
    empty = {"mediaType": OCI_EMPTY, "digest": EMPTY_JSON_DIGEST, "size": 2}
    # (200: oras-py found the blob already there, from the SBOM's push, and skipped it.)
    assert oras_client.upload_blob("empty.json", container, empty).status_code in (200, 201)
    signature = os.urandom(256)
    (tmp_path / "tools.sig").write_bytes(signature)
    sig_layer = oras.oci.NewLayer("tools.sig", media_type="application/pgp-signature")
    assert oras_client.upload_blob("tools.sig", container, sig_layer).status_code == 201
    sig_manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIG_ARTIFACT,
        "config": empty,
        "layers": [sig_layer],
        "subject": {"mediaType": subject.mediaType, "digest": subject.digest, "size": subject.size},
        "annotations": {"org.example.kind": "signature"},
    }
    # oras-py sends the manifest as requests' json= serializes it: json.dumps' defaults.
    sig_body = json.dumps(sig_manifest).encode()
    sig_digest = sha256(sig_body)
    sig_container = oras_client.get_container(f"{server.host}/{repo}@{sig_digest}")
    r = oras_client.upload_manifest(sig_manifest, sig_container)
    assert r.status_code == 201, r.text
    assert r.request.body == sig_body
    assert r.headers["Docker-Content-Digest"] == sig_digest
    assert r.headers["Location"].endswith(f"/v2/{repo}/manifests/{sig_digest}")
    sig_size = len(sig_body)
    assert r.headers.get("OCI-Subject") == subject.digest

    # Both are found by their subject, with what their manifests say.
    r = client.get(f"/v2/{repo}/referrers/{subject.digest}")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == OCI_INDEX
    index = r.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    by_digest = {m["digest"]: m for m in index["manifests"]}
    assert by_digest == {
        sbom_digest: {
            "mediaType": OCI_MANIFEST,
            "digest": sbom_digest,
            "size": sbom_size,
            "artifactType": SBOM_CONFIG,
            "annotations": {"org.example.kind": "sbom"},
        },
        sig_digest: {
            "mediaType": OCI_MANIFEST,
            "digest": sig_digest,
            "size": sig_size,
            "artifactType": SIG_ARTIFACT,
            "annotations": {"org.example.kind": "signature"},
        },
    }

    # Filtered by artifact type.
    r = client.get(f"/v2/{repo}/referrers/{subject.digest}", params={"artifactType": SIG_ARTIFACT})
    assert r.status_code == 200
    assert [m["digest"] for m in r.json()["manifests"]] == [sig_digest]
    assert r.headers.get("OCI-Filters-Applied") == "artifactType"

    # The signature manifest reads back as pushed, and oras-py pulls its file by digest.
    got = raw_manifest(client, repo, sig_digest)
    assert got.status_code == 200
    assert got.content == sig_body
    out = tmp_path / "sig-out"
    files = oras_client.pull(target=f"{server.host}/{repo}@{sig_digest}", outdir=str(out))
    assert [Path(f).read_bytes() for f in files] == [signature]


def test_artifact_child_pulled_through_its_parent(
    server: Any, client: httpx.Client, oras_client: Any, tmp_path: Path
) -> None:
    """An immutable RPM repository: each RPM an artifact at myrpmrepo/<rpm>, pinned by one
    nested index at myrpmrepo; oras-py, knowing nothing of nesting, pulls an RPM through the
    parent by digest."""
    payload = rpm_bytes(50_000)
    name = "tool-2.0-1.el9.noarch.rpm"
    (tmp_path / name).write_bytes(payload)
    r = oras_client.push(target=f"{server.host}/myrpmrepo/tool:2.0", files=[f"{name}:{RPM_LAYER}"])
    assert r.status_code == 201, r.text
    child = r.headers["Docker-Content-Digest"]
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": child,
                    "size": len(r.request.body),
                    "annotations": {NESTED_ANNOTATION: "tool"},
                }
            ],
        }
    ).encode()
    put = client.put(
        "/v2/myrpmrepo/manifests/repo-1", content=body, headers={"Content-Type": OCI_INDEX}
    )
    assert put.status_code == 201, put.text
    out = tmp_path / "through-parent"
    files = oras_client.pull(target=f"{server.host}/myrpmrepo@{child}", outdir=str(out))
    assert files == [str(out / name)]
    assert (out / name).read_bytes() == payload
    # The child's tag is not a tag of the parent.
    assert raw_manifest(client, "myrpmrepo", "2.0").status_code == 404
