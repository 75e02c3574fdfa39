"""The hot-manifest cache: emptied by any change of the database, bounded in bytes, least
recently used out first."""

from __future__ import annotations

from ocinest.storage.manifest_cache import ENTRY_OVERHEAD, ManifestCache
from ocinest.storage.meta import StoredManifest


def stored(size: int, tag: str = "x") -> StoredManifest:
    return StoredManifest("repo", f"sha256:{tag}", "application/json", b"m" * size)


def test_an_entry_is_read_back_while_the_version_holds_and_never_after() -> None:
    cache = ManifestCache()
    assert cache.get(1, "repo", "v1") is None
    cache.put(1, "repo", "v1", stored(10))
    assert cache.get(1, "repo", "v1") == stored(10)
    assert cache.get(1, "other", "v1") is None
    assert cache.get(2, "repo", "v1") is None  # a commit somewhere: all gone
    assert cache.get(1, "repo", "v1") is None  # even if the old number came back


def test_an_entry_read_under_an_older_version_is_not_kept() -> None:
    cache = ManifestCache()
    cache.get(2, "repo", "v1")
    cache.put(1, "repo", "v1", stored(10))  # its query began before the cache saw 2
    assert cache.get(2, "repo", "v1") is None


def test_the_least_recently_used_go_first_beyond_the_budget() -> None:
    cache = ManifestCache(budget=10 * (100 + ENTRY_OVERHEAD))
    tags = [f"t{n}" for n in range(10)]
    cache.get(1, "repo", "t0")
    for tag in tags:
        cache.put(1, "repo", tag, stored(100, tag))
    assert cache.get(1, "repo", "t0") is not None  # now the most recent
    cache.put(1, "repo", "new", stored(100, "new"))
    kept = [t for t in [*tags, "new"] if cache.get(1, "repo", t) is not None]
    assert kept == ["t0", *tags[2:], "new"]  # t1 went


def test_a_manifest_larger_than_an_eighth_of_the_budget_is_not_kept() -> None:
    cache = ManifestCache(budget=8000)
    cache.get(1, "repo", "big")
    cache.put(1, "repo", "big", stored(1000))
    cache.put(1, "repo", "small", stored(100))
    assert cache.get(1, "repo", "big") is None
    assert cache.get(1, "repo", "small") is not None
