"""The registry client: one `RegistryClient` per host, on aiohttp, with anonymous, Basic and
Bearer-token auth, retries with backoff, and the distribution-spec API as methods of
`RemoteRepository`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from ocinest import __version__
from ocinest.oci import mediatypes as mt
from ocinest.oci.digest import Digest, new_hasher
from ocinest.oci.manifest import MAX_MANIFEST_SIZE
from ocinest.oci.nested import NESTED_HEADER, NESTED_HEADER_VALUE, fallback_tag, tree_path

from .auth import Challenge, Credentials, find_credentials, parse_challenge
from .base import MANIFEST_ACCEPT, BlobSource, Fetched, Progress, ProgressEvent, Repository
from .errors import (
    AuthError,
    ClientError,
    DigestMismatch,
    Kind,
    NetworkError,
    NotFound,
    RegistryError,
)
from .reference import DOCKER_HUB, DOCKER_HUB_API, is_local_host

READ_CHUNK = 1 << 16
FILE_CHUNK = 1 << 20

# Errors after which a request is tried again: the connection dropped or timed out.
_DROPPED = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientPayloadError,
    aiohttp.ClientOSError,
    asyncio.TimeoutError,
)


@dataclass
class Options:
    """How to reach registries: transport security, credentials, retries, sizes."""

    plain_http: bool = False  # plain HTTP for every host (loopback hosts use it by default)
    insecure: bool = False  # TLS without verification, and plain HTTP when TLS fails
    ca_file: Path | None = None  # trust these CAs (and use TLS even for loopback hosts)
    auth_file: Path | None = None
    credentials: dict[str, Credentials] = field(default_factory=dict)  # host -> explicit
    retries: int = 4
    backoff: float = 0.2  # seconds before the first retry; doubles, with jitter
    max_backoff: float = 5.0
    connect_timeout: float = 30.0
    read_timeout: float = 120.0
    chunk_size: int = 16 * 1024 * 1024  # uploads larger than this go in PATCH chunks
    concurrency: int = 4  # parallel blob transfers
    user_agent: str = f"ocinest/{__version__}"


def _scope_key(scope: str) -> tuple[str, set[str]]:
    resource, _, actions = scope.rpartition(":")
    return resource, set(actions.split(",")) if actions else set()


def _scope_strings(scopes: dict[str, set[str]]) -> list[str]:
    return [f"{res}:{','.join(sorted(actions))}" for res, actions in sorted(scopes.items())]


def repo_scope(repository: str, *actions: str) -> str:
    return f"repository:{repository}:{','.join(actions)}"


class RegistryClient:
    """A client for one registry host."""

    def __init__(self, host: str, session: aiohttp.ClientSession, options: Options) -> None:
        self.host = host
        self.api_host = DOCKER_HUB_API if host == DOCKER_HUB else host
        self.options = options
        self._session = session
        # Loopback registries speak plain HTTP unless a CA file says they have TLS.
        plain = options.plain_http or (is_local_host(self.api_host) and options.ca_file is None)
        self._scheme = "http" if plain else "https"
        self._ssl: ssl.SSLContext | bool = True
        if options.insecure:
            self._ssl = False
        elif options.ca_file is not None:
            try:
                self._ssl = ssl.create_default_context(cafile=str(options.ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise ClientError(f"cannot use CA file {options.ca_file}: {exc}") from None
        self._creds: Credentials | None = options.credentials.get(host)
        self._creds_loaded = host in options.credentials
        self._scheme_auth: str | None = None  # "basic" | "bearer" once challenged
        self._challenge: Challenge | None = None
        self._token: str | None = None
        self._token_scopes: dict[str, set[str]] = {}
        self._token_expiry = 0.0
        self._wanted: dict[str, set[str]] = {}
        self._auth_lock = asyncio.Lock()
        self._ping_headers: dict[str, str] | None = None

    # URLs and scopes

    @property
    def base_url(self) -> URL:
        return URL(f"{self._scheme}://{self.api_host}")

    def url(self, path: str) -> URL:
        return self.base_url.join(URL(path))

    def want(self, repository: str, *actions: str) -> None:
        """Declare access that later requests will need, so that one token covers it all
        (the token flow asks for several repositories' scopes at once)."""
        self._wanted.setdefault(f"repository:{repository}", set()).update(actions)

    def credentials(self) -> Credentials | None:
        if not self._creds_loaded:
            self._creds = find_credentials(self.host, None, self.options.auth_file)
            self._creds_loaded = True
        return self._creds

    # The request loop

    async def request(
        self,
        method: str,
        path: str | URL,
        *,
        scopes: Iterable[str] = (),
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        body: Callable[[], Any] | None = None,
        retry: bool = True,
        what: str = "",
    ) -> aiohttp.ClientResponse:
        """Send a request, authenticating on 401 and retrying on 429, 5xx and dropped
        connections. `body` makes a fresh request body for each attempt. The caller releases
        the response."""
        url = path if isinstance(path, URL) else self.url(path)
        needed = list(scopes)
        for scope in needed:
            res, actions = _scope_key(scope)
            self._wanted.setdefault(res, set()).update(actions)
        attempts = self.options.retries + 1 if retry else 1
        authenticated_now = False
        attempt = 0
        last_error = ""
        while True:
            attempt += 1
            send_headers = {"User-Agent": self.options.user_agent, **(headers or {})}
            auth = await self._authorization(needed)
            if auth:
                send_headers["Authorization"] = auth
            try:
                resp = await self._session.request(
                    method,
                    self._on_scheme(url),
                    headers=send_headers,
                    params=params,
                    data=body() if body is not None else None,
                    ssl=self._ssl,
                    allow_redirects=method in ("GET", "HEAD"),
                )
            except aiohttp.ClientConnectorDNSError as exc:
                raise NetworkError(
                    f"cannot resolve registry host {self.api_host}: {exc.os_error.strerror or exc}"
                ) from None
            except aiohttp.ClientConnectorCertificateError as exc:
                raise NetworkError(
                    f"TLS certificate of {self.api_host} not trusted ({exc.certificate_error}); "
                    "use --ca-file FILE or --insecure"
                ) from None
            except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
                if self.options.insecure and self._scheme == "https":
                    self._scheme = "http"  # an insecure registry that speaks plain HTTP
                    attempt -= 1
                    continue
                raise NetworkError(
                    f"TLS error talking to {self.api_host}: {exc}; a plain-HTTP registry "
                    "needs --plain-http"
                ) from None
            except aiohttp.ClientConnectorError as exc:
                last_error = f"cannot connect to {self.api_host}: {exc.os_error.strerror or exc}"
                if attempt >= min(attempts, 3):
                    raise NetworkError(last_error) from None
                await self._sleep(attempt, None)
                continue
            except _DROPPED as exc:
                last_error = _describe_drop(exc)
                if attempt >= attempts:
                    raise NetworkError(
                        f"{what or method + ' ' + str(url.path)} on {self.api_host}: "
                        f"{last_error} ({attempt} attempts)"
                    ) from None
                await self._sleep(attempt, None)
                continue
            if resp.status == 401 and not authenticated_now:
                header = resp.headers.get("WWW-Authenticate", "")
                await _drain(resp)
                await self._authenticate(parse_challenge(header), needed, what or str(url.path))
                authenticated_now = True
                attempt -= 1
                continue
            if resp.status == 401:
                header = resp.headers.get("WWW-Authenticate", "")
                await _drain(resp)
                raise self._denied(header, what or f"{method} {url.path}")
            if (resp.status == 429 or resp.status in (500, 502, 503, 504)) and attempt < attempts:
                retry_after = resp.headers.get("Retry-After")
                await _drain(resp)
                await self._sleep(attempt, retry_after)
                continue
            return resp

    def _on_scheme(self, url: URL) -> URL:
        if url.scheme != self._scheme and url.raw_authority == self.api_host:
            return url.with_scheme(self._scheme)
        return url

    async def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = self.options.backoff * (2 ** (attempt - 1))
        if retry_after and retry_after.isdigit():
            delay = max(delay, float(retry_after))
        delay = min(delay, self.options.max_backoff)
        await asyncio.sleep(delay * (0.75 + random.random() / 2))

    # Authentication

    async def _authorization(self, needed: list[str]) -> str | None:
        if self._scheme_auth == "basic":
            creds = self.credentials()
            return creds.basic() if creds else None
        if self._scheme_auth != "bearer":
            return None
        async with self._auth_lock:
            if not self._covers(needed) or time.monotonic() > self._token_expiry:
                await self._fetch_token(needed)
            return f"Bearer {self._token}" if self._token else None

    def _covers(self, needed: list[str]) -> bool:
        for scope in needed:
            res, actions = _scope_key(scope)
            if not actions <= self._token_scopes.get(res, set()):
                return False
        # Also every wanted scope, so that the next token request asks for all at once.
        return all(
            actions <= self._token_scopes.get(res, set()) for res, actions in self._wanted.items()
        )

    async def _authenticate(
        self, challenge: Challenge | None, needed: list[str], what: str
    ) -> None:
        if challenge is None:
            raise AuthError(f"{self.host} answered 401 to {what} without an auth challenge")
        if challenge.scheme == "basic":
            if self.credentials() is None:
                raise AuthError(
                    f"{self.host} requires a user name and password; "
                    f"run `ocinest login {self.host}`"
                )
            self._scheme_auth = "basic"
            return
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            raise AuthError(f"{self.host} asks for unsupported authentication {challenge.scheme!r}")
        self._scheme_auth = "bearer"
        self._challenge = challenge
        extra = challenge.params.get("scope", "")
        async with self._auth_lock:
            await self._fetch_token([*needed, *extra.split()])

    async def _fetch_token(self, needed: list[str]) -> None:
        assert self._challenge is not None
        realm = self._challenge.params["realm"]
        service = self._challenge.params.get("service", "")
        scopes: dict[str, set[str]] = {}
        for res, actions in self._wanted.items():
            scopes.setdefault(res, set()).update(actions)
        for scope in needed:
            if scope:
                res, actions = _scope_key(scope)
                scopes.setdefault(res, set()).update(actions)
        scope_list = _scope_strings(scopes)
        creds = self.credentials()
        try:
            if creds is not None and creds.identity_token:
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": creds.identity_token,
                    "service": service,
                    "scope": " ".join(scope_list),
                    "client_id": "ocinest",
                }
                resp = await self._session.post(realm, data=form, ssl=self._ssl)
            else:
                query = [("service", service), *(("scope", s) for s in scope_list)]
                headers = {"User-Agent": self.options.user_agent}
                if creds is not None:
                    headers["Authorization"] = creds.basic()
                resp = await self._session.get(
                    URL(realm).update_query(query), headers=headers, ssl=self._ssl
                )
        except aiohttp.ClientError as exc:
            raise NetworkError(f"cannot reach the token service {realm}: {exc}") from None
        async with resp:
            if resp.status in (401, 403):
                if creds is None:
                    raise AuthError(
                        f"{self.host} requires authentication; run `ocinest login {self.host}`"
                    )
                raise AuthError(
                    f"authentication failed for {self.host}: the token service refused the "
                    f"credentials of {creds.username or 'the identity token'} ({resp.status})"
                )
            if resp.status != 200:
                raise AuthError(f"the token service {realm} answered {resp.status}")
            try:
                doc = await resp.json(content_type=None)
            except ValueError:
                raise AuthError(f"the token service {realm} answered no JSON") from None
        token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str) or not token:
            raise AuthError(f"the token service {realm} answered no token")
        expires = doc.get("expires_in")
        lifetime = float(expires) if isinstance(expires, int | float) and expires > 0 else 60.0
        self._token = token
        self._token_scopes = scopes
        self._token_expiry = time.monotonic() + max(lifetime - 10, lifetime / 2)

    def _denied(self, header: str, what: str) -> AuthError:
        challenge = parse_challenge(header)
        creds = self.credentials()
        if self._scheme_auth == "basic" or (challenge and challenge.scheme == "basic"):
            return AuthError(
                f"authentication failed for {self.host}: wrong user name or password"
                + (f" for {creds.username!r}" if creds else "")
            )
        detail = challenge.params.get("error", "") if challenge else ""
        scope = challenge.params.get("scope", "") if challenge else ""
        return AuthError(
            f"{self.host} denied {what}"
            + (f": {detail}" if detail else "")
            + (f" (needs {scope})" if scope else "")
            + ("" if creds else f"; run `ocinest login {self.host}`")
        )

    # The API base

    async def ping(self) -> dict[str, str]:
        """`GET /v2/`: whether the registry answers (authenticating if needed)."""
        if self._ping_headers is None:
            resp = await self.request("GET", "/v2/", what="GET /v2/")
            async with resp:
                if resp.status != 200:
                    await raise_for(resp, f"{self.host} is not an OCI registry: GET /v2/")
                self._ping_headers = {k.lower(): v for k, v in resp.headers.items()}
        return self._ping_headers

    async def nested(self) -> bool:
        """Whether the registry implements nested indexes (`Ocinest-Nested: 1`)."""
        return (await self.ping()).get(NESTED_HEADER.lower()) == NESTED_HEADER_VALUE

    async def catalog(self) -> list[str]:
        out: list[str] = []
        path: str | URL = "/v2/_catalog?n=1000"
        while True:
            resp = await self.request(
                "GET", path, scopes=["registry:catalog:*"], what="GET /v2/_catalog"
            )
            async with resp:
                if resp.status != 200:
                    await raise_for(resp, f"cannot list the repositories of {self.host}")
                doc = await resp.json(content_type=None)
                out.extend(doc.get("repositories") or [])
                nxt = _next_link(resp)
            if nxt is None:
                return out
            path = nxt

    def repository(self, name: str) -> RemoteRepository:
        return RemoteRepository(self, name)


