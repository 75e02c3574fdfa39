"""Prometheus metrics, structured (JSON) logs and the liveness and readiness endpoints."""

from __future__ import annotations

import asyncio
import functools
import json
import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.helpers import must_be_empty_body
from aiohttp.web_fileresponse import NOSENDFILE
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from ocinest.oci.errors import OCIError
from ocinest.registry.auth import IDENTITY
from ocinest.registry.metrics import LATENCY, RECEIVED, REQUESTS, SENT, show_gc_run
from ocinest.registry.state import registry
from ocinest.storage.errors import BackendUnavailable

# What the access log and the metrics tell of a request, set where it is routed.
ROUTE = web.RequestKey("route", str)
REPOSITORY = web.RequestKey("repository", str)
UPLOAD_ID = web.RequestKey("upload_id", str)


def route_of(request: web.BaseRequest) -> str:
    """The request's route (see `api_middleware`); `malformed` for one too broken to reach
    the application."""
    route: str = request.get(ROUTE, "malformed")
    return route


# The methods the metrics name; any other is counted as "other" (a client chooses the
# method, and each label value is a series kept for the life of the process).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


# The labelled series, looked up once each: their label values are bounded (the methods
# above, the routes, the statuses), and prometheus_client's `labels()` costs a lock a call.
@functools.cache
def _requests(method: str, route: str, status: int) -> Counter:
    return REQUESTS.labels(method, route, str(status))


@functools.cache
def _route_series(route: str) -> tuple[Histogram, Counter, Counter]:
    return LATENCY.labels(route), RECEIVED.labels(route), SENT.labels(route)


def observe(request: web.Request, status: int, seconds: float) -> None:
    route = route_of(request)
    method = request.method if request.method in METHODS else "other"
    _requests(method, route, status).inc()
    _route_series(route)[0].observe(seconds)


def received(request: web.BaseRequest) -> int:
    """Bytes of the request's body received so far."""
    return request.content.total_bytes


def sent(request: web.BaseRequest, response: web.StreamResponse) -> int:
    """Bytes of the answer written to the connection: status line, headers and body. A file
    answer's body goes by sendfile, past aiohttp's count, unless aiohttp falls back to
    writing it (AIOHTTP_NOSENDFILE, compression)."""
    length = response.body_length
    if (
        isinstance(response, web.FileResponse)
        and not (NOSENDFILE or response.compression)
        and not must_be_empty_body(request.method, response.status)
    ):
        length += response.content_length or 0
    return length


def count_bytes(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """Count the bytes of an answered request (once it is sent)."""
    _, received_bytes, sent_bytes = _route_series(route_of(request))
    if n := received(request):
        received_bytes.inc(n)
    sent_bytes.inc(sent(request, response))


FIELDS = "fields"  # the `extra` key of a log record's structured fields


class JSONFormatter(logging.Formatter):
    """Every log line one JSON object: time (`ts`, Unix seconds), level, logger, message,
    the record's structured fields, and the traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, FIELDS, {}),
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line)


class JSONAccessLogger(AbstractAccessLogger):
    """One line a request on the `ocinest.access` logger, its fields structured."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_: float) -> None:
        identity = request.get(IDENTITY)
        fields = {
            "remote": request.remote,
            "method": request.method,
            "path": request.path,
            "status": response.status,
            "action": route_of(request),
            "user": identity.user if identity is not None else None,
            "repository": request.get(REPOSITORY),
            "upload_id": request.get(UPLOAD_ID) or response.headers.get("Docker-Upload-UUID"),
            "bytes_in": received(request),
            "bytes": sent(request, response),
            "ms": round(time_ * 1000, 2),
            "ua": request.headers.get("User-Agent", ""),
        }
        message = f"{request.method} {request.path} {response.status}"
        self.logger.info(message, extra={FIELDS: fields})

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


async def metrics(request: web.Request) -> web.Response:
    reg = registry(request)
    if reg.config.metrics_auth:
        # Basic even in token mode: a scraper holds a password, not a short-lived token.
        request[IDENTITY] = identity = await reg.auth.identify_basic(request)
        try:
            reg.auth.require_login(identity, request)
        except OCIError as err:
            raise reg.auth.basic_challenge(err) from None
    # The last garbage collection, by any process: one indexed lookup. While the metadata
    # store is down the gauges keep what they showed (the process's own metrics still count).
    try:
        run = await reg.meta.last_gc_run()
    except BackendUnavailable:
        run = None
    if run is not None:
        show_gc_run(run)
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def health(request: web.Request) -> web.Response:
    """Liveness: the process answers. It never waits on a backend, so that an orchestrator
    does not restart a registry for its database's outage."""
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """Readiness: 200 when both backends answer, else 503 saying which does not (each is
    asked at once, each within the backend timeout)."""
    reg = registry(request)
    checks = {"metadata": reg.meta.ping(), "blobs": reg.blobs.ping()}
    results = await asyncio.gather(*checks.values(), return_exceptions=True)
    answer: dict[str, object] = {}
    for backend, result in zip(checks, results, strict=True):
        answer[backend] = "ok" if result is None else f"unavailable: {result}"
    ok = all(result is None for result in results)
    answer = {"status": "ready" if ok else "unavailable", **answer}
    return web.json_response(answer, status=200 if ok else 503)
