"""Sparse manifests (`allow_sparse`, off by default): an image manifest or an index whose
non-nested descriptors were never pushed is accepted and served; nested children are always
checked; the tree endpoint, fsck and GC report what is missing and never fail on it. Each with
the manifest under sha256 and sha512, and on a server with authentication."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    Server,
    free_port,
    oci_image,
    push_blob,
    push_image,
    push_index,
    push_manifest,
)
from tests.integration.ocihttp import assert_error, assert_status
from tests.integration.test_auth import creds
from tests.integration.test_auth_hardening import serve
from tests.manifests import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    descriptor,
    digest_of,
    dumps,
    image_manifest,
    index_manifest,
    nested,
    sha256,
)


@pytest.fixture
def sparse(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data", free_port(), args=["--allow-sparse"])  # the flag
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def sparse_client(sparse: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sparse.url, timeout=30) as c:
        yield c


def never_pushed(algorithm: str = "sha256") -> dict[str, object]:
    """The descriptor of a layer no one pushed, under `algorithm`."""
    data = os.urandom(100)
    return {"mediaType": OCI_LAYER, "digest": digest_of(data, algorithm), "size": len(data)}


def sparse_image(client: httpx.Client, repo: str, algorithm: str) -> tuple[bytes, str]:
    """An image whose config is pushed and whose layer never was; its digest."""
    config = dumps({"architecture": "amd64", "os": "linux", "n": os.urandom(8).hex()})
    push_blob(client, repo, config)
    body = image_manifest(descriptor(config, OCI_CONFIG), [never_pushed(algorithm)])
    return body, digest_of(body, algorithm)


def put(
    client: httpx.Client,
    repo: str,
    body: bytes,
    digest: str,
    tag: str,
    media_type: str | None = None,
) -> httpx.Response:
    """Push by digest with the tag as a parameter (sha256), or by tag asking for the
    algorithm (sha512): the two 2026 push paths."""
    kind = {"media_type": media_type} if media_type else {}
    if digest.startswith("sha256:"):
        return push_manifest(client, repo, digest, body, params=[("tag", tag)], **kind)
    return push_manifest(client, repo, tag, body, params=[("digest-algorithm", "sha512")], **kind)


def test_strict_by_default(client: httpx.Client, algorithm: str) -> None:
    repo = f"sparse/strict-{algorithm}"
    body, digest = sparse_image(client, repo, algorithm)
    assert_error(put(client, repo, body, digest, "v1"), 400, "MANIFEST_BLOB_UNKNOWN")
    member, _ = sparse_image(client, repo, algorithm)  # a manifest never pushed
    index = index_manifest(descriptor(member))
    r = put(client, repo, index, digest_of(index, algorithm), "set", OCI_INDEX)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    assert_error(client.get(f"/v2/{repo}/manifests/v1"), 404, "MANIFEST_UNKNOWN")


def test_sparse_manifests_are_accepted_and_served(
    sparse_client: httpx.Client, algorithm: str
) -> None:
    client, repo = sparse_client, f"sparse/on-{algorithm}"
    body, digest = sparse_image(client, repo, algorithm)
    r = put(client, repo, body, digest, "v1")
    assert_status(r, 201)
    assert r.headers["Docker-Content-Digest"] == digest
    for ref in ("v1", digest):
        got = client.get(f"/v2/{repo}/manifests/{ref}")
        assert_status(got, 200)
        assert (got.content, got.headers["Docker-Content-Digest"]) == (body, digest)
    layer = json.loads(body)["layers"][0]["digest"]
    assert_error(client.head(f"/v2/{repo}/blobs/{layer}"), 404, "BLOB_UNKNOWN")
    # An index whose members were never pushed, beside one that was.
    member, member_digest = sparse_image(client, repo, "sha256")
    index = index_manifest(descriptor(member), {**descriptor(body), "digest": digest})
    r = put(client, repo, index, digest_of(index, algorithm), "set", OCI_INDEX)
    assert_status(r, 201)
    tree = client.get(f"/v2/{repo}/_ocinest/tree/set")
    assert_status(tree, 200)
    children = tree.json()["children"]
    assert [c["digest"] for c in children] == [member_digest, digest]
    assert children[0].get("missing") is True and "missing" not in children[1]
    page = client.get(f"/ui/{repo}/-/tree/set")
    assert_status(page, 200)
    assert page.text.count("not pushed (sparse)") == 1
    # The member pushed later fills the gap (and is then held by the index).
    assert_status(push_manifest(client, repo, member_digest, member), 201)
    assert "missing" not in client.get(f"/v2/{repo}/_ocinest/tree/set").json()["children"][0]
    assert_error(client.delete(f"/v2/{repo}/manifests/{member_digest}"), 409, "DENIED")


def test_nested_children_are_checked_even_when_sparse(sparse_client: httpx.Client) -> None:
    client = sparse_client
    child = oci_image(client, "sparse/p/c")  # its blobs pushed, the manifest never
    r = push_index(client, "sparse/p", "v1", index_manifest(nested(child, "c")))
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    # A sparse child, itself present, is fine: only its own descriptors are sparse.
    body, digest = sparse_image(client, "sparse/p/c", "sha256")
    assert_status(push_manifest(client, "sparse/p/c", digest, body), 201)
    assert_status(push_index(client, "sparse/p", "v1", index_manifest(nested(body, "c"))), 201)
    # Through the parent: the child, not the layer it names.
    assert_status(client.get(f"/v2/sparse/p/manifests/{digest}"), 200)
    layer = json.loads(body)["layers"][0]["digest"]
    assert_error(client.get(f"/v2/sparse/p/blobs/{layer}"), 404, "BLOB_UNKNOWN")


def ocinest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocinest", *args], capture_output=True, text=True, timeout=300
    )


def test_fsck_and_gc_report_what_is_missing(sparse: Server, sparse_client: httpx.Client) -> None:
    client, repo = sparse_client, "sparse/gc"
    body, digest = sparse_image(client, repo, "sha512")
    assert_status(put(client, repo, body, digest, "v1"), 201)
    member, member_digest = sparse_image(client, repo, "sha256")
    index = index_manifest(descriptor(member))
    assert_status(put(client, repo, index, sha256(index), "set", OCI_INDEX), 201)
    _, plain = push_image(client, repo)  # untagged: gc takes it
    layer = json.loads(body)["layers"][0]["digest"]

    checked = ocinest("fsck", *sparse.cli_args(), "--json")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    report = json.loads(checked.stdout)
    assert report["clean"] and report["dangling"] == []
    assert sorted(report["sparse"]) == sorted(
        [
            f"{repo}@{digest} -> blob {repo}@{layer}",
            f"{repo}@{sha256(index)} -> manifest {repo}@{member_digest}",
        ]
    )
    text = ocinest("fsck", *sparse.cli_args()).stdout
    assert f"sparse descriptor, never pushed (allowed): {repo}@{digest}" in text

    gc = ocinest("gc", *sparse.cli_args(), "--json", "--delete-untagged", "--grace", "0s")
    assert gc.returncode == 0, gc.stderr
    gone = json.loads(gc.stdout)
    assert [m["digest"] for m in gone["manifests"]] == [sha256(plain)]
    for ref in ("v1", "set"):
        assert_status(client.get(f"/v2/{repo}/manifests/{ref}"), 200)
    # Untagged, the sparse manifests go too, and what they named was never there.
    for tag in ("v1", "set"):
        assert_status(client.delete(f"/v2/{repo}/manifests/{tag}"), 202)
    gc = ocinest("gc", *sparse.cli_args(), "--json", "--delete-untagged", "--grace", "0s")
    assert gc.returncode == 0, gc.stderr
    assert sorted(m["digest"] for m in json.loads(gc.stdout)["manifests"]) == sorted(
        [digest, sha256(index)]
    )
    checked = ocinest("fsck", *sparse.cli_args(), "--json")
    assert checked.returncode == 0 and json.loads(checked.stdout)["sparse"] == []


def test_sparse_with_auth(tmp_path: Path) -> None:
    srv = serve(tmp_path, allow_sparse=True)
    try:
        with httpx.Client(base_url=srv.url, timeout=30, auth=creds("alice")) as alice:
            body, digest = sparse_image(alice, "private/app", "sha512")
            assert_status(put(alice, "private/app", body, digest, "v1"), 201)
            assert_status(alice.get(f"/v2/private/app/manifests/{digest}"), 200)
            secret = os.urandom(200)
            secret_digest = push_blob(alice, "private/app", secret)
        assert httpx.get(f"{srv.url}/v2/private/app/manifests/v1", timeout=30).status_code == 401
        # Bob may push to ko/**, not pull private/: naming a blob of private/ in a sparse
        # manifest of his is accepted, and reads nothing.
        with httpx.Client(base_url=srv.url, timeout=30, auth=creds("bob")) as bob:
            config = dumps({"n": os.urandom(8).hex()})
            push_blob(bob, "ko/app", config)
            layer = {"mediaType": OCI_LAYER, "digest": secret_digest, "size": len(secret)}
            probe = image_manifest(descriptor(config, OCI_CONFIG), [layer])
            assert_status(put(bob, "ko/app", probe, sha256(probe), "v1"), 201)
            assert_error(bob.get(f"/v2/ko/app/blobs/{secret_digest}"), 404, "BLOB_UNKNOWN")
            assert_error(bob.get(f"/v2/private/app/blobs/{secret_digest}"), 403, "DENIED")
    finally:
        srv.stop()


def test_copy_and_tree_of_a_sparse_index(
    tmp_path: Path, sparse: Server, sparse_client: httpx.Client, server: Server
) -> None:
    client, repo = sparse_client, "sparse/copy"
    body, digest = sparse_image(client, repo, "sha256")  # its layer never pushed
    assert_status(push_manifest(client, repo, digest, body), 201)
    member, member_digest = sparse_image(client, repo, "sha256")  # never pushed itself
    _, kept = push_image(client, "sparse/copy/app")
    index = index_manifest(descriptor(member), descriptor(body), nested(kept, "app"))
    assert_status(push_index(client, repo, "v1", index), 201)
    layer = json.loads(body)["layers"][0]["digest"]

    tree = ocinest("tree", f"{sparse.host}/{repo}:v1", "--json")
    assert tree.returncode == 0, tree.stderr
    nodes = json.loads(tree.stdout)["children"]
    assert [n.get("missing", False) for n in nodes] == [True, False, False]
    walked = ocinest("tree", f"{sparse.host}/{repo}:v1", "--walk")
    assert walked.returncode == 0 and "(never pushed)" in walked.stdout, walked.stderr

    # Signing and verifying the tree: every node that is there (the member never pushed is
    # not a node to sign).
    env = {**os.environ, "OCINEST_KEY_PASSWORD": "pw"}
    key = tmp_path / "team"
    cli = [sys.executable, "-m", "ocinest"]
    run = subprocess.run(
        [*cli, "key", "generate", "--output", str(key)], env=env, capture_output=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    ref = f"{sparse.host}/{repo}:v1"
    for command, key_file in (("sign", "team.key"), ("verify", "team.pub")):
        run = subprocess.run(
            [*cli, command, ref, "--key", str(tmp_path / key_file), "-r", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        listed = json.loads(run.stdout)["signed" if command == "sign" else "nodes"]
        assert sorted(n["digest"] for n in listed) == sorted([sha256(index), digest, sha256(kept)])

    other = Server(tmp_path / "other", free_port(), settings={"allow_sparse": True})  # file
    other.start()
    try:
        copied = ocinest("copy", f"{sparse.host}/{repo}:v1", f"{other.host}/copied:v1", "--json")
        assert copied.returncode == 0, copied.stderr
        assert sorted(json.loads(copied.stdout)["missing"]) == [
            f"blob {sparse.host}/{repo}@{layer}",
            f"manifest {sparse.host}/{repo}@{member_digest}",
        ]
        with httpx.Client(base_url=other.url, timeout=30) as there:
            assert there.get("/v2/copied/manifests/v1").content == index
            assert_status(there.get(f"/v2/copied/manifests/{digest}"), 200)
            assert_status(there.get(f"/v2/copied/app/manifests/{sha256(kept)}"), 200)
    finally:
        other.stop()
    # A strict destination refuses the sparse manifest: said plainly, no traceback.
    refused = ocinest("copy", f"{sparse.host}/{repo}:v1", f"{server.host}/copied:v1")
    assert refused.returncode == 1
    assert "a sparse manifest" in refused.stderr and "allow_sparse" in refused.stderr
    assert "Traceback" not in refused.stderr
