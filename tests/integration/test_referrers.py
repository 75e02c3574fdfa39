"""The referrers API: GET /v2/<name>/referrers/<digest>, with and without artifactType."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import oci_image, push_blob, pushed
from tests.integration.ocihttp import (
    assert_error,
    assert_status,
    unknown_digest,
)
from tests.manifests import (
    EMPTY_JSON,
    EMPTY_JSON_DIGEST,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    descriptor,
    dumps,
    index_manifest,
    platforms,
    sha256,
)

pytestmark = pytest.mark.stores  # run again on S3 + PostgreSQL (see .ci/run)

SIGNATURE = "application/vnd.example.signature.v1"
SBOM = "application/vnd.example.sbom.v1"
BUNDLE = "application/vnd.example.bundle.v1"


def referrers(client: httpx.Client, repo: str, digest: str, **params: str) -> httpx.Response:
    r = client.get(f"/v2/{repo}/referrers/{digest}", params=params)
    assert_status(r, 200)
    assert r.headers["Content-Type"] == OCI_INDEX
    doc = r.json()
    assert doc["schemaVersion"] == 2
    assert doc["mediaType"] == OCI_INDEX
    assert isinstance(doc["manifests"], list)
    return r


def by_digest(r: httpx.Response) -> dict[str, dict[str, Any]]:
    entries = r.json()["manifests"]
    result = {e["digest"]: e for e in entries}
    assert len(result) == len(entries), "a referrer is listed twice"
    return result


def artifact(
    client: httpx.Client,
    repo: str,
    subject: bytes,
    *,
    artifact_type: str | None = None,
    config_type: str = OCI_EMPTY,
    annotations: dict[str, str] | None = None,
    payload: bytes = b"payload",
) -> bytes:
    """Push the blobs of an artifact manifest whose subject is `subject`; return it."""
    config = EMPTY_JSON if config_type == OCI_EMPTY else b'{"artifact": "config"}'
    push_blob(client, repo, config)
    push_blob(client, repo, payload)
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config, config_type),
        "layers": [descriptor(payload, "application/octet-stream")],
        "subject": descriptor(subject),
    }
    if artifact_type is not None:
        doc["artifactType"] = artifact_type
    if annotations is not None:
        doc["annotations"] = annotations
    return dumps(doc)


@pytest.fixture
def image(client: httpx.Client) -> bytes:
    body = oci_image(client, "ref/app")
    pushed(client, "ref/app", "v1", body)
    return body


def test_empty_json_digest() -> None:
    assert sha256(EMPTY_JSON) == EMPTY_JSON_DIGEST


def test_no_referrers_is_empty_index(client: httpx.Client, image: bytes) -> None:
    r = referrers(client, "ref/app", sha256(image))
    assert r.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    assert "OCI-Filters-Applied" not in r.headers


def test_unknown_subject_is_empty_index(client: httpx.Client, image: bytes) -> None:
    assert referrers(client, "ref/app", unknown_digest()).json()["manifests"] == []


def test_unknown_repository_is_empty_index(client: httpx.Client) -> None:
    assert referrers(client, "ref/nosuchrepo", unknown_digest()).json()["manifests"] == []


def test_referrers_are_listed_with_descriptors(client: httpx.Client, image: bytes) -> None:
    repo = "ref/app"
    signature = artifact(
        client, repo, image, artifact_type=SIGNATURE, annotations={"org.example.signer": "me"}
    )
    sbom = artifact(client, repo, image, config_type=SBOM, payload=b"sbom")
    plain = artifact(client, repo, image, payload=b"plain")
    for body in (signature, sbom, plain):
        pushed(client, repo, sha256(body), body)

    entries = by_digest(referrers(client, repo, sha256(image)))
    assert set(entries) == {sha256(signature), sha256(sbom), sha256(plain)}
    assert entries[sha256(signature)] == {
        "mediaType": OCI_MANIFEST,
        "digest": sha256(signature),
        "size": len(signature),
        "artifactType": SIGNATURE,
        "annotations": {"org.example.signer": "me"},
    }
    # Without artifactType, the config's media type stands for it.
    assert entries[sha256(sbom)]["artifactType"] == SBOM
    assert entries[sha256(plain)]["artifactType"] == OCI_EMPTY
    for body in (sbom, plain):
        entry = entries[sha256(body)]
        assert entry["mediaType"] == OCI_MANIFEST
        assert entry["size"] == len(body)
        assert entry.get("annotations", {}) == {}


def test_index_referrer(client: httpx.Client, image: bytes) -> None:
    repo = "ref/app"
    members = [artifact(client, repo, image, payload=bytes([i])) for i in range(2)]
    for body in members:
        pushed(client, repo, sha256(body), body)
    index = index_manifest(
        *platforms(members),
        artifactType=BUNDLE,
        subject=descriptor(image),
        annotations={"org.example.kind": "bundle"},
    )
    r = client.put(
        f"/v2/{repo}/manifests/{sha256(index)}",
        content=index,
        headers={"Content-Type": OCI_INDEX},
    )
    assert_status(r, 201)
    assert r.headers["OCI-Subject"] == sha256(image)
    entries = by_digest(referrers(client, repo, sha256(image)))
    assert entries[sha256(index)] == {
        "mediaType": OCI_INDEX,
        "digest": sha256(index),
        "size": len(index),
        "artifactType": BUNDLE,
        "annotations": {"org.example.kind": "bundle"},
    }
    assert len(entries) == 3


def test_artifact_type_filter(client: httpx.Client, image: bytes) -> None:
    repo = "ref/app"
    sig1 = artifact(client, repo, image, artifact_type=SIGNATURE, payload=b"1")
    sig2 = artifact(client, repo, image, config_type=SIGNATURE, payload=b"2")
    sbom = artifact(client, repo, image, artifact_type=SBOM, payload=b"3")
    for body in (sig1, sig2, sbom):
        pushed(client, repo, sha256(body), body)

    r = referrers(client, repo, sha256(image), artifactType=SIGNATURE)
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert set(by_digest(r)) == {sha256(sig1), sha256(sig2)}
    assert all(e["artifactType"] == SIGNATURE for e in r.json()["manifests"])

    r = referrers(client, repo, sha256(image), artifactType=SBOM)
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert set(by_digest(r)) == {sha256(sbom)}

    r = referrers(client, repo, sha256(image), artifactType="application/vnd.none")
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert r.json()["manifests"] == []

    r = referrers(client, repo, sha256(image))
    assert "OCI-Filters-Applied" not in r.headers
    assert len(r.json()["manifests"]) == 3


def test_subject_need_not_exist(client: httpx.Client) -> None:
    repo = "ref/orphan"
    ghost = b'{"schemaVersion": 2, "never": "pushed"}'
    body = artifact(client, repo, ghost, artifact_type=SIGNATURE)
    r = client.put(
        f"/v2/{repo}/manifests/{sha256(body)}",
        content=body,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert_status(r, 201)
    assert r.headers["OCI-Subject"] == sha256(ghost)
    entries = by_digest(referrers(client, repo, sha256(ghost)))
    assert set(entries) == {sha256(body)}


def test_referrers_of_a_tagged_referrer(client: httpx.Client, image: bytes) -> None:
    repo = "ref/app"
    body = artifact(client, repo, image, artifact_type=SIGNATURE)
    pushed(client, repo, "sig", body)
    assert set(by_digest(referrers(client, repo, sha256(image)))) == {sha256(body)}


def test_deleted_referrer_is_no_longer_listed(client: httpx.Client, image: bytes) -> None:
    repo = "ref/app"
    keep = artifact(client, repo, image, artifact_type=SIGNATURE, payload=b"keep")
    drop = artifact(client, repo, image, artifact_type=SIGNATURE, payload=b"drop")
    for body in (keep, drop):
        pushed(client, repo, sha256(body), body)
    assert_status(client.delete(f"/v2/{repo}/manifests/{sha256(drop)}"), 202)
    assert set(by_digest(referrers(client, repo, sha256(image)))) == {sha256(keep)}


def test_referrers_are_per_repository(client: httpx.Client, image: bytes) -> None:
    # The same subject digest in another repository has its own referrers.
    other = "ref/other"
    body = artifact(client, other, image, artifact_type=SIGNATURE)
    pushed(client, other, sha256(body), body)
    assert referrers(client, "ref/app", sha256(image)).json()["manifests"] == []
    assert set(by_digest(referrers(client, other, sha256(image)))) == {sha256(body)}


def test_referrers_are_listed_after_the_subject_is_deleted(
    client: httpx.Client, image: bytes
) -> None:
    repo = "ref/app"
    body = artifact(client, repo, image, artifact_type=SIGNATURE)
    pushed(client, repo, sha256(body), body)
    assert_status(client.delete(f"/v2/{repo}/manifests/{sha256(image)}"), 202)
    assert set(by_digest(referrers(client, repo, sha256(image)))) == {sha256(body)}


@pytest.mark.parametrize("digest", ["sha256:xyz", "md5:" + "0" * 32, "sha256:" + "a" * 63, "x"])
def test_malformed_digest_is_400(client: httpx.Client, digest: str) -> None:
    assert_error(client.get(f"/v2/ref/app/referrers/{digest}"), 400, "DIGEST_INVALID")


def test_invalid_name_is_400(client: httpx.Client) -> None:
    assert_error(client.get(f"/v2/Ref/App/referrers/{unknown_digest()}"), 400, "NAME_INVALID")
