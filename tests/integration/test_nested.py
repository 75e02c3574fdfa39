"""Nested-artifact indexes (../shared/design/nested-index.md): registry rules 1, 3, 5, 6, 7, 8."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import Server, error_codes, push_blob, push_image, push_index, push_manifest
from tests.manifests import OCI_INDEX, OCI_MANIFEST, descriptor, index_manifest, nested, sha256

pytestmark = pytest.mark.stores  # run again on S3 + PostgreSQL (see .ci/run)


@pytest.fixture
def ko_build(client: httpx.Client) -> dict[str, object]:
    """myrepo/ko-build with children app1 (image) and app2 (a multi-platform index)."""
    d1, b1 = push_image(client, "myrepo/ko-build/app1", tag="latest")
    amd, amd_body = push_image(client, "myrepo/ko-build/app2")
    _, arm_body = push_image(client, "myrepo/ko-build/app2")
    app2 = index_manifest(
        descriptor(amd_body, platform={"architecture": "amd64", "os": "linux"}),
        descriptor(arm_body, platform={"architecture": "arm64", "os": "linux"}),
    )
    assert push_index(client, "myrepo/ko-build/app2", "v1", app2).status_code == 201
    parent = index_manifest(nested(b1, "app1"), nested(app2, "app2", OCI_INDEX))
    r = push_index(client, "myrepo/ko-build", "build-1", parent)
    assert r.status_code == 201, r.text
    return {
        "app1": (d1, b1),
        "app2": (sha256(app2), app2),
        "amd": (amd, amd_body),
        "parent": (sha256(parent), parent),
    }


def test_discovery_header(client: httpx.Client) -> None:
    assert client.get("/v2/").headers["Ocinest-Nested"] == "1"


def test_children_readable_through_parent(
    client: httpx.Client, ko_build: dict[str, tuple[str, bytes]]
) -> None:
    for key in ("app1", "app2", "amd"):
        digest, body = ko_build[key]
        r = client.get(f"/v2/myrepo/ko-build/manifests/{digest}")
        assert r.status_code == 200
        assert r.content == body
        assert r.headers["Docker-Content-Digest"] == digest
    # Config and layers of a grandchild, through the parent.
    amd = json.loads(ko_build["amd"][1])
    for desc in [amd["config"], *amd["layers"]]:
        r = client.get(f"/v2/myrepo/ko-build/blobs/{desc['digest']}")
        assert r.status_code == 200
        assert sha256(r.content) == desc["digest"]
        assert client.head(f"/v2/myrepo/ko-build/blobs/{desc['digest']}").status_code == 200


def test_child_tags_and_unreferenced_content_stay_invisible(
    client: httpx.Client, ko_build: dict[str, tuple[str, bytes]]
) -> None:
    # app1's tag "latest" is not a tag of the parent.
    r = client.get("/v2/myrepo/ko-build/manifests/latest")
    assert r.status_code == 404
    assert error_codes(r) == ["MANIFEST_UNKNOWN"]
    # An unreferenced manifest and blob in a child repository are not readable through it.
    other, other_body = push_image(client, "myrepo/ko-build/app1", tag="other")
    assert client.get(f"/v2/myrepo/ko-build/manifests/{other}").status_code == 404
    layer = json.loads(other_body)["layers"][0]["digest"]
    r = client.get(f"/v2/myrepo/ko-build/blobs/{layer}")
    assert r.status_code == 404
    assert error_codes(r) == ["BLOB_UNKNOWN"]
    # Nor through a sibling.
    assert (
        client.get(f"/v2/myrepo/ko-build/app2/manifests/{ko_build['app1'][0]}").status_code == 404
    )


def test_missing_children_one_error_each(client: httpx.Client) -> None:
    d1, b1 = push_image(client, "p/c1")
    ghost = b'{"ghost": 1}'
    body = index_manifest(nested(b1, "c2"), nested(ghost, "c3"))
    r = push_index(client, "p", "t", body)
    assert r.status_code == 400
    errors = r.json()["errors"]
    assert [e["code"] for e in errors] == ["MANIFEST_BLOB_UNKNOWN", "MANIFEST_BLOB_UNKNOWN"]
    assert f"manifest {d1} is not in p/c2" in errors[0]["detail"]
    assert f"manifest {sha256(ghost)} is not in p/c3" in errors[1]["detail"]
    assert client.get("/v2/p/manifests/t").status_code == 404


def test_child_must_match_size_and_media_type(client: httpx.Client) -> None:
    d1, b1 = push_image(client, "p/c1")
    wrong_type = index_manifest(nested(b1, "c1", OCI_INDEX))
    r = push_index(client, "p", None, wrong_type)
    assert r.status_code == 400
    assert error_codes(r) == ["MANIFEST_BLOB_UNKNOWN"]
    assert "p/c1@" + d1 in r.json()["errors"][0]["detail"]
    wrong_size = index_manifest({**nested(b1, "c1"), "size": len(b1) + 1})
    r = push_index(client, "p", None, wrong_size)
    assert r.status_code == 400
    assert error_codes(r) == ["MANIFEST_BLOB_UNKNOWN"]


@pytest.mark.parametrize(
    "child",
    [
        "..",
        ".",
        "",
        "a//b",
        "/abs",
        "trailing/",
        "Upper",
        "../sibling",
        "a/../b",
        "a" * 300,
        "bad$char",
    ],
)
def test_invalid_child_paths(client: httpx.Client, child: str) -> None:
    _, b1 = push_image(client, "p/c1")
    r = push_index(client, "p", None, index_manifest(nested(b1, child)))
    assert r.status_code == 400
    assert error_codes(r) == ["MANIFEST_INVALID"]
    assert repr(child) in r.json()["errors"][0]["detail"]


def test_three_levels(client: httpx.Client) -> None:
    leaf, leaf_body = push_image(client, "top/mid/leaf")
    mid = index_manifest(nested(leaf_body, "leaf"))
    assert push_index(client, "top/mid", None, mid).status_code == 201
    top = index_manifest(nested(mid, "mid", OCI_INDEX))
    assert push_index(client, "top", "v1", top).status_code == 201
    r = client.get(f"/v2/top/manifests/{leaf}")
    assert r.status_code == 200 and r.content == leaf_body
    layer = json.loads(leaf_body)["layers"][0]["digest"]
    assert client.get(f"/v2/top/blobs/{layer}").status_code == 200
    tree = client.get("/v2/top/_ocinest/tree/v1").json()
    assert tree["children"][0]["repository"] == "top/mid"
    assert tree["children"][0]["children"][0]["repository"] == "top/mid/leaf"
    assert tree["children"][0]["children"][0]["digest"] == leaf


def test_delete_refused_while_referenced(
    client: httpx.Client, ko_build: dict[str, tuple[str, bytes]]
) -> None:
    app1 = ko_build["app1"][0]
    parent = ko_build["parent"][0]
    r = client.delete(f"/v2/myrepo/ko-build/app1/manifests/{app1}")
    assert r.status_code == 409
    assert error_codes(r) == ["DENIED"]
    assert f"myrepo/ko-build@{parent}" in r.json()["errors"][0]["detail"]
    # Parent first, then the child.
    assert client.delete(f"/v2/myrepo/ko-build/manifests/{parent}").status_code == 202
    assert client.get(f"/v2/myrepo/ko-build/manifests/{app1}").status_code == 404
    assert client.delete(f"/v2/myrepo/ko-build/app1/manifests/{app1}").status_code == 202


def test_referrers_stay_per_repository(
    client: httpx.Client, ko_build: dict[str, tuple[str, bytes]]
) -> None:
    app1, app1_body = ko_build["app1"]
    # Read once before the signature: the registry keeps parsed manifests between trees,
    # and a count it kept would go stale.
    tree = client.get("/v2/myrepo/ko-build/_ocinest/tree/build-1").json()
    assert tree["children"][0]["referrers"] == 0
    empty = push_blob(client, "myrepo/ko-build/app1", b"{}")
    sig = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.example.sig",
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "digest": empty,
                "size": 2,
            },
            "layers": [
                {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}
            ],
            "subject": descriptor(app1_body),
        }
    ).encode()
    assert push_manifest(client, "myrepo/ko-build/app1", sha256(sig), sig).status_code == 201
    at_child = client.get(f"/v2/myrepo/ko-build/app1/referrers/{app1}").json()["manifests"]
    assert [m["digest"] for m in at_child] == [sha256(sig)]
    # Kept at the child, and listed through the parent too (rule 6).
    through = client.get(f"/v2/myrepo/ko-build/referrers/{app1}").json()["manifests"]
    assert through == at_child
    tree = client.get("/v2/myrepo/ko-build/_ocinest/tree/build-1").json()
    assert tree["children"][0]["referrers"] == 1


def test_tree(client: httpx.Client, ko_build: dict[str, tuple[str, bytes]]) -> None:
    parent = ko_build["parent"][0]
    r = client.get("/v2/myrepo/ko-build/_ocinest/tree/build-1")
    assert r.status_code == 200
    assert r.headers["ETag"] == f'"{parent}"'
    tree = r.json()
    assert tree["repository"] == "myrepo/ko-build"
    assert tree["digest"] == parent
    assert tree["mediaType"] == OCI_INDEX
    app1, app2 = tree["children"]
    assert (app1["repository"], app1["digest"], app1["children"]) == (
        "myrepo/ko-build/app1",
        ko_build["app1"][0],
        [],
    )
    assert app1["artifactType"] is None  # a plain image has none; no config fallback here
    assert app2["repository"] == "myrepo/ko-build/app2"
    platforms = [c["platform"]["architecture"] for c in app2["children"]]
    assert platforms == ["amd64", "arm64"]
    assert all(c["repository"] == "myrepo/ko-build/app2" for c in app2["children"])
    # By digest, and a conditional request.
    assert client.get(f"/v2/myrepo/ko-build/_ocinest/tree/{parent}").json() == tree
    r = client.get(
        "/v2/myrepo/ko-build/_ocinest/tree/build-1", headers={"If-None-Match": f'"{parent}"'}
    )
    assert r.status_code == 304
    # A depth the client asks for truncates.
    shallow = client.get("/v2/myrepo/ko-build/_ocinest/tree/build-1", params={"depth": 1}).json()
    assert shallow["children"][1]["truncated"] is True
    assert shallow["children"][1]["children"] == []
    r = client.get("/v2/myrepo/ko-build/_ocinest/tree/nope")
    assert r.status_code == 404 and error_codes(r) == ["MANIFEST_UNKNOWN"]


def test_tree_with_manifests_and_tags(
    client: httpx.Client, ko_build: dict[str, tuple[str, bytes]]
) -> None:
    base = "/v2/myrepo/ko-build/_ocinest/tree/build-1"
    plain = client.get(base)
    assert "manifests" not in plain.json() and "tags" not in plain.text
    r = client.get(base, params={"manifests": "1", "tags": "true"})
    assert r.status_code == 200
    tree = r.json()
    # Every distinct manifest of the tree once, exactly the bytes a GET of it answers.
    contents = tree.pop("manifests")
    arm = json.loads(ko_build["app2"][1])["manifests"][1]["digest"]
    assert set(contents) == {d for d, _ in ko_build.values()} | {arm}
    for digest, text in contents.items():
        assert sha256(text.encode()) == digest
    assert contents[ko_build["parent"][0]].encode() == ko_build["parent"][1]
    assert contents[ko_build["app1"][0]].encode() == ko_build["app1"][1]
    # The rest of the answer is the plain tree, with each node's tags.
    app1, app2 = tree["children"]
    assert (tree.pop("tags"), app1.pop("tags"), app2.pop("tags")) == (
        ["build-1"],
        ["latest"],
        ["v1"],
    )
    assert [c.pop("tags") for c in app2["children"]] == [[], []]
    assert tree == plain.json()

    # Tags move, so they are part of the answer's ETag: a 304 only while they hold.
    etag = r.headers["ETag"]
    assert etag != plain.headers["ETag"] and etag.startswith(f'"{ko_build["parent"][0]};')
    both = {"tags": "1", "manifests": "1"}
    assert client.get(base, params=both, headers={"If-None-Match": etag}).status_code == 304
    other = client.get(base, params={"tags": "1"}, headers={"If-None-Match": etag})
    assert other.status_code == 200
    amd_body = ko_build["amd"][1]
    assert push_manifest(client, "myrepo/ko-build/app2", "amd", amd_body).status_code == 201
    moved = client.get(base, params=both, headers={"If-None-Match": etag})
    assert moved.status_code == 200
    assert moved.json()["children"][1]["children"][0]["tags"] == ["amd"]


def test_tree_bounds(server: Server) -> None:
    server.stop()
    server.configure(tree_max_depth=1, tree_max_nodes=3)
    server.start()
    with httpx.Client(base_url=server.url) as client:
        _, leaf_body = push_image(client, "t/a/b")
        mid = index_manifest(nested(leaf_body, "b"))
        assert push_index(client, "t/a", None, mid).status_code == 201
        top = index_manifest(nested(mid, "a", OCI_INDEX))
        assert push_index(client, "t", "deep", top).status_code == 201
        r = client.get("/v2/t/_ocinest/tree/deep")
        assert r.status_code == 413
        assert error_codes(r) == ["TREE_TOO_LARGE"]
        assert "tree_max_depth" in r.json()["errors"][0]["detail"]
        wide = index_manifest(*[descriptor(push_image(client, "t")[1]) for _ in range(3)])
        assert push_index(client, "t", "wide", wide).status_code == 201
        r = client.get("/v2/t/_ocinest/tree/wide")
        assert r.status_code == 413
        assert "tree_max_nodes" in r.json()["errors"][0]["detail"]
