"""`ocinest rpm push` and `pull`: RPM repositories as nested trees, on ocinest."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from ocinest.client import rpm
from tests.client.conftest import Cli
from tests.conftest import Server, push_artifact, push_index
from tests.manifests import index_manifest, nested
from tests.rpmkit import build_rpm

PACKAGE_TYPE = "application/vnd.dev.ocinest.rpm.package.v1"
REPOSITORY_TYPE = "application/vnd.dev.ocinest.rpm.repository.v1"


def push(cli: Cli, server: Server, *args: str, check: bool = True):
    return cli("rpm", "push", "--plain-http", "--json", *args, check=check)


def test_push_layout_annotations_and_same_digest(
    cli: Cli, server: Server, client: httpx.Client, tmp_path: Path
) -> None:
    rpms = tmp_path / "rpms"
    build_rpm(rpms, "hello", "1.0")
    build_rpm(rpms, "Py_Thing", "2.1", "3")
    result_file = tmp_path / "result"
    out = push(
        cli, server, f"{server.host}/myrpmrepo", str(rpms), "--result-file", str(result_file)
    )
    first = json.loads(out.stdout)
    assert result_file.read_text() == first["reference"]
    assert first["reference"].startswith(f"{server.host}/myrpmrepo@sha256:")

    index = client.get(f"/v2/myrpmrepo/manifests/{first['digest']}").json()
    assert index["artifactType"] == REPOSITORY_TYPE
    paths = [m["annotations"]["dev.ocinest.repository"] for m in index["manifests"]]
    assert paths == ["hello", "py-thing", "repodata"]
    assert client.get("/v2/myrpmrepo/manifests/latest").json() == index

    assert client.get("/v2/myrpmrepo/hello/tags/list").json()["tags"] == ["1.0-1.noarch"]
    thing = client.get("/v2/myrpmrepo/py-thing/manifests/2.1-3.noarch").json()
    assert thing["artifactType"] == PACKAGE_TYPE
    (layer,) = thing["layers"]
    assert layer["mediaType"] == "application/x-rpm"
    assert layer["annotations"]["org.opencontainers.image.title"] == "Py_Thing-2.1-3.noarch.rpm"
    notes = thing["annotations"]
    assert notes["dev.ocinest.rpm.nevra"] == "Py_Thing-0:2.1-3.noarch"
    assert notes["org.opencontainers.image.licenses"] == "MIT"
    assert notes["org.opencontainers.image.description"] == "A test package"

    repodata = client.get(f"/v2/myrpmrepo/repodata/manifests/{index['manifests'][2]['digest']}")
    titles = [x["annotations"]["org.opencontainers.image.title"] for x in repodata.json()["layers"]]
    assert titles[0] == "repodata/repomd.xml"
    repomd = client.get(f"/_ocinest/files/myrpmrepo@{first['digest']}/repodata/repomd.xml").text
    for title in titles[1:]:
        assert title.startswith("repodata/") and f'href="{title}"' in repomd
    assert not any("sqlite" in t for t in titles)  # no database files unless asked

    # The same RPMs again (copied elsewhere, new file times): the same digest, nothing new.
    again = tmp_path / "again"
    again.mkdir()
    for built in sorted(rpms.glob("*.rpm")):
        (again / built.name).write_bytes(built.read_bytes())
    second = json.loads(push(cli, server, f"{server.host}/myrpmrepo", str(again)).stdout)
    assert second["digest"] == first["digest"]
    assert second["stats"]["blobs_uploaded"] == 0


def test_from_adds_a_package_pushing_only_what_changed(
    cli: Cli, server: Server, client: httpx.Client, tmp_path: Path
) -> None:
    hello = build_rpm(tmp_path / "a", "hello", "1.0")
    world = build_rpm(tmp_path / "b", "world", "1.0")
    first = json.loads(push(cli, server, f"{server.host}/repo:v1", str(hello)).stdout)
    added = json.loads(
        push(cli, server, f"{server.host}/repo:v2", str(world), "--from", first["reference"]).stdout
    )
    assert [p["nevra"] for p in added["packages"]] == [
        "hello-0:1.0-1.noarch",
        "world-0:1.0-1.noarch",
    ]
    # hello's blob and manifest were there: only world, the metadata and the index are new.
    assert added["stats"]["bytes_uploaded"] < world.stat().st_size + 20000
    fresh = json.loads(push(cli, server, f"{server.host}/fresh", str(hello), str(world)).stdout)
    index = client.get(f"/v2/repo/manifests/{added['digest']}").content
    assert client.get(f"/v2/fresh/manifests/{fresh['digest']}").content == index


def test_pull_writes_a_folder(cli: Cli, server: Server, tmp_path: Path) -> None:
    hello = build_rpm(tmp_path / "rpms", "hello", "1.0")
    pushed = json.loads(push(cli, server, f"{server.host}/myrpmrepo", str(hello)).stdout)
    out = tmp_path / "out"
    cli("rpm", "pull", "--plain-http", pushed["reference"], str(out))
    assert (out / hello.name).read_bytes() == hello.read_bytes()
    assert (out / "repodata" / "repomd.xml").is_file()
    assert len(list((out / "repodata").iterdir())) == 4  # repomd.xml, primary, filelists, other


def test_bad_input_is_named_and_nothing_is_pushed(
    cli: Cli, server: Server, client: httpx.Client, tmp_path: Path
) -> None:
    good = build_rpm(tmp_path / "good", "hello", "1.0")
    bogus = tmp_path / "bogus.rpm"
    bogus.write_bytes(b"not an rpm at all")
    r = push(cli, server, f"{server.host}/bad", str(good), str(bogus), check=False)
    assert r.returncode == 2 and "bogus.rpm is not an RPM package" in r.stderr
    # The same NEVRA from two different files.
    twin = build_rpm(tmp_path / "twin", "hello", "1.0", summary="Another build")
    r = push(cli, server, f"{server.host}/bad", str(good), str(twin), check=False)
    assert r.returncode == 2 and str(good) in r.stderr and str(twin) in r.stderr
    assert "the same NEVRA" in r.stderr
    # Two names that map to one child path.
    a = build_rpm(tmp_path / "c1", "foo_bar", "1.0")
    b = build_rpm(tmp_path / "c2", "Foo-Bar", "1.0")
    r = push(cli, server, f"{server.host}/bad", str(a), str(b), check=False)
    assert r.returncode == 2 and "'foo_bar'" in r.stderr and "'Foo-Bar'" in r.stderr
    r = push(cli, server, f"{server.host}/bad", str(tmp_path / "missing.rpm"), check=False)
    assert r.returncode == 4 and "missing.rpm" in r.stderr
    r = push(cli, server, f"{server.host}/bad", str(tmp_path / "good" / "none"), check=False)
    assert r.returncode == 4
    assert client.get("/v2/_catalog").json()["repositories"] == []


REPOMD = """<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo">
  <data type="primary"><location href="{href}"/></data>
