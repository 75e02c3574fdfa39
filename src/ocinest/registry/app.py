"""The application: one dispatcher for the /v2/ API, plus metrics and health."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from ocinest.oci.errors import ErrorCode, OCIError
from ocinest.oci.names import validate_name
from ocinest.registry import blobs, gc, listing, manifests, nested, observability
from ocinest.registry.config import Config
from ocinest.registry.errors import error_middleware
from ocinest.registry.state import REGISTRY, Registry

Route = Callable[..., Awaitable[web.StreamResponse]]

API_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}


async def base(request: web.Request) -> web.Response:
    return web.json_response({}, headers={**API_HEADERS, **nested.NESTED_HEADER})


# Longest patterns first: a repository name may itself contain "blobs" or "manifests".
_TABLE: list[tuple[str, str, dict[str, Route]]] = [
    ("base", r"^/v2/?$", {"GET": base, "HEAD": base}),
    ("catalog", r"^/v2/_catalog$", {"GET": listing.catalog}),
    ("tree", r"^/v2/(?P<name>.+)/_ocinest/tree/(?P<reference>[^/]+)$", {"GET": nested.get_tree}),
    ("upload_start", r"^/v2/(?P<name>.+)/blobs/uploads/?$", {"POST": blobs.start_upload}),
    (
        "upload",
        r"^/v2/(?P<name>.+)/blobs/uploads/(?P<upload_id>[^/]+)$",
        {
            "GET": blobs.upload_status,
            "PATCH": blobs.patch_upload,
            "PUT": blobs.finish_upload,
            "DELETE": blobs.cancel_upload,
        },
    ),
    (
        "blob",
        r"^/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)$",
        {"GET": blobs.get_blob, "HEAD": blobs.get_blob, "DELETE": blobs.delete_blob},
    ),
    (
        "manifest",
        r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)$",
        {
            "GET": manifests.get_manifest,
            "HEAD": manifests.get_manifest,
            "PUT": manifests.put_manifest,
            "DELETE": manifests.delete_manifest,
        },
    ),
    ("tags", r"^/v2/(?P<name>.+)/tags/list$", {"GET": listing.list_tags}),
    (
        "referrers",
        r"^/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)$",
        {"GET": manifests.get_referrers},
    ),
]
ROUTES = [(name, re.compile(pattern), methods) for name, pattern, methods in _TABLE]


async def dispatch(request: web.Request) -> web.StreamResponse:
    # The raw path, so that "..", "%2F" and the like reach name validation as sent.
    path = urllib.parse.unquote(request.raw_path.split("?", 1)[0])
    for name, pattern, methods in ROUTES:
        m = pattern.match(path)
        if m is None:
            continue
        request[observability.ROUTE] = name
        handler = methods.get(request.method)
        if handler is None:
            raise OCIError(
                ErrorCode.UNSUPPORTED,
                f"{request.method} is not supported here; allowed: {', '.join(methods)}",
                headers={"Allow": ", ".join(methods)},
            )
        params: dict[str, Any] = m.groupdict()
        if "name" in params:
            validate_name(params["name"])
        return await handler(request, **params)
    raise OCIError(ErrorCode.UNSUPPORTED, f"no such endpoint: {path[:200]}", status=404)


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The API version header on every answer, and metrics."""
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        response.headers.update(API_HEADERS)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        observability.observe(request, status, time.perf_counter() - start)


def create_app(config: Config) -> web.Application:
    app = web.Application(middlewares=[api_middleware, error_middleware])

    async def stores(app: web.Application) -> AsyncIterator[None]:
        app[REGISTRY] = reg = Registry.open(config)
        scheduler = asyncio.create_task(gc.schedule(reg)) if config.gc_interval > 0 else None
        yield
        if scheduler is not None:
            scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scheduler
        await reg.close()

    app.cleanup_ctx.append(stores)
    app.router.add_route("*", "/v2", dispatch)
    app.router.add_route("*", "/v2/{tail:.*}", dispatch)
    app.router.add_get("/metrics", observability.metrics)
    app.router.add_get("/healthz", observability.health)
    return app
