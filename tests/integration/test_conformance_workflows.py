"""The four workflows of the OCI distribution-spec conformance suite (conformance/01_pull_test.go,
02_push_test.go, 03_discovery_test.go, 04_management_test.go, data from setup.go), ported
to httpx and run in the suite's order against one registry and one namespace, as the Go suite
runs them.

Settings, as the suite's environment would give them: OCI_DELETE_MANIFEST_BEFORE_BLOBS=1
(manifests are deleted before blobs), OCI_AUTOMATIC_CROSSMOUNT=1 (ocinest mounts without
`from`). Every step asserts what the Go step asserts; where the suite accepts several outcomes
and ocinest's intended behaviour is one of them, the step asserts that one (noted "stricter").
Steps share state in order, like Ginkgo's ordered Specify blocks.
"""

from __future__ import annotations

import base64
import json
import random
import string
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, free_port
from tests.integration.ocihttp import OCI_ERROR_CODES
from tests.manifests import (
    EMPTY_JSON,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    sha256,
)

# The steps share state in order: every one of them runs in the same xdist worker, in file
# order (pytest runs with `--dist loadgroup`, see pyproject.toml).
pytestmark = [pytest.mark.xdist_group("conformance-workflows"), pytest.mark.stores]

NAMESPACE = "conformance/myorg/myrepo"
TEST_TAG = "tagtest0"
EMPTY_LAYER_TAG = "emptylayer"
NONEXISTENT_MANIFEST = ".INVALID_MANIFEST_NAME"
INVALID_MANIFEST = b"blablabla"
DUMMY_DIGEST = sha256(b"hello world")
# A small tar.gz holding test.txt (setup.go's layerBase64String).
LAYER = base64.b64decode(
    "H4sIAAAAAAAAA+3OQQrCMBCF4a49xXgBSUnaHMCTRBptQRNpp6i3t0UEV7oqIv7fYgbmzeJpHHSjVy0"
    "WZCa1c/MufWVe94N3RWlrZ72x3k/30nhbFWKWLPU0Dhp6keJ8im//PuU/6pZH2WVtYx8b0Sz7LjWSR5VLG6YRBumSzOlGtjkd+qD"
    "jMWiX07Befbs7AAAAAAAAAAAAAAAAAPyzO34MnqoAKAAA"
)
ARTIFACT_TYPE_A = "application/vnd.nhl.peanut.butter.bagel"
ARTIFACT_TYPE_B = "application/vnd.nba.strawberry.jam.croissant"
ARTIFACT_TYPE_INDEX = "application/vnd.food.stand"
ANNOTATION_KEY = "org.opencontainers.conformance.test"
REF_BLOB_A = b"NHL Peanut Butter on my NHL bagel"
REF_BLOB_B = b"NBA Strawberry Jam on my NBA croissant"


def go_json(doc: Any) -> bytes:
    """json.MarshalIndent(doc, "", "\\t")."""
    return json.dumps(doc, indent="\t").encode()


def go_descriptor(media_type: str, content: bytes, **extra: Any) -> dict[str, Any]:
    """The suite's descriptor type: newUnspecifiedField is always there (null when empty)."""
    unspecified = extra.pop("newUnspecifiedField", None)
    return {
        "mediaType": media_type,
        "digest": sha256(content),
        "size": len(content),
        **extra,
        "newUnspecifiedField": unspecified,
    }


@dataclass
class Blob:
    content: bytes

    @property
    def digest(self) -> str:
        return sha256(self.content)

    @property
    def length(self) -> str:
        return str(len(self.content))