</repomd>
"""


def test_metadata_targets_are_checked(tmp_path: Path) -> None:
    (tmp_path / "repodata").mkdir()
    repomd = tmp_path / "repodata" / "repomd.xml"
    (tmp_path / "repodata" / "primary.xml.gz").write_bytes(b"x")
    repomd.write_text(REPOMD.format(href="repodata/primary.xml.gz"))
    assert rpm.metadata_files(tmp_path) == ["repodata/repomd.xml", "repodata/primary.xml.gz"]
    for href, problem in [
        ("repodata/missing.xml.gz", "repodata/missing.xml.gz, which is missing"),
        ("../outside.xml.gz", "'..' segment"),
        ("/etc/passwd", "not a relative path"),
    ]:
        repomd.write_text(REPOMD.format(href=href))
        with pytest.raises(rpm.RpmError) as caught:
            rpm.metadata_files(tmp_path)
        assert str(repomd) in caught.value.message and problem in caught.value.message
    repomd.write_text("<repomd")
    with pytest.raises(rpm.RpmError, match="cannot read"):
        rpm.metadata_files(tmp_path)


def test_child_paths_and_tags() -> None:
    assert rpm.child_path_of("Py_Thing++2") == "py-thing-2"
    assert rpm.child_path_of("hello") == "hello"
    assert rpm.child_path_of("_x_") == "x"


def test_pull_refuses_a_title_that_repeats(
    cli: Cli, server: Server, client: httpx.Client, tmp_path: Path
) -> None:
    _, b1 = push_artifact(client, "clash/a", {"repodata/repomd.xml": b"one"})
    _, b2 = push_artifact(client, "clash/b", {"repodata/repomd.xml": b"two"})
    assert push_index(client, "clash", "v1", index_manifest(nested(b1, "a"), nested(b2, "b")))
    _, b3 = push_artifact(client, "escape/a", {"../outside": b"one"})
    assert push_index(client, "escape", "v1", index_manifest(nested(b3, "a")))
    out = tmp_path / "out"
    r = cli("rpm", "pull", "--plain-http", f"{server.host}/clash:v1", str(out), check=False)
    assert r.returncode == 1 and "'repodata/repomd.xml' names two files" in r.stderr
    r = cli("rpm", "pull", "--plain-http", f"{server.host}/escape:v1", str(out), check=False)
    assert r.returncode == 1 and "'../outside'" in r.stderr
    assert not (tmp_path / "outside").exists() and not out.exists()
