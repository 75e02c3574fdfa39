"""A plain HTTP/1.1 client (http.client, keep-alive), cheap enough not to be the bottleneck
for large transfers and sequential walks and the same for both registries, and the registry
requests the scenarios make with it."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from harness.oci import OCI_MANIFEST, Descriptor, image_manifest, sha256


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes


class Http:
    """One keep-alive connection to `base`; a context manager that closes it."""

    def __init__(self, base: str, timeout: float = 600) -> None:
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def __enter__(self) -> Http:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _conn(self) -> http.client.HTTPConnection:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    @staticmethod
    def path_of(url: str) -> str:
        u = urllib.parse.urlsplit(url)
        return u.path + (f"?{u.query}" if u.query else "")

    def open(
        self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> http.client.HTTPResponse:
        headers = dict(headers or {})
        if body is not None and "Content-Length" not in headers:
            headers["Content-Length"] = str(memoryview(body).nbytes)
        for attempt in (0, 1):
            try:
                conn = self._conn()
                conn.request(method, self.path_of(url), body=body, headers=headers)
                return conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def request(
        self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Resp:
        r = self.open(method, url, body, headers)
        data = r.read()
        return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, data)

    def expect(self, status: int, method: str, url: str, body: Any = None, **headers: str) -> Resp:
        r = self.request(method, url, body, {k.replace("_", "-"): v for k, v in headers.items()})
        if r.status != status:
            raise RuntimeError(f"{method} {url}: {r.status} (wanted {status}): {r.body[:300]!r}")
        return r


def with_digest(location: str, digest: str) -> str:
    sep = "&" if urllib.parse.urlsplit(location).query else "?"
    return f"{location}{sep}digest={urllib.parse.quote(digest)}"


def push_blob(h: Http, repo: str, data: Any, digest: str | None = None) -> str:
    """A monolithic upload: POST, then a PUT with the whole body."""
    digest = digest or sha256(data)
    loc = h.expect(202, "POST", f"/v2/{repo}/blobs/uploads/").headers["location"]
    h.expect(201, "PUT", with_digest(loc, digest), data, Content_Type="application/octet-stream")
    return digest


def push_chunked(h: Http, repo: str, data: memoryview, chunk: int, digest: str) -> None:
    """A chunked upload: POST, PATCHes of `chunk` bytes with Content-Range, then PUT."""
    loc = h.expect(202, "POST", f"/v2/{repo}/blobs/uploads/").headers["location"]
    for offset in range(0, len(data), chunk):
        part = data[offset : offset + chunk]
        r = h.expect(
            202,
            "PATCH",
            loc,
            part,
            Content_Type="application/octet-stream",
            Content_Range=f"{offset}-{offset + len(part) - 1}",
        )
        loc = r.headers["location"]
    h.expect(201, "PUT", with_digest(loc, digest), b"")


def mount_blob(h: Http, repo: str, digest: str, source: str) -> None:
    q = urllib.parse.urlencode({"mount": digest, "from": source})
    h.expect(201, "POST", f"/v2/{repo}/blobs/uploads/?{q}")


def put_manifest(h: Http, repo: str, ref: str, body: bytes, media_type: str = OCI_MANIFEST) -> None:
    h.expect(201, "PUT", f"/v2/{repo}/manifests/{ref}", body, Content_Type=media_type)


def push_base_image(
    h: Http, repo: str, tag: str | None = None, seed: str | None = None
) -> tuple[Descriptor, Descriptor]:
    """A config and a layer (their content made from `seed`, by default the repository's
    name) in `repo`, and an image of them tagged `tag`; returns their descriptors."""
    seed = seed or repo
    config = json.dumps({"architecture": "amd64", "os": "linux", "bench": seed}).encode()
    layer = hashlib.sha256(seed.encode()).digest() * 32
    cd = (push_blob(h, repo, config), len(config))
    ld = (push_blob(h, repo, layer), len(layer))
    if tag is not None:
        put_manifest(h, repo, tag, image_manifest(cd, ld))
    return cd, ld


def parallel(
    base: str, items: Iterable[Any], fn: Callable[[Http, Any], None], workers: int = 8
) -> float:
    """Run fn(http, item) for every item on `workers` keep-alive connections; seconds taken."""
    local = threading.local()
    clients: list[Http] = []

    def run(item: Any) -> None:
        if not hasattr(local, "h"):
            local.h = Http(base)
            clients.append(local.h)
        fn(local.h, item)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(run, items):
            pass
    for c in clients:
        c.close()
    return time.perf_counter() - start


def next_link(headers: dict[str, str]) -> str | None:
    link = headers.get("link")
    if not link:
        return None
    m = re.search(r"<([^>]+)>\s*;\s*rel=\"?next\"?", link)
    return m.group(1) if m else None


def list_all(h: Http, first: str, key: str) -> list[str]:
    """Follow `Link: rel=next` from `first`; every `key` entry of every page."""
    out: list[str] = []
    url: str | None = first
    while url is not None:
        r = h.expect(200, "GET", url)
        out += json.loads(r.body)[key] or []
        url = next_link(r.headers)
    return out