@dataclass
class Data:
    """setup.go's test data: a config and a manifest per workflow, blobs, referrers."""

    configs: list[Blob] = field(default_factory=list)
    manifests: list[Blob] = field(default_factory=list)
    empty_layer_manifest: Blob = field(default_factory=lambda: Blob(b""))
    blob_a: Blob = field(default_factory=lambda: Blob(b""))
    blob_b: Blob = field(default_factory=lambda: Blob(b""))
    chunk1: bytes = b""
    chunk2: bytes = b""
    refs_a_config: Blob = field(default_factory=lambda: Blob(b""))
    refs_b_config: Blob = field(default_factory=lambda: Blob(b""))
    refs_a_layer: Blob = field(default_factory=lambda: Blob(b""))
    refs_b_layer: Blob = field(default_factory=lambda: Blob(b""))
    refs_c_layer: Blob = field(default_factory=lambda: Blob(b""))
    refs_index: Blob = field(default_factory=lambda: Blob(b""))
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def chunk1_range(self) -> str:
        return f"0-{len(self.chunk1) - 1}"

    @property
    def chunk2_range(self) -> str:
        return f"{len(self.chunk1)}-{len(self.blob_b.content) - 1}"


def make_data(seed: int) -> Data:
    rnd = random.Random(seed)
    d = Data()
    letters = string.digits + string.ascii_letters + "-"
    for _ in range(5):
        config = {
            "author": "".join(rnd.choice(letters) for _ in range(16)),
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
        }
        d.configs.append(Blob(go_json(config)))
    layers = [go_descriptor(OCI_LAYER, LAYER)]

    def config_descriptor(config: Blob) -> dict[str, Any]:
        return go_descriptor(
            OCI_CONFIG,
            config.content,
            data=base64.b64encode(config.content).decode(),
            newUnspecifiedField=base64.b64encode(b"hello world").decode(),
        )

    for config in d.configs:
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_descriptor(config),
            "layers": layers,
        }
        d.manifests.append(Blob(go_json(doc)))
    d.empty_layer_manifest = Blob(
        go_json({"schemaVersion": 2, "config": config_descriptor(d.configs[1]), "layers": []})
    )
    d.blob_a = Blob(rnd.randbytes(42))
    d.blob_b = Blob(rnd.randbytes(42))
    d.chunk1, d.chunk2 = d.blob_b.content[:22], d.blob_b.content[22:]

    empty = go_descriptor(OCI_EMPTY, EMPTY_JSON)
    subject4 = go_descriptor(OCI_MANIFEST, d.manifests[4].content)
    subject3 = go_descriptor(OCI_MANIFEST, d.manifests[3].content)

    def artifact(
        config: dict[str, Any],
        layers: list[dict[str, Any]],
        subject: dict[str, Any],
        artifact_type: str | None,
        note: str | None,
    ) -> Blob:
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
        if artifact_type:
            doc["artifactType"] = artifact_type
        doc.update(config=config, layers=layers, subject=subject)
        if note is not None:
            doc["annotations"] = {ANNOTATION_KEY: note}
        blob = Blob(go_json(doc))
        if note is not None:
            d.annotations[blob.digest] = note
        return blob

    d.refs_a_config = artifact(
        go_descriptor(ARTIFACT_TYPE_A, REF_BLOB_A), [empty], subject4, None, "test config a"
    )
    d.refs_b_config = artifact(
        go_descriptor(ARTIFACT_TYPE_B, REF_BLOB_B), [empty], subject4, None, "test config b"
    )
    d.refs_a_layer = artifact(
        empty,
        [go_descriptor(ARTIFACT_TYPE_A, REF_BLOB_A)],
        subject4,
        ARTIFACT_TYPE_A,
        "test layer a",
    )
    d.refs_b_layer = artifact(
        empty,
        [go_descriptor(ARTIFACT_TYPE_B, REF_BLOB_B)],
        subject4,
        ARTIFACT_TYPE_B,
        "test layer b",
    )
    d.refs_c_layer = artifact(
        empty, [go_descriptor(ARTIFACT_TYPE_B, REF_BLOB_B)], subject3, ARTIFACT_TYPE_B, None
    )
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": ARTIFACT_TYPE_INDEX,
        "manifests": [
            go_descriptor(OCI_MANIFEST, d.refs_a_config.content),
            go_descriptor(OCI_MANIFEST, d.refs_a_layer.content),
        ],
        "subject": subject4,
        "annotations": {ANNOTATION_KEY: "test index"},
    }
    d.refs_index = Blob(go_json(index))
    d.annotations[d.refs_index.digest] = "test index"
    return d


