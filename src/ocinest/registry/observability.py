"""Prometheus metrics, structured (JSON) logs and the liveness and readiness endpoints."""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from ocinest.registry.state import registry

REQUESTS = Counter(
    "ocinest_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
LATENCY = Histogram(
    "ocinest_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 10, 60),
)
ROUTE = web.RequestKey("route", str)


def observe(request: web.Request, status: int, seconds: float) -> None:
    route = request.get(ROUTE, "none")
    REQUESTS.labels(request.method, route, str(status)).inc()
    LATENCY.labels(route).observe(seconds)


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
        fields = {
            "remote": request.remote,
            "method": request.method,
            "path": request.path,
            "status": response.status,
            "bytes": response.body_length,
            "ms": round(time_ * 1000, 2),
            "ua": request.headers.get("User-Agent", ""),
        }
        message = f"{request.method} {request.path} {response.status}"
        self.logger.info(message, extra={FIELDS: fields})

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


async def metrics(request: web.Request) -> web.Response:
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
