"""A counting pass-through in front of S3: what a registry process asks of the store, in
requests by operation and in bytes each way, for the scale-out scenario's per-push figures.

It forwards every request unchanged, Host header included (S3's signature covers it), to the
real endpoint, and answers with what that answered. `Expect: 100-continue` is answered here
and not forwarded (botocore does not sign it)."""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection"}


class S3Counter:
    """Counts, since the last `reset`: requests by operation (the method, " copy" for a
    server-side copy, and the first query parameters' names), bytes sent to S3 in request
    bodies, server-side copies, and bytes read back in GET answers."""

    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self._host, self._port = target.hostname or "127.0.0.1", target.port or 80
        self._lock = threading.Lock()
        self._local = threading.local()
        self.ops: Counter[str] = Counter()
        self.sent = self.received = self.copies = 0
        counter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                up = getattr(counter._local, "conn", None)  # one connection a thread
                if up is None:
                    up = http.client.HTTPConnection(counter._host, counter._port, timeout=60)
                    counter._local.conn = up
                try:
                    up.request(self.command, self.path, body=body, headers=headers)
                    answer = up.getresponse()
                    data = answer.read()
                except (OSError, http.client.HTTPException):
                    up.close()
                    counter._local.conn = None
                    raise
                counter._count(self.command, self.path, self.headers, body, data)
                self.send_response(answer.status)
                for k, v in answer.getheaders():
                    if k.lower() not in _HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                size = answer.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", size or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _count(self, method: str, path: str, headers: Any, body: bytes, answer: bytes) -> None:
        query = urlsplit(path).query
        names = [p.split("=")[0] for p in query.split("&") if p]
        copy = "x-amz-copy-source" in {k.lower() for k in headers}
        op = method + (" copy" if copy else "") + "".join(f" ?{n}" for n in names[:2])
        with self._lock:
            self.ops[op] += 1
            self.sent += len(body)
            if method == "GET":
                self.received += len(answer)
            if copy:  # bytes S3 writes again, server-side (the copy's size is not counted)
                self.copies += 1

    def reset(self) -> None:
        with self._lock:
            self.ops.clear()
            self.sent = self.received = self.copies = 0

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": sum(self.ops.values()),
                "by_operation": dict(sorted(self.ops.items())),
                "bytes_sent": self.sent,
                "bytes_read": self.received,
                "server_side_copies": self.copies,
            }

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
