"""Tag rules per repository: immutable tags, and which tags retention releases."""

from __future__ import annotations

from typing import Any

import pytest

from ocinest.registry.config import parse_duration
from ocinest.registry.tagrules import ImmutableTags, Retention
from ocinest.storage.meta import TagRecord

NOW = 1_000_000.0
DAY = 86400.0


def immutable(*rules: dict[str, Any]) -> ImmutableTags:
    return ImmutableTags.parse(list(rules))


def retention(*rules: dict[str, Any]) -> Retention:
    return Retention.parse(list(rules), parse_duration)


def tags(repository: str, **ages: float) -> list[TagRecord]:
    """Tags of `repository`, each pushed `age` days before NOW."""
    return [TagRecord(repository, n, f"sha256:{n}", NOW - age * DAY) for n, age in ages.items()]


def released(
    rules: Retention, records: list[TagRecord], fixed: ImmutableTags | None = None
) -> list[str]:
    return [
        f"{t.repository}:{t.name}" for t in rules.release(records, NOW, fixed or ImmutableTags())
    ]


def test_tag_patterns_match_the_whole_tag() -> None:
    rules = immutable({"repositories": ["rel/**"], "tags": ["v[0-9]+", "stable"]})
    assert rules("rel/app", "v1") and rules("rel/a/b", "v12") and rules("rel/app", "stable")
    assert not rules("rel/app", "v1-rc") and not rules("rel/app", "xv1")
    assert not rules("rel/app", "stable2") and not rules("other/app", "v1")
    assert not rules("rel", "v1")  # prefix/** needs at least one more component


def test_the_longest_repository_pattern_wins_and_equal_ones_add_up() -> None:
    rules = immutable(
        {"repositories": ["**"], "tags": [".*"]},
        {"repositories": ["scratch/**"], "tags": []},
        {"repositories": ["scratch/keep"], "tags": ["a"]},
    )
    assert rules("anything", "latest") and rules("scratch", "latest")
    assert not rules("scratch/deep/er", "latest") and not rules("scratch/other", "a")
    assert rules("scratch/keep", "a") and not rules("scratch/keep", "b")
    equal = immutable(
        {"repositories": ["r/*"], "tags": ["a"]}, {"repositories": ["*/x"], "tags": ["b"]}
    )
    assert equal("r/x", "a") and equal("r/x", "b") and not equal("r/x", "c")


def test_retention_keeps_the_newest_matching_tags() -> None:
    rules = retention({"repositories": ["ci/**"], "keep": [{"tags": ["v.*"], "newest": 2}]})
    records = tags("ci/app", v1=5, v2=4, v3=3, v4=1, latest=0)
    # Tags the entry does not match are not kept by it: latest goes too.
    assert released(rules, records) == ["ci/app:latest", "ci/app:v1", "ci/app:v2"]
    # Each repository counts its own.
    assert released(rules, tags("ci/other", v9=9)) == []
    # A repository no rule matches is left alone.
    assert released(rules, tags("prod/app", v1=500)) == []


def test_retention_keeps_tags_pushed_within_the_window() -> None:
    rules = retention({"repositories": ["ci/*"], "keep": [{"pushed_within": "7d"}]})
    records = tags("ci/app", old=7.001, edge=7, new=0)
    assert released(rules, records) == ["ci/app:old"]


def test_keep_entries_add_up_and_an_entry_with_both_keeps_either() -> None:
    rules = retention(
        {
            "repositories": ["ci/*"],
            "keep": [
                {"tags": ["release-.*"]},  # neither count nor window: every match stays
                {"tags": ["pr-.*"], "newest": 1, "pushed_within": "2d"},
            ],
        }
    )
    records = tags("ci/app", **{"release-1": 900, "pr-1": 10, "pr-2": 5, "pr-3": 1, "pr-4": 0.5})
    # pr-4 is the newest; pr-3 is within 2 days; pr-1 and pr-2 are neither.
    assert released(rules, records) == ["ci/app:pr-1", "ci/app:pr-2"]


def test_an_empty_keep_releases_every_tag_and_a_longer_pattern_overrides() -> None:
    rules = retention(
        {"repositories": ["tmp/**"], "keep": []},
        {"repositories": ["tmp/precious"], "keep": [{"newest": 1}]},
    )
    assert released(rules, tags("tmp/a/b", x=0, y=1)) == ["tmp/a/b:x", "tmp/a/b:y"]
    assert released(rules, tags("tmp/precious", x=0, y=1)) == ["tmp/precious:y"]


def test_immutable_tags_are_neither_released_nor_counted() -> None:
    rules = retention({"repositories": ["rel/*"], "keep": [{"newest": 1}]})
    fixed = immutable({"repositories": ["rel/*"], "tags": ["v.*"]})
    records = tags("rel/app", v1=30, v2=0, nightly1=2, nightly2=1)
    # v2 is the newest of all, but immutable: the newest other tag is kept.
    assert released(rules, records, fixed) == ["rel/app:nightly1"]


def test_newest_ties_are_broken_by_name() -> None:
    rules = retention({"repositories": ["r"], "keep": [{"newest": 1}]})
    assert released(rules, tags("r", b=1, a=1)) == ["r:a"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"keep": []}, r"\[0\].repositories must be a list"),
        ({"repositories": ["r"]}, r"\[0\].keep must be a list"),
        ({"repositories": ["r"], "keep": [{"newest": 0}]}, r"keep\[0\].newest must be"),
        ({"repositories": ["r"], "keep": [{"newest": True}]}, r"keep\[0\].newest must be"),
        ({"repositories": ["r"], "keep": [{"pushed_within": "soon"}]}, "not a duration"),
        ({"repositories": ["r"], "keep": [{"tags": "v.*"}]}, r"tags must be a list"),
        ({"repositories": ["r"], "keep": [{"tag": ["v.*"]}]}, "unknown keys tag"),
        ({"repositories": ["r"], "keep": [{"tags": ["v("]}]}, "not a regular expression"),
        ("ci/**", r"\[0\] must be a mapping"),
    ],
)
def test_a_bad_retention_rule_is_refused_saying_where(doc: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        retention(doc)
