"""Who may do what where: users and groups (and anonymous) mapped to repository patterns and
actions. The longest matching pattern wins.

```yaml
groups:
  devs: [alice, bob]
rules:
  - subjects: [anonymous]            # user names, group:NAME, anonymous, authenticated
    repositories: ["public/**"]      # exact, prefix/* (one component), prefix/** (any depth)
    actions: [pull]
  - subjects: [group:devs]
    repositories: ["myrepo/**"]
    actions: [pull, push, delete]
```
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import yaml

ACTIONS = frozenset({"pull", "push", "delete"})
ANONYMOUS = "anonymous"
AUTHENTICATED = "authenticated"


class Patterned(Protocol):
    """A rule that applies to the repositories its `pattern` matches."""

    @property
    def pattern(self) -> str: ...


R = TypeVar("R", bound=Patterned)


def matches(pattern: str, repository: str) -> bool:
    """Whether the repository pattern (exact, `prefix/*` one component, `prefix/**` any depth;
    `*` stands for one component anywhere) matches `repository`."""
    want = pattern.split("/")
    have = repository.split("/")
    if want[-1] == "**":
        prefix = want[:-1]
        return len(have) > len(prefix) and all(
            w in ("*", h) for w, h in zip(prefix, have, strict=False)
        )
    return len(want) == len(have) and all(w in ("*", h) for w, h in zip(want, have, strict=True))


def longest_matches(rules: Iterable[R], repository: str) -> list[R]:
    """The rules whose pattern matches `repository` with the longest pattern: those apply."""
    best: list[R] = []
    for rule in rules:
        if not matches(rule.pattern, repository):
            continue
        if not best or len(rule.pattern) > len(best[0].pattern):
            best = [rule]
        elif len(rule.pattern) == len(best[0].pattern):
            best.append(rule)
    return best


class PolicyError(Exception):
    """A policy file that cannot be used; the message says why."""


@dataclass(frozen=True)
class Rule:
    subjects: frozenset[str]
    pattern: str
    actions: frozenset[str]


@dataclass(frozen=True)
class Policy:
    groups: dict[str, frozenset[str]]
    rules: tuple[Rule, ...]

    @classmethod
    def default(cls) -> Policy:
        """Without a policy file: every authenticated user may do everything."""
        return cls({}, (Rule(frozenset({AUTHENTICATED}), "**", ACTIONS),))

    @classmethod
    def load(cls, path: Path) -> Policy:
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise PolicyError(f"cannot read policy {path}: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("rules", []), list):
            raise PolicyError(f"policy {path}: expected a mapping with a list of rules")
        groups = {}
        for name, members in (doc.get("groups") or {}).items():
            if not isinstance(members, list):
                raise PolicyError(f"policy {path}: group {name!r} must list user names")
            groups[str(name)] = frozenset(map(str, members))
        rules = []
        for i, raw in enumerate(doc.get("rules") or []):
            where = f"policy {path}: rules[{i}]"
            if not isinstance(raw, dict):
                raise PolicyError(f"{where} must be a mapping")
            subjects = raw.get("subjects")
            patterns = raw.get("repositories")
            actions = raw.get("actions")
            if not (
                isinstance(subjects, list)
                and isinstance(patterns, list)
                and isinstance(actions, list)
            ):
                raise PolicyError(f"{where} needs lists subjects, repositories and actions")
            unknown = set(map(str, actions)) - ACTIONS
            if unknown:
                raise PolicyError(
                    f"{where}: unknown actions {sorted(unknown)}; use pull, push, delete"
                )
            for pattern in map(str, patterns):
                rules.append(
                    Rule(frozenset(map(str, subjects)), pattern, frozenset(map(str, actions)))
                )
        return cls(groups, tuple(rules))

    def subjects(self, user: str | None) -> frozenset[str]:
        if user is None:
            return frozenset({ANONYMOUS})
        groups = {f"group:{g}" for g, members in self.groups.items() if user in members}
        return frozenset({user, AUTHENTICATED, *groups})

    def actions(self, user: str | None, repository: str) -> frozenset[str]:
        """What `user` (None: anonymous) may do in `repository`: the actions of the rules
        with the longest matching pattern."""
        subjects = self.subjects(user)
        best = longest_matches((r for r in self.rules if r.subjects & subjects), repository)
        return frozenset().union(*(r.actions for r in best)) if best else frozenset()