@dataclass
class Suite:
    client: httpx.Client
    data: Data
    crossmount_namespace: str
    # State carried from step to step, as the Go suite's closure variables.
    state: dict[str, Any] = field(default_factory=dict)

    def url(self, template: str, name: str = NAMESPACE, **values: str) -> str:
        return template.replace("<name>", name).format(**values)

    def push_blob(self, blob: Blob) -> httpx.Response:
        """POST then PUT with the whole blob, as the suite's setup steps do."""
        r = self.client.post(self.url("/v2/<name>/blobs/uploads/"))
        r = self.client.put(
            r.headers["Location"],
            params={"digest": blob.digest},
            headers={"Content-Type": "application/octet-stream", "Content-Length": blob.length},
            content=blob.content,
        )
        return r

    def put_manifest(self, ref: str, body: bytes, media_type: str = OCI_MANIFEST) -> httpx.Response:
        return self.client.put(
            self.url("/v2/<name>/manifests/{ref}", ref=ref),
            content=body,
            headers={"Content-Type": media_type},
        )

    def get_manifest(self, ref: str, method: str = "GET") -> httpx.Response:
        return self.client.request(
            method,
            self.url("/v2/<name>/manifests/{ref}", ref=ref),
            headers={"Accept": OCI_MANIFEST},
        )

    def delete_manifest(self, ref: str) -> httpx.Response:
        return self.client.delete(self.url("/v2/<name>/manifests/{ref}", ref=ref))

    def delete_blob(self, digest: str) -> httpx.Response:
        return self.client.delete(self.url("/v2/<name>/blobs/{digest}", digest=digest))

    def get_blob(self, digest: str, method: str = "GET", name: str = NAMESPACE) -> httpx.Response:
        return self.client.request(method, self.url("/v2/<name>/blobs/{d}", name=name, d=digest))

    def tags(self, **params: str | int) -> httpx.Response:
        return self.client.get(self.url("/v2/<name>/tags/list"), params=params)

    def referrers(self, digest: str, **params: str) -> httpx.Response:
        return self.client.get(self.url("/v2/<name>/referrers/{d}", d=digest), params=params)


def ok(r: httpx.Response) -> bool:
    return 200 <= r.status_code < 300


def assert_2xx(r: httpx.Response) -> None:
    assert ok(r), f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text[:300]}"


def assert_one_of(r: httpx.Response, *statuses: int, success: bool = False) -> None:
    """The suite's SatisfyAny(...): one of `statuses`, or any 2xx when `success`."""
    assert r.status_code in statuses or (success and ok(r)), (
        f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text[:300]}"
    )


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    srv = Server(Path(tmp_path_factory.mktemp("conformance")) / "data", free_port())
    srv.start()
    try:
        with httpx.Client(
            base_url=srv.url,
            timeout=30,
            headers={"User-Agent": "distribution-spec-conformance-tests"},
        ) as client:
            yield Suite(client, make_data(20240501), f"conformance-{uuid.uuid4()}")
    finally:
        srv.stop()


# 01 Pull


