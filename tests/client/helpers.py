"""Building nested trees with plain HTTP (httpx), independent of the client under test, and
reading them back."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from tests.conftest import push_blob, push_image, push_manifest
from tests.manifests import (
    EMPTY_JSON,
    OCI_INDEX,
    OCI_MANIFEST,
    descriptor,
    index_manifest,
    nested,
    sha256,
)

SIG_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
T = TypeVar("T")

ACCEPT = ", ".join(
    [
        OCI_INDEX,
        OCI_MANIFEST,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


def arun(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@dataclass
class Tree:
    """A tree pushed to a registry: what each manifest is and where it went."""

    parent: str
    tag: str
    root: tuple[str, bytes]
    manifests: dict[str, tuple[str, str, bytes]] = field(
        default_factory=dict
    )  # key -> repo, digest, body
    blobs: set[str] = field(default_factory=set)
    signature: tuple[str, bytes] | None = None

    @property
    def digest(self) -> str:
        return self.root[0]


def push_signature(
    client: httpx.Client, repo: str, subject: str, subject_body: bytes
) -> tuple[str, bytes]:
    """A cosign-like signature artifact whose subject is `subject`."""
    payload = os.urandom(48)
    push_blob(client, repo, EMPTY_JSON)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIG_TYPE,
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": sha256(EMPTY_JSON),
            "size": 2,
        },
        "layers": [
            {
                "mediaType": "application/octet-stream",
                "digest": push_blob(client, repo, payload),
                "size": len(payload),
            }
        ],
        "subject": descriptor(subject_body),
    }
    body = json.dumps(doc).encode()
    r = push_manifest(client, repo, sha256(body), body)
    assert r.status_code == 201, r.text
    return sha256(body), body


def build_tree(client: httpx.Client, parent: str, tag: str, *, signed: bool = True) -> Tree:
    """parent:tag -> app1 (image, with a signature) and app2 (linux/amd64 + linux/arm64)."""
    d1, b1 = push_image(client, f"{parent}/app1", tag="latest")
    amd, amd_body = push_image(client, f"{parent}/app2")
    arm, arm_body = push_image(client, f"{parent}/app2")
    app2 = index_manifest(
        descriptor(amd_body, platform={"architecture": "amd64", "os": "linux"}),
        descriptor(arm_body, platform={"architecture": "arm64", "os": "linux"}),
    )
    r = push_manifest(client, f"{parent}/app2", "latest", app2, OCI_INDEX)
    assert r.status_code == 201, r.text
    body = index_manifest(nested(b1, "app1"), nested(app2, "app2", OCI_INDEX))
    r = push_manifest(client, parent, tag, body, OCI_INDEX)
    assert r.status_code == 201, r.text
    tree = Tree(parent, tag, (sha256(body), body))
    tree.manifests = {
        "app1": ("app1", d1, b1),
        "app2": ("app2", sha256(app2), app2),
        "amd": ("app2", amd, amd_body),
        "arm": ("app2", arm, arm_body),
    }
    for _, _, mbody in [tree.manifests["app1"], tree.manifests["amd"], tree.manifests["arm"]]:
        doc = json.loads(mbody)
        tree.blobs.update(d["digest"] for d in [doc["config"], *doc["layers"]])
    if signed:
        tree.signature = push_signature(client, f"{parent}/app1", d1, b1)
    return tree


def get_manifest(
    base_url: str, repo: str, ref: str, auth: tuple[str, str] | None = None
) -> httpx.Response:
    return httpx.get(
        f"{base_url}/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT}, auth=auth, timeout=30
    )


def assert_tree_at(base_url: str, parent: str, tree: Tree, *, ref: str | None = None) -> None:
    """The tree is at `parent` of the registry at `base_url`: same root bytes, children in
    their nested repositories with the same digests, every blob there."""
    r = get_manifest(base_url, parent, ref or tree.digest)
    assert r.status_code == 200, r.text
    assert r.content == tree.root[1]
    for key, (path, digest, body) in tree.manifests.items():
        r = get_manifest(base_url, f"{parent}/{path}", digest)
        assert r.status_code == 200, (key, r.text)
        assert r.content == body
        if key in ("app1", "amd", "arm"):
            doc = json.loads(body)
            for d in [doc["config"], *doc["layers"]]:
                b = httpx.head(f"{base_url}/v2/{parent}/{path}/blobs/{d['digest']}", timeout=30)
                assert b.status_code == 200, (key, d["digest"])
