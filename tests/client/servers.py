"""Tiny real HTTP servers for the client tests, each on its own thread and event loop:

* `CountingProxy`: a reverse proxy that forwards everything to a registry and counts requests
  and the blob bytes uploaded through it;
* `FaultyRegistry`: serves one image from memory and breaks blob downloads off midway (the fault
  a test cannot cause with a real registry), or answers 503 a few times first;
* `TokenServer`: a Docker registry token service that signs real JWTs (RS256, x5c) with
  openssl, for distribution's token auth.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.conftest import free_port
from tests.manifests import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, sha256


class ThreadedApp:
    """An aiohttp application served on 127.0.0.1:<free port> from a background thread."""

    def __init__(self) -> None:
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def make_app(self) -> web.Application:
        raise NotImplementedError

    async def on_start(self) -> None:
        pass

    async def on_stop(self) -> None:
        pass

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            await self.on_start()
            self._runner = web.AppRunner(self.make_app(), access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

        self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(20), "test server did not start"

    def stop(self) -> None:
        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            await self.on_stop()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(20)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(20)
        self._loop.close()

    def __enter__(self) -> ThreadedApp:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


HOP_HEADERS = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "host",
    "content-length",
}


@dataclass
class Counts:
    requests: Counter[str] = field(default_factory=Counter)  # "METHOD kind" -> n
    blob_bytes_up: int = 0
    blob_bytes_down: int = 0
    blob_uploads: Counter[str] = field(default_factory=Counter)  # digest -> completed uploads
    inflight_uploads: int = 0
    max_inflight_uploads: int = 0

    def reset(self) -> None:
        self.max_inflight_uploads = 0
        self.requests.clear()
        self.blob_uploads.clear()
        self.blob_bytes_up = 0
        self.blob_bytes_down = 0


def _kind(path: str) -> str:
    if "/blobs/uploads" in path:
        return "upload"
    if "/blobs/" in path:
        return "blob"
    if "/manifests/" in path:
        return "manifest"
    return "other"


class CountingProxy(ThreadedApp):
    """Forwards to `upstream` (http://host:port), counting what passes."""

    def __init__(
        self, upstream: str, *, drop_patch: int | None = None, refuse_puts: int = 0
    ) -> None:
        super().__init__()
        self.drop_patch = drop_patch  # break the connection off at this PATCH (1-based), once
        self._patches = 0
        self.refuse_puts = refuse_puts  # answer 503 to the first N closing PUTs of each blob
        self._refused: Counter[str] = Counter()
        self.upstream = upstream.rstrip("/")
        self.counts = Counts()
        self._session: aiohttp.ClientSession | None = None
        self._lock = threading.Lock()

    async def on_start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False)

    async def on_stop(self) -> None:
        if self._session is not None:
            await self._session.close()

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self.forward)
        return app

    async def forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        kind = _kind(request.path)
        uploading = kind == "upload" and request.method in ("PUT", "PATCH")
        if uploading:
            with self._lock:
                self.counts.inflight_uploads += 1
                self.counts.max_inflight_uploads = max(
                    self.counts.max_inflight_uploads, self.counts.inflight_uploads
                )
        try:
            return await self._forward(request, kind)
        finally:
            if uploading:
                with self._lock:
                    self.counts.inflight_uploads -= 1

    async def _forward(self, request: web.Request, kind: str) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        if kind == "upload" and request.method == "PATCH":
            self._patches += 1
            if self._patches == self.drop_patch:
                assert request.transport is not None
                request.transport.close()  # the chunk never reaches the registry
                raise web.HTTPBadRequest()
        digest = request.query.get("digest", "")
        if kind == "upload" and request.method == "PUT" and digest:
            with self._lock:
                refuse = self._refused[digest] < self.refuse_puts
                self._refused[digest] += refuse
            if refuse:
                return web.json_response(
                    {"errors": [{"code": "UNAVAILABLE", "message": "busy"}]}, status=503
                )
        if kind == "upload" and request.method in ("PUT", "PATCH") and body:
            await asyncio.sleep(0.005)  # let parallel uploads overlap, to see the bound
        with self._lock:
            self.counts.requests[f"{request.method} {kind}"] += 1
            if kind == "upload" and request.method in ("PUT", "PATCH"):
                self.counts.blob_bytes_up += len(body)
            if kind == "upload" and request.method == "POST" and "digest" in request.query:
                self.counts.blob_bytes_up += len(body)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=body if body else None,
            allow_redirects=False,
        ) as upstream:
            data = await upstream.read()
            out = web.Response(
                status=upstream.status, body=data if request.method != "HEAD" else None
            )
            for k, v in upstream.headers.items():
                if k.lower() in HOP_HEADERS:
                    continue
                if k.lower() == "location" and v.startswith(self.upstream):
                    v = self.url + v[len(self.upstream) :]
                out.headers.add(k, v)
            if request.method == "HEAD" and "Content-Length" in upstream.headers:
                out.headers["Content-Length"] = upstream.headers["Content-Length"]
        with self._lock:
            if kind == "blob" and request.method == "GET":
                self.counts.blob_bytes_down += len(data)
            if kind == "upload" and upstream.status == 201 and "digest" in request.query:
                self.counts.blob_uploads[request.query["digest"]] += 1
        return out


