"""Retention inside `ocinest gc` (`retention`): tags the rules do not keep go, then what only
they held; immutable tags, tags inside the grace window and children of kept parents stay."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Server, StoredBlobs, push_image, push_index
from tests.integration.test_gc import fsck, gc, layers_of, ocinest, readable
from tests.manifests import index_manifest, nested, platforms, sha256

pytestmark = pytest.mark.stores  # run again on S3 + PostgreSQL (see .ci/run)

RETENTION = [
    {"repositories": ["ci/**"], "keep": [{"tags": ["v.*"], "newest": 2}]},
    {"repositories": ["ci/set"], "keep": [{"newest": 1}]},
    {"repositories": ["ci/set/*"], "keep": []},  # every child tag, unless pinned
    {"repositories": ["win/recent"], "keep": [{"pushed_within": "1h"}]},
    {"repositories": ["win/none"], "keep": [{"pushed_within": "0s"}]},
]
IMMUTABLE = [{"repositories": ["ci/**"], "tags": ["stable"]}]


@pytest.fixture
def rules(server: Server) -> Server:
    server.stop()
    server.configure(retention=RETENTION, immutable_tags=IMMUTABLE)
    server.start()
    return server


def tags(report: dict[str, object]) -> list[str]:
    return [f"{t['repository']}:{t['tag']}" for t in report["tags"]]  # type: ignore[attr-defined]


def manifests(report: dict[str, object]) -> set[str]:
    return {m["digest"] for m in report["manifests"]}  # type: ignore[attr-defined]


def test_retention_keeps_the_newest_the_recent_and_the_immutable(
    rules: Server, client: httpx.Client
) -> None:
    images = {tag: push_image(client, "ci/app", tag) for tag in ("v1", "v2", "stable", "nightly")}
    images |= {tag: push_image(client, "ci/app", tag) for tag in ("v3", "v4")}
    for repo in ("win/recent", "win/none", "other/app"):
        images[repo] = push_image(client, repo, "t")
    # An index whose untagged platform images go with it, whatever gc_delete_untagged says.
    _, amd = push_image(client, "ci/app")
    _, arm = push_image(client, "ci/app")
    multi = index_manifest(*platforms([amd, arm]))
    assert push_index(client, "ci/app", "multi", multi).status_code == 201
    doomed_tags = ["ci/app:multi", "ci/app:nightly", "ci/app:v1", "ci/app:v2", "win/none:t"]
    doomed = {images[key][0] for key in ("nightly", "v1", "v2", "win/none")}
    doomed |= {sha256(body) for body in (multi, amd, arm)}

    # Inside the grace window nothing goes; past it, a dry run lists and deletes nothing.
    report = gc(rules)
    assert (report["tags"], report["manifests"]) == ([], [])
    report = gc(rules, "--grace", "0s", "--dry-run")
    assert tags(report) == doomed_tags
    assert manifests(report) == doomed
    text = ocinest("gc", *rules.cli_args(), "--grace", "0s", "--dry-run")
    assert text.returncode == 0, text.stderr
    assert f"tag ci/app:v1 {images['v1'][0]}" in text.stdout.splitlines()
    assert client.get("/v2/ci/app/tags/list").json()["tags"] == sorted(
        ["v1", "v2", "v3", "v4", "stable", "nightly", "multi"]
    )

    report = gc(rules, "--grace", "0s")
    assert (tags(report), manifests(report)) == (doomed_tags, doomed)
    assert client.get("/v2/ci/app/tags/list").json()["tags"] == ["stable", "v3", "v4"]
    for digest in doomed:
        repo = "win/none" if digest == images["win/none"][0] else "ci/app"
        assert client.get(f"/v2/{repo}/manifests/{digest}").status_code == 404
    gone_blobs = {b["digest"] for b in report["blobs"]}  # type: ignore[attr-defined]
    assert set(layers_of(images["v1"][1])) <= gone_blobs
    assert not StoredBlobs(rules).exists(layers_of(images["v1"][1])[1])
    for tag in ("v3", "v4", "stable"):
        assert readable(client, "ci/app", images[tag][1])
    for repo in ("win/recent", "other/app"):
        assert readable(client, repo, images[repo][1])
    assert fsck(rules).returncode == 0
    # Nothing more to do.
    assert gc(rules, "--grace", "0s")["tags"] == []


def test_a_child_pinned_by_a_kept_parent_keeps_its_tag(rules: Server, client: httpx.Client) -> None:
    # Each build's child is tagged in ci/set/app, whose own rule keeps no tag at all.
    _, old_child = push_image(client, "ci/set/app", "c0")
    _, new_child = push_image(client, "ci/set/app", "c1")
    old = index_manifest(nested(old_child, "app"))
    new = index_manifest(nested(new_child, "app"))
    assert push_index(client, "ci/set", "build-0", old).status_code == 201
    assert push_index(client, "ci/set", "build-1", new).status_code == 201
    # An immutable parent pins its child the same way.
    _, pinned_child = push_image(client, "ci/set/app", "c2")
    pinned = index_manifest(nested(pinned_child, "app"))
    assert push_index(client, "ci/set", "stable", pinned).status_code == 201

    report = gc(rules, "--grace", "0s")
    # build-0 is not the newest: it goes, and its child with it. build-1 (the newest) and
    # stable (immutable) keep theirs, tags included.
    assert tags(report) == ["ci/set:build-0", "ci/set/app:c0"]
    assert manifests(report) == {sha256(old), sha256(old_child)}
    assert client.get("/v2/ci/set/app/tags/list").json()["tags"] == ["c1", "c2"]
    assert readable(client, "ci/set", new_child) and readable(client, "ci/set/app", new_child)
    assert readable(client, "ci/set", pinned_child)
    assert client.get(f"/v2/ci/set/app/manifests/{sha256(old_child)}").status_code == 404
    # Once its parent has gone, a child is judged by its own rules.
    assert push_index(client, "ci/set", "build-2", index_manifest()).status_code == 201
    report = gc(rules, "--grace", "0s")
    assert tags(report) == ["ci/set:build-1", "ci/set/app:c1"]
    assert manifests(report) == {sha256(new), sha256(new_child)}
    assert fsck(rules).returncode == 0
