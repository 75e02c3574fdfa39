"""The tree endpoint's cache of parsed manifests: bounded by the bytes parsed, least recently
used out first, and never a source of a stale referrers count."""

from __future__ import annotations

import json

from ocinest.registry.nested import _ParsedCache
from ocinest.storage.meta import ManifestNode

INDEX = "application/vnd.oci.image.index.v1+json"


def node(repository: str, n: int, referrers: int = 0) -> ManifestNode:
    content = json.dumps({"schemaVersion": 2, "manifests": [], "annotations": {"n": "x" * n}})
    return ManifestNode(
        repository, f"sha256:{n:064x}", INDEX, len(content), content.encode(), referrers
    )


def test_bounded_by_bytes_least_recently_used_out_first() -> None:
    a, b, c = node("r", 400), node("r", 500), node("r", 600)
    cache = _ParsedCache(budget=a.size + c.size + 10)
    for info in (a, b):
        cache.parsed(info)
    cache.parsed(a)  # a is now the most recently used
    cache.parsed(c)  # b goes
    assert cache.used <= cache.budget
    assert set(cache._entries) == {("r", a.digest), ("r", c.digest)}
    # Larger than the whole budget: parsed, never kept.
    big = node("r", 5000)
    assert cache.parsed(big).annotations == {"n": "x" * 5000}
    assert ("r", big.digest) not in cache._entries


def test_the_repository_is_part_of_the_key_and_referrers_are_fresh() -> None:
    cache = _ParsedCache(budget=1 << 20)
    assert cache.parsed(node("r", 10, referrers=0)).referrers == 0
    assert cache.parsed(node("r", 10, referrers=3)).referrers == 3
    cache.parsed(node("s", 10))
    assert set(cache._entries) == {("r", node("r", 10).digest), ("s", node("s", 10).digest)}
