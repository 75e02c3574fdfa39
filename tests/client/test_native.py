"""The client against a live `ocinest serve` (native mode): tree, copy, pull to an OCI layout
and back, delete, index create, push of files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import httpx

from tests.conftest import Server, push_image
from tests.manifests import NESTED_ANNOTATION, OCI_INDEX, sha256

from .conftest import Cli
from .helpers import SIG_TYPE, Tree, assert_tree_at, get_manifest


def test_tree_from_the_endpoint_and_from_a_walk_agree(
    server: Server, ko_tree: Tree, cli: Cli
) -> None:
    ref = f"{server.host}/myrepo/ko-build:build-1"
    endpoint = json.loads(cli("tree", ref, "--json").stdout)
    walked = json.loads(cli("tree", ref, "--json", "--walk").stdout)

    def shape(node: dict[str, object]) -> object:
        return (
            node["digest"],
            node["mediaType"],
            node["size"],
            node["path"],
            node["platform"],
            node["artifactType"],
            [shape(c) for c in node["children"]],  # type: ignore[attr-defined]
        )

    assert shape(endpoint) == shape(walked)
    assert endpoint["digest"] == ko_tree.digest
    assert [c["childPath"] for c in endpoint["children"]] == ["app1", "app2"]
    assert endpoint["children"][0]["repository"] == f"{server.host}/myrepo/ko-build/app1"
    assert endpoint["children"][0]["referrers"] == 1  # the signature, counted by the registry

    human = cli("tree", ref).stdout
    assert human.splitlines()[0].startswith(f"{ref}  {ko_tree.digest}  index")
    assert "├── app1  " in human and "└── app2  " in human
    assert "linux/amd64" in human and "linux/arm64" in human
    assert "Traceback" not in human

    shallow = json.loads(cli("tree", ref, "--json", "--depth", "1").stdout)
    app2 = shallow["children"][1]
    assert app2["truncated"] is True and app2["children"] == []


def test_copy_within_a_registry_relocates_children_and_mounts_blobs(
    server: Server, ko_tree: Tree, cli: Cli
) -> None:
    out = cli(
        "copy", f"{server.host}/myrepo/ko-build:build-1", f"{server.host}/team/release:v1", "--json"
    )
    result = json.loads(out.stdout)
    assert result["reference"] == f"{server.host}/team/release@{ko_tree.digest}"
    assert result["mode"] == "native"
    stats = result["stats"]
    assert stats["blobs_uploaded"] == 0 and stats["bytes_uploaded"] == 0
    assert stats["blobs_mounted"] == len(ko_tree.blobs)
    assert_tree_at(server.url, "team/release", ko_tree, ref="v1")


def test_copy_between_registries_with_referrers(
    server: Server, second_server: Server, ko_tree: Tree, cli: Cli
) -> None:
    src = f"{server.host}/myrepo/ko-build:build-1"
    out = cli("copy", "--referrers", src, f"{second_server.host}/mirror/ko-build")
    assert out.stdout.strip() == f"{second_server.host}/mirror/ko-build@{ko_tree.digest}"
    # Not a terminal: no progress bars; a line per manifest placed (the root, app1, app2 and
    # its two platform images, the signature), then the summary.
    lines = out.stderr.splitlines()
    assert "\x1b" not in out.stderr and lines[-1].startswith("copied (native mode): ")
    assert len(lines) == 7
    assert all(line.startswith("pushed manifest sha256:") for line in lines[:-1])
    assert_tree_at(second_server.url, "mirror/ko-build", ko_tree, ref="build-1")
    # The signature of app1 is a referrer of app1 in mirror/ko-build/app1.
    app1 = ko_tree.manifests["app1"][1]
    r = httpx.get(f"{second_server.url}/v2/mirror/ko-build/app1/referrers/{app1}")
    assert r.status_code == 200
    assert [m["digest"] for m in r.json()["manifests"]] == [ko_tree.signature[0]]  # type: ignore[index]
    assert r.json()["manifests"][0]["artifactType"] == SIG_TYPE


def test_copy_into_an_ocinest_holding_the_blobs_elsewhere_mounts_them(
    server: Server, second_server: Server, ko_tree: Tree, cli: Cli
) -> None:
    # The blobs are in `server` (under myrepo/ko-build/*); the copy comes from another
    # registry, so no `from` is known: ocinest mounts from any repository the caller can pull.
    cli("copy", f"{server.host}/myrepo/ko-build:build-1", f"{second_server.host}/mirror/kb")
    out = cli("copy", f"{second_server.host}/mirror/kb:build-1", f"{server.host}/team/kb", "--json")
    stats = json.loads(out.stdout)["stats"]
    assert stats["blobs_uploaded"] == 0 and stats["bytes_uploaded"] == 0
    assert stats["blobs_mounted"] == len(ko_tree.blobs)
    assert_tree_at(server.url, "team/kb", ko_tree, ref="build-1")


def test_copy_carries_the_childrens_tags(
    server: Server, second_server: Server, ko_tree: Tree, cli: Cli
) -> None:
    src = f"{server.host}/myrepo/ko-build:build-1"
    out = cli("copy", src, f"{second_server.host}/mirror/kb")
    assert "2 child tags set" in out.stderr
    for key in ("app1", "app2"):
        _, digest, _ = ko_tree.manifests[key]
        r = httpx.head(f"{second_server.url}/v2/mirror/kb/{key}/manifests/latest")
        assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest
    again = json.loads(cli("copy", src, f"{second_server.host}/mirror/kb", "--json").stdout)
    assert again["stats"]["tags_pushed"] == 0
    cli("copy", "--no-child-tags", src, f"{second_server.host}/bare/kb")
    r = httpx.head(f"{second_server.url}/v2/bare/kb/app1/manifests/latest")
    assert r.status_code == 404


def test_pull_to_a_layout_and_push_back_keeps_every_digest(
    server: Server, second_server: Server, ko_tree: Tree, cli: Cli, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    out = cli("pull", f"{server.host}/myrepo/ko-build:build-1", "-o", str(layout))
    assert out.stdout.strip() == f"oci:{layout}:build-1@{ko_tree.digest}"

    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"] == [
        {
            "mediaType": OCI_INDEX,
            "digest": ko_tree.digest,
            "size": len(ko_tree.root[1]),
            "annotations": {"org.opencontainers.image.ref.name": "build-1"},
        }
    ]
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}

    def blob(digest: str) -> bytes:
        return (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()

    # Every manifest and blob is there, byte for byte; nested paths are in the root's bytes.
    assert blob(ko_tree.digest) == ko_tree.root[1]
    root = json.loads(blob(ko_tree.digest))
    assert [m["annotations"][NESTED_ANNOTATION] for m in root["manifests"]] == ["app1", "app2"]
    for _, digest, body in ko_tree.manifests.values():
        assert blob(digest) == body
    for digest in ko_tree.blobs:
        assert sha256(blob(digest)) == digest
    assert not (layout / "blobs" / ".tmp").exists()

    # skopeo reads the layout.
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{layout}:build-1"], capture_output=True, check=True
    ).stdout
    assert raw == ko_tree.root[1]

    # And it goes back, nesting restored, to another registry.
    out = cli("copy", f"oci:{layout}:build-1", f"{second_server.host}/restored/ko-build")
    assert out.stdout.strip() == f"{second_server.host}/restored/ko-build@{ko_tree.digest}"
    assert_tree_at(second_server.url, "restored/ko-build", ko_tree, ref="build-1")


def test_pull_with_referrers_and_push_back(
    server: Server, second_server: Server, ko_tree: Tree, cli: Cli, tmp_path: Path
) -> None:
    layout = tmp_path / "layout"
    cli("pull", "--referrers", f"{server.host}/myrepo/ko-build:build-1", "-o", str(layout))
    sig_digest, sig_body = ko_tree.signature  # type: ignore[misc]
    assert (layout / "blobs" / "sha256" / sig_digest.split(":")[1]).read_bytes() == sig_body
    cli("copy", "--referrers", f"oci:{layout}:build-1", f"{second_server.host}/back/ko-build")
    app1 = ko_tree.manifests["app1"][1]
    r = httpx.get(f"{second_server.url}/v2/back/ko-build/app1/referrers/{app1}")
    assert [m["digest"] for m in r.json()["manifests"]] == [sig_digest]


def test_delete_recursive_removes_parent_then_children(
    server: Server, ko_tree: Tree, cli: Cli, client: httpx.Client
) -> None:
    # Deleting a referenced child alone is refused by the registry.
    app1 = ko_tree.manifests["app1"][1]
    refused = cli("delete", f"{server.host}/myrepo/ko-build/app1@{app1}", check=False)
    assert refused.returncode == 1
    assert "DENIED" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    out = json.loads(
        cli("delete", "--recursive", "--json", f"{server.host}/myrepo/ko-build:build-1").stdout
    )
    assert out["deleted"][0] == f"{server.host}/myrepo/ko-build@{ko_tree.digest}"
    assert len(out["deleted"]) == 5 and out["kept"] == [] and out["missing"] == []
    assert get_manifest(server.url, "myrepo/ko-build", ko_tree.digest).status_code == 404
    for path, digest, _ in ko_tree.manifests.values():
        assert get_manifest(server.url, f"myrepo/ko-build/{path}", digest).status_code == 404


def test_index_create_from_children_that_live_elsewhere(
    server: Server, second_server: Server, client: httpx.Client, cli: Cli, tmp_path: Path
) -> None:
    # app1: already in place (pushed by "ko"); app2: in another repository of the same
    # registry; app3: on another registry; rpm: a file artifact in an OCI layout.
    a1, a1_body = push_image(client, "builds/ko/app1", tag="latest")
    a2, a2_body = push_image(client, "scratch/app2", tag="v2")
    with httpx.Client(base_url=second_server.url) as other:
        a3, a3_body = push_image(other, "elsewhere/app3", tag="v3")
    rpm = tmp_path / "hello-1.0.rpm"
    rpm.write_bytes(os.urandom(5000))
    cli(
        "push",
        f"oci:{tmp_path / 'rpms'}:hello",
        f"{rpm}:application/x-rpm",
        "--artifact-type",
        "application/x-rpm",
    )

    result_file = tmp_path / "result"
    out = cli(
        "index",
        "create",
        f"{server.host}/builds/ko:run-7",
        "app1=:latest",
        f"app2={server.host}/scratch/app2:v2",
        f"app3={second_server.host}/elsewhere/app3:v3",
        f"rpms/hello=oci:{tmp_path / 'rpms'}:hello",
        "--annotation",
        "org.opencontainers.image.revision=abc123",
        "--result-file",
        str(result_file),
        "--json",
    )
    result = json.loads(out.stdout)
    pinned = result_file.read_text()
    assert pinned == result["reference"] == f"{server.host}/builds/ko@{result['digest']}"
    assert result["mode"] == "native"

    r = get_manifest(server.url, "builds/ko", "run-7")
    assert r.status_code == 200
    assert sha256(r.content) == result["digest"]
    doc = json.loads(r.content)
    assert doc["annotations"] == {"org.opencontainers.image.revision": "abc123"}
    descs = doc["manifests"]
    assert [d["annotations"][NESTED_ANNOTATION] for d in descs] == [
        "app1",
        "app2",
        "app3",
        "rpms/hello",
    ]
    assert [d["digest"] for d in descs[:3]] == [a1, a2, a3]
    # A set: artifactType from the artifact, no platform on any descriptor.
    assert doc["artifactType"] == "application/vnd.dev.ocinest.set.v1+json"
    assert descs[3]["artifactType"] == "application/x-rpm"
    assert all("platform" not in d for d in descs)
    for d, body in zip(descs[:3], [a1_body, a2_body, a3_body], strict=True):
        got = get_manifest(
            server.url, f"builds/ko/{d['annotations'][NESTED_ANNOTATION]}", d["digest"]
        )
        assert got.status_code == 200 and got.content == body
    assert get_manifest(server.url, "builds/ko/rpms/hello", descs[3]["digest"]).status_code == 200

    # The same children give the same index, byte for byte: run it again.
    again = cli(
        "index",
        "create",
        f"{server.host}/builds/ko:run-8",
        "app1=:latest",
        f"app2={server.host}/scratch/app2:v2",
        f"app3={second_server.host}/elsewhere/app3:v3",
        f"rpms/hello=oci:{tmp_path / 'rpms'}:hello",
        "--annotation",
        "org.opencontainers.image.revision=abc123",
    )
    assert again.stdout.strip() == pinned


def test_index_create_discover(server: Server, client: httpx.Client, cli: Cli) -> None:
    digests = {
        name: push_image(client, f"myrepo/ko-build/{name}", tag="build-9")[0]
        for name in ("b", "a", "c")
    }
    push_image(client, "myrepo/ko-build/other", tag="build-8")  # another build: not taken
    push_image(client, "myrepo/ko-buildx/a", tag="build-9")  # not under the parent
    out = json.loads(
        cli(
            "index",
            "create",
            f"{server.host}/myrepo/ko-build:build-9",
            "--discover",
            "build-9",
            "--json",
        ).stdout
    )
    assert [(c["path"], c["digest"]) for c in out["children"]] == [
        (n, digests[n]) for n in ("a", "b", "c")
    ]


def test_push_files_as_an_artifact(server: Server, cli: Cli, tmp_path: Path) -> None:
    a = tmp_path / "a.txt"
    a.write_text("hello\n")
    b = tmp_path / "b.bin"
    b.write_bytes(os.urandom(3000))
    out = json.loads(
        cli(
            "push",
            f"{server.host}/myrpmrepo/files:1.0",
            str(a),
            f"{b}:application/x-thing",
            "--artifact-type",
            "application/vnd.example.files",
            "--annotation",
            "k=v",
            "--json",
        ).stdout
    )
    manifest = out["manifest"]
    assert manifest["artifactType"] == "application/vnd.example.files"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert manifest["annotations"] == {"k": "v"}
    assert [
        (m["annotations"]["org.opencontainers.image.title"], m["mediaType"])
        for m in manifest["layers"]
    ] == [
        ("a.txt", "application/vnd.oci.image.layer.v1.tar"),
        ("b.bin", "application/x-thing"),
    ]
    r = get_manifest(server.url, "myrpmrepo/files", "1.0")
    assert sha256(r.content) == out["digest"]
    layer = httpx.get(f"{server.url}/v2/myrpmrepo/files/blobs/{manifest['layers'][1]['digest']}")
    assert layer.content == b.read_bytes()


def test_login_writes_a_private_auth_file_and_logout_forgets(
    basic_distribution: object, cli: Cli, private_credentials: Path, tmp_path: Path
) -> None:
    host = basic_distribution.host  # type: ignore[attr-defined]
    out = cli("login", host, "-u", "alice", "--password-stdin", stdin="s3cret\n")
    path = private_credentials / ".config" / "ocinest" / "auth.json"
    assert str(path) in out.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert host in json.loads(path.read_text())["auths"]
    f = tmp_path / "f.txt"
    f.write_text("x")
    cli("push", f"{host}/private/files:v1", str(f))
    assert "Removed" in cli("logout", host).stdout
    denied = cli("push", f"{host}/private/files:v2", str(f), check=False)
    assert denied.returncode == 3
    assert cli("logout", host, check=False).returncode == 4
