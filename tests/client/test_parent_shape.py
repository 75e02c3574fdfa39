"""The parent's shape (`ocinest index create`): a set by default (an artifactType, no
platforms), one multi-platform image with `--platforms`; children from ko's `--image-refs`
file; and the messages of index create, login, delete and the commands' help."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Server, push_image, push_manifest
from tests.manifests import NESTED_ANNOTATION, OCI_INDEX, descriptor, index_manifest, sha256

from .conftest import Cli, Distribution
from .helpers import get_manifest

SET_TYPE = "application/vnd.dev.ocinest.set.v1+json"
RPM_REPO_TYPE = "application/vnd.example.rpm-repository.v1+json"


def push_platform_image(
    client: httpx.Client, repo: str, arch: str, tag: str | None = None, **platform: str
) -> tuple[str, bytes]:
    """A single-platform image whose config says linux/`arch` (and `platform`'s fields)."""
    config = json.dumps({"architecture": arch, "os": "linux", **platform, "repo": repo}).encode()
    return push_image(client, repo, tag=tag, config=config)


def push_ko_build(client: httpx.Client, parent: str, tag: str) -> dict[str, str]:
    """ko's output under `parent`: app1 a two-platform index, app2 arm64, app3 s390x."""
    _, amd_body = push_platform_image(client, f"{parent}/app1", "amd64")
    _, arm_body = push_platform_image(client, f"{parent}/app1", "arm64")
    app1 = index_manifest(
        descriptor(amd_body, platform={"architecture": "amd64", "os": "linux"}),
        descriptor(arm_body, platform={"architecture": "arm64", "os": "linux"}),
    )
    r = push_manifest(client, f"{parent}/app1", tag, app1, OCI_INDEX)
    assert r.status_code == 201, r.text
    return {
        "app1": sha256(app1),
        "app2": push_platform_image(client, f"{parent}/app2", "arm64", tag)[0],
        "app3": push_platform_image(client, f"{parent}/app3", "s390x", tag)[0],
    }


def index_at(base_url: str, repo: str, ref: str) -> dict[str, Any]:
    r = get_manifest(base_url, repo, ref)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def one_line_error(proc: Any, code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ocinest: error: "), proc.stderr
    line: str = lines[0]
    return line


def test_the_default_parent_is_a_set_without_platforms(
    server: Server, client: httpx.Client, cli: Cli
) -> None:
    digests = push_ko_build(client, "myrepo/ko-build", "build-1")
    out = cli(
        "index",
        "create",
        f"{server.host}/myrepo/ko-build:build-1",
        *(f"{app}=:build-1" for app in digests),
        "--json",
    )
    result = json.loads(out.stdout)
    doc = index_at(server.url, "myrepo/ko-build", "build-1")
    assert doc["artifactType"] == SET_TYPE
    assert [(m["annotations"][NESTED_ANNOTATION], m["digest"]) for m in doc["manifests"]] == list(
        digests.items()
    )
    # Not one of the descriptors carries a platform: nothing for a runtime to pick by.
    assert all("platform" not in m for m in doc["manifests"])
    assert [c["platform"] for c in result["children"]] == [None, None, None]
    human = cli("index", "create", f"{server.host}/myrepo/ko-build:build-2", "app2=:build-1")
    assert "set of 1 child pushed" in human.stderr and "children" not in human.stderr
    assert "0 blobs uploaded" in human.stderr and "1 manifest pushed" in human.stderr


def test_artifact_type_names_the_set(server: Server, client: httpx.Client, cli: Cli) -> None:
    push_platform_image(client, "myrpmrepo/hello", "x86_64", "1.0")
    cli(
        "index",
        "create",
        f"{server.host}/myrpmrepo:1.0",
        "hello=:1.0",
        "--artifact-type",
        RPM_REPO_TYPE,
    )
    doc = index_at(server.url, "myrpmrepo", "1.0")
    assert doc["artifactType"] == RPM_REPO_TYPE
    assert "platform" not in doc["manifests"][0]


def test_platforms_builds_one_multi_platform_image(
    server: Server, client: httpx.Client, cli: Cli
) -> None:
    amd, _ = push_platform_image(client, "multi/app/amd64", "amd64", "v1")
    arm, _ = push_platform_image(client, "multi/app/arm64", "arm64", "v1", variant="v8")
    out = cli(
        "index", "create", f"{server.host}/multi/app:v1", "amd64=:v1", "arm64=:v1", "--platforms"
    )
    assert "multi-platform image of 2 children pushed" in out.stderr
    doc = index_at(server.url, "multi/app", "v1")
    assert "artifactType" not in doc
    assert [(m["digest"], m["platform"]) for m in doc["manifests"]] == [
        (amd, {"architecture": "amd64", "os": "linux"}),
        (arm, {"architecture": "arm64", "os": "linux", "variant": "v8"}),
    ]
    assert [m["annotations"][NESTED_ANNOTATION] for m in doc["manifests"]] == ["amd64", "arm64"]
    assert (
        sha256(get_manifest(server.url, "multi/app", "v1").content)
        == out.stdout.split("@")[1].strip()
    )


def test_platforms_refuses_a_multi_platform_child_and_an_artifact(
    server: Server, client: httpx.Client, cli: Cli, tmp_path: Path
) -> None:
    push_ko_build(client, "myrepo/ko-build", "build-1")
    f = tmp_path / "notes.txt"
    f.write_text("not an image\n")
    cli("push", f"{server.host}/myrepo/ko-build/notes:build-1", str(f))
    line = one_line_error(
        cli(
            "index",
            "create",
            f"{server.host}/myrepo/ko-build:build-1",
            "app1=:build-1",
            "app2=:build-1",
            "notes=:build-1",
            "--platforms",
            check=False,
        ),
        2,
    )
    assert "app1 is a multi-platform index" in line
    assert "notes has no os/architecture in its config" in line
    assert "app2" not in line
    assert get_manifest(server.url, "myrepo/ko-build", "build-1").status_code == 404


def test_platforms_refuses_duplicate_platforms_naming_the_children(
    server: Server, client: httpx.Client, cli: Cli
) -> None:
    for name in ("a", "b", "c"):
        push_platform_image(client, f"dup/{name}", "amd64" if name != "b" else "arm64", "v1")
    line = one_line_error(
        cli(
            "index",
            "create",
            f"{server.host}/dup:v1",
            "a=:v1",
            "b=:v1",
            "c=:v1",
            "--platforms",
            check=False,
        ),
        2,
    )
    assert "a and c have the same platform linux/amd64" in line
    assert get_manifest(server.url, "dup", "v1").status_code == 404
    # Without --platforms the same children make a set: nothing refused.
    cli("index", "create", f"{server.host}/dup:v1", "a=:v1", "b=:v1", "c=:v1")
    assert index_at(server.url, "dup", "v1")["artifactType"] == SET_TYPE


def test_platforms_takes_no_artifact_type(server: Server, client: httpx.Client, cli: Cli) -> None:
    push_platform_image(client, "p/a", "amd64", "v1")
    line = one_line_error(
        cli(
            "index",
            "create",
            f"{server.host}/p:v1",
            "a=:v1",
            "--platforms",
            "--artifact-type",
            RPM_REPO_TYPE,
            check=False,
        ),
        2,
    )
    assert "--platforms" in line and "artifactType" in line


def test_same_digest_native_and_compat_for_both_shapes(
    server: Server, distribution: Distribution, client: httpx.Client, cli: Cli
) -> None:
    push_platform_image(client, "src/amd", "amd64", "v1")
    push_platform_image(client, "src/arm", "arm64", "v1")
    children = [f"amd={server.host}/src/amd:v1", f"arm={server.host}/src/arm:v1"]
    for extra in ([], ["--platforms"]):
        native = json.loads(
            cli("index", "create", f"{server.host}/p/b:v1", *children, *extra, "--json").stdout
        )
        compat = json.loads(
            cli(
                "index", "create", f"{distribution.host}/p/b:v1", *children, *extra, "--json"
            ).stdout
        )
        assert (native["mode"], compat["mode"]) == ("native", "compat")
        assert native["digest"] == compat["digest"]
        body = get_manifest(distribution.url, "p/b", "v1").content
        assert body == get_manifest(server.url, "p/b", "v1").content
        assert sha256(body) == compat["digest"]
        doc = json.loads(body)
        if extra:
            assert "artifactType" not in doc and all("platform" in m for m in doc["manifests"])
        else:
            assert doc["artifactType"] == SET_TYPE
            assert all("platform" not in m for m in doc["manifests"])


def test_children_from_a_ko_image_refs_file(
    server: Server, client: httpx.Client, cli: Cli, tmp_path: Path
) -> None:
    digests = push_ko_build(client, "myrepo/ko-build", "build-1")
    tool, _ = push_platform_image(client, "myrepo/ko-build/tools/lint", "amd64")
    extra, _ = push_platform_image(client, "myrepo/ko-build/extra", "amd64", "v9")
    refs = tmp_path / "image-refs"
    refs.write_text(
        f"{server.host}/myrepo/ko-build/app1@{digests['app1']}\n"
        "\n"
        f"{server.host}/myrepo/ko-build/app2:build-1@{digests['app2']}\n"
        f"  {server.host}/myrepo/ko-build/tools/lint@{tool}  \n"
    )
    out = json.loads(
        cli(
            "index",
            "create",
            f"{server.host}/myrepo/ko-build:build-1",
            "extra=:v9",
            "--children-from",
            str(refs),
            "--json",
        ).stdout
    )
    assert [(c["path"], c["digest"]) for c in out["children"]] == [
        ("extra", extra),
        ("app1", digests["app1"]),
        ("app2", digests["app2"]),
        ("tools/lint", tool),
    ]
    doc = index_at(server.url, "myrepo/ko-build", "build-1")
    assert [m["annotations"][NESTED_ANNOTATION] for m in doc["manifests"]] == [
        "extra",
        "app1",
        "app2",
        "tools/lint",
    ]


def test_children_from_refuses_a_line_not_under_the_parent(
    server: Server, second_server: Server, client: httpx.Client, cli: Cli, tmp_path: Path
) -> None:
    digests = push_ko_build(client, "myrepo/ko-build", "build-1")
    parent = f"{server.host}/myrepo/ko-build:build-1"
    for bad in (
        f"{server.host}/myrepo/ko-buildx/app2@{digests['app2']}",  # a sibling, not below
        f"{server.host}/myrepo/ko-build@{digests['app2']}",  # the parent itself
        f"{second_server.host}/myrepo/ko-build/app2@{digests['app2']}",  # another registry
    ):
        refs = tmp_path / "refs"
        refs.write_text(f"{server.host}/myrepo/ko-build/app1@{digests['app1']}\n{bad}\n")
        line = one_line_error(
            cli("index", "create", parent, "--children-from", str(refs), check=False), 2
        )
        assert f"{refs} line 2: {bad} is not under {server.host}/myrepo/ko-build" in line
    refs.write_text("not a reference at all!\n")
    line = one_line_error(
        cli("index", "create", parent, "--children-from", str(refs), check=False), 2
    )
    assert f"{refs} line 1" in line
    # A child given both ways is given twice.
    refs.write_text(f"{server.host}/myrepo/ko-build/app1@{digests['app1']}\n")
    line = one_line_error(
        cli("index", "create", parent, "app1=:build-1", "--children-from", str(refs), check=False),
        2,
    )
    assert "'app1' is given twice" in line
    assert get_manifest(server.url, "myrepo/ko-build", "build-1").status_code == 404


def test_an_untagged_parent_is_said_to_be_untagged(
    server: Server, client: httpx.Client, cli: Cli
) -> None:
    push_platform_image(client, "loose/app", "amd64", "v1")
    out = cli("index", "create", f"{server.host}/loose", "app=:v1")
    pinned = out.stdout.strip()
    digest = pinned.split("@", 1)[1]
    assert pinned == f"{server.host}/loose@{digest}"
    assert f"the index is untagged: only {pinned} reaches it" in out.stderr
    assert get_manifest(server.url, "loose", digest).status_code == 200
    assert get_manifest(server.url, "loose", "latest").status_code == 404
    # With --json the JSON object on stdout; with --progress json, only JSON lines on stderr.
    machine = cli(
        "index", "create", f"{server.host}/loose", "app=:v1", "--json", "--progress", "json"
    )
    assert json.loads(machine.stdout)["reference"] == pinned
    assert all("event" in json.loads(line) for line in machine.stderr.splitlines())
    quiet = cli("index", "create", f"{server.host}/loose", "app=:v1", "--json", "--quiet")
    assert quiet.stderr == "" and json.loads(quiet.stdout)["reference"] == pinned


def test_login_to_a_registry_without_auth_stores_nothing(
    server: Server, cli: Cli, private_credentials: Path
) -> None:
    out = cli("login", server.host, "-u", "alice", "--password-stdin", stdin="anything\n")
    assert out.stdout.strip() == f"{server.host} does not ask for credentials; nothing stored"
    assert "Login succeeded" not in out.stdout
    assert not (private_credentials / ".config" / "ocinest" / "auth.json").exists()


def test_a_refused_delete_prints_the_registrys_message(
    server: Server, client: httpx.Client, cli: Cli
) -> None:
    digests = push_ko_build(client, "myrepo/ko-build", "build-1")
    pinned = cli(
        "index", "create", f"{server.host}/myrepo/ko-build:build-1", "app2=:build-1"
    ).stdout.strip()
    index_digest = pinned.split("@", 1)[1]
    line = one_line_error(
        cli("delete", f"{server.host}/myrepo/ko-build/app2@{digests['app2']}", check=False), 1
    )
    assert "is referenced by index" in line and index_digest in line
    assert "requested access to the resource is denied" not in line


def test_concurrency_and_mode_only_where_they_apply(cli: Cli) -> None:
    def options(*command: str) -> str:
        return cli(*command, "--help").stdout

    for command in (["copy"], ["pull"], ["push"], ["index", "create"]):
        assert "--concurrency" in options(*command), command
    for command in (["login"], ["tree"], ["delete"]):
        assert "--concurrency" not in options(*command), command
    for command in (["copy"], ["delete"], ["index", "create"]):
        assert "--mode" in options(*command), command
    for command in (["login"], ["tree"], ["pull"], ["push"]):
        assert "--mode" not in options(*command), command