def small_image() -> tuple[bytes, dict[str, bytes]]:
    """An image manifest and its blobs (digest -> bytes), the layer 256 KiB."""
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer = bytes(range(256)) * 1024
    blobs = {sha256(config): config, sha256(layer): layer}
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}],
        }
    ).encode()
    return manifest, blobs


class FaultyRegistry(ThreadedApp):
    """A registry holding one image (`repo:v1`) whose blob downloads break off after half the
    bytes for the first `drops` requests (`drops=-1`: always), and whose every request is first
    answered 503 `unavailable` times. It honours Range requests, as registries do."""

    def __init__(
        self, *, drops: int = 0, unavailable: int = 0, ranges: bool = True, endless: bool = False
    ) -> None:
        super().__init__()
        self.manifest, self.blobs = small_image()
        self.drops = drops
        self.unavailable = unavailable
        self.ranges = ranges
        # Claims the nested extension, and answers its tree endpoint and `repo:endless` with
        # a body that never ends (no Content-Length).
        self.endless = endless
        self.requests: list[tuple[str, str, str]] = []  # method, path, range

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path, request.headers.get("Range", "")))
        if self.unavailable > 0:
            self.unavailable -= 1
            return web.json_response(
                {"errors": [{"code": "UNAVAILABLE", "message": "try later"}]}, status=503
            )
        path = request.path
        if path in ("/v2", "/v2/"):
            return web.json_response({}, headers={"Ocinest-Nested": "1"} if self.endless else {})
        if self.endless and ("/_ocinest/tree/" in path or path.endswith("/manifests/endless")):
            return await self._endless(request)
        if "/manifests/" in path:
            ref = path.rsplit("/", 1)[1]
            if ref not in ("v1", sha256(self.manifest)):
                return web.json_response(
                    {"errors": [{"code": "MANIFEST_UNKNOWN", "message": ref}]}, status=404
                )
            headers = {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": sha256(self.manifest)}
            if request.method == "HEAD":
                headers["Content-Length"] = str(len(self.manifest))
                return web.Response(headers=headers)
            return web.Response(body=self.manifest, headers=headers)
        if "/blobs/" in path:
            digest = path.rsplit("/", 1)[1]
            data = self.blobs.get(digest)
            if data is None:
                return web.json_response(
                    {"errors": [{"code": "BLOB_UNKNOWN", "message": digest}]}, status=404
                )
            if request.method == "HEAD":
                return web.Response(headers={"Content-Length": str(len(data))})
            start = 0
            rng = request.headers.get("Range", "")
            if self.ranges and rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[len("bytes=") : -1])
            part = data[start:]
            resp = web.StreamResponse(status=206 if start else 200)
            resp.content_length = len(part)
            if start:
                resp.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            await resp.prepare(request)
            if self.drops != 0 and len(data) > 1024:
                if self.drops > 0:
                    self.drops -= 1
                await resp.write(part[: len(part) // 2])
                await asyncio.sleep(0.01)
                # Break the connection off mid-body.
                assert request.transport is not None
                request.transport.close()
                return resp
            await resp.write(part)
            await resp.write_eof()
            return resp
        return web.json_response({"errors": [{"code": "UNSUPPORTED", "message": path}]}, status=404)

    async def _endless(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        try:
            await resp.write(b'{"repository": "')
            for _ in range(100_000):  # 6 GiB at most: the client must hang up long before
                await resp.write(b"x" * 65536)
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass  # it did
        return resp


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer(ThreadedApp):
    """A Docker registry token service: Basic credentials in, an RS256 JWT (x5c header) out,
    granting whatever scopes are asked for to `users`; records every request's scopes."""

    def __init__(self, folder: Path, users: dict[str, str], service: str = "test-registry") -> None:
        super().__init__()
        self.folder = folder
        self.users = users
        self.service = service
        self.issuer = "ocinest-test-issuer"
        self.requests: list[dict[str, Any]] = []
        self.key = folder / "token.key"
        self.cert = folder / "token.pem"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                str(self.key),
                "-out",
                str(self.cert),
                "-days",
                "2",
                "-subj",
                "/CN=ocinest-test-token",
            ],
            check=True,
            capture_output=True,
        )
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout
        self.x5c = base64.b64encode(der).decode()

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self.token)
        return app

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        sig = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signing_input}.{_b64url(sig)}"

    async def token(self, request: web.Request) -> web.Response:
        scopes = request.query.getall("scope", [])
        user = ""
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if self.users.get(name) != password:
                self.requests.append({"user": name, "scopes": scopes, "denied": True})
                return web.json_response({"details": "wrong credentials"}, status=401)
            user = name
        self.requests.append({"user": user, "scopes": scopes})
        access = []
        for scope in scopes:
            typ, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            granted = actions.split(",") if user else [a for a in actions.split(",") if a == "pull"]
            access.append({"type": typ, "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user,
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": str(uuid.uuid4()),
            "access": access,
        }
        token = await asyncio.to_thread(self.sign, claims)
        return web.json_response({"token": token, "expires_in": 300})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
