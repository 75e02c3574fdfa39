"""The MetaStore protocol (ocinest.storage.meta), on every metadata backend: blob links and
their visibility, manifests and tags, listings and their pages, referrers, nested reach,
upload sessions, garbage collection, consistency checks, and concurrent writers."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from ocinest.oci.digest import Digest
from ocinest.oci.manifest import Manifest, parse_manifest
from ocinest.storage.errors import (
    BlobUnknown,
    ManifestReferenced,
    ManifestUnknown,
    ReachTooLarge,
    ReferencesInvalid,
)
from ocinest.storage.meta import (
    GCRun,
    Inventory,
    MetaStore,
    Referrer,
    StoredManifest,
    TagRecord,
    Upload,
)
from tests.manifests import OCI_MANIFEST
from tests.storage.conftest import OpenMeta
from tests.storage.content import (
    blob_digests,
    descriptor,
    image,
    image_manifest,
    index_manifest,
    link,
    push_image,
)

SIG = "application/vnd.example.signature.v1+json"
SBOM = "application/vnd.example.sbom.v1+json"


def as_stored(repository: str, manifest: Manifest) -> StoredManifest:
    return StoredManifest(repository, str(manifest.digest), manifest.media_type, manifest.raw)


def missing(error: ReferencesInvalid) -> list[bool]:
    """For each problem, whether its target is missing (else: not what it says)."""
    return [p.missing for p in error.problems]


async def all_pages(meta: MetaStore, page: int, repository: str | None = None) -> list[list[str]]:
    """Tags of `repository` (the catalog when None) page by page, each after the last seen."""
    pages: list[list[str]] = []
    last = None
    while True:
        if repository is None:
            names = await meta.list_repositories(page, last)
        else:
            found = await meta.list_tags(repository, page, last)
            assert found is not None
            names = found
        if not names:
            return pages
        pages.append(names)
        last = names[-1]


# Blobs


async def test_a_linked_blob_is_visible_only_in_its_repository(meta: MetaStore) -> None:
    data = os.urandom(10)
    digest = Digest.of(data)
    assert await meta.blob_size("a/x", digest) is None
    await link(meta, "a/x", data)
    assert await meta.blob_size("a/x", digest) == 10
    assert await meta.blob_size("b/y", digest) is None
    assert await meta.blob_size("a", digest) is None
    assert await meta.repositories_with_blob(digest, 10) == ["a/x"]
    assert await meta.all_blobs() == {str(digest): 10}


async def test_mount_links_a_stored_blob_into_another_repository(meta: MetaStore) -> None:
    data = os.urandom(10)
    digest = Digest.of(data)
    await link(meta, "src", data)
    assert await meta.link_blob("dst", digest, 10) is True
    assert await meta.blob_size("dst", digest) == 10
    assert await meta.repositories_with_blob(digest, 10) == ["dst", "src"]
    assert await meta.repositories_with_blob(digest, 1) == ["dst"]


async def test_mount_of_a_blob_never_stored_fails(meta: MetaStore) -> None:
    digest = Digest.of(b"never stored")
    assert await meta.link_blob("dst", digest, 12) is False
    assert await meta.blob_size("dst", digest) is None
    assert await meta.repositories_with_blob(digest, 10) == []
    assert await meta.list_repositories(10, None) == []


async def test_link_publishes_inside_its_transaction_and_ends_the_upload(meta: MetaStore) -> None:
    digest = Digest.of(b"content")
    await meta.create_upload(Upload("u1", "repo", time.time()))
    published: list[bool] = []
    assert await meta.link_blob("repo", digest, 7, lambda: published.append(True), "u1")
    assert published == [True]
    assert await meta.blob_size("repo", digest) == 7
    assert await meta.get_upload("u1") is None


async def test_a_failed_publish_links_nothing_and_keeps_the_upload(meta: MetaStore) -> None:
    digest = Digest.of(b"content")
    upload = Upload("u1", "repo", time.time())
    await meta.create_upload(upload)

    def fail() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await meta.link_blob("repo", digest, 7, fail, "u1")
    assert await meta.blob_size("repo", digest) is None
    assert await meta.all_blobs() == {}
    assert await meta.get_upload("u1") == upload


async def test_unlink_hides_the_blob(meta: MetaStore) -> None:
    data = os.urandom(10)
    digest = Digest.of(data)
    await link(meta, "a", data)
    await link(meta, "b", data)
    await meta.unlink_blob("a", digest)
    assert await meta.blob_size("a", digest) is None
    assert await meta.blob_size("b", digest) == 10
    for repository in ("a", "nowhere"):
        with pytest.raises(BlobUnknown):
            await meta.unlink_blob(repository, digest)


async def test_a_blob_a_manifest_references_stays_visible_until_the_manifest_goes(
    meta: MetaStore,
) -> None:
    manifest = await push_image(meta, "repo", "v1")
    config, layer = blob_digests(manifest)
    await meta.unlink_blob("repo", layer)
    assert await meta.blob_size("repo", layer) == 64
    await meta.delete_manifest("repo", manifest.digest)
    assert await meta.blob_size("repo", layer) is None
    assert await meta.blob_size("repo", config) is not None  # still linked


# Manifests and tags


async def test_a_manifest_is_found_by_tag_and_by_digest(meta: MetaStore) -> None:
    manifest = await push_image(meta, "repo", "v1")
    expected = as_stored("repo", manifest)
    assert await meta.get_manifest("repo", "v1") == expected
    assert await meta.get_manifest("repo", str(manifest.digest)) == expected
    assert await meta.get_manifest("repo", "v2") is None
    assert await meta.get_manifest("repo", str(Digest.of(b"other"))) is None
    assert await meta.get_manifest("elsewhere", str(manifest.digest)) is None
    assert await meta.list_tags("repo", 10, None) == ["v1"]
    [(tag, pushed)] = await meta.list_tags_pushed("repo", 10, None) or []
    assert tag == "v1" and time.time() - 60 < pushed <= time.time()
    assert await meta.all_manifests() == [("repo", str(manifest.digest), manifest.raw)]


async def test_an_untagged_manifest_is_found_by_digest_only(meta: MetaStore) -> None:
    manifest = await push_image(meta, "repo")
    assert await meta.get_manifest("repo", str(manifest.digest)) == as_stored("repo", manifest)
    assert await meta.list_tags("repo", 10, None) == []


async def test_a_manifest_under_sha512_is_found_by_that_digest(meta: MetaStore) -> None:
    plain = await image(meta, "repo")
    manifest = parse_manifest(plain.raw, plain.media_type, Digest.of(b"", "sha512"))
    await meta.put_manifest("repo", manifest, ["v1"])
    assert manifest.digest == Digest.of(plain.raw, "sha512")
    assert await meta.get_manifest("repo", str(manifest.digest)) == as_stored("repo", manifest)
    assert await meta.get_manifest("repo", str(plain.digest)) is None
    # The same bytes under both algorithms are two manifests: either goes alone.
    await meta.put_manifest("repo", plain, ["v2"])
    await meta.delete_manifest("repo", manifest.digest)
    assert await meta.get_manifest("repo", "v2") == as_stored("repo", plain)
    assert await meta.get_manifest("repo", "v1") is None


async def test_a_manifest_whose_blobs_are_missing_is_refused(meta: MetaStore) -> None:
    await link(meta, "other", b"elsewhere")  # linked, but in another repository
    manifest = image_manifest(
        {"digest": str(Digest.of(b"elsewhere")), "size": 9},
        [{"mediaType": "application/octet-stream", "digest": str(Digest.of(b"x")), "size": 1}],
    )
    with pytest.raises(ReferencesInvalid) as caught:
        await meta.put_manifest("repo", manifest, ["v1"])
    assert missing(caught.value) == [True, True]
    assert await meta.get_manifest("repo", str(manifest.digest)) is None
    assert await meta.list_tags("repo", 10, None) is None  # nothing was created


async def test_a_descriptor_with_the_wrong_size_is_refused(meta: MetaStore) -> None:
    config = await link(meta, "repo", b"config")
    manifest = image_manifest({**config, "size": 7}, [])
    with pytest.raises(ReferencesInvalid) as caught:
        await meta.put_manifest("repo", manifest, [])
    assert missing(caught.value) == [False]
    assert await meta.get_manifest("repo", str(manifest.digest)) is None


async def test_pushing_the_same_manifest_again_only_adds_the_tag(meta: MetaStore) -> None:
    manifest = await push_image(meta, "repo", "v1")
    await meta.put_manifest("repo", manifest, ["v2"])
    await meta.put_manifest("repo", manifest, [])
    assert await meta.list_tags("repo", 10, None) == ["v1", "v2"]
    assert await meta.all_manifests() == [("repo", str(manifest.digest), manifest.raw)]


async def test_a_tag_moves_to_the_manifest_pushed_last(meta: MetaStore) -> None:
    first = await push_image(meta, "repo", "latest")
    second = await push_image(meta, "repo", "latest")
    assert await meta.get_manifest("repo", "latest") == as_stored("repo", second)
    assert await meta.get_manifest("repo", str(first.digest)) == as_stored("repo", first)
    assert await meta.list_tags("repo", 10, None) == ["latest"]


async def test_a_manifest_read_again_shows_every_write_of_any_store_instance(
    open_meta: OpenMeta,
) -> None:
    """Reads may be cached (SQLite keeps hot manifests while its database is unchanged): a
    tag moved, a manifest deleted or a tag deleted through another instance, as by another
    registry process, shows in the very next read."""
    reader, writer = open_meta(), open_meta()
    first = await push_image(writer, "repo", "latest")
    for _ in range(2):  # the second read may come from the cache
        assert await reader.get_manifest("repo", "latest") == as_stored("repo", first)
        assert await reader.get_manifest("repo", str(first.digest)) == as_stored("repo", first)
    second = await push_image(writer, "repo", "latest")
    assert await reader.get_manifest("repo", "latest") == as_stored("repo", second)
    await writer.delete_manifest("repo", first.digest)
    assert await reader.get_manifest("repo", str(first.digest)) is None
    await writer.delete_tag("repo", "latest")
    assert await reader.get_manifest("repo", "latest") is None
    # and the reader's own writes, through its own writer
    await reader.put_manifest("repo", second, ["latest"])
    assert await reader.get_manifest("repo", "latest") == as_stored("repo", second)
    await reader.delete_tag("repo", "latest")
    assert await reader.get_manifest("repo", "latest") is None


async def test_delete_tag_keeps_the_manifest(meta: MetaStore) -> None:
    manifest = await push_image(meta, "repo", "v1")
    await meta.delete_tag("repo", "v1")
    assert await meta.get_manifest("repo", "v1") is None
    assert await meta.get_manifest("repo", str(manifest.digest)) is not None
    for repository, tag in [("repo", "v1"), ("nowhere", "v1")]:
        with pytest.raises(ManifestUnknown):
            await meta.delete_tag(repository, tag)


async def test_delete_manifest_removes_it_and_its_tags(meta: MetaStore) -> None:
    manifest = await push_image(meta, "repo", "v1")
    await meta.put_manifest("repo", manifest, ["v2"])
    kept = await push_image(meta, "repo", "v3")
    await meta.delete_manifest("repo", manifest.digest)
    assert await meta.get_manifest("repo", str(manifest.digest)) is None
    assert await meta.get_manifest("repo", "v1") is None
    assert await meta.list_tags("repo", 10, None) == ["v3"]
    assert await meta.get_manifest("repo", "v3") == as_stored("repo", kept)
    for repository in ("repo", "nowhere"):
        with pytest.raises(ManifestUnknown):
            await meta.delete_manifest(repository, manifest.digest)


class Refused(Exception):
    """What a caller's hook raises to refuse a write."""


