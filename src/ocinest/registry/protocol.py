"""The HTTP layer below the application: idle connections, malformed requests, graceful stop.

Built on aiohttp's RequestHandler and Server (checked against aiohttp 3.14), subclassed for:
* a request whose body stops arriving for `idle_timeout` seconds has its connection closed;
  one sweep a server looks at the time each connection last received a byte, never at how
  long a request has run. Headers, and idle keep-alive, use aiohttp's keepalive_timeout;
* malformed HTTP (bad request line, oversized or duplicate headers, ...) is answered with an
  OCI error body and logged in one short, rate-limited line;
* stopping waits for the requests in flight up to the grace period, then cuts the rest.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from ocinest.oci.errors import ErrorCode, ErrorDetail, OCIError
from ocinest.registry.app import API_HEADERS
from ocinest.registry.config import Config
from ocinest.registry.metrics import REQUESTS
from ocinest.registry.observability import JSONAccessLogger, count_bytes

log = logging.getLogger("ocinest.registry")

Handler = Callable[[BaseRequest], Awaitable[web.StreamResponse]]

# Parser limits. The request line's differs from a header's so that a LineTooLong tells
# which of the two was too long.
MAX_REQUEST_LINE = 8192
MAX_HEADER = 8190
MAX_HEADERS = 128
# After the grace period, cut requests get this long to unwind before connections close.
CUT_UNWIND = 0.5


class RateLimitedLog:
    """At most `limit` lines a `window` seconds; then, at the window's end, one line
    counting those left out."""

    def __init__(self, limit: int = 10, window: float = 10) -> None:
        self.limit = limit
        self.window = window
        self._start = 0.0
        self._logged = 0
        self._dropped = 0

    def __call__(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._start >= self.window:
            self._flush()
            self._start, self._logged = now, 0
        if self._logged < self.limit:
            self._logged += 1
            log.warning(message, *args)
            return
        if self._dropped == 0:
            asyncio.get_running_loop().call_later(self._start + self.window - now, self._flush)
        self._dropped += 1

    def _flush(self) -> None:
        if self._dropped:
            log.warning(
                "%d more malformed or stalled requests not logged (at most %d lines a %g s)",
                self._dropped,
                self.limit,
                self.window,
            )
            self._dropped = 0


def _diagnose(exc: BaseException | None, message: str | None) -> tuple[int, str, str]:
    """Status, message and detail for a request the parser refused."""
    if isinstance(exc, LineTooLong):
        if exc.args[1] == MAX_REQUEST_LINE:
            return 414, "request line too long", f"request line over {MAX_REQUEST_LINE} bytes"
        return 431, "request header too large", f"a header is over {MAX_HEADER} bytes"
    # One line, without the parser's caret under the offending byte.
    text = " ".join((message or str(exc or "")).split()).removesuffix(" ^")
    if text.startswith("Too many headers"):
        return 431, "too many request headers", f"more than {MAX_HEADERS} headers"
    return 400, "malformed HTTP request", text[:200]


class Protocol(RequestHandler):
    """One connection."""

    __slots__ = ("_quiet", "idle_timeout", "last_read", "noisy", "stopping")

    def __init__(self, manager: Server, *, idle_timeout: float, **kwargs: Any) -> None:
        super().__init__(
            manager,
            keepalive_timeout=idle_timeout,
            max_line_size=MAX_REQUEST_LINE,
            max_field_size=MAX_HEADER,
            max_headers=MAX_HEADERS,
            **kwargs,
        )
        self.idle_timeout = idle_timeout
        self.last_read = self._loop.time()
        self.noisy = manager.noisy
        self.stopping = False
        # The answer to a malformed request, which the access log leaves to `noisy`.
        self._quiet: web.StreamResponse | None = None

    def data_received(self, data: bytes) -> None:
        self.last_read = self._loop.time()
        super().data_received(data)

    def resume_reading(self, resume_parser: bool = True) -> None:
        # Time spent paused (the handler not reading) is not the client's silence.
        self.last_read = self._loop.time()
        super().resume_reading(resume_parser)

    def stop(self) -> None:
        """The server stops: a connection waiting for a request closes now, one busy with a
        request once it is answered. (aiohttp's close() would drop the rest of a request
        body still coming in, and leave a waiting connection open to the end of the grace.)"""
        self.stopping = True
        if self._waiter is not None and not self._waiter.done():
            self.force_close()

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        if self.stopping:
            resp.force_close()  # "Connection: close"
        answer = await super().finish_response(request, resp, start_time)
        count_bytes(request, resp)
        if self.stopping:
            resp.force_close()  # the stop began while it was sent: no next request
        return answer

    def close_if_stalled(self, now: float) -> None:
        """Close the connection if a request body is awaited and no byte of it has come for
        idle_timeout."""
        request = self._current_request
        if (
            request is None
            or request.content.is_eof()
            or self._reading_paused
            or now - self.last_read <= self.idle_timeout
        ):
            return
        self.noisy(
            "closed a connection from %s: no byte of the request body for %g s",
            request.remote,
            self.idle_timeout,
        )
        self.force_close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("the answer has begun; no error answer can follow")
        if status >= 500:
            log.error("internal error on %s %s", request.method, request.path, exc_info=exc)
            body: dict[str, Any] = {
                "errors": [{"code": "UNKNOWN", "message": "internal error", "detail": ""}]
            }
        else:
            status, title, detail = _diagnose(exc, message)
            self.noisy("malformed request from %s: %d %s", request.remote, status, detail)
            REQUESTS.labels("-", "malformed", str(status)).inc()
            entry = ErrorDetail(ErrorCode.UNSUPPORTED, detail, message=title)
            body = OCIError.many([entry]).to_json()
        response = web.Response(
            status=status,
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **API_HEADERS},
        )
        response.force_close()
        if status < 500:
            self._quiet = response
        return response

    def log_access(
        self, request: BaseRequest, response: web.StreamResponse, start: float | None
    ) -> None:
        if response is not self._quiet:
            super().log_access(request, response, start)


class Server(web.Server):
    """The connections of one process."""

    def __init__(self, handler: Handler, *, config: Config, **kwargs: Any) -> None:
        super().__init__(self._track, **kwargs)
        self._handler = handler
        self.config = config
        self.noisy = RateLimitedLog()
        # The tasks of connections that have had a request (each runs one at a time).
        self._busy: set[asyncio.Task[None]] = set()
        self.cut = 0
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _track(self, request: BaseRequest) -> web.StreamResponse:
        task = request.task
        if task not in self._busy:
            self._busy.add(task)
            task.add_done_callback(self._busy.discard)
        return await self._handler(request)

    def __call__(self) -> Protocol:
        return Protocol(
            self,
            loop=self._loop,
            idle_timeout=self.config.idle_timeout,
            access_log_class=JSONAccessLogger,
            access_log=logging.getLogger("ocinest.access") if self.config.access_log else None,
        )

    async def _sweep(self) -> None:
        idle = self.config.idle_timeout
        while True:
            await asyncio.sleep(min(1.0, idle / 4))
            now = self._loop.time()
            for conn in self.connections:
                if isinstance(conn, Protocol):
                    conn.close_if_stalled(now)

    def pre_shutdown(self) -> None:
        for conn in self.connections:
            if isinstance(conn, Protocol):
                conn.stop()

    async def shutdown(self, timeout: float | None = None) -> None:
        """Wait up to `timeout` for the requests in flight (new connections are refused by
        now), then cut what is left."""
        self._sweeper.cancel()
        deadline = self._loop.time() + (timeout or 0)
        while busy := {task for task in self._busy if not task.done()}:
            left = deadline - self._loop.time()
            if left <= 0:
                break
            await asyncio.wait(busy, timeout=min(left, 0.1))
            self.pre_shutdown()  # one that went back to waiting for a request closes now
        self.cut = len(busy)
        for task in busy:
            task.cancel()
        await super().shutdown(CUT_UNWIND)


class Runner(web.AppRunner):
    """An AppRunner whose server is ours; cleanup() stops gracefully within the grace."""

    def __init__(self, app: web.Application, config: Config) -> None:
        super().__init__(app, handle_signals=False, shutdown_timeout=config.shutdown_grace)
        self.config = config
        self.http: Server | None = None

    async def _make_server(self) -> Server:
        app_server = await super()._make_server()
        self.http = Server(
            app_server.request_handler,
            request_factory=app_server.request_factory,
            config=self.config,
        )
        return self.http
