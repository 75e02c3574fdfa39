"""Immutable tags (`immutable_tags`): once pushed, such a tag never moves and cannot be
deleted, nor can the manifest it points at; an immutable parent tag pins its nested tree."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Server, push_image, push_index, push_manifest
from tests.integration.ocihttp import assert_error, assert_status
from tests.integration.test_gc import gc, readable
from tests.integration.test_manifest_tags import tags_of, unpushed
from tests.manifests import ALGORITHMS, OCI_INDEX, index_manifest, nested, sha256

pytestmark = pytest.mark.stores  # run again on S3 + PostgreSQL (see .ci/run)

RULES = [
    {"repositories": ["rel/**"], "tags": ["v[0-9]+", "stable"]},
    {"repositories": ["rel/scratch"], "tags": []},  # the longer pattern wins
]


@pytest.fixture
def immutable(server: Server) -> Server:
    server.stop()
    server.configure(immutable_tags=RULES)
    server.start()
    return server


def refusal(r: httpx.Response) -> str:
    """The message of a refused push or delete (409 DENIED), which stock clients print."""
    assert r.status_code == 409, r.text
    (error,) = r.json()["errors"]
    assert error["code"] == "DENIED"
    message: str = error["message"]
    assert "is immutable" in message
    return message


def test_an_immutable_tag_is_never_moved_or_deleted(
    immutable: Server, client: httpx.Client
) -> None:
    digest, body = push_image(client, "rel/app", "v1")
    # The same bytes again: accepted.
    assert push_manifest(client, "rel/app", "v1", body).status_code == 201
    # Other content under that tag: refused, saying which tag and where it points.
    _, other = push_image(client, "rel/app")
    message = refusal(push_manifest(client, "rel/app", "v1", other))
    assert "rel/app:v1" in message and digest in message
    assert client.get("/v2/rel/app/manifests/v1").content == body
    # Neither the tag nor its manifest can be deleted.
    refusal(client.delete("/v2/rel/app/manifests/v1"))
    assert "v1" in refusal(client.delete(f"/v2/rel/app/manifests/{digest}"))
    assert readable(client, "rel/app", body)
    # An immutable tag never pushed is simply unknown.
    assert client.delete("/v2/rel/app/manifests/v2").status_code == 404
    # Tags the rules do not match move and go as usual: a regex matches the whole tag...
    for tag in ("v1-rc", "latest"):
        assert push_manifest(client, "rel/app", tag, body).status_code == 201
        assert push_manifest(client, "rel/app", tag, other).status_code == 201
        assert client.delete(f"/v2/rel/app/manifests/{tag}").status_code == 202
    # ...and so do tags where a longer pattern makes nothing immutable.
    _, scratch = push_image(client, "rel/scratch", "v1")
    assert push_manifest(client, "rel/scratch", "v1", scratch).status_code == 201
    assert client.delete(f"/v2/rel/scratch/manifests/{sha256(scratch)}").status_code == 202
    # A manifest pushed by digest, untagged, is deleted as usual.
    assert client.delete(f"/v2/rel/app/manifests/{sha256(other)}").status_code == 202


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_an_immutable_tag_parameter_refuses_the_whole_push(
    immutable: Server, client: httpx.Client, algorithm: str
) -> None:
    repo = f"rel/params-{algorithm}"
    first, _ = push_image(client, repo, "v1")
    body, digest = unpushed(client, repo, algorithm)
    params = [("tag", "latest"), ("tag", "v1"), ("tag", "v2")]
    message = refusal(push_manifest(client, repo, digest, body, params=params))
    assert f"{repo}:v1" in message and first in message
    assert tags_of(client, repo) == ["v1"]
    assert_error(client.get(f"/v2/{repo}/manifests/{digest}"), 404, "MANIFEST_UNKNOWN")
    # Immutable tags not pushed yet are set like any other, with the rest.
    r = push_manifest(client, repo, digest, body, params=[("tag", "latest"), ("tag", "v2")])
    assert_status(r, 201)
    assert r.headers.get_list("OCI-Tag") == ["latest", "v2"]
    assert tags_of(client, repo) == ["latest", "v1", "v2"]


def test_an_immutable_parent_tag_pins_its_nested_tree(
    immutable: Server, client: httpx.Client
) -> None:
    _, leaf = push_image(client, "rel/set/app/leaf", "latest")
    mid = index_manifest(nested(leaf, "leaf"))
    assert push_index(client, "rel/set/app", None, mid).status_code == 201
    top = index_manifest(nested(mid, "app", OCI_INDEX))
    assert push_index(client, "rel/set", "v1", top).status_code == 201
    # The parent's tag and manifest cannot go, so the children referenced cannot either.
    refusal(client.delete("/v2/rel/set/manifests/v1"))
    refusal(client.delete(f"/v2/rel/set/manifests/{sha256(top)}"))
    for repo, body in [("rel/set/app", mid), ("rel/set/app/leaf", leaf)]:
        r = client.delete(f"/v2/{repo}/manifests/{sha256(body)}")
        assert r.status_code == 409 and r.json()["errors"][0]["code"] == "DENIED"
    # A child's own mutable tag may go; the pinned tree stays, through GC too.
    assert client.delete("/v2/rel/set/app/leaf/manifests/latest").status_code == 202
    gc(immutable, "--delete-untagged", "--grace", "0s")
    assert readable(client, "rel/set", leaf)
    assert client.get(f"/v2/rel/set/manifests/{sha256(mid)}").status_code == 200