class TestPull:
    def test_setup_populate_registry_with_test_blobs(self, suite: Suite) -> None:
        assert_2xx(suite.push_blob(suite.data.configs[0]))
        assert_2xx(suite.push_blob(suite.data.configs[1]))

    def test_setup_populate_registry_with_test_layer(self, suite: Suite) -> None:
        assert_2xx(suite.push_blob(Blob(LAYER)))

    def test_setup_populate_registry_with_test_manifests(self, suite: Suite) -> None:
        suite.state["tag"] = TEST_TAG
        assert_2xx(suite.put_manifest(TEST_TAG, suite.data.manifests[0].content))
        m1 = suite.data.manifests[1]
        assert_2xx(suite.put_manifest(m1.digest, m1.content))

    def test_head_nonexistent_blob_is_404(self, suite: Suite) -> None:
        assert suite.get_blob(DUMMY_DIGEST, "HEAD").status_code == 404

    def test_head_existing_blob_is_200(self, suite: Suite) -> None:
        r = suite.get_blob(suite.data.configs[0].digest, "HEAD")
        assert r.status_code == 200
        assert r.headers["Docker-Content-Digest"] == suite.data.configs[0].digest  # stricter

    def test_get_nonexistent_blob_is_404(self, suite: Suite) -> None:
        assert suite.get_blob(DUMMY_DIGEST).status_code == 404

    def test_get_existing_blob_is_200(self, suite: Suite) -> None:
        r = suite.get_blob(suite.data.configs[0].digest)
        assert r.status_code == 200
        assert r.content == suite.data.configs[0].content

    def test_head_nonexistent_manifest_is_404(self, suite: Suite) -> None:
        assert suite.get_manifest(NONEXISTENT_MANIFEST, "HEAD").status_code == 404

    @pytest.mark.parametrize("i", [0, 1])
    def test_head_manifest_by_digest_is_200(self, suite: Suite, i: int) -> None:
        m = suite.data.manifests[i]
        r = suite.get_manifest(m.digest, "HEAD")
        assert r.status_code == 200
        assert r.headers["Docker-Content-Digest"] == m.digest  # stricter

    def test_head_manifest_by_tag_is_200(self, suite: Suite) -> None:
        tag = suite.state["tag"]
        assert tag
        r = suite.get_manifest(tag, "HEAD")
        assert r.status_code == 200
        assert r.headers["Docker-Content-Digest"] == suite.data.manifests[0].digest  # stricter

    def test_get_nonexistent_manifest_is_404(self, suite: Suite) -> None:
        assert suite.get_manifest(NONEXISTENT_MANIFEST).status_code == 404

    @pytest.mark.parametrize("i", [0, 1])
    def test_get_manifest_by_digest_is_200(self, suite: Suite, i: int) -> None:
        m = suite.data.manifests[i]
        r = suite.get_manifest(m.digest)
        assert r.status_code == 200
        assert r.content == m.content

    def test_get_manifest_by_tag_is_200(self, suite: Suite) -> None:
        r = suite.get_manifest(suite.state["tag"])
        assert r.status_code == 200
        assert r.content == suite.data.manifests[0].content

    def test_error_body_is_oci_json(self, suite: Suite) -> None:
        r = suite.client.request(
            "GET",
            suite.url("/v2/<name>/manifests/sha256:totallywrong"),
            headers={"Content-Type": OCI_MANIFEST},
            content=INVALID_MANIFEST,
        )
        assert r.status_code in (400, 404)
        if r.status_code == 400:
            errors = r.json()["errors"]
            assert errors
            assert errors[0]["code"] in OCI_ERROR_CODES

    def test_teardown_delete_manifests(self, suite: Suite) -> None:
        for m in suite.data.manifests[:2]:
            assert_one_of(suite.delete_manifest(m.digest), 405, success=True)

    def test_teardown_delete_blobs(self, suite: Suite) -> None:
        for digest in (suite.data.configs[0].digest, suite.data.configs[1].digest, sha256(LAYER)):
            assert_one_of(suite.delete_blob(digest), 404, 405, success=True)


# 02 Push