def refuse(what: str) -> None:
    raise Refused(what)


def refuse_move(tag: str, current: str) -> None:
    raise Refused(f"{tag} points at {current}")


async def test_a_hook_on_a_moving_tag_can_refuse_the_push(meta: MetaStore) -> None:
    first = await push_image(meta, "repo", "v1")
    # The same manifest again: the tag does not move, the hook is not called, and the tag
    # keeps the time it last moved.
    (before,) = await meta.all_tags()
    await meta.put_manifest("repo", first, ["v1"], refuse_move)
    assert await meta.all_tags() == [before]
    other = await image(meta, "repo")
    with pytest.raises(Refused, match=f"v1 points at {first.digest}"):
        await meta.put_manifest("repo", other, ["v1"], refuse_move)
    assert await meta.get_manifest("repo", "v1") == as_stored("repo", first)
    assert await meta.get_manifest("repo", str(other.digest)) is None  # nothing stored
    await meta.put_manifest("repo", other, ["v2"], refuse_move)  # a new tag does not move
    await meta.put_manifest("repo", other, ["v1"])  # without the hook, it moves
    (moved, _) = sorted(await meta.all_tags(), key=lambda t: t.name)
    assert (moved.digest, moved.updated_at > before.updated_at) == (str(other.digest), True)