def _describe_drop(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return f"connection dropped ({type(exc).__name__}: {exc})".replace("\n", " ")


def _next_link(resp: aiohttp.ClientResponse) -> URL | None:
    link = resp.headers.get("Link")
    if not link or 'rel="next"' not in link:
        return None
    target = link[link.find("<") + 1 : link.find(">")]
    return resp.url.join(URL(target))


async def _drain(resp: aiohttp.ClientResponse) -> None:
    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
        await resp.read()
    resp.release()


async def raise_for(resp: aiohttp.ClientResponse, what: str) -> None:
    """Raise the registry's error answer as a one-line `RegistryError`."""
    try:
        raw = await resp.read()
    except (TimeoutError, aiohttp.ClientError):
        raw = b""
    errors: list[dict[str, Any]] = []
    with contextlib.suppress(ValueError, AttributeError):
        doc = json.loads(raw)
        errors = [e for e in doc.get("errors", []) if isinstance(e, dict)]
    codes = [str(e.get("code", "")) for e in errors]
    parts = []
    for e in errors[:5]:
        detail = e.get("detail")
        text = e.get("message") or ""
        if detail and not isinstance(detail, str):
            detail = json.dumps(detail)
        parts.append(f"{e.get('code')}: {detail or text}")
    if len(errors) > 5:
        parts.append(f"and {len(errors) - 5} more")
    reason = "; ".join(parts) or f"{resp.status} {resp.reason or ''}".strip()
    kind = None
    if resp.status == 404:
        kind = Kind.NOT_FOUND
    elif resp.status in (401, 403):
        kind = Kind.AUTH
    raise RegistryError(
        f"{what}: {reason}", status=resp.status, codes=codes, errors=errors, kind=kind
    )


async def _file_body(
    path: Path, start: int, end: int, on_bytes: Callable[[int], None]
) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        left = end - start
        while left > 0:
            chunk = await asyncio.to_thread(f.read, min(FILE_CHUNK, left))
            if not chunk:
                raise ClientError(f"{path} is shorter than expected")
            left -= len(chunk)
            on_bytes(len(chunk))
            yield chunk


async def _bytes_body(data: bytes, on_bytes: Callable[[int], None]) -> AsyncIterator[bytes]:
    for i in range(0, len(data), FILE_CHUNK):
        chunk = data[i : i + FILE_CHUNK]
        on_bytes(len(chunk))
        yield chunk


def _body_factory(
    source: BlobSource, start: int, end: int, on_bytes: Callable[[int], None]
) -> Callable[[], Any]:
    def make() -> Any:
        if isinstance(source, bytes):
            return _bytes_body(source[start:end], on_bytes)
        return _file_body(source, start, end, on_bytes)

    return make


class RemoteRepository:
    """A repository of a registry: `host/name`."""

    def __init__(self, registry: RegistryClient, name: str, nested_path: str = "") -> None:
        self.registry = registry
        self.name = name
        self._nested_path = nested_path

    @property
    def display(self) -> str:
        return f"{self.registry.host}/{self.name}"

    @property
    def nested_path(self) -> str:
        return self._nested_path

    def child(self, path: str) -> RemoteRepository:
        nested = f"{self._nested_path}/{path}" if self._nested_path else path
        return RemoteRepository(self.registry, f"{self.name}/{path}", nested)

    def __repr__(self) -> str:
        return f"RemoteRepository({self.display!r})"

    def _path(self, kind: str, ref: str = "") -> str:
        return f"/v2/{self.name}/{kind}/{ref}" if ref else f"/v2/{self.name}/{kind}/"

    # Manifests

    async def get_manifest(self, reference: str | None) -> Fetched:
        reference = reference or "latest"
        what = f"cannot get manifest {self.display}:{reference}"
        resp = await self.registry.request(
            "GET",
            self._path("manifests", reference),
            scopes=[repo_scope(self.name, "pull")],
            headers={"Accept": MANIFEST_ACCEPT},
            what=f"GET manifest {self.display}:{reference}",
        )
        async with resp:
            if resp.status == 404:
                raise NotFound(f"manifest {reference} not found in {self.display}")
            if resp.status != 200:
                await raise_for(resp, what)
            length = resp.content_length
            if length is not None and length > MAX_MANIFEST_SIZE:
                raise ClientError(f"{what}: manifest larger than {MAX_MANIFEST_SIZE} bytes")
            try:
                body = await resp.content.read(MAX_MANIFEST_SIZE + 1)
                # read(n) may return less than the whole body; read the rest.
                while len(body) <= MAX_MANIFEST_SIZE:
                    more = await resp.content.read(MAX_MANIFEST_SIZE + 1 - len(body))
                    if not more:
                        break
                    body += more
            except _DROPPED as exc:
                raise NetworkError(f"{what}: {_describe_drop(exc)}") from None
            if len(body) > MAX_MANIFEST_SIZE:
                raise ClientError(f"{what}: manifest larger than {MAX_MANIFEST_SIZE} bytes")
            content_type = resp.headers.get("Content-Type", "")
        return _fetched(body, content_type, reference, self.display)

    async def head_manifest(self, reference: str) -> tuple[str, Digest, int] | None:
        """(media type, digest, size) of a manifest, or None when absent."""
        resp = await self.registry.request(
            "HEAD",
            self._path("manifests", reference),
            scopes=[repo_scope(self.name, "pull")],
            headers={"Accept": MANIFEST_ACCEPT},
            what=f"HEAD manifest {self.display}:{reference}",
        )
        async with resp:
            if resp.status == 404:
                return None
            if resp.status != 200:
                await raise_for(resp, f"cannot check manifest {self.display}:{reference}")
            digest = resp.headers.get("Docker-Content-Digest")
            length = resp.headers.get("Content-Length")
            media_type = mt.bare(resp.headers.get("Content-Type", ""))
        if digest is None or length is None or media_type not in mt.MANIFESTS:
            fetched = await self.get_manifest(reference)
            return fetched.media_type, fetched.digest, fetched.size
        return media_type, Digest.parse(digest), int(length)

    async def has_manifest(self, digest: Digest) -> bool:
        return await self.head_manifest(str(digest)) is not None

    async def put_manifest(
        self, body: bytes, media_type: str, tag: str | None, *, root: bool = False
    ) -> Digest:
        digest, _ = await self.put_manifest_ex(body, media_type, tag)
        return digest

    async def put_manifest_ex(
        self, body: bytes, media_type: str, tag: str | None
    ) -> tuple[Digest, bool]:
        """Push a manifest; (digest, whether the registry handled its subject itself)."""
        digest = Digest.of(body)
        reference = tag or str(digest)
        resp = await self.registry.request(
            "PUT",
            self._path("manifests", reference),
            scopes=[repo_scope(self.name, "pull", "push")],
            headers={"Content-Type": media_type},
            body=lambda: body,
            what=f"PUT manifest {self.display}:{reference}",
        )
        async with resp:
            if resp.status not in (200, 201, 202):
                await raise_for(resp, f"cannot push manifest to {self.display}:{reference}")
            answered = resp.headers.get("Docker-Content-Digest")
            subject_handled = "OCI-Subject" in resp.headers
        if answered and answered != str(digest):
            with contextlib.suppress(ClientError):
                if Digest.parse(answered).algorithm == digest.algorithm:
                    raise DigestMismatch(
                        f"{self.display} stored the manifest as {answered}, not {digest}"
                    )
        return digest, subject_handled

    async def delete_manifest(self, digest: Digest) -> None:
        resp = await self.registry.request(
            "DELETE",
            self._path("manifests", str(digest)),
            scopes=[repo_scope(self.name, "delete")],
            what=f"DELETE manifest {self.display}@{digest}",
        )
        async with resp:
            if resp.status == 404:
                raise NotFound(f"manifest {digest} not found in {self.display}")
            if resp.status not in (200, 202, 204):
                await raise_for(resp, f"cannot delete {self.display}@{digest}")

    async def tags(self) -> list[str]:
        out: list[str] = []
        path: str | URL = f"/v2/{self.name}/tags/list"
        while True:
            resp = await self.registry.request(
                "GET", path, scopes=[repo_scope(self.name, "pull")], what="GET tags"
            )
            async with resp:
                if resp.status == 404:
                    raise NotFound(f"repository {self.display} not found")
                if resp.status != 200:
                    await raise_for(resp, f"cannot list the tags of {self.display}")
                doc = await resp.json(content_type=None)
                out.extend(doc.get("tags") or [])
                nxt = _next_link(resp)
            if nxt is None:
                return out
            path = nxt

    async def referrers(self, digest: Digest) -> list[dict[str, Any]]:
        """The referrers API, or the referrers tag schema (`sha256-<hex>`) where the registry
        has no referrers API (distribution 2.x)."""
        resp = await self.registry.request(
            "GET",
            self._path("referrers", str(digest)),
            scopes=[repo_scope(self.name, "pull")],
            what=f"GET referrers {self.display}@{digest}",
        )
        async with resp:
            if resp.status == 200 and mt.bare(resp.headers.get("Content-Type", "")) in (
                mt.OCI_INDEX,
                "application/json",
            ):
                doc = await resp.json(content_type=None)
                return [d for d in doc.get("manifests") or [] if isinstance(d, dict)]
            if resp.status not in (404, 400, 405):
                await raise_for(resp, f"cannot list the referrers of {self.display}@{digest}")
        try:
            fetched = await self.get_manifest(fallback_tag(digest))
        except NotFound:
            return []
        doc = json.loads(fetched.body)
        return [d for d in doc.get("manifests") or [] if isinstance(d, dict)]

    async def tree(self, reference: str, depth: int | None = None) -> dict[str, Any]:
        """The nested extension's tree endpoint."""
        params = {"depth": str(depth)} if depth is not None else None
        resp = await self.registry.request(
            "GET",
            tree_path(self.name, reference),
            scopes=[repo_scope(self.name, "pull")],
            params=params,
            what=f"GET tree {self.display}:{reference}",
        )
        async with resp:
            if resp.status == 404:
                await raise_for(resp, f"cannot get the tree of {self.display}:{reference}")
            if resp.status != 200:
                await raise_for(resp, f"cannot get the tree of {self.display}:{reference}")
            result: dict[str, Any] = await resp.json(content_type=None)
            return result

    # Blobs

    async def blob_size(self, digest: Digest) -> int | None:
        resp = await self.registry.request(
            "HEAD",
            self._path("blobs", str(digest)),
            scopes=[repo_scope(self.name, "pull")],
            what=f"HEAD blob {self.display}@{digest}",
        )
        async with resp:
            if resp.status == 404:
                return None
            if resp.status != 200:
                await raise_for(resp, f"cannot check blob {digest} in {self.display}")
            length = resp.headers.get("Content-Length")
            return int(length) if length is not None and length.isdigit() else -1

    def local_blob(self, digest: Digest) -> Path | None:
        return None

    async def fetch_blob_bytes(self, digest: Digest, size: int, limit: int = 16 << 20) -> bytes:
        """A small blob (a config) in memory, verified."""
        if size > limit:
            raise ClientError(f"blob {digest} is {size} bytes; more than {limit} in memory")
        resp = await self.registry.request(
            "GET",
            self._path("blobs", str(digest)),
            scopes=[repo_scope(self.name, "pull")],
            what=f"GET blob {self.display}@{digest}",
        )
        async with resp:
            if resp.status == 404:
                raise NotFound(f"blob {digest} not found in {self.display}")
            if resp.status != 200:
                await raise_for(resp, f"cannot get blob {digest} from {self.display}")
            try:
                data = await resp.read()
            except _DROPPED as exc:
                raise NetworkError(
                    f"downloading blob {digest} from {self.display}: {_describe_drop(exc)}"
                ) from None
        if Digest.of(data, digest.algorithm) != digest:
            raise DigestMismatch(f"blob {digest} from {self.display} does not match its digest")
        return data

    async def fetch_blob(self, digest: Digest, size: int, dest: Path, progress: Progress) -> None:
        """Stream the blob into `dest`, resuming with a Range request when the connection
        drops; verified against size and digest, and `dest` removed on any failure."""
        try:
            await self._fetch_blob(digest, size, dest, progress)
        except BaseException:
            with contextlib.suppress(OSError):
                dest.unlink()
            raise

    async def _fetch_blob(self, digest: Digest, size: int, dest: Path, progress: Progress) -> None:
        hasher = new_hasher(digest.algorithm)
        written = 0
        attempts = self.registry.options.retries + 1
        attempt = 0
        progress(ProgressEvent("start", digest, size, where=self.display))
        with open(dest, "wb") as f:
            while True:
                attempt += 1
                headers = {"Range": f"bytes={written}-"} if written else {}
                resp = await self.registry.request(
                    "GET",
                    self._path("blobs", str(digest)),
                    scopes=[repo_scope(self.name, "pull")],
                    headers=headers,
                    what=f"GET blob {self.display}@{digest}",
                )
                async with resp:
                    if resp.status == 404:
                        raise NotFound(f"blob {digest} not found in {self.display}")
                    if resp.status not in (200, 206):
                        await raise_for(resp, f"cannot get blob {digest} from {self.display}")
                    if written and resp.status == 200:
                        # The server ignored the range: start over.
                        f.seek(0)
                        f.truncate()
                        hasher = new_hasher(digest.algorithm)
                        progress(ProgressEvent("advance", digest, size, amount=-written))
                        written = 0
                    try:
                        async for chunk in resp.content.iter_chunked(READ_CHUNK):
                            f.write(chunk)
                            hasher.update(chunk)
                            written += len(chunk)
                            progress(ProgressEvent("advance", digest, size, amount=len(chunk)))
                            if size >= 0 and written > size:
                                raise DigestMismatch(
                                    f"blob {digest} from {self.display} is larger than its "
                                    f"{size} bytes"
                                )
                    except _DROPPED as exc:
                        if attempt >= attempts:
                            raise NetworkError(
                                f"downloading blob {digest} from {self.display}: "
                                f"{_describe_drop(exc)} after {written} of {size} bytes "
                                f"({attempt} attempts); nothing was written"
                            ) from None
                        await self.registry._sleep(attempt, None)
                        continue
                if size >= 0 and written < size:
                    if attempt >= attempts:
                        raise NetworkError(
                            f"downloading blob {digest} from {self.display}: the registry sent "
                            f"{written} of {size} bytes ({attempt} attempts); nothing was written"
                        )
                    await self.registry._sleep(attempt, None)
                    continue
                break
            f.flush()
            os.fsync(f.fileno())
        if Digest(digest.algorithm, hasher.hexdigest()) != digest:
            raise DigestMismatch(
                f"blob {digest} from {self.display} does not match its digest; nothing was written"
            )
        progress(ProgressEvent("done", digest, size, outcome="downloaded", where=self.display))

    async def mount_blob(self, digest: Digest, source: str) -> URL | bool | None:
        """Cross-repository mount from `source`: True when mounted, else the upload session
        the registry opened instead (or None)."""
        resp = await self.registry.request(
            "POST",
            self._path("blobs", "uploads/"),
            scopes=[repo_scope(self.name, "pull", "push"), repo_scope(source, "pull")],
            params={"mount": str(digest), "from": source},
            what=f"mount blob {digest} into {self.display}",
        )
        async with resp:
            if resp.status == 201:
                return True
            if resp.status == 202 and resp.headers.get("Location"):
                return resp.url.join(URL(resp.headers["Location"]))
            if resp.status in (401, 403, 404):
                return None
            await raise_for(resp, f"cannot mount blob {digest} into {self.display}")
        return None

    async def push_blob(
        self,
        digest: Digest,
        size: int,
        source: BlobSource,
        progress: Progress,
        mount_from: tuple[Repository, ...] = (),
    ) -> str:
        if await self.blob_size(digest) is not None:
            progress(ProgressEvent("done", digest, size, outcome="skipped", where=self.display))
            return "skipped"
        session: URL | None = None
        for candidate in mount_from:
            if (
                isinstance(candidate, RemoteRepository)
                and candidate.registry is self.registry
                and candidate.name != self.name
            ):
                mounted = await self.mount_blob(digest, candidate.name)
                if mounted is True:
                    progress(
                        ProgressEvent("done", digest, size, outcome="mounted", where=self.display)
                    )
                    return "mounted"
                if isinstance(mounted, URL):
                    session = mounted
                    break
        await self.upload_blob(digest, size, source, progress, session)
        return "uploaded"

    async def _start_upload(self) -> URL:
        resp = await self.registry.request(
            "POST",
            self._path("blobs", "uploads/"),
            scopes=[repo_scope(self.name, "pull", "push")],
            what=f"start upload to {self.display}",
        )
        async with resp:
            if resp.status != 202 or not resp.headers.get("Location"):
                await raise_for(resp, f"cannot start an upload to {self.display}")
            return resp.url.join(URL(resp.headers["Location"]))

    async def upload_blob(
        self,
        digest: Digest,
        size: int,
        source: BlobSource,
        progress: Progress,
        session: URL | None = None,
    ) -> None:
        """Upload: POST then PUT for small blobs, PATCH chunks (resumed where the registry
        says it stands) for large ones. A broken upload starts over in a new session."""
        opts = self.registry.options
        progress(ProgressEvent("start", digest, size, where=self.display))
        attempts = 3
        for attempt in range(1, attempts + 1):
            sent = 0

            def on_bytes(n: int) -> None:
                nonlocal sent
                sent += n
                progress(ProgressEvent("advance", digest, size, amount=n))

            try:
                location = session or await self._start_upload()
                session = None
                if size <= opts.chunk_size:
                    await self._put_upload(location, digest, size, source, on_bytes)
                else:
                    await self._chunked_upload(location, digest, size, source, on_bytes)
            except (NetworkError, RegistryError) as exc:
                if sent:
                    progress(ProgressEvent("advance", digest, size, amount=-sent))
                retryable = (
                    isinstance(exc, NetworkError) or exc.status in (404, 416) or (exc.status >= 500)
                )
                if attempt >= attempts or not retryable:
                    raise
                await self.registry._sleep(attempt, None)
                continue
            progress(ProgressEvent("done", digest, size, outcome="uploaded", where=self.display))
            return

    async def _put_upload(
        self,
        location: URL,
        digest: Digest,
        size: int,
        source: BlobSource,
        on_bytes: Callable[[int], None],
        start: int = 0,
    ) -> None:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size - start)}
        resp = await self.registry.request(
            "PUT",
            location.update_query(digest=str(digest)),
            scopes=[repo_scope(self.name, "pull", "push")],
            headers=headers,
            body=_body_factory(source, start, size, on_bytes),
            retry=False,
            what=f"upload blob {digest} to {self.display}",
        )
        async with resp:
            if resp.status != 201:
                await raise_for(resp, f"cannot upload blob {digest} to {self.display}")

    async def _chunked_upload(
        self,
        location: URL,
        digest: Digest,
        size: int,
        source: BlobSource,
        on_bytes: Callable[[int], None],
    ) -> None:
        chunk = self.registry.options.chunk_size
        offset = 0
        failures = 0
        while offset < size:
            end = min(offset + chunk, size)
            try:
                resp = await self.registry.request(
                    "PATCH",
                    location,
                    scopes=[repo_scope(self.name, "pull", "push")],
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(end - offset),
                        "Content-Range": f"{offset}-{end - 1}",
                    },
                    body=_body_factory(source, offset, end, on_bytes),
                    retry=False,
                    what=f"upload chunk of blob {digest} to {self.display}",
                )
            except NetworkError:
                failures += 1
                if failures > self.registry.options.retries:
                    raise
                await self.registry._sleep(failures, None)
                location, offset = await self._upload_status(location)
                continue
            async with resp:
                if resp.status != 202:
                    await raise_for(resp, f"cannot upload blob {digest} to {self.display}")
                if resp.headers.get("Location"):
                    location = resp.url.join(URL(resp.headers["Location"]))
            offset = end
        resp = await self.registry.request(
            "PUT",
            location.update_query(digest=str(digest)),
            scopes=[repo_scope(self.name, "pull", "push")],
            headers={"Content-Length": "0"},
            what=f"finish upload of blob {digest} to {self.display}",
        )
        async with resp:
            if resp.status != 201:
                await raise_for(resp, f"cannot upload blob {digest} to {self.display}")

    async def _upload_status(self, location: URL) -> tuple[URL, int]:
        """Where a broken chunked upload stands: (location, bytes the registry holds)."""
        resp = await self.registry.request(
            "GET",
            location,
            scopes=[repo_scope(self.name, "pull", "push")],
            what=f"upload status in {self.display}",
        )
        async with resp:
            if resp.status not in (202, 204):
                await raise_for(resp, f"cannot resume the upload to {self.display}")
            rng = resp.headers.get("Range", "")
            new = resp.headers.get("Location")
            end = rng.rsplit("-", 1)[1] if "-" in rng else ""
            # "0-0" is what registries answer for an empty upload too; chunks are larger.
            held = int(end) + 1 if end.isdigit() and int(end) > 0 else 0
            return (resp.url.join(URL(new)) if new else location), held


