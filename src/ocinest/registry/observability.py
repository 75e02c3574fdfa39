"""Prometheus metrics, structured (JSON) access logs and the health endpoint."""

from __future__ import annotations

import json
import logging
import time

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


class JSONAccessLogger(AbstractAccessLogger):
    """One JSON object a request on the `ocinest.access` logger."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time_: float) -> None:
        self.logger.info(
            json.dumps(
                {
                    "ts": round(time.time(), 3),
                    "remote": request.remote,
                    "method": request.method,
                    "path": request.path,
                    "status": response.status,
                    "bytes": response.body_length,
                    "ms": round(time_ * 1000, 2),
                    "ua": request.headers.get("User-Agent", ""),
                }
            )
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def health(request: web.Request) -> web.Response:
    """Healthy when the metadata store answers."""
    await registry(request).meta.list_repositories(1, None)
    return web.json_response({"status": "ok"})
