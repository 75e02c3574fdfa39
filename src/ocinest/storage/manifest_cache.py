"""Hot manifests in memory, kept only while the database is unchanged.

Each entry is stamped with the database's change counter read before its query ran. A read
whose counter differs from the stamp empties the cache first: a commit anywhere (this
process's or another's sharing the database) may have moved a tag or deleted a manifest, and
the cache does not guess which. So a read never sees less than a query would have seen; a
registry that writes often simply caches little. Entries are evicted least recently used
beyond a byte budget.
"""

from __future__ import annotations

from collections import OrderedDict

from ocinest.storage.meta import StoredManifest

# Manifests are at most a few MiB (MAX_MANIFEST_SIZE) and the hot ones a few KiB.
BUDGET = 32 * 1024 * 1024
# What an entry costs beyond its content: key, object, and the dict's slot.
ENTRY_OVERHEAD = 400


class ManifestCache:
    def __init__(self, budget: int = BUDGET) -> None:
        self.budget = budget
        self._version: int | None = None
        self._entries: OrderedDict[tuple[str, str], StoredManifest] = OrderedDict()
        self._bytes = 0

    def get(self, version: int, repository: str, reference: str) -> StoredManifest | None:
        if version != self._version:
            self._entries.clear()
            self._bytes = 0
            self._version = version
            return None
        key = (repository, reference)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, version: int, repository: str, reference: str, stored: StoredManifest) -> None:
        """Keep what a query read after `version` was read (newer data, stamped older, is only
        ever dropped too early)."""
        if version != self._version or _cost(stored) > self.budget // 8:
            return
        key = (repository, reference)
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= _cost(old)
        self._entries[key] = stored
        self._bytes += _cost(stored)
        while self._bytes > self.budget:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= _cost(evicted)


def _cost(stored: StoredManifest) -> int:
    return len(stored.content) + ENTRY_OVERHEAD