class TestPush:
    def test_streamed_patch_with_blob_in_body_is_202(self, suite: Suite) -> None:
        r = suite.client.post(suite.url("/v2/<name>/blobs/uploads/"))
        assert r.headers.get("Location")
        r = suite.client.patch(
            r.headers["Location"],
            headers={"Content-Type": "application/octet-stream"},
            content=suite.data.blob_a.content,
        )
        assert r.status_code == 202
        suite.state["last"] = r

    def test_streamed_put_with_digest_is_201(self, suite: Suite) -> None:
        last = suite.state["last"]
        r = suite.client.put(
            last.headers["Location"],
            params={"digest": suite.data.blob_a.digest},
            headers={"Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 201
        assert r.headers.get("Location")

    def test_monolithic_get_nonexistent_blob_is_404(self, suite: Suite) -> None:
        assert suite.get_blob(DUMMY_DIGEST).status_code == 404

    def test_monolithic_post_with_digest_and_blob_is_201_or_202(self, suite: Suite) -> None:
        config = suite.data.configs[1]
        r = suite.client.post(
            suite.url("/v2/<name>/blobs/uploads/"),
            params={"digest": config.digest},
            headers={"Content-Type": "application/octet-stream", "Content-Length": config.length},
            content=config.content,
        )
        assert r.headers.get("Location")
        assert r.status_code == 201  # stricter: the suite accepts 201 or 202
        suite.state["last"] = r

    def test_monolithic_get_blob_from_prior_request(self, suite: Suite) -> None:
        r = suite.get_blob(suite.data.configs[1].digest)
        assert r.status_code == (404 if suite.state["last"].status_code == 202 else 200)

    def test_monolithic_post_yields_session(self, suite: Suite) -> None:
        r = suite.client.post(suite.url("/v2/<name>/blobs/uploads/"))
        assert r.status_code == 202
        suite.state["last"] = r

    def test_monolithic_put_blob_is_201(self, suite: Suite) -> None:
        config = suite.data.configs[1]
        r = suite.client.put(
            suite.state["last"].headers["Location"],
            params={"digest": config.digest},
            headers={"Content-Type": "application/octet-stream", "Content-Length": config.length},
            content=config.content,
        )
        assert r.headers.get("Location")
        assert r.status_code == 201

    def test_monolithic_get_existing_blob_is_200(self, suite: Suite) -> None:
        assert suite.get_blob(suite.data.configs[1].digest).status_code == 200

    def test_monolithic_put_layer_is_201(self, suite: Suite) -> None:
        r = suite.push_blob(Blob(LAYER))
        assert r.headers.get("Location")
        assert r.status_code == 201

    def test_monolithic_get_existing_layer_is_200(self, suite: Suite) -> None:
        assert suite.get_blob(sha256(LAYER)).status_code == 200

    def test_chunked_out_of_order_is_416(self, suite: Suite) -> None:
        d = suite.data
        r = suite.client.post(
            suite.url("/v2/<name>/blobs/uploads/"), headers={"Content-Length": "0"}
        )
        assert r.headers.get("Location")
        assert "OCI-Chunk-Min-Length" not in r.headers  # else the suite resizes its chunks
        r = suite.client.patch(
            r.headers["Location"],
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(len(d.chunk2)),
                "Content-Range": d.chunk2_range,
            },
            content=d.chunk2,
        )
        assert r.status_code == 416

    def test_chunked_patch_first_chunk_is_202(self, suite: Suite) -> None:
        d = suite.data
        r = suite.client.post(
            suite.url("/v2/<name>/blobs/uploads/"), headers={"Content-Length": "0"}
        )
        assert r.headers.get("Location")
        suite.state["prev"] = r
        r = suite.client.patch(
            r.headers["Location"],
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(len(d.chunk1)),
                "Content-Range": d.chunk1_range,
            },
            content=d.chunk1,
        )
        assert r.status_code == 202
        assert r.headers["Range"] == d.chunk1_range
        suite.state["last"] = r

    def test_chunked_retry_previous_chunk_is_416(self, suite: Suite) -> None:
        d = suite.data
        r = suite.client.patch(
            suite.state["prev"].headers["Location"],
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(len(d.chunk1)),
                "Content-Range": d.chunk1_range,
            },
            content=d.chunk1,
        )
        assert r.status_code == 416

    def test_chunked_get_stale_upload_is_204_with_range_and_location(self, suite: Suite) -> None:
        r = suite.client.get(suite.state["prev"].headers["Location"])
        assert r.status_code == 204
        assert r.headers.get("Location")
        assert r.headers["Range"] == suite.data.chunk1_range
        suite.state["last"] = r

    def test_chunked_patch_second_chunk_is_202(self, suite: Suite) -> None:
        d = suite.data
        r = suite.client.patch(
            suite.state["last"].headers["Location"],
            headers={
                "Content-Length": str(len(d.chunk2)),
                "Content-Range": d.chunk2_range,
                "Content-Type": "application/octet-stream",
            },
            content=d.chunk2,
        )
        assert r.status_code == 202
        assert r.headers.get("Location")
        suite.state["last"] = r

    def test_chunked_put_with_digest_is_201(self, suite: Suite) -> None:
        r = suite.client.put(
            suite.state["last"].headers["Location"],
            params={"digest": suite.data.blob_b.digest},
            headers={"Content-Length": "0", "Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 201
        assert r.headers.get("Location")
        assert suite.get_blob(suite.data.blob_b.digest).content == suite.data.blob_b.content

    def test_crossmount_without_from_yields_session(self, suite: Suite) -> None:
        r = suite.client.post(
            suite.url("/v2/<name>/blobs/uploads/", name=suite.crossmount_namespace),
            params={"mount": DUMMY_DIGEST},
        )
        assert r.status_code == 202
        assert r.headers.get("Location")

    def test_crossmount_from_another_repository_is_201_or_202(self, suite: Suite) -> None:
        r = suite.client.post(
            suite.url("/v2/<name>/blobs/uploads/", name=suite.crossmount_namespace),
            params={"mount": suite.data.blob_a.digest, "from": NAMESPACE},
        )
        assert r.status_code == 201  # stricter: ocinest mounts
        suite.state["last"] = r

    def test_crossmount_get_digest_in_crossmount_namespace_is_200(self, suite: Suite) -> None:
        last = suite.state["last"]
        assert last.status_code == 201
        assert last.headers["Location"] == (
            f"/v2/{suite.crossmount_namespace}/blobs/{suite.data.blob_a.digest}"
        )
        r = suite.client.get(last.headers["Location"])
        assert r.status_code == 200
        assert r.content == suite.data.blob_a.content

    def test_crossmount_without_from_with_automatic_mount_is_201(self, suite: Suite) -> None:
        assert suite.state["last"].status_code == 201
        r = suite.client.post(
            suite.url("/v2/<name>/blobs/uploads/", name=suite.crossmount_namespace),
            params={"mount": suite.data.blob_a.digest},
        )
        assert r.status_code == 201

    def test_manifest_get_nonexistent_is_404(self, suite: Suite) -> None:
        assert suite.get_manifest(NONEXISTENT_MANIFEST).status_code == 404

    def test_manifest_put_is_accepted(self, suite: Suite) -> None:
        for i in range(4):
            r = suite.put_manifest(f"test{i}", suite.data.manifests[1].content)
            assert r.headers.get("Location")
            assert r.status_code == 201

    def test_manifest_with_no_layers_is_accepted(self, suite: Suite) -> None:
        r = suite.put_manifest(EMPTY_LAYER_TAG, suite.data.empty_layer_manifest.content)
        assert r.status_code == 201  # stricter: the suite only warns otherwise
        assert r.headers.get("Location")
        suite.state["empty_layer_ref"] = r.headers["Location"]

    def test_manifest_get_by_digest_is_200(self, suite: Suite) -> None:
        r = suite.get_manifest(suite.data.manifests[1].digest)
        assert r.status_code == 200

    def test_teardown_delete_manifests(self, suite: Suite) -> None:
        assert_one_of(suite.delete_manifest(suite.data.manifests[1].digest), 405, success=True)
        assert suite.state.get("empty_layer_ref")
        r = suite.delete_manifest(suite.data.empty_layer_manifest.digest)
        assert_one_of(r, 405, success=True)

    def test_teardown_delete_blobs(self, suite: Suite) -> None:
        for digest in (suite.data.configs[1].digest, sha256(LAYER)):
            assert_one_of(suite.delete_blob(digest), 404, 405, success=True)


# 03 Content discovery


class TestContentDiscovery:
    def test_setup_populate_registry_with_test_blob_and_layer(self, suite: Suite) -> None:
        assert_2xx(suite.push_blob(suite.data.configs[2]))
        assert_2xx(suite.push_blob(Blob(LAYER)))

    def test_setup_populate_registry_with_test_tags(self, suite: Suite) -> None:
        for i in range(4):
            assert_2xx(suite.put_manifest(f"test{i}", suite.data.manifests[2].content))
        suite.state["tag_list"] = suite.tags().json()["tags"]

    def test_setup_references(self, suite: Suite) -> None:
        d = suite.data
        assert sha256(EMPTY_JSON) == (
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        )
        assert_2xx(suite.push_blob(Blob(EMPTY_JSON)))
        assert_2xx(suite.push_blob(Blob(REF_BLOB_A)))
        subject4 = d.manifests[4].digest
        for blob, media_type in (
            (d.refs_a_config, OCI_MANIFEST),
            (d.refs_a_layer, OCI_MANIFEST),
            (d.refs_index, OCI_INDEX),
        ):
            r = suite.put_manifest(blob.digest, blob.content, media_type)
            assert_2xx(r)
            assert r.headers["OCI-Subject"] == subject4
        assert_2xx(suite.push_blob(d.configs[4]))
        assert_2xx(suite.push_blob(Blob(LAYER)))
        assert_2xx(suite.put_manifest(TEST_TAG, d.manifests[4].content))
        assert_2xx(suite.push_blob(Blob(REF_BLOB_B)))
        for blob in (d.refs_b_config, d.refs_b_layer):
            r = suite.put_manifest(blob.digest, blob.content)
            assert_2xx(r)
            assert r.headers["OCI-Subject"] == subject4
        r = suite.put_manifest(d.refs_c_layer.digest, d.refs_c_layer.content)
        assert_2xx(r)
        assert r.headers["OCI-Subject"] == d.manifests[3].digest

    def test_list_tags_is_200(self, suite: Suite) -> None:
        r = suite.tags()
        assert r.status_code == 200
        suite.state["tag_list"] = r.json()["tags"]
        suite.state["num_tags"] = len(suite.state["tag_list"])
        assert suite.state["tag_list"] == ["tagtest0", "test0", "test1", "test2", "test3"]

    def test_tags_limited_by_n(self, suite: Suite) -> None:
        num_results = suite.state["num_tags"] // 2
        r = suite.tags(n=num_results)
        assert r.status_code == 200
        suite.state["tag_list"] = r.json()["tags"]
        assert len(suite.state["tag_list"]) == num_results

    def test_tags_start_set_by_last(self, suite: Suite) -> None:
        num_results = suite.state["num_tags"] // 2
        r = suite.tags(n=num_results)
        tag_list = r.json()["tags"]
        r = suite.tags(n=num_results, last=tag_list[num_results - 1])
        assert r.status_code == 200
        # What the Go step checks (of the first page) ...
        assert len(tag_list) <= num_results
        assert tag_list[num_results - 1] in tag_list
        # ... and what it means to (stricter): the next page follows `last`.
        all_tags = suite.tags().json()["tags"]
        assert r.json()["tags"] == all_tags[num_results : 2 * num_results]

    def test_referrers_of_nonexistent_blob_is_empty_200(self, suite: Suite) -> None:
        r = suite.referrers(DUMMY_DIGEST)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == OCI_INDEX
        assert len(r.json()["manifests"]) == 0

    def test_referrers_of_existing_manifest(self, suite: Suite) -> None:
        r = suite.referrers(suite.data.manifests[4].digest)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == OCI_INDEX
        manifests = r.json()["manifests"]
        assert len(manifests) == 5
        assert manifests[0]["digest"] != manifests[1]["digest"]
        for entry in manifests:
            assert len(entry["annotations"]) == 1
            assert entry["annotations"][ANNOTATION_KEY] == suite.data.annotations[entry["digest"]]

    def test_referrers_with_artifact_type_filter(self, suite: Suite) -> None:
        r = suite.referrers(suite.data.manifests[4].digest, artifactType=ARTIFACT_TYPE_A)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == OCI_INDEX
        manifests = r.json()["manifests"]
        # The suite accepts an unfiltered answer without the header; ocinest filters.
        assert r.headers["OCI-Filters-Applied"] == "artifactType"  # stricter
        assert len(manifests) == 2
        for entry in manifests:
            assert len(entry["annotations"]) == 1
            assert entry["annotations"][ANNOTATION_KEY] == suite.data.annotations[entry["digest"]]
        assert {e["digest"] for e in manifests} == {
            suite.data.refs_a_config.digest,
            suite.data.refs_a_layer.digest,
        }

    def test_referrers_of_missing_manifest(self, suite: Suite) -> None:
        r = suite.referrers(suite.data.manifests[3].digest)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == OCI_INDEX
        manifests = r.json()["manifests"]
        assert len(manifests) == 1
        assert manifests[0]["digest"] == suite.data.refs_c_layer.digest

    def test_teardown_delete_manifests_and_tags(self, suite: Suite) -> None:
        d = suite.data
        for ref in (
            d.refs_index.digest,
            d.manifests[2].digest,
            d.manifests[4].digest,
            d.refs_a_config.digest,
            d.refs_a_layer.digest,
            TEST_TAG,
            d.refs_b_config.digest,
            d.refs_b_layer.digest,
            d.refs_c_layer.digest,
        ):
            assert_one_of(suite.delete_manifest(ref), 404, 405, success=True)

    def test_teardown_delete_config_and_layer_blobs(self, suite: Suite) -> None:
        assert_one_of(suite.delete_blob(suite.data.configs[2].digest), 405, success=True)
        assert_one_of(suite.delete_blob(sha256(LAYER)), 405, success=True)

    def test_teardown_references(self, suite: Suite) -> None:
        d = suite.data
        for ref in (
            d.refs_index.digest,
            d.refs_a_config.digest,
            d.refs_a_layer.digest,
            d.manifests[4].digest,
            d.refs_b_config.digest,
            d.refs_b_layer.digest,
        ):
            assert_one_of(suite.delete_manifest(ref), 404, 405, success=True)
        for digest in (d.configs[4].digest, sha256(REF_BLOB_A), sha256(REF_BLOB_B)):
            assert_one_of(suite.delete_blob(digest), 404, 405, success=True)
        assert_one_of(suite.delete_blob(sha256(EMPTY_JSON)), 404, 405, success=True)


# 04 Content management


class TestContentManagement:
    def test_setup_populate_registry_with_config_and_layer(self, suite: Suite) -> None:
        assert_2xx(suite.push_blob(suite.data.configs[3]))
        assert_2xx(suite.push_blob(Blob(LAYER)))

    def test_setup_populate_registry_with_test_tag(self, suite: Suite) -> None:
        suite.state["tag_to_delete"] = TEST_TAG
        assert_2xx(suite.put_manifest(TEST_TAG, suite.data.manifests[3].content))

    def test_setup_count_tags(self, suite: Suite) -> None:
        r = suite.tags()
        assert r.status_code == 200
        suite.state["num_tags"] = len(r.json()["tags"])

    def test_delete_manifest_tag_is_202(self, suite: Suite) -> None:
        r = suite.delete_manifest(suite.state["tag_to_delete"])
        # The suite also accepts 400 UNSUPPORTED and 405 (tag deletion disallowed).
        assert r.status_code == 202  # stricter

    def test_delete_manifest_by_digest_is_202(self, suite: Suite) -> None:
        r = suite.delete_manifest(suite.data.manifests[3].digest)
        # The suite also accepts 404; deleting the tag must not delete the manifest.
        assert r.status_code == 202  # stricter

    def test_get_deleted_manifest_is_404(self, suite: Suite) -> None:
        r = suite.get_manifest(suite.data.manifests[3].digest)
        assert r.status_code == 404  # stricter: the suite also accepts 200

    def test_tags_list_reflects_deletion(self, suite: Suite) -> None:
        r = suite.tags()
        assert r.status_code == 200
        assert len(r.json()["tags"]) < suite.state["num_tags"]

    def test_delete_blobs_is_202(self, suite: Suite) -> None:
        r = suite.delete_blob(suite.data.configs[3].digest)
        assert r.status_code == 202  # stricter: the suite also accepts 404 and 405
        r = suite.delete_blob(sha256(LAYER))
        assert r.status_code == 202  # stricter

    def test_get_deleted_blob_is_404(self, suite: Suite) -> None:
        assert suite.get_blob(suite.data.configs[3].digest).status_code == 404
