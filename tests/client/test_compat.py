"""Compat mode against a live CNCF distribution 2.8 (Debian's docker-registry), which knows
nothing of nested indexes: the same index bytes, children in P/c and also in P by digest."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import Server, push_image
from tests.manifests import NESTED_ANNOTATION, sha256

from .conftest import Cli, Distribution
from .helpers import Tree, assert_tree_at, get_manifest


def test_distribution_rejects_a_nested_index_without_compat(
    distribution: Distribution, ko_tree: Tree
) -> None:
    """Why compat mode exists: distribution looks for the children in P itself."""
    with httpx.Client(base_url=distribution.url) as c:
        r = c.put(
            "/v2/p/manifests/v1",
            content=ko_tree.root[1],
            headers={"Content-Type": "application/vnd.oci.image.index.v1+json"},
        )
    assert r.status_code == 400
    assert "MANIFEST_BLOB_UNKNOWN" in r.text or "MANIFEST_INVALID" in r.text


def test_copy_ocinest_to_distribution_to_ocinest(
    server: Server,
    second_server: Server,
    distribution: Distribution,
    ko_tree: Tree,
    cli: Cli,
) -> None:
    src = f"{server.host}/myrepo/ko-build:build-1"
    out = json.loads(
        cli("copy", "--referrers", "--json", src, f"{distribution.host}/ci/ko-build").stdout
    )
    assert out["mode"] == "compat"  # auto: distribution has no Ocinest-Nested header
    assert out["digest"] == ko_tree.digest
    # Children in their nested repositories...
    assert_tree_at(distribution.url, "ci/ko-build", ko_tree, ref="build-1")
    # ...and also in the parent by digest (untagged), with their blobs, for every other tool.
    for _, digest, body in ko_tree.manifests.values():
        r = get_manifest(distribution.url, "ci/ko-build", digest)
        assert r.status_code == 200 and r.content == body
    for digest in ko_tree.blobs:
        assert httpx.head(f"{distribution.url}/v2/ci/ko-build/blobs/{digest}").status_code == 200
    tags = httpx.get(f"{distribution.url}/v2/ci/ko-build/tags/list").json()["tags"]
    assert tags == ["build-1"]
    # The signature went to ci/ko-build/app1, listed with the referrers tag schema.
    app1 = ko_tree.manifests["app1"][1]
    fallback = get_manifest(distribution.url, "ci/ko-build/app1", "sha256-" + app1.split(":")[1])
    assert fallback.status_code == 200
    assert [m["digest"] for m in fallback.json()["manifests"]] == [ko_tree.signature[0]]  # type: ignore[index]

    # The tree on distribution is drawn by walking it.
    tree = json.loads(cli("tree", "--json", f"{distribution.host}/ci/ko-build:build-1").stdout)
    assert [c["repository"] for c in tree["children"]] == [
        f"{distribution.host}/ci/ko-build/app1",
        f"{distribution.host}/ci/ko-build/app2",
    ]

    # And back to an ocinest, native: same root, same children, in nested repositories.
    back = json.loads(
        cli(
            "copy",
            "--referrers",
            "--json",
            f"{distribution.host}/ci/ko-build:build-1",
            f"{second_server.host}/back/ko-build",
        ).stdout
    )
    assert back["mode"] == "native" and back["digest"] == ko_tree.digest
    assert_tree_at(second_server.url, "back/ko-build", ko_tree, ref="build-1")
    # The children's tags went there and back (from distribution, which has no tree
    # endpoint, by listing its tags).
    assert out["stats"]["tags_pushed"] == back["stats"]["tags_pushed"] == 2
    for key in ("app1", "app2"):
        r = get_manifest(second_server.url, f"back/ko-build/{key}", "latest")
        assert r.status_code == 200 and sha256(r.content) == ko_tree.manifests[key][1]
    r = httpx.get(f"{second_server.url}/v2/back/ko-build/app1/referrers/{app1}")
    assert [m["digest"] for m in r.json()["manifests"]] == [ko_tree.signature[0]]  # type: ignore[index]
    # Compat's copies in the parent were not needed natively: the parent holds only the index.
    tree_back = httpx.get(f"{second_server.url}/v2/back/ko-build/_ocinest/tree/build-1").json()
    assert [c["repository"] for c in tree_back["children"]] == [
        "back/ko-build/app1",
        "back/ko-build/app2",
    ]


def test_index_create_gives_the_same_digest_native_and_compat(
    server: Server, distribution: Distribution, client: httpx.Client, cli: Cli, tmp_path: Path
) -> None:
    a1, _ = push_image(client, "src/app1", tag="v1")
    a2, _ = push_image(client, "src/app2", tag="v1")
    children = [f"app1={server.host}/src/app1:v1", f"app2={server.host}/src/app2:v1"]
    native = json.loads(
        cli("index", "create", f"{server.host}/p/build:b1", *children, "--json").stdout
    )
    compat = json.loads(
        cli("index", "create", f"{distribution.host}/p/build:b1", *children, "--json").stdout
    )
    assert native["mode"] == "native" and compat["mode"] == "compat"
    assert native["digest"] == compat["digest"]
    body_native = get_manifest(server.url, "p/build", "b1").content
    body_compat = get_manifest(distribution.url, "p/build", "b1").content
    assert body_native == body_compat and sha256(body_compat) == compat["digest"]
    # Forcing compat on ocinest gives the same bytes too.
    forced = json.loads(
        cli(
            "index", "create", "--mode", "compat", f"{server.host}/p/forced:b1", *children, "--json"
        ).stdout
    )
    assert forced["digest"] == native["digest"]
    for digest, path in ((a1, "app1"), (a2, "app2")):
        assert get_manifest(distribution.url, f"p/build/{path}", digest).status_code == 200
        assert get_manifest(distribution.url, "p/build", digest).status_code == 200
    doc = json.loads(body_compat)
    assert [m["annotations"][NESTED_ANNOTATION] for m in doc["manifests"]] == ["app1", "app2"]


def test_native_mode_is_refused_where_the_extension_is_missing(
    server: Server, distribution: Distribution, ko_tree: Tree, cli: Cli
) -> None:
    out = cli(
        "copy",
        "--mode",
        "native",
        f"{server.host}/myrepo/ko-build:build-1",
        f"{distribution.host}/x/y",
        check=False,
    )
    assert out.returncode == 1
    assert "Ocinest-Nested" in out.stderr and "--mode compat" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_delete_recursive_in_compat_mode_removes_the_copies_in_the_parent(
    server: Server, distribution: Distribution, ko_tree: Tree, cli: Cli
) -> None:
    cli("copy", f"{server.host}/myrepo/ko-build:build-1", f"{distribution.host}/ci/ko-build")
    out = json.loads(
        cli("delete", "--recursive", "--json", f"{distribution.host}/ci/ko-build:build-1").stdout
    )
    assert out["deleted"][0] == f"{distribution.host}/ci/ko-build@{ko_tree.digest}"
    assert out["missing"] == [] and out["kept"] == []
    assert get_manifest(distribution.url, "ci/ko-build", ko_tree.digest).status_code == 404
    for path, digest, _ in ko_tree.manifests.values():
        assert get_manifest(distribution.url, f"ci/ko-build/{path}", digest).status_code == 404
        assert get_manifest(distribution.url, "ci/ko-build", digest).status_code == 404


def test_push_files_and_discover_on_distribution(
    distribution: Distribution, cli: Cli, tmp_path: Path
) -> None:
    for name in ("hello", "world"):
        f = tmp_path / f"{name}-1.0.rpm"
        f.write_bytes(name.encode() * 100)
        cli(
            "push",
            f"{distribution.host}/myrpmrepo/{name}:1.0",
            f"{f}:application/x-rpm",
            "--artifact-type",
            "application/x-rpm",
        )
    out = json.loads(
        cli(
            "index", "create", f"{distribution.host}/myrpmrepo:1.0", "--discover", "1.0", "--json"
        ).stdout
    )
    assert [c["path"] for c in out["children"]] == ["hello", "world"]
    assert all(c["artifactType"] == "application/x-rpm" for c in out["children"])
    assert get_manifest(distribution.url, "myrpmrepo", "1.0").status_code == 200