async def test_several_tags_move_together_or_not_at_all(meta: MetaStore) -> None:
    first = await push_image(meta, "repo", "pinned")
    other = await image(meta, "repo")
    # One refused tag among several: nothing is stored, no tag is made or moved.
    with pytest.raises(Refused, match=f"pinned points at {first.digest}"):
        await meta.put_manifest("repo", other, ["new", "pinned", "newer"], refuse_move)
    assert [t.name for t in await meta.all_tags()] == ["pinned"]
    assert await meta.get_manifest("repo", str(other.digest)) is None
    await meta.put_manifest("repo", other, ["a", "b", "pinned"])
    tags = sorted(await meta.all_tags(), key=lambda t: t.name)
    assert [(t.name, t.digest) for t in tags] == [
        (n, str(other.digest)) for n in ["a", "b", "pinned"]
    ]


async def test_a_hook_on_each_tag_can_refuse_a_manifest_delete(meta: MetaStore) -> None:
    manifest = await push_image(meta, "repo", "v1")
    await meta.put_manifest("repo", manifest, ["v2"])
    seen: list[str] = []

    def hook(tag: str) -> None:
        seen.append(tag)
        if tag == "v2":
            refuse(tag)

    with pytest.raises(Refused):
        await meta.delete_manifest("repo", manifest.digest, hook)
    assert seen == ["v1", "v2"]
    assert await meta.list_tags("repo", 10, None) == ["v1", "v2"]
    await meta.delete_manifest("repo", manifest.digest, seen.append)
    assert await meta.get_manifest("repo", str(manifest.digest)) is None


async def test_tags_are_listed_in_byte_order_page_by_page(meta: MetaStore) -> None:
    manifest = await push_image(meta, "repo")
    names = ["v10", "v2", "V1", "a", "latest", "1.0", "a-b", "a_b", "a.b", "Z"]
    for name in names:
        await meta.put_manifest("repo", manifest, [name])
    ordered = sorted(names)  # code points: byte order, capitals first
    assert await meta.list_tags("repo", 100, None) == ordered
    assert await meta.list_tags("repo", 3, None) == ordered[:3]
    assert await meta.list_tags("repo", 100, "a") == ordered[ordered.index("a") + 1 :]
    assert await meta.list_tags("repo", 100, "zzz") == []
    pages = await all_pages(meta, 4, "repo")
    assert [len(p) for p in pages] == [4, 4, 2]
    assert [name for page in pages for name in page] == ordered
    assert await meta.list_tags("nowhere", 10, None) is None


async def test_the_catalog_lists_repositories_in_byte_order_page_by_page(
    meta: MetaStore,
) -> None:
    names = ["b", "a/b", "a-b", "ab", "a", "a/b/c", "a.b", "a_b", "z9", "0"]
    for name in names:
        await link(meta, name, b"shared")
    ordered = sorted(names)
    assert await meta.list_repositories(100, None) == ordered
    assert await meta.list_repositories(2, "a") == ordered[ordered.index("a") + 1 :][:2]
    pages = await all_pages(meta, 3)
    assert [len(p) for p in pages] == [3, 3, 3, 1]
    assert [name for page in pages for name in page] == ordered


# Referrers


async def test_referrers_of_a_subject_with_an_artifact_type_filter(meta: MetaStore) -> None:
    subject = await push_image(meta, "repo", "v1")
    signature = await push_image(
        meta,
        "repo",
        artifactType=SIG,
        subject=descriptor(subject),
        annotations={"signed-by": "me"},
    )
    sbom = await push_image(meta, "repo", artifactType=SBOM, subject=descriptor(subject))
    await push_image(meta, "repo", artifactType=SIG)  # no subject
    await push_image(meta, "other", artifactType=SIG, subject=descriptor(subject))

    def referrer(m: Manifest, artifact_type: str, annotations: dict[str, str]) -> Referrer:
        return Referrer(str(m.digest), m.media_type, m.size, artifact_type, annotations)

    both = sorted(
        [referrer(signature, SIG, {"signed-by": "me"}), referrer(sbom, SBOM, {})],
        key=lambda r: r.digest,
    )
    assert await meta.list_referrers("repo", subject.digest, None) == both
    assert await meta.list_referrers("repo", subject.digest, SBOM) == [referrer(sbom, SBOM, {})]
    assert await meta.list_referrers("repo", subject.digest, "application/none") == []
    assert await meta.list_referrers("nowhere", subject.digest, None) == []
    await meta.delete_manifest("repo", sbom.digest)
    assert await meta.list_referrers("repo", subject.digest, None) == [
        referrer(signature, SIG, {"signed-by": "me"})
    ]


