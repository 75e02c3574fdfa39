"""Rules on tags, per repository: which tags are immutable once pushed (`immutable_tags`) and
which tags `ocinest gc` removes (`retention`). Both are lists in the YAML configuration. A
rule's repository patterns are the policy file's (exact, `prefix/*`, `prefix/**`; the longest
matching pattern wins, and rules of equal length add up); its tag patterns are regular
expressions that must match the whole tag.

```yaml
immutable_tags:
  - repositories: ["releases/**"]
    tags: ["v[0-9].*"]
  - repositories: ["releases/scratch/**"]
    tags: []                    # the longer pattern wins: nothing in there is immutable
retention:
  - repositories: ["ci/**"]
    keep:                       # a tag stays when any entry keeps it; the rest go
      - tags: ["v.*"]           # of the tags matching (default: every tag)...
        newest: 5               # ...the 5 pushed most recently
      - pushed_within: 7d       # every tag pushed in the last 7 days
```
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ocinest.registry.policy import longest_matches
from ocinest.storage.meta import TagRecord


def _mapping(doc: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ValueError(f"{where} must be a mapping")
    unknown = set(doc) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))}")
    return doc


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where} must be a list of strings")
    return value


def _rules(doc: Any, allowed: set[str]) -> list[tuple[str, dict[str, Any], str]]:
    """Each (repository pattern, rule, where it is) of a list of rules."""
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise ValueError("must be a list of rules")
    rules = []
    for i, raw in enumerate(doc):
        where = f"[{i}]"
        rule = _mapping(raw, where, {"repositories", *allowed})
        for pattern in _strings(rule.get("repositories"), f"{where}.repositories"):
            rules.append((pattern, rule, where))
    return rules


@dataclass(frozen=True)
class TagPatterns:
    """Regular expressions, each matched against the whole tag."""

    patterns: tuple[re.Pattern[str], ...]

    @classmethod
    def parse(cls, value: Any, where: str) -> TagPatterns:
        compiled = []
        for text in _strings(value, where):
            try:
                compiled.append(re.compile(text))
            except re.error as exc:
                raise ValueError(f"{where}: {text!r} is not a regular expression: {exc}") from None
        return cls(tuple(compiled))

    def match(self, tag: str) -> bool:
        return any(p.fullmatch(tag) for p in self.patterns)


EVERY_TAG = TagPatterns((re.compile(".*"),))


@dataclass(frozen=True)
class ImmutableRule:
    pattern: str
    tags: TagPatterns


@dataclass(frozen=True)
class ImmutableTags:
    """Which tags, once pushed, never move and cannot be deleted."""

    rules: tuple[ImmutableRule, ...] = ()

    @classmethod
    def parse(cls, doc: Any) -> ImmutableTags:
        return cls(
            tuple(
                ImmutableRule(pattern, TagPatterns.parse(rule.get("tags"), f"{where}.tags"))
                for pattern, rule, where in _rules(doc, {"tags"})
            )
        )

    def __call__(self, repository: str, tag: str) -> bool:
        """Whether `tag` of `repository` is immutable."""
        return any(rule.tags.match(tag) for rule in longest_matches(self.rules, repository))


@dataclass(frozen=True)
class Keep:
    """Of the tags matching `tags`: the `newest` pushed most recently, and those pushed in the
    last `pushed_within` seconds (either, when both are given; all of them, with neither)."""

    tags: TagPatterns
    newest: int | None
    pushed_within: float | None

    def kept(self, tags: list[TagRecord], now: float) -> Iterable[TagRecord]:
        matching = [t for t in tags if self.tags.match(t.name)]
        if self.newest is None and self.pushed_within is None:
            return matching
        kept: set[TagRecord] = set()
        if self.newest is not None:
            kept.update(sorted(matching, key=lambda t: (t.updated_at, t.name))[-self.newest :])
        if self.pushed_within is not None:
            kept.update(t for t in matching if t.updated_at >= now - self.pushed_within)
        return kept


@dataclass(frozen=True)
class RetentionRule:
    pattern: str
    keep: tuple[Keep, ...]


@dataclass(frozen=True)
class Retention:
    """Which tags garbage collection removes: in a repository some rule matches, every tag
    that no `keep` entry of its rules keeps, immutable tags aside."""

    rules: tuple[RetentionRule, ...] = ()

    @classmethod
    def parse(cls, doc: Any, duration: Callable[[Any], float]) -> Retention:
        rules = []
        for pattern, rule, where in _rules(doc, {"keep"}):
            entries = rule.get("keep")
            if not isinstance(entries, list):
                raise ValueError(f"{where}.keep must be a list (empty: every tag goes)")
            keeps = []
            for j, entry in enumerate(entries):
                at = f"{where}.keep[{j}]"
                entry = _mapping(entry, at, {"tags", "newest", "pushed_within"})
                newest = entry.get("newest")
                if newest is not None and (
                    not isinstance(newest, int) or isinstance(newest, bool) or newest < 1
                ):
                    raise ValueError(f"{at}.newest must be a whole number above 0")
                try:
                    within = entry.get("pushed_within")
                    within = None if within is None else duration(within)
                except ValueError as exc:
                    raise ValueError(f"{at}.pushed_within: {exc}") from None
                keeps.append(
                    Keep(
                        TagPatterns.parse(entry["tags"], f"{at}.tags")
                        if "tags" in entry
                        else EVERY_TAG,
                        newest,
                        within,
                    )
                )
            rules.append(RetentionRule(pattern, tuple(keeps)))
        return cls(tuple(rules))

    def __bool__(self) -> bool:
        return bool(self.rules)

    def release(
        self, tags: Iterable[TagRecord], now: float, immutable: ImmutableTags
    ) -> list[TagRecord]:
        """The tags the rules do not keep, as of `now`; immutable tags are neither released
        nor counted."""
        by_repository: dict[str, list[TagRecord]] = {}
        for tag in tags:
            if not immutable(tag.repository, tag.name):
                by_repository.setdefault(tag.repository, []).append(tag)
        released = []
        for repository, candidates in sorted(by_repository.items()):
            rules = longest_matches(self.rules, repository)
            if not rules:
                continue
            kept = {t for rule in rules for keep in rule.keep for t in keep.kept(candidates, now)}
            released += sorted((t for t in candidates if t not in kept), key=lambda t: t.name)
        return released
