"""Contract rule 6: the referrers of content readable through a parent are listed through the
parent, and their manifests and blobs are readable through the parent and at the child by
digest, under the parent's pull grant (rule 4) and nothing more."""

from __future__ import annotations

import json
import os

import httpx
import pytest

from tests.conftest import Server, error_codes, push_blob, push_image, push_index
from tests.integration.test_auth import basic, creds, files  # noqa: F401  (fixtures)
from tests.manifests import EMPTY_JSON, OCI_MANIFEST, index_manifest, nested, sha256

pytestmark = pytest.mark.stores  # run again on S3 + PostgreSQL (see .ci/run)

BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def push_referrer(
    client: httpx.Client, repo: str, subject: str, subject_body: bytes, artifact_type: str
) -> tuple[str, bytes, str]:
    """A referrer manifest of `subject` in `repo` (digest, bytes, its layer's digest)."""
    payload = os.urandom(40)
    push_blob(client, repo, EMPTY_JSON)
    layer = push_blob(client, repo, payload)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(EMPTY_JSON),
                   "size": 2},
        "layers": [{"mediaType": artifact_type, "digest": layer, "size": len(payload)}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(subject_body)},
        "annotations": {"dev.sigstore.bundle.content": "dsse-envelope"},
    }  # fmt: skip
    body = json.dumps(doc).encode()
    r = client.put(
        f"/v2/{repo}/manifests/{sha256(body)}",
        content=body,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 201, r.text
    return sha256(body), body, layer


def listed(client: httpx.Client, repo: str, digest: str, **params: str) -> list[str]:
    r = client.get(f"/v2/{repo}/referrers/{digest}", params=params)
    assert r.status_code == 200, r.text
    return [m["digest"] for m in r.json()["manifests"]]


def test_child_referrers_are_listed_and_readable_through_the_parent(
    server: Server, client: httpx.Client
) -> None:
    child, child_body = push_image(client, "set/app")
    grand, grand_body = push_image(client, "set/app/part")
    mid = index_manifest(nested(grand_body, "part"))
    assert push_index(client, "set/app", None, mid).status_code == 201
    sig, sig_body, sig_layer = push_referrer(client, "set/app", child, child_body, BUNDLE)
    sbom, _, _ = push_referrer(client, "set/app", child, child_body, "application/spdx+json")
    deep, deep_body, _ = push_referrer(client, "set/app/part", grand, grand_body, BUNDLE)
    # Not yet reachable from set: only set/app lists them.
    assert listed(client, "set", child) == []
    root = index_manifest(
        nested(child_body, "app"), nested(mid, "app", "application/vnd.oci.image.index.v1+json")
    )
    assert push_index(client, "set", "v1", root).status_code == 201
    # A signature of the index itself, kept in set.
    own, _, _ = push_referrer(client, "set", sha256(root), root, BUNDLE)

    assert listed(client, "set", child) == sorted([sig, sbom])
    assert listed(client, "set", child, artifactType=BUNDLE) == [sig]
    assert listed(client, "set", grand) == [deep]  # any depth
    assert listed(client, "set", sha256(root)) == [own]
    assert listed(client, "set/app", child) == sorted([sig, sbom])  # as before

    # The referrer manifest and its blobs, through the parent.
    r = client.get(f"/v2/set/manifests/{sig}", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200 and r.content == sig_body
    assert client.head(f"/v2/set/manifests/{deep}").status_code == 200
    assert client.get(f"/v2/set/blobs/{sig_layer}").status_code == 200
    assert client.get(f"/v2/set/manifests/{sha256(deep_body)}").content == deep_body
    # What no reachable subject refers to stays out of the parent.
    stray, _ = push_image(client, "set/app")
    stray_sig, _, stray_layer = push_referrer(client, "set/app", stray, b"{}", BUNDLE)
    assert listed(client, "set", stray) == []
    r = client.get(f"/v2/set/manifests/{stray_sig}")
    assert r.status_code == 404 and error_codes(r) == ["MANIFEST_UNKNOWN"]
    assert client.head(f"/v2/set/blobs/{stray_layer}").status_code == 404


def test_the_parents_pull_grant_covers_the_child_referrers_and_nothing_more(
    basic: Server,  # noqa: F811
) -> None:
    with httpx.Client(base_url=basic.url, auth=creds("alice")) as alice:
        child, child_body = push_image(alice, "ko/secret", tag="v1")
        other, other_body = push_image(alice, "ko/secret", tag="other")
        sig, sig_body, layer = push_referrer(alice, "ko/secret", child, child_body, BUNDLE)
        hidden, _, hidden_layer = push_referrer(alice, "ko/secret", other, other_body, BUNDLE)
        assert push_index(
            alice, "ko", "set", index_manifest(nested(child_body, "secret"))
        ).is_success
    with httpx.Client(base_url=basic.url, auth=creds("carol")) as carol:  # pull on ko only
        assert listed(carol, "ko", child) == [sig]
        assert listed(carol, "ko/secret", child) == [sig]  # at the child, by the same grant
        for repo in ("ko", "ko/secret"):
            r = carol.get(f"/v2/{repo}/manifests/{sig}", headers={"Accept": OCI_MANIFEST})
            assert r.status_code == 200 and r.content == sig_body, repo
            assert carol.get(f"/v2/{repo}/blobs/{layer}").status_code == 200, repo
        # The referrers of a manifest the parent does not reach: refused, revealing nothing.
        for path in (
            f"/v2/ko/secret/referrers/{other}",
            f"/v2/ko/secret/manifests/{hidden}",
            f"/v2/ko/secret/blobs/{hidden_layer}",
        ):
            r = carol.get(path)
            assert r.status_code == 403 and error_codes(r) == ["DENIED"], path
        assert listed(carol, "ko", other) == []
        r = carol.get(f"/v2/ko/manifests/{hidden}")
        assert r.status_code == 404, r.text