async def test_referrers_of_a_subject_never_pushed(meta: MetaStore) -> None:
    absent = {"mediaType": OCI_MANIFEST, "digest": str(Digest.of(b"abc")), "size": 3}
    signature = await push_image(meta, "repo", artifactType=SIG, subject=absent)
    [found] = await meta.list_referrers("repo", Digest.of(b"abc"), None)
    assert found.digest == str(signature.digest)


# Nested indexes


async def nested_tree(meta: MetaStore) -> tuple[Manifest, Manifest, Manifest]:
    """`p` holds index `top`, nesting index `mid` of `p/a`, nesting image `leaf` of `p/a/b`
    (tagged there)."""
    leaf = await push_image(meta, "p/a/b", "leaf-tag")
    mid = index_manifest([descriptor(leaf, "b")])
    await meta.put_manifest("p/a", mid, [])
    top = index_manifest([descriptor(mid, "a")])
    await meta.put_manifest("p", top, ["v1"])
    return top, mid, leaf


async def test_content_a_nested_index_reaches_is_readable_through_the_parent(
    meta: MetaStore,
) -> None:
    top, mid, leaf = await nested_tree(meta)
    assert await meta.get_manifest("p", str(mid.digest)) == as_stored("p/a", mid)
    assert await meta.get_manifest("p", str(leaf.digest)) == as_stored("p/a/b", leaf)
    assert await meta.get_manifest("p/a", str(leaf.digest)) == as_stored("p/a/b", leaf)
    for digest in blob_digests(leaf):
        assert await meta.blob_size("p", digest) is not None
        assert await meta.blob_size("p/a", digest) is not None
    # Tags of a child are not the parent's, and nothing flows upwards or sideways.
    assert await meta.get_manifest("p", "leaf-tag") is None
    assert await meta.get_manifest("p/a/b", str(top.digest)) is None
    assert await meta.get_manifest("q", str(leaf.digest)) is None


async def test_reached_through_names_the_repositories_whose_indexes_reach_content(
    meta: MetaStore,
) -> None:
    top, mid, leaf = await nested_tree(meta)
    leaf_reach = await meta.reached_through("p/a/b", str(leaf.digest), "manifest")
    assert sorted(leaf_reach) == ["p", "p/a"]
    for digest in blob_digests(leaf):
        assert sorted(await meta.reached_through("p/a/b", str(digest), "blob")) == ["p", "p/a"]
        # Reached as a blob grants no manifest of the same digest (rule 4 by kind).
        assert await meta.reached_through("p/a/b", str(digest), "manifest") == []
    assert await meta.reached_through("p/a/b", str(leaf.digest), "blob") == []
    assert await meta.reached_through("p/a", str(mid.digest), "manifest") == ["p"]
    assert await meta.reached_through("p", str(top.digest), "manifest") == []
    # It lives in p/a/b, not in p/a.
    assert await meta.reached_through("p/a", str(leaf.digest), "manifest") == []
    await meta.delete_manifest("p", top.digest)
    assert await meta.reached_through("p/a/b", str(leaf.digest), "manifest") == ["p/a"]
    assert await meta.get_manifest("p", str(leaf.digest)) is None


async def test_a_nested_child_must_exist_in_the_child_repository(meta: MetaStore) -> None:
    leaf = await push_image(meta, "p")  # in the parent, not in p/c
    with pytest.raises(ReferencesInvalid) as caught:
        await meta.put_manifest("p", index_manifest([descriptor(leaf, "c")]), ["v1"])
    assert [(p.missing, p.nested) for p in caught.value.problems] == [(True, True)]
    assert await meta.list_tags("p", 10, None) == []


async def test_an_index_reaching_more_than_max_reach_is_refused_whole(meta: MetaStore) -> None:
    # mid reaches 3 (the leaf, its config and its layer); top reaches those and mid, 4: the
    # bound counts what the push would make readable through the index, at any depth.
    leaf = await push_image(meta, "p/a/b")
    mid = index_manifest([descriptor(leaf, "b")])
    await meta.put_manifest("p/a", mid, [], max_reach=3)
    top = index_manifest([descriptor(mid, "a")])
    with pytest.raises(ReachTooLarge) as caught:
        await meta.put_manifest("p", top, ["v1"], max_reach=3)
    assert (caught.value.repository, caught.value.digest) == ("p", str(top.digest))
    assert caught.value.limit == 3
    assert await meta.get_manifest("p", "v1") is None
    assert await meta.get_manifest("p", str(top.digest)) is None
    assert await meta.get_manifest("p", str(leaf.digest)) is None  # no reach row either
    await meta.put_manifest("p", top, ["v1"], max_reach=4)
    assert await meta.get_manifest("p", str(leaf.digest)) == as_stored("p/a/b", leaf)