def _fetched(body: bytes, content_type: str, reference: str, where: str) -> Fetched:
    media_type = mt.sniff(body, content_type)
    if media_type is None:
        raise ClientError(f"manifest {reference} in {where} is not JSON")
    if Digest.looks_like(reference):
        wanted = Digest.parse(reference)
        digest = Digest.of(body, wanted.algorithm)
        if digest != wanted:
            raise DigestMismatch(f"manifest {reference} from {where} does not match its digest")
    else:
        digest = Digest.of(body)
    return Fetched(body, media_type, digest)


class Client:
    """Registry clients for every host an operation touches, sharing one HTTP session."""

    def __init__(self, options: Options | None = None) -> None:
        self.options = options or Options()
        self._session: aiohttp.ClientSession | None = None
        self._registries: dict[str, RegistryClient] = {}

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(
                total=None,
                connect=self.options.connect_timeout,
                sock_connect=self.options.connect_timeout,
                sock_read=self.options.read_timeout,
            )
            connector = aiohttp.TCPConnector(limit=max(8, self.options.concurrency * 4))
            self._session = aiohttp.ClientSession(
                timeout=timeout, connector=connector, auto_decompress=False
            )
        return self._session

    def registry(self, host: str) -> RegistryClient:
        if host not in self._registries:
            self._registries[host] = RegistryClient(host, self._http(), self.options)
        return self._registries[host]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
