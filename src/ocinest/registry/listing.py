"""Paginated listings: the tags of a repository and the catalog of repositories."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable

from aiohttp import web

from ocinest.oci.errors import ErrorCode, OCIError
from ocinest.registry.auth import IDENTITY
from ocinest.registry.state import registry

# The most entries one page holds, whatever `n` asks.
MAX_PAGE = 10_000
_COUNT = re.compile(r"^[0-9]+\Z")


def count_param(request: web.Request, key: str, maximum: int) -> int:
    """A non-negative whole-number query parameter, capped at `maximum` (which it is when
    absent)."""
    raw = request.query.get(key)
    if raw is None or raw == "":
        return maximum
    if not _COUNT.match(raw):
        raise OCIError(
            ErrorCode.PAGINATION_NUMBER_INVALID,
            f"{key} must be a non-negative integer, got {raw[:50]!r}",
        )
    digits = raw.lstrip("0") or "0"
    return maximum if len(digits) > 12 else min(int(digits), maximum)


def _page(
    request: web.Request, key: str, items: list[str], limit: int, extra: dict[str, str]
) -> web.Response:
    """A page of `items` (fetched with one more than `limit` to tell whether more follow)."""
    headers = {}
    if limit == 0:
        items = []
    elif len(items) > limit:
        items = items[:limit]
        query = urllib.parse.urlencode({"n": limit, "last": items[-1]})
        headers["Link"] = f'<{request.path}?{query}>; rel="next"'
    return web.json_response({**extra, key: items}, headers=headers)


async def list_tags(request: web.Request, name: str) -> web.Response:
    limit = count_param(request, "n", MAX_PAGE)
    tags = await registry(request).meta.list_tags(name, limit + 1, request.query.get("last"))
    if tags is None:
        raise OCIError(ErrorCode.NAME_UNKNOWN, f"repository {name} is not known")
    return _page(request, "tags", tags, limit, {"name": name})


async def visible_repositories(
    request: web.Request,
    limit: int,
    last: str | None,
    match: Callable[[str], bool] | None = None,
    *,
    batch: int = 0,
    prefix: str = "",
) -> list[str]:
    """Up to `limit` + 1 repositories after `last` that the caller can pull, that start with
    `prefix` and that `match` takes, in lexical order (one more than asked tells whether more
    follow); read from the store `batch` (at least `limit` + 1) at a time."""
    reg = registry(request)
    identity = request[IDENTITY]
    visible: list[str] = []
    size = max(batch, limit + 1)
    while limit > 0 and len(visible) <= limit:
        names = await reg.meta.list_repositories(size, last)
        beyond = next((i for i, r in enumerate(names) if not r.startswith(prefix)), None)
        visible += [
            r
            for r in names[:beyond]
            if (match is None or match(r)) and reg.auth.can_list(identity, r)
        ]
        if len(names) < size or beyond is not None:
            break
        last = names[-1]
    return visible[: limit + 1]


async def catalog(request: web.Request) -> web.Response:
    """The repositories the caller can pull."""
    limit = count_param(request, "n", MAX_PAGE)
    visible = await visible_repositories(request, limit, request.query.get("last"))
    return _page(request, "repositories", visible, limit, {})
