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

from ocinest.oci.names import validate_name
from ocinest.oci.nested import TREE_ROUTE
from ocinest.registry import blobs, files, gc, listing, manifests, nested, observability, ui
from ocinest.registry.auth import IDENTITY, token_endpoint
from ocinest.registry.authorize import DELETE, LOGIN, PULL, PUSH, authorize
from ocinest.registry.config import Config
from ocinest.registry.errors import error_middleware
from ocinest.registry.state import REGISTRY, Registry, registry

Route = Callable[..., Awaitable[web.StreamResponse]]

API_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}


async def base(request: web.Request) -> web.Response:
    return web.json_response({}, headers=nested.NESTED_HEADER)


Method = tuple[Route, str | None]

# Longest patterns first: a repository name may itself contain "blobs" or "manifests".
_TABLE: list[tuple[str, str, dict[str, Method]]] = [
    ("base", r"^/v2/?\Z", {"GET": (base, LOGIN), "HEAD": (base, LOGIN)}),
    ("catalog", r"^/v2/_catalog\Z", {"GET": (listing.catalog, LOGIN)}),
    (
        "tree",
        TREE_ROUTE,
        {"GET": (nested.get_tree, PULL)},
    ),
    (
        "upload_start",
        r"^/v2/(?P<name>.+)/blobs/uploads/?\Z",
        {"POST": (blobs.start_upload, PUSH)},
    ),
    (
        "upload",
        r"^/v2/(?P<name>.+)/blobs/uploads/(?P<upload_id>[^/]+)\Z",
        {
            "GET": (blobs.upload_status, PUSH),
            "PATCH": (blobs.patch_upload, PUSH),
            "PUT": (blobs.finish_upload, PUSH),
            "DELETE": (blobs.cancel_upload, PUSH),
        },
    ),
    (
        "blob",
        r"^/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)\Z",
        {
            "GET": (blobs.get_blob, PULL),
            "HEAD": (blobs.get_blob, PULL),
            "DELETE": (blobs.delete_blob, DELETE),
        },
    ),
    (
        "manifest",
        r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)\Z",
        {
            "GET": (manifests.get_manifest, PULL),
            "HEAD": (manifests.get_manifest, PULL),
            "PUT": (manifests.put_manifest, PUSH),
            "DELETE": (manifests.delete_manifest, DELETE),
        },
    ),
    ("tags", r"^/v2/(?P<name>.+)/tags/list\Z", {"GET": (listing.list_tags, PULL)}),
    (
        "referrers",
        r"^/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)\Z",
        {"GET": (manifests.get_referrers, PULL)},
    ),
]
# DOTALL: a name or reference holding a newline reaches validation (NAME_INVALID, not 404).
ROUTES = [(name, re.compile(pattern, re.DOTALL), methods) for name, pattern, methods in _TABLE]


async def dispatch(request: web.Request) -> web.StreamResponse:
    # The raw path, so that "..", "%2F" and the like reach name validation as sent.
    path = urllib.parse.unquote(request.raw_path.split("?", 1)[0])
    for route, pattern, methods in ROUTES:
        m = pattern.match(path)
        if m is None:
            continue
        request[observability.ROUTE] = route
        if request.method not in methods:
            raise web.HTTPMethodNotAllowed(request.method, methods)
        handler, action = methods[request.method]
        params: dict[str, Any] = m.groupdict()
        if "name" in params:
            request[observability.REPOSITORY] = validate_name(params["name"])
        if "upload_id" in params:
            request[observability.UPLOAD_ID] = params["upload_id"]
        request[IDENTITY] = await registry(request).auth.identify(request)
        await authorize(request, route, action, params)
        return await handler(request, **params)
    raise web.HTTPNotFound()  # the error middleware answers both in OCI form


async def token(request: web.Request) -> web.Response:
    request[observability.ROUTE] = "token"
    auth = registry(request).auth
    if auth.signing_key is None:
        raise web.HTTPNotFound()
    return await token_endpoint(request, auth)


async def _api_headers(request: web.Request, response: web.StreamResponse) -> None:
    """The API version header on every answer, streamed ones included."""
    response.headers.update(API_HEADERS)


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Metrics of every answer. The route is the aiohttp route's name until a handler names
    it better (the API's and the pages' own routes)."""
    request[observability.ROUTE] = request.match_info.route.name or "none"
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        observability.observe(request, status, time.perf_counter() - start)


def create_app(config: Config) -> web.Application:
    app = web.Application(middlewares=[api_middleware, error_middleware])
    app.on_response_prepare.append(_api_headers)

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
    app.router.add_route("*", "/v2/{tail:(?s:.*)}", dispatch)  # newlines included
    app[files.CACHE] = files.TreeCache()
    app.router.add_route("*", files.PREFIX + "{tail:(?s:.*)}", files.serve)
    app.router.add_route("GET", "/auth/token", token)
    app.router.add_route("POST", "/auth/token", token)
    app.router.add_get("/metrics", observability.metrics, name="metrics")
    app.router.add_get("/healthz", observability.health, name="healthz")
    app.router.add_get("/readyz", observability.ready, name="readyz")
    if config.ui:
        ui.add_routes(app)
    return app
