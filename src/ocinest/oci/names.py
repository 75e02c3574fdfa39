"""Repository names, tags and nested child paths, as the distribution spec defines them."""

from __future__ import annotations

import re

from ocinest.oci.errors import ErrorCode, OCIError

COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_COMPONENT_RE = re.compile(rf"^{COMPONENT}\Z")
_NAME_RE = re.compile(rf"^{COMPONENT}(?:/{COMPONENT})*\Z")
_TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}\Z")
# distribution and most clients cap a repository name at 255 characters.
MAX_NAME_LENGTH = 255


def validate_name(name: str) -> str:
    """Return `name` when it is a valid repository name, else raise `NAME_INVALID`."""
    if len(name) > MAX_NAME_LENGTH:
        raise OCIError(
            ErrorCode.NAME_INVALID,
            f"repository name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}",
        )
    if not _NAME_RE.match(name):
        raise OCIError(
            ErrorCode.NAME_INVALID,
            f"invalid repository name {name!r}: components must match {COMPONENT} "
            "and be joined by '/'",
        )
    return name


def is_tag(value: str) -> bool:
    return bool(_TAG_RE.match(value))


def child_path_problem(parent: str, child: str) -> str | None:
    """Why `child` is not a valid nested child path under `parent`, or None when it is."""
    if not child:
        return "empty child path"
    if child.startswith("/") or child.endswith("/"):
        return f"child path {child!r} has a leading or trailing '/'"
    for part in child.split("/"):
        if part in ("", ".", ".."):
            return f"child path {child!r} has an empty, '.' or '..' component"
        if not _COMPONENT_RE.match(part):
            return f"child path {child!r}: component {part!r} does not match {COMPONENT}"
    full = f"{parent}/{child}"
    if len(full) > MAX_NAME_LENGTH:
        return f"child repository {full!r} is longer than {MAX_NAME_LENGTH} characters"
    return None
