"""Manifests: push by tag and digest, pull by tag and digest (exact bytes), media types and
Accept, validation errors, size limit, deletion by tag and digest, and index protection."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import Server, docker_image, oci_image, push_blob, push_manifest, pushed
from tests.integration.ocihttp import assert_error, assert_status, sha512, unknown_digest
from tests.manifests import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1,
    DOCKER_SCHEMA1_SIGNED,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    descriptor,
    dumps,
    index_manifest,
    platforms,
    sha256,
)

MAX_MANIFEST = 4 * 1024 * 1024


def assert_manifest(r: httpx.Response, body: bytes, media_type: str, *, head: bool = False) -> None:
    assert_status(r, 200)
    assert r.headers["Content-Type"] == media_type
    assert r.headers["Docker-Content-Digest"] == sha256(body)
    assert r.headers["Content-Length"] == str(len(body))
    assert r.content == (b"" if head else body)


def assert_created(r: httpx.Response, repo: str, body: bytes) -> None:
    assert_status(r, 201)
    digest = sha256(body)
    assert r.headers["Location"] == f"/v2/{repo}/manifests/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest


def assert_pullable(
    client: httpx.Client, repo: str, refs: list[str], body: bytes, media_type: str
) -> None:
    for ref in refs:
        assert_manifest(client.get(f"/v2/{repo}/manifests/{ref}"), body, media_type)
        assert_manifest(client.head(f"/v2/{repo}/manifests/{ref}"), body, media_type, head=True)


def assert_not_pullable(client: httpx.Client, repo: str, ref: str) -> None:
    assert_error(client.get(f"/v2/{repo}/manifests/{ref}"), 404, "MANIFEST_UNKNOWN")
    assert_error(client.head(f"/v2/{repo}/manifests/{ref}"), 404, "MANIFEST_UNKNOWN")


def mutate(body: bytes, **changes: Any) -> bytes:
    doc = json.loads(body)
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return dumps(doc)


# Push and pull


def test_push_by_tag_and_pull(client: httpx.Client) -> None:
    repo = "man/tag"
    body = oci_image(client, repo)
    r = push_manifest(client, repo, "v1", body)
    assert_created(r, repo, body)
    assert "OCI-Subject" not in r.headers
    assert_pullable(client, repo, ["v1", sha256(body)], body, OCI_MANIFEST)


def test_push_by_digest_and_pull(client: httpx.Client) -> None:
    repo = "man/digest"
    body = oci_image(client, repo)
    assert_created(push_manifest(client, repo, sha256(body), body), repo, body)
    assert_pullable(client, repo, [sha256(body)], body, OCI_MANIFEST)
    r = client.get(f"/v2/{repo}/tags/list")
    assert_status(r, 200)
    assert r.json()["tags"] == []


def test_pull_returns_exact_bytes(client: httpx.Client) -> None:
    """Whitespace, key order, unknown fields and data fields are kept byte for byte."""
    repo = "man/exact"
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = os.urandom(33)
    push_blob(client, repo, config)
    push_blob(client, repo, layer)
    config_data = "eyJhcmNoaXRlY3R1cmUiOiJhbWQ2NCIsIm9zIjoibGludXgifQ=="
    body = (
        f'{{\n\t"schemaVersion" :  2,"layers": [ {{"size": {len(layer)}, '
        f'"digest": "{sha256(layer)}",\n"mediaType": "{OCI_LAYER}", '
        f'"newUnspecifiedField": "aGVsbG8gd29ybGQ="}} ],\r\n'
        f'  "config": {{"mediaType": "{OCI_CONFIG}", "digest": "{sha256(config)}", '
        f'"size": {len(config)}, "data": "{config_data}"}},\n'
        f'"mediaType":"{OCI_MANIFEST}", "x-unknown": {{"nested": [1, 2.5, null, "\\u00e9"]}}}}   \n'
    ).encode()
    assert_created(push_manifest(client, repo, "exact", body), repo, body)
    assert_pullable(client, repo, ["exact", sha256(body)], body, OCI_MANIFEST)


def test_manifest_without_media_type_field(client: httpx.Client) -> None:
    repo = "man/nomt"
    body = mutate(oci_image(client, repo), mediaType=None)
    assert_created(push_manifest(client, repo, "v1", body), repo, body)
    assert_pullable(client, repo, ["v1"], body, OCI_MANIFEST)


def test_manifest_with_no_layers(client: httpx.Client) -> None:
    repo = "man/nolayers"
    body = oci_image(client, repo, layers=[])
    assert json.loads(body)["layers"] == []
    assert_created(push_manifest(client, repo, "empty", body), repo, body)
    assert_pullable(client, repo, ["empty"], body, OCI_MANIFEST)


def test_oci_index(client: httpx.Client) -> None:
    repo = "man/index"
    children = [oci_image(client, repo) for _ in range(2)]
    for child in children:
        pushed(client, repo, sha256(child), child)
    body = index_manifest(*platforms(children))
    assert_created(push_manifest(client, repo, "multi", body, OCI_INDEX), repo, body)
    assert_pullable(client, repo, ["multi", sha256(body)], body, OCI_INDEX)


def test_docker_schema2_manifest(client: httpx.Client) -> None:
    repo = "man/docker"
    body = docker_image(client, repo)
    assert_created(push_manifest(client, repo, "v2", body, DOCKER_MANIFEST), repo, body)
    assert_pullable(client, repo, ["v2", sha256(body)], body, DOCKER_MANIFEST)
    r = client.get(f"/v2/{repo}/manifests/v2", headers={"Accept": DOCKER_MANIFEST})
    assert_manifest(r, body, DOCKER_MANIFEST)


def test_docker_manifest_list(client: httpx.Client) -> None:
    repo = "man/dockerlist"
    children = [docker_image(client, repo) for _ in range(2)]
    for child in children:
        pushed(client, repo, sha256(child), child, DOCKER_MANIFEST)
    body = dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST_LIST,
            "manifests": [
                descriptor(child, DOCKER_MANIFEST, platform={"architecture": arch, "os": "linux"})
                for child, arch in zip(children, ("amd64", "arm64"), strict=True)
            ],
        }
    )
    r = push_manifest(client, repo, "list", body, DOCKER_MANIFEST_LIST)
    assert_created(r, repo, body)
    assert_pullable(client, repo, ["list", sha256(body)], body, DOCKER_MANIFEST_LIST)
    r = client.get(f"/v2/{repo}/manifests/list", headers={"Accept": DOCKER_MANIFEST_LIST})
    assert_manifest(r, body, DOCKER_MANIFEST_LIST)


def test_index_may_mix_oci_and_docker_children(client: httpx.Client) -> None:
    repo = "man/mixed"
    oci = oci_image(client, repo)
    docker = docker_image(client, repo)
    pushed(client, repo, sha256(oci), oci)
    pushed(client, repo, sha256(docker), docker, DOCKER_MANIFEST)
    body = dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [descriptor(oci), descriptor(docker, DOCKER_MANIFEST)],
        }
    )
    assert_created(push_manifest(client, repo, "mixed", body, OCI_INDEX), repo, body)


def test_content_type_with_parameters(client: httpx.Client) -> None:
    repo = "man/ctparams"
    body = oci_image(client, repo)
    r = push_manifest(client, repo, "v1", body, OCI_MANIFEST + "; charset=utf-8")
    assert_created(r, repo, body)
    assert_pullable(client, repo, ["v1"], body, OCI_MANIFEST)


def test_push_by_sha512_digest(client: httpx.Client) -> None:
    repo = "man/sha512"
    body = oci_image(client, repo)
    digest = sha512(body)
    r = push_manifest(client, repo, digest, body)
    assert_status(r, 201)
    assert r.headers["Location"] == f"/v2/{repo}/manifests/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    r = client.get(f"/v2/{repo}/manifests/{digest}")
    assert_status(r, 200)
    assert r.content == body
    assert r.headers["Docker-Content-Digest"] == digest


def test_repush_is_idempotent(client: httpx.Client) -> None:
    repo = "man/again"
    body = oci_image(client, repo)
    assert_created(push_manifest(client, repo, "v1", body), repo, body)
    assert_created(push_manifest(client, repo, "v1", body), repo, body)
    assert_created(push_manifest(client, repo, sha256(body), body), repo, body)
    assert_pullable(client, repo, ["v1"], body, OCI_MANIFEST)


def test_tag_moves_to_new_manifest(client: httpx.Client) -> None:
    repo = "man/move"
    first = oci_image(client, repo)
    second = oci_image(client, repo)
    pushed(client, repo, "latest", first)
    pushed(client, repo, "latest", second)
    assert_pullable(client, repo, ["latest", sha256(second)], second, OCI_MANIFEST)
    assert_pullable(client, repo, [sha256(first)], first, OCI_MANIFEST)


def test_manifest_survives_restart(server: Server, client: httpx.Client) -> None:
    repo = "man/restart"
    body = oci_image(client, repo)
    pushed(client, repo, "v1", body)
    server.stop()
    server.start()
    assert_pullable(client, repo, ["v1", sha256(body)], body, OCI_MANIFEST)


def test_foreign_layer_need_not_be_pushed(client: httpx.Client) -> None:
    repo = "man/foreign"
    config = json.dumps({"os": "windows", "architecture": "amd64"}).encode()
    push_blob(client, repo, config)
    foreign = descriptor(
        b"never pushed",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        urls=["https://example.com/layer.tar.gz"],
    )
    body = dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": descriptor(config, DOCKER_CONFIG),
            "layers": [foreign],
        }
    )
    assert_created(push_manifest(client, repo, "win", body, DOCKER_MANIFEST), repo, body)


# Subject


def test_subject_sets_oci_subject_header(client: httpx.Client) -> None:
    repo = "man/subject"
    subject_body = oci_image(client, repo)
    subject = descriptor(subject_body)
    # The subject does not exist (yet): that is allowed.
    body = oci_image(client, repo, subject=subject, artifactType="application/vnd.example+type")
    r = push_manifest(client, repo, sha256(body), body)
    assert_created(r, repo, body)
    assert r.headers["OCI-Subject"] == sha256(subject_body)
    assert_pullable(client, repo, [sha256(body)], body, OCI_MANIFEST)


def test_index_with_subject_sets_oci_subject_header(client: httpx.Client) -> None:
    repo = "man/indexsubject"
    child = oci_image(client, repo)
    pushed(client, repo, sha256(child), child)
    subject = descriptor(child)
    body = index_manifest(*platforms([child]), subject=subject)
    r = push_manifest(client, repo, sha256(body), body, OCI_INDEX)
    assert_created(r, repo, body)
    assert r.headers["OCI-Subject"] == sha256(child)


# Accept


@pytest.mark.parametrize(
    "accept",
    [
        [OCI_MANIFEST],
        ["*/*"],
        ["application/*"],
        [f"{OCI_INDEX}, {OCI_MANIFEST}"],
        [f"{OCI_MANIFEST};q=0.9"],
        [DOCKER_MANIFEST, OCI_MANIFEST],
    ],
)
def test_accept_including_media_type(client: httpx.Client, accept: list[str]) -> None:
    repo = "man/accept"
    body = oci_image(client, repo)
    pushed(client, repo, "v1", body)
    headers = [("Accept", value) for value in accept]
    assert_manifest(client.get(f"/v2/{repo}/manifests/v1", headers=headers), body, OCI_MANIFEST)
    r = client.head(f"/v2/{repo}/manifests/v1", headers=headers)
    assert_manifest(r, body, OCI_MANIFEST, head=True)


def test_no_accept_header_is_served(client: httpx.Client) -> None:
    repo = "man/noaccept"
    body = oci_image(client, repo)
    pushed(client, repo, "v1", body)
    request = client.build_request("GET", f"/v2/{repo}/manifests/v1")
    del request.headers["Accept"]
    assert_manifest(client.send(request), body, OCI_MANIFEST)


@pytest.mark.parametrize(
    "accept",
    [
        [OCI_INDEX],
        [DOCKER_MANIFEST],
        [f"{DOCKER_MANIFEST}, {DOCKER_MANIFEST_LIST}", OCI_INDEX],
        ["text/html"],
    ],
)
def test_accept_excluding_media_type_is_404(client: httpx.Client, accept: list[str]) -> None:
    repo = "man/noaccepted"
    body = oci_image(client, repo)
    pushed(client, repo, "v1", body)
    headers = [("Accept", value) for value in accept]
    for ref in ("v1", sha256(body)):
        r = client.get(f"/v2/{repo}/manifests/{ref}", headers=headers)
        assert_error(r, 404, "MANIFEST_UNKNOWN")
        r = client.head(f"/v2/{repo}/manifests/{ref}", headers=headers)
        assert_error(r, 404, "MANIFEST_UNKNOWN")


def test_accept_excluding_docker_type_is_404(client: httpx.Client) -> None:
    repo = "man/noaccepteddocker"
    body = docker_image(client, repo)
    pushed(client, repo, "v1", body, DOCKER_MANIFEST)
    r = client.get(f"/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert_error(r, 404, "MANIFEST_UNKNOWN")


# Missing references


def test_missing_blobs_are_listed_one_by_one(client: httpx.Client) -> None:
    repo = "man/missing"
    config = json.dumps({"missing": uuid.uuid4().hex}).encode()
    layers = [os.urandom(10), os.urandom(11)]
    body = dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(config, OCI_CONFIG),
            "layers": [descriptor(layer, OCI_LAYER) for layer in layers],
        }
    )
    r = push_manifest(client, repo, "v1", body)
    entries = assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    assert [e["code"] for e in entries] == ["MANIFEST_BLOB_UNKNOWN"] * 3
    for data in (config, *layers):
        assert sum(sha256(data) in json.dumps(e) for e in entries) == 1, entries
    assert_not_pullable(client, repo, "v1")
    assert_not_pullable(client, repo, sha256(body))


def test_one_missing_layer_is_one_error(client: httpx.Client) -> None:
    repo = "man/missingone"
    present = os.urandom(10)
    missing = os.urandom(12)
    config = b'{"one": "missing"}'
    push_blob(client, repo, config)
    push_blob(client, repo, present)
    body = dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(config, OCI_CONFIG),
            "layers": [descriptor(present, OCI_LAYER), descriptor(missing, OCI_LAYER)],
        }
    )
    entries = assert_error(push_manifest(client, repo, "v1", body), 400, "MANIFEST_BLOB_UNKNOWN")
    assert len(entries) == 1
    assert sha256(missing) in json.dumps(entries[0])


def test_blob_of_another_repository_is_missing(client: httpx.Client) -> None:
    body = oci_image(client, "man/owner")
    r = push_manifest(client, "man/stranger", "v1", body)
    entries = assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    assert len(entries) == 2  # the config and the one layer


def test_missing_child_manifests(client: httpx.Client) -> None:
    repo = "man/missingchild"
    present = oci_image(client, repo)
    pushed(client, repo, sha256(present), present)
    absent = [oci_image(client, repo) for _ in range(2)]
    body = index_manifest(*platforms([present, *absent]))
    entries = assert_error(
        push_manifest(client, repo, "idx", body, OCI_INDEX), 400, "MANIFEST_BLOB_UNKNOWN"
    )
    assert [e["code"] for e in entries] == ["MANIFEST_BLOB_UNKNOWN"] * 2
    for child in absent:
        assert sum(sha256(child) in json.dumps(e) for e in entries) == 1, entries
    assert_not_pullable(client, repo, "idx")


def test_child_manifest_of_another_repository_is_missing(client: httpx.Client) -> None:
    child = oci_image(client, "man/childowner")
    pushed(client, "man/childowner", sha256(child), child)
    body = index_manifest(*platforms([child]))
    entries = assert_error(
        push_manifest(client, "man/childstranger", "idx", body, OCI_INDEX),
        400,
        "MANIFEST_BLOB_UNKNOWN",
    )
    assert len(entries) == 1


# Invalid manifests


def _invalid_cases(client: httpx.Client, repo: str) -> list[tuple[str, bytes, str]]:
    """(name, body, Content-Type) of manifests that must be refused as MANIFEST_INVALID; all
    their blobs and children exist, so only the invalidity is at stake."""
    good = oci_image(client, repo)
    doc = json.loads(good)
    config, layer = doc["config"], doc["layers"][0]
    child = oci_image(client, repo)
    pushed(client, repo, sha256(child), child)
    index = index_manifest(*platforms([child]))
    foo = "application/vnd.foo+json"

    def m(**changes: Any) -> bytes:
        return mutate(good, **changes)

    def with_config(**changes: Any) -> bytes:
        return m(config={**config, **changes})

    def with_layer(**changes: Any) -> bytes:
        return m(layers=[{**layer, **changes}])

    def index_of(**changes: Any) -> bytes:
        return dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [descriptor(child, **changes)],
            }
        )

    return [
        ("not json", b"{not json", OCI_MANIFEST),
        ("empty body", b"", OCI_MANIFEST),
        ("json array", b"[]", OCI_MANIFEST),
        ("json string", b'"manifest"', OCI_MANIFEST),
        ("schemaVersion 1", m(schemaVersion=1), OCI_MANIFEST),
        ("schemaVersion 3", m(schemaVersion=3), OCI_MANIFEST),
        ("schemaVersion string", m(schemaVersion="2"), OCI_MANIFEST),
        ("schemaVersion missing", m(schemaVersion=None), OCI_MANIFEST),
        ("unknown content type", m(mediaType=None), foo),
        ("unknown mediaType field", m(mediaType=foo), foo),
        ("schema1 content type", m(mediaType=None), DOCKER_SCHEMA1),
        ("signed schema1", m(mediaType=None), DOCKER_SCHEMA1_SIGNED),
        ("schema1 mediaType", m(mediaType=DOCKER_SCHEMA1), DOCKER_SCHEMA1),
        ("mediaType mismatch", m(mediaType=OCI_INDEX), OCI_MANIFEST),
        ("docker mediaType, oci type", m(mediaType=DOCKER_MANIFEST), OCI_MANIFEST),
        ("mediaType not a string", m(mediaType=5), OCI_MANIFEST),
        ("config missing", m(config=None), OCI_MANIFEST),
        ("config not an object", m(config=config["digest"]), OCI_MANIFEST),
        ("config digest malformed", with_config(digest="sha256:xyz"), OCI_MANIFEST),
        ("config digest md5", with_config(digest="md5:" + "0" * 32), OCI_MANIFEST),
        ("config digest missing", with_config(digest=None), OCI_MANIFEST),
        ("config size negative", with_config(size=-1), OCI_MANIFEST),
        ("config size string", with_config(size=str(config["size"])), OCI_MANIFEST),
        ("config size float", with_config(size=config["size"] + 0.5), OCI_MANIFEST),
        ("config size bool", with_config(size=True), OCI_MANIFEST),
        ("config size wrong", with_config(size=config["size"] + 1), OCI_MANIFEST),
        ("config mediaType bad", with_config(mediaType="nope"), OCI_MANIFEST),
        ("layers missing", m(layers=None), OCI_MANIFEST),
        ("layers not array", m(layers={"0": layer}), OCI_MANIFEST),
        ("layer not object", m(layers=[layer["digest"]]), OCI_MANIFEST),
        ("layer mediaType missing", with_layer(mediaType=None), OCI_MANIFEST),
        ("layer size wrong", with_layer(size=0), OCI_MANIFEST),
        ("layer digest bad", with_layer(digest="sha256:" + "a" * 63), OCI_MANIFEST),
        ("annotations not strings", m(annotations={"a": 1}), OCI_MANIFEST),
        ("annotations a list", m(annotations=["a"]), OCI_MANIFEST),
        ("manifest has manifests", m(manifests=[]), OCI_MANIFEST),
        ("index has config", mutate(index, config=config), OCI_INDEX),
        ("index manifests missing", mutate(index, manifests=None), OCI_INDEX),
        ("index manifests object", mutate(index, manifests={}), OCI_INDEX),
        ("index child size wrong", index_of(size=len(child) + 1), OCI_INDEX),
        ("index platform without os", index_of(platform={"architecture": "amd64"}), OCI_INDEX),
    ]


INVALID_CASES = [
    "not json",
    "empty body",
    "json array",
    "json string",
    "schemaVersion 1",
    "schemaVersion 3",
    "schemaVersion string",
    "schemaVersion missing",
    "unknown content type",
    "unknown mediaType field",
    "schema1 content type",
    "signed schema1",
    "schema1 mediaType",
    "mediaType mismatch",
    "docker mediaType, oci type",
    "mediaType not a string",
    "config missing",
    "config not an object",
    "config digest malformed",
    "config digest md5",
    "config digest missing",
    "config size negative",
    "config size string",
    "config size float",
    "config size bool",
    "config size wrong",
    "config mediaType bad",
    "layers missing",
    "layers not array",
    "layer not object",
    "layer mediaType missing",
    "layer size wrong",
    "layer digest bad",
    "annotations not strings",
    "annotations a list",
    "manifest has manifests",
    "index has config",
    "index manifests missing",
    "index manifests object",
    "index child size wrong",
    "index platform without os",
]


@pytest.mark.parametrize("case", INVALID_CASES)
def test_invalid_manifest_is_manifest_invalid(client: httpx.Client, case: str) -> None:
    repo = "man/invalid"
    cases = {name: (body, media_type) for name, body, media_type in _invalid_cases(client, repo)}
    assert set(cases) == set(INVALID_CASES)
    body, media_type = cases[case]
    assert_error(push_manifest(client, repo, "bad", body, media_type), 400, "MANIFEST_INVALID")
    assert_not_pullable(client, repo, "bad")
    assert_not_pullable(client, repo, sha256(body))


def test_too_large_manifest_is_413(client: httpx.Client) -> None:
    repo = "man/large"
    body = oci_image(client, repo)
    padding = MAX_MANIFEST + 1 - len(mutate(body, annotations={"pad": ""}))
    big = mutate(body, annotations={"pad": "x" * padding})
    assert len(big) == MAX_MANIFEST + 1
    assert_error(push_manifest(client, repo, "big", big), 413, "SIZE_INVALID")
    assert_not_pullable(client, repo, "big")


def test_too_large_manifest_streamed_without_length_is_413(client: httpx.Client) -> None:
    repo = "man/largestream"
    big = b'{"schemaVersion": 2, "pad": "' + b"x" * (MAX_MANIFEST + 10) + b'"}'

    def chunks() -> Any:
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    r = client.put(
        f"/v2/{repo}/manifests/big", content=chunks(), headers={"Content-Type": OCI_MANIFEST}
    )
    assert_error(r, 413, "SIZE_INVALID")


def test_manifest_at_size_limit_is_accepted(client: httpx.Client) -> None:
    repo = "man/limit"
    body = oci_image(client, repo)
    padding = MAX_MANIFEST - len(mutate(body, annotations={"pad": ""}))
    exact = mutate(body, annotations={"pad": "x" * padding})
    assert len(exact) == MAX_MANIFEST
    assert_created(push_manifest(client, repo, "limit", exact), repo, exact)
    assert_pullable(client, repo, ["limit"], exact, OCI_MANIFEST)


def test_put_by_digest_of_other_content_is_400(client: httpx.Client) -> None:
    repo = "man/wrongdigest"
    body = oci_image(client, repo)
    claimed = sha256(body + b" ")
    assert_error(push_manifest(client, repo, claimed, body), 400, "DIGEST_INVALID")
    assert_not_pullable(client, repo, claimed)
    assert_not_pullable(client, repo, sha256(body))


@pytest.mark.parametrize(
    "tag",
    [".hidden", "-dash", "a" * 129, "bad!tag", "bad@tag", "tag%20with%20space", "t%C3%A9"],
)
def test_put_with_invalid_tag_is_manifest_invalid(client: httpx.Client, tag: str) -> None:
    repo = "man/badtag"
    body = oci_image(client, repo)
    assert_error(push_manifest(client, repo, tag, body), 400, "MANIFEST_INVALID")
    r = client.get(f"/v2/{repo}/tags/list")
    assert r.json()["tags"] == []


@pytest.mark.parametrize("tag", ["a" * 128, "_under", "A.b-C_9", "0", "UPPER"])
def test_put_with_valid_edge_tags(client: httpx.Client, tag: str) -> None:
    repo = "man/goodtag"
    body = oci_image(client, repo)
    assert_created(push_manifest(client, repo, tag, body), repo, body)
    assert_pullable(client, repo, [tag], body, OCI_MANIFEST)


@pytest.mark.parametrize("ref", [".INVALID_MANIFEST_NAME", "a" * 129, "bad!tag", "-x"])
def test_get_with_invalid_tag_is_404(client: httpx.Client, ref: str) -> None:
    repo = "man/badref"
    pushed(client, repo, "v1", oci_image(client, repo))
    assert_not_pullable(client, repo, ref)


@pytest.mark.parametrize("ref", ["sha256:totallywrong", "md5:" + "0" * 32, "sha256:" + "a" * 63])
def test_malformed_digest_reference_is_digest_invalid(client: httpx.Client, ref: str) -> None:
    repo = "man/baddigest"
    body = oci_image(client, repo)
    pushed(client, repo, "v1", body)
    assert_error(client.get(f"/v2/{repo}/manifests/{ref}"), 400, "DIGEST_INVALID")
    assert_error(client.head(f"/v2/{repo}/manifests/{ref}"), 400, "DIGEST_INVALID")
    assert_error(client.delete(f"/v2/{repo}/manifests/{ref}"), 400, "DIGEST_INVALID")
    assert_error(push_manifest(client, repo, ref, body), 400, "DIGEST_INVALID")


def test_unknown_manifest_is_404(client: httpx.Client) -> None:
    repo = "man/unknown"
    pushed(client, repo, "v1", oci_image(client, repo))
    assert_not_pullable(client, repo, "nosuchtag")
    assert_not_pullable(client, repo, unknown_digest())


def test_manifest_in_unknown_repository_is_404(client: httpx.Client) -> None:
    for ref in ("latest", unknown_digest()):
        r = client.get(f"/v2/man/nosuchrepo/manifests/{ref}")
        assert r.status_code == 404
        assert r.json()["errors"][0]["code"] in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN")


# Deletion


def test_delete_by_digest_removes_manifest_and_its_tags(client: httpx.Client) -> None:
    repo = "man/deldigest"
    body = oci_image(client, repo)
    digest = pushed(client, repo, "a", body)
    pushed(client, repo, "b", body)
    other = oci_image(client, repo)
    pushed(client, repo, "c", other)
    r = client.delete(f"/v2/{repo}/manifests/{digest}")
    assert_status(r, 202)
    for ref in ("a", "b", digest):
        assert_not_pullable(client, repo, ref)
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == ["c"]
    assert_pullable(client, repo, ["c"], other, OCI_MANIFEST)
    assert_error(client.delete(f"/v2/{repo}/manifests/{digest}"), 404, "MANIFEST_UNKNOWN")


def test_delete_by_tag_removes_only_the_tag(client: httpx.Client) -> None:
    repo = "man/deltag"
    body = oci_image(client, repo)
    digest = pushed(client, repo, "a", body)
    pushed(client, repo, "b", body)
    r = client.delete(f"/v2/{repo}/manifests/a")
    assert_status(r, 202)
    assert_not_pullable(client, repo, "a")
    assert_pullable(client, repo, ["b", digest], body, OCI_MANIFEST)
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == ["b"]
    assert_error(client.delete(f"/v2/{repo}/manifests/a"), 404, "MANIFEST_UNKNOWN")


def test_delete_unknown_manifest_is_404(client: httpx.Client) -> None:
    repo = "man/delunknown"
    pushed(client, repo, "v1", oci_image(client, repo))
    assert_error(client.delete(f"/v2/{repo}/manifests/{unknown_digest()}"), 404, "MANIFEST_UNKNOWN")
    assert_error(client.delete(f"/v2/{repo}/manifests/nosuchtag"), 404, "MANIFEST_UNKNOWN")


@pytest.mark.stores
def test_delete_child_of_index_is_denied_until_index_is_deleted(client: httpx.Client) -> None:
    repo = "man/protect"
    children = [oci_image(client, repo) for _ in range(2)]
    for child in children:
        pushed(client, repo, sha256(child), child)
    index = index_manifest(*platforms(children))
    index_digest = pushed(client, repo, "idx", index, OCI_INDEX)

    for child in children:
        r = client.delete(f"/v2/{repo}/manifests/{sha256(child)}")
        entries = assert_error(r, 409, "DENIED")
        assert index_digest in entries[0]["detail"], entries
        assert_pullable(client, repo, [sha256(child)], child, OCI_MANIFEST)

    assert_status(client.delete(f"/v2/{repo}/manifests/{index_digest}"), 202)
    assert_not_pullable(client, repo, "idx")
    for child in children:
        assert_status(client.delete(f"/v2/{repo}/manifests/{sha256(child)}"), 202)
        assert_not_pullable(client, repo, sha256(child))


def test_delete_tag_of_index_child_is_allowed(client: httpx.Client) -> None:
    repo = "man/protecttag"
    child = oci_image(client, repo)
    pushed(client, repo, "child", child)
    pushed(client, repo, "idx", index_manifest(*platforms([child])), OCI_INDEX)
    assert_status(client.delete(f"/v2/{repo}/manifests/child"), 202)
    assert_pullable(client, repo, [sha256(child)], child, OCI_MANIFEST)


@pytest.mark.stores
def test_delete_child_referenced_by_two_indexes(client: httpx.Client) -> None:
    repo = "man/twoindexes"
    child = oci_image(client, repo)
    pushed(client, repo, sha256(child), child)
    first = pushed(client, repo, "one", index_manifest(*platforms([child])), OCI_INDEX)
    second = pushed(
        client, repo, "two", index_manifest(*platforms([child]), annotations={"n": "2"}), OCI_INDEX
    )
    assert_status(client.delete(f"/v2/{repo}/manifests/{first}"), 202)
    entries = assert_error(client.delete(f"/v2/{repo}/manifests/{sha256(child)}"), 409, "DENIED")
    assert second in entries[0]["detail"]
    assert_status(client.delete(f"/v2/{repo}/manifests/{second}"), 202)
    assert_status(client.delete(f"/v2/{repo}/manifests/{sha256(child)}"), 202)