async def test_a_push_looks_its_children_up_in_batches(
    meta: MetaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of 2 keys: 5 children and their closure take three lookups a level, and what
    # is checked, reached and bounded is the same as in one.
    monkeypatch.setattr("ocinest.storage.sql.BATCH", 2)
    children = [await push_image(meta, f"p/c{i}") for i in range(5)]
    top = index_manifest([descriptor(m, f"c{i}") for i, m in enumerate(children)])
    with pytest.raises(ReachTooLarge):
        await meta.put_manifest("p", top, ["v1"], max_reach=14)  # 5 x (manifest + 2 blobs)
    await meta.put_manifest("p", top, ["v1"], max_reach=15)
    for child in children:
        assert await meta.get_manifest("p", str(child.digest)) is not None
        for digest in blob_digests(child):
            assert await meta.blob_size("p", digest) is not None
    # A missing child after the first batch is named, once.
    stray = await image(meta, "p/c9")
    bad = index_manifest(
        [
            descriptor(children[0], "c0"),
            descriptor(children[1], "c1"),
            descriptor(stray, "c9"),
            descriptor(children[4], "c4"),
        ]
    )
    with pytest.raises(ReferencesInvalid) as caught:
        await meta.put_manifest("p", bad, [])
    assert [(p.missing, p.nested) for p in caught.value.problems] == [(True, True)]
    assert "p/c9" in caught.value.problems[0].detail


async def test_a_referenced_manifest_cannot_be_deleted_until_its_index_goes(
    meta: MetaStore,
) -> None:
    top, mid, leaf = await nested_tree(meta)
    plain = await push_image(meta, "p")
    local = index_manifest([descriptor(plain)])  # a child in the index's own repository
    await meta.put_manifest("p", local, ["set"])
    for repository, manifest in [("p/a/b", leaf), ("p/a", mid), ("p", plain)]:
        with pytest.raises(ManifestReferenced):
            await meta.delete_manifest(repository, manifest.digest)
        assert await meta.get_manifest(repository, str(manifest.digest)) is not None
    for repository, manifest in [("p", top), ("p/a", mid), ("p/a/b", leaf), ("p", local)]:
        await meta.delete_manifest(repository, manifest.digest)
    await meta.delete_manifest("p", plain.digest)
    assert await meta.all_manifests() == []


async def test_manifest_nodes_are_looked_up_together(meta: MetaStore) -> None:
    top, _, leaf = await nested_tree(meta)
    await push_image(meta, "p/a/b", artifactType=SIG, subject=descriptor(leaf))
    keys = [("p", str(top.digest)), ("p/a/b", str(leaf.digest)), ("p", str(leaf.digest))]
    nodes = await meta.manifest_nodes(keys)
    assert set(nodes) == set(keys[:2])  # the leaf is not a manifest of p itself
    node = nodes[("p/a/b", str(leaf.digest))]
    assert (node.repository, node.digest, node.media_type) == (
        "p/a/b",
        str(leaf.digest),
        leaf.media_type,
    )
    assert (node.size, node.content, node.referrers) == (leaf.size, leaf.raw, 1)
    assert nodes[("p", str(top.digest))].referrers == 0
    assert await meta.manifest_nodes([]) == {}


async def test_tags_by_digest_lists_each_key_s_tags_in_one_lookup(meta: MetaStore) -> None:
    top, mid, leaf = await nested_tree(meta)
    await meta.put_manifest("p/a/b", leaf, ["b-tag", "a-tag"])
    other = await push_image(meta, "p/a/b", "other")
    keys = [
        ("p/a/b", str(leaf.digest)),
        ("p", str(top.digest)),
        ("p/a", str(mid.digest)),  # untagged
        ("p", str(leaf.digest)),  # tagged in p/a/b, not in p
        ("nowhere", str(top.digest)),
    ]
    assert await meta.tags_by_digest(keys) == {
        ("p/a/b", str(leaf.digest)): ["a-tag", "b-tag", "leaf-tag"],
        ("p", str(top.digest)): ["v1"],
    }
    assert await meta.tags_by_digest([("p/a/b", str(other.digest))]) == {
        ("p/a/b", str(other.digest)): ["other"]
    }
    assert await meta.tags_by_digest([]) == {}


# Sparse manifests (allow_sparse)


async def sparse_image(meta: MetaStore, repository: str) -> tuple[Manifest, str, str]:
    """An image whose config is linked in `repository` and whose layer is stored, but only
    in `elsewhere`: (manifest, config digest, layer digest)."""
    config = await link(meta, repository, b'{"sparse": true}')
    layer = await link(meta, "elsewhere", os.urandom(64))
    return image_manifest(config, [layer]), config["digest"], layer["digest"]


async def test_a_sparse_push_keeps_what_was_never_pushed_as_sparse(meta: MetaStore) -> None:
    manifest, _, layer = await sparse_image(meta, "repo")
    with pytest.raises(ReferencesInvalid) as caught:
        await meta.put_manifest("repo", manifest, ["v1"])
    assert missing(caught.value) == [True]
    await meta.put_manifest("repo", manifest, ["v1"], sparse=True)
    assert await meta.get_manifest("repo", "v1") == as_stored("repo", manifest)
    # Named, but not made visible: the layer is only in `elsewhere`.
    assert await meta.blob_size("repo", Digest.parse(layer)) is None
    assert await meta.dangling_references() == []
    assert await meta.sparse_references() == [
        ("repo", str(manifest.digest), "blob", f"repo@{layer}")
    ]
    # An index of the repository whose members were never pushed.
    absent = await image(meta, "repo")  # its blobs linked, the manifest not pushed
    index = index_manifest([descriptor(absent), descriptor(manifest)])
    await meta.put_manifest("repo", index, ["set"], sparse=True)
    assert ("repo", str(index.digest), "manifest", f"repo@{absent.digest}") in (
        await meta.sparse_references()
    )
    # A descriptor that is there but not what it says is refused, sparse or not.
    wrong = index_manifest([{**descriptor(manifest), "size": manifest.size + 1}])
    with pytest.raises(ReferencesInvalid) as caught:
        await meta.put_manifest("repo", wrong, [], sparse=True)
    assert missing(caught.value) == [False]


async def test_nested_children_are_checked_even_when_sparse(meta: MetaStore) -> None:
    leaf = await image(meta, "p/c")  # never pushed
    with pytest.raises(ReferencesInvalid) as caught:
        await meta.put_manifest("p", index_manifest([descriptor(leaf, "c")]), [], sparse=True)
    assert [(p.missing, p.nested) for p in caught.value.problems] == [(True, True)]


async def test_a_sparse_descriptor_makes_nothing_readable_through_a_parent(
    meta: MetaStore,
) -> None:
    child, _, layer = await sparse_image(meta, "p/c")
    await meta.put_manifest("p/c", child, [], sparse=True)
    top = index_manifest([descriptor(child, "c")])
    await meta.put_manifest("p", top, ["v1"])
    assert await meta.get_manifest("p", str(child.digest)) == as_stored("p/c", child)
    for repository in ("p", "p/c"):
        assert await meta.blob_size(repository, Digest.parse(layer)) is None
    assert await meta.reached_through("elsewhere", layer, "blob") == []


async def test_what_a_sparse_descriptor_names_is_held_once_pushed(meta: MetaStore) -> None:
    manifest, _, layer = await sparse_image(meta, "repo")
    member = await image(meta, "repo")
    index = index_manifest([descriptor(member), descriptor(manifest)])
    await meta.put_manifest("repo", manifest, [], sparse=True)
    await meta.put_manifest("repo", index, ["set"], sparse=True)
    assert len(await meta.sparse_references()) == 2
    # Both pushed later: the layer into the repository, the member manifest.
    assert await meta.link_blob("repo", Digest.parse(layer), 64)  # a mount
    await meta.put_manifest("repo", member, [])
    assert await meta.sparse_references() == []
    with pytest.raises(ManifestReferenced):
        await meta.delete_manifest("repo", member.digest)
    plan = await meta.gc_plan(time.time() + 1, delete_untagged=True)
    assert (plan.manifests, plan.blobs) == ([], [])  # the tag holds it all, through the index
    gone = await meta.gc_delete_blobs([layer], time.time() + 1, lambda digest: None)
    assert gone == []
    # The index goes: then GC takes everything it held.
    await meta.delete_manifest("repo", index.digest)
    plan = await meta.gc_plan(time.time() + 1, delete_untagged=True)
    assert sorted(d for _, d, _ in plan.manifests) == sorted(
        [str(member.digest), str(manifest.digest)]
    )
    assert layer in {d for d, _ in plan.blobs}


# Upload sessions


async def test_upload_sessions_outlive_the_store_instance(open_meta: OpenMeta) -> None:
    first, second = open_meta(), open_meta()
    old = Upload("old", "repo", time.time() - 3600)
    new = Upload("new", "repo/sub", time.time())
    await first.create_upload(old)
    await first.create_upload(new)
    assert await second.get_upload("old") == old
    assert await second.get_upload("new") == new
    assert await second.get_upload("nope") is None
    assert await second.expired_uploads(time.time() - 60) == [old]
    assert sorted(u.id for u in await second.expired_uploads(time.time() + 60)) == ["new", "old"]
    await second.delete_upload("old")
    await second.delete_upload("nope")  # not there: no error
    assert await first.get_upload("old") is None
    assert await first.expired_uploads(time.time() + 60) == [new]


# Garbage collection


async def test_gc_plans_untagged_manifests_and_the_blobs_only_they_reference(
    meta: MetaStore,
) -> None:
    tagged = await push_image(meta, "repo", "v1")
    untagged = await push_image(meta, "repo")
    loose = await link(meta, "repo", b"pushed, never referenced")
    cutoff = time.time()
    plan = await meta.gc_plan(cutoff, delete_untagged=True)
    assert plan.manifests == [("repo", str(untagged.digest), untagged.size)]
    doomed = [str(d) for d in blob_digests(untagged)] + [loose["digest"]]
    assert sorted(d for d, _ in plan.blobs) == sorted(doomed)
    assert not {str(d) for d in blob_digests(tagged)} & {d for d, _ in plan.blobs}
    # Untagged manifests are kept when asked; only the loose blob is garbage then.
    plan = await meta.gc_plan(cutoff, delete_untagged=False)
    assert (plan.manifests, plan.blobs) == ([], [(loose["digest"], loose["size"])])
    # Nothing newer than the cutoff is garbage.
    plan = await meta.gc_plan(cutoff - 3600, delete_untagged=True)
    assert (plan.manifests, plan.blobs) == ([], [])


async def test_gc_keeps_what_a_tag_reaches(meta: MetaStore) -> None:
    top, mid, leaf = await nested_tree(meta)
    await meta.delete_tag("p/a/b", "leaf-tag")
    signature = await push_image(meta, "p/a/b", artifactType=SIG, subject=descriptor(leaf))
    orphan = await push_image(meta, "p/a/b")
    orphan_sig = await push_image(meta, "p/a/b", artifactType=SIG, subject=descriptor(orphan))
    plan = await meta.gc_plan(time.time(), delete_untagged=True)
    assert sorted(plan.manifests) == sorted(
        [("p/a/b", str(m.digest), m.size) for m in (orphan, orphan_sig)]
    )
    kept = {str(d) for m in (leaf, signature) for d in blob_digests(m)}
    assert not kept & {d for d, _ in plan.blobs}
    # Untag the root: the whole tree is garbage.
    await meta.delete_tag("p", "v1")
    plan = await meta.gc_plan(time.time(), delete_untagged=True)
    assert {(r, d) for r, d, _ in plan.manifests} == {
        ("p", str(top.digest)),
        ("p/a", str(mid.digest)),
        *[("p/a/b", str(m.digest)) for m in (leaf, signature, orphan, orphan_sig)],
    }


async def test_gc_delete_manifests_rechecks_each(meta: MetaStore) -> None:
    top, mid, leaf = await nested_tree(meta)
    await meta.delete_tag("p", "v1")
    await meta.delete_tag("p/a/b", "leaf-tag")
    retagged = await push_image(meta, "repo")
    subject = await push_image(meta, "repo", "subject")
    signature = await push_image(meta, "repo", artifactType=SIG, subject=descriptor(subject))
    cutoff = time.time()
    planned = [(r, d) for r, d, _ in (await meta.gc_plan(cutoff, delete_untagged=True)).manifests]
    assert ("repo", str(retagged.digest)) in planned
    await meta.put_manifest("repo", retagged, ["v1"])  # tagged since the plan was made
    assert await meta.gc_delete_manifests(planned, cutoff - 3600) == []  # all too new
    # A child goes only once its index went; given index first, the tree goes at once.
    tree = [("p/a/b", str(leaf.digest)), ("p/a", str(mid.digest)), ("p", str(top.digest))]
    assert await meta.gc_delete_manifests(tree[:1], cutoff) == []
    # Neither a manifest tagged since the plan nor a referrer of a manifest that stays goes.
    others = [("repo", str(m.digest)) for m in (retagged, signature)]
    gone = await meta.gc_delete_manifests([*reversed(tree), *others], cutoff)
    assert gone == list(reversed(tree))
    left = [(r, d) for r, d, _ in await meta.all_manifests()]
    assert sorted(left) == sorted([*others, ("repo", str(subject.digest))])
    assert await meta.reached_through("p/a/b", str(leaf.digest), "manifest") == []


def tag_of(tags: list[TagRecord], repository: str, name: str) -> TagRecord:
    (found,) = [t for t in tags if (t.repository, t.name) == (repository, name)]
    return found


async def test_released_tags_free_what_only_they_held(meta: MetaStore) -> None:
    top, mid, leaf = await nested_tree(meta)
    old = await push_image(meta, "repo", "old")
    await meta.put_manifest("repo", old, ["alias"])
    alone = await push_image(meta, "repo", "alone")
    kept = await push_image(meta, "repo", "kept")
    loose = await push_image(meta, "repo")  # untagged, which only delete_untagged takes
    tags = await meta.all_tags()
    # Released: a tag whose manifest nothing else holds, one of two tags of a manifest, and
    # a child's tag while its parent (tagged p:v1) stays.
    release = [tag_of(tags, *key) for key in [("repo", "alone"), ("repo", "alias"),
                                              ("p/a/b", "leaf-tag")]]  # fmt: skip
    cutoff = time.time()
    for delete_untagged in (False, True):
        plan = await meta.gc_plan(cutoff, delete_untagged, release)
        assert [(t.repository, t.name) for t in plan.tags] == [("repo", "alias"), ("repo", "alone")]
        assert plan.manifests == sorted(
            [("repo", str(m.digest), m.size) for m in [alone, *[loose] * delete_untagged]]
        )
        assert set(map(str, blob_digests(alone))) <= {d for d, _ in plan.blobs}
    # The parent released too: the whole tree goes, its untagged middle too.
    release.append(tag_of(tags, "p", "v1"))
    plan = await meta.gc_plan(cutoff, False, release)
    assert {(t.repository, t.name) for t in plan.tags} == {
        ("repo", "alias"), ("repo", "alone"), ("p", "v1"), ("p/a/b", "leaf-tag")
    }  # fmt: skip
    assert {(r, d) for r, d, _ in plan.manifests} == {
        ("repo", str(alone.digest)), ("p", str(top.digest)), ("p/a", str(mid.digest)),
        ("p/a/b", str(leaf.digest)),
    }  # fmt: skip
    # A tag that moved since, or moved after the cutoff, is not released.
    await meta.put_manifest("repo", old, ["alone"])
    plan = await meta.gc_plan(cutoff, False, release)
    assert ("repo", "alone") not in {(t.repository, t.name) for t in plan.tags}
    assert (await meta.gc_plan(cutoff - 3600, False, release)).tags == []
    assert ("repo", str(loose.digest), loose.size) not in plan.manifests
    assert kept  # never released, never planned


async def test_gc_untag_rechecks_each(meta: MetaStore) -> None:
    first = await push_image(meta, "repo", "moved")
    await push_image(meta, "repo", "stays")
    await push_image(meta, "repo", "young")
    tags = await meta.all_tags()
    cutoff = tag_of(tags, "repo", "young").updated_at
    second = await push_image(meta, "repo")
    await meta.put_manifest("repo", second, ["moved"])  # since the plan
    assert first.digest != second.digest
    gone = await meta.gc_untag(tags, cutoff)
    assert [t.name for t in gone] == ["stays"]
    assert await meta.list_tags("repo", 10, None) == ["moved", "young"]


async def test_gc_delete_blobs_rechecks_each_and_deletes_the_content(meta: MetaStore) -> None:
    manifest = await push_image(meta, "repo", "v1")
    loose = Digest.of(b"loose")
    await meta.link_blob("repo", loose, 5, lambda: None)
    relinked = Digest.of(b"relinked")
    await meta.link_blob("repo", relinked, 8, lambda: None)
    cutoff = time.time()
    await meta.link_blob("other", relinked, 8)  # a mount since the plan's cutoff
    crash_debris = str(Digest.of(b"content without a row"))
    referenced = str(blob_digests(manifest)[1])
    deleted: list[str] = []
    gone = await meta.gc_delete_blobs(
        [str(loose), str(relinked), referenced, crash_debris], cutoff, deleted.append
    )
    assert gone == deleted == [str(loose), crash_debris]
    assert await meta.blob_size("repo", loose) is None
    assert await meta.blob_size("other", relinked) == 8
    assert await meta.blob_size("repo", Digest.parse(referenced)) == 64
    assert str(loose) not in await meta.all_blobs()


async def test_gc_delete_blobs_keeps_what_a_failed_delete_left(meta: MetaStore) -> None:
    """The content goes under the write lock, with the row: if deleting it fails, the row
    stays too."""
    loose = Digest.of(b"loose")
    await meta.link_blob("repo", loose, 5, lambda: None)

    def fail(digest: str) -> None:
        raise OSError("store unavailable")

    with pytest.raises(OSError, match="store unavailable"):
        await meta.gc_delete_blobs([str(loose)], time.time(), fail)
    assert await meta.blob_size("repo", loose) == 5


# Consistency checks


async def test_dangling_references_after_forgetting_a_referenced_blob(meta: MetaStore) -> None:
    manifest = await push_image(meta, "repo", "v1")
    assert await meta.dangling_references() == []
    layer = str(blob_digests(manifest)[1])
    deleted: list[str] = []
    await meta.forget_blobs([layer], deleted.append)
    assert deleted == [layer]
    assert layer not in await meta.all_blobs()
    assert await meta.dangling_references() == [
        ("repo", str(manifest.digest), "blob", f"repo@{layer}")
    ]


# What GC counts and records, for /metrics


async def test_inventory_counts_what_the_stores_hold(meta: MetaStore) -> None:
    empty = await meta.inventory()
    assert empty == Inventory(0, 0, 0, 0, 0, 0)
    _, mid, _ = await nested_tree(meta)
    plain = await push_image(meta, "p")
    await meta.put_manifest("p", index_manifest([descriptor(plain), descriptor(mid, "a")]), [])
    counted = await meta.inventory()
    sizes = await meta.all_blobs()
    assert (counted.blobs, counted.blob_bytes) == (len(sizes), sum(sizes.values()))
    assert (counted.manifests, counted.repositories) == (5, 3)
    # top (one nested edge), mid (one), and the mixed index (one nested, one not).
    assert (counted.nested_indexes, counted.nested_edges) == (3, 3)


async def test_the_last_gc_run_is_what_every_store_instance_reads(open_meta: OpenMeta) -> None:
    writer, reader = open_meta(), open_meta()
    try:
        assert await reader.last_gc_run() is None
        runs = [
            GCRun(
                1000.0 + n,
                0.25,
                {"tag": 0, "manifest": n, "blob": 2, "upload": 0},
                {"manifest": 10, "blob": 20},
                Inventory(n, 100, 3, 2, 1, 1),
            )
            for n in range(3)
        ]
        for run in runs:
            await writer.record_gc_run(run)
        assert await reader.last_gc_run() == runs[-1]
    finally:
        await writer.close()
        await reader.close()


# Concurrent writers: two store instances, as two registry processes over one database.


async def test_concurrent_writers_all_land(open_meta: OpenMeta) -> None:
    stores = [open_meta(), open_meta()]

    async def writer(i: int) -> Manifest:
        meta = stores[i % 2]
        data = os.urandom(16)
        await link(meta, "shared", data)
        await link(meta, f"own-{i:02}", data)
        return await push_image(meta, "shared", f"t{i:02}")

    manifests = await asyncio.gather(*(writer(i) for i in range(12)))
    for meta in stores:
        assert await meta.list_tags("shared", 100, None) == [f"t{i:02}" for i in range(12)]
        assert await meta.list_repositories(100, None) == [
            *[f"own-{i:02}" for i in range(12)],
            "shared",
        ]
        for i, manifest in enumerate(manifests):
            assert await meta.get_manifest("shared", f"t{i:02}") == as_stored("shared", manifest)
        assert len(await meta.all_blobs()) == 12 * 3


async def test_concurrent_moves_of_one_tag_leave_one_of_them(open_meta: OpenMeta) -> None:
    stores = [open_meta(), open_meta()]
    candidates = [await image(stores[i % 2], "repo") for i in range(6)]
    await asyncio.gather(
        *(stores[i % 2].put_manifest("repo", m, ["latest"]) for i, m in enumerate(candidates))
    )
    winner = await stores[0].get_manifest("repo", "latest")
    assert winner in [as_stored("repo", m) for m in candidates]
    assert await stores[1].get_manifest("repo", "latest") == winner
    assert len(await stores[1].all_manifests()) == 6


async def test_a_child_is_never_deleted_under_an_index_pushed_at_once(
    open_meta: OpenMeta,
) -> None:
    """The reference check of a push and of a delete hold against each other: either the
    index lands (and the child stays) or the delete does (and the push is refused)."""
    pusher, deleter = open_meta(), open_meta()
    for _ in range(8):
        child = await push_image(pusher, "p/c")
        parent = index_manifest([descriptor(child, "c")])
        pushed, deleted = await asyncio.gather(
            pusher.put_manifest("p", parent, []),
            deleter.delete_manifest("p/c", child.digest),
            return_exceptions=True,
        )
        if pushed is None:
            assert isinstance(deleted, ManifestReferenced)
            assert await deleter.get_manifest("p/c", str(child.digest)) is not None
            await pusher.delete_manifest("p", parent.digest)
        else:
            assert deleted is None
            assert isinstance(pushed, ReferencesInvalid)
            assert missing(pushed) == [True]
        assert await deleter.dangling_references() == []


async def test_gc_never_deletes_a_blob_a_concurrent_push_references(open_meta: OpenMeta) -> None:
    pusher, collector = open_meta(), open_meta()
    for _ in range(8):
        config = await link(pusher, "repo", os.urandom(16))
        manifest = image_manifest(config, [])
        cutoff = time.time()
        pushed, gone = await asyncio.gather(
            pusher.put_manifest("repo", manifest, ["v1"]),
            collector.gc_delete_blobs([config["digest"]], cutoff, lambda d: None),
            return_exceptions=True,
        )
        if pushed is None:
            assert gone == []
            assert await collector.blob_size("repo", Digest.parse(config["digest"])) == 16
        else:
            assert gone == [config["digest"]]
            assert isinstance(pushed, ReferencesInvalid)
            assert missing(pushed) == [True]
        assert await collector.dangling_references() == []
