"""The HTTP transport to one registry host (go-containerregistry's `remote/transport`): the
scheme and TLS, authentication through `Authorizer`, and the one retry policy for temporary
failures. `call` is the request-then-raise pattern every API call uses."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from ocinest import __version__

from .auth import Credentials
from .authorizer import Authorizer
from .errors import ClientError, Kind, NetworkError, NotFound, RegistryError
from .reference import DOCKER_HUB, DOCKER_HUB_API, is_local_host
from .retry import TEMPORARY_ERRORS, TEMPORARY_STATUSES, Budget, RetryPolicy, describe


@dataclass
class Options:
    """How to reach registries: transport security, credentials, retries, sizes."""

    plain_http: bool = False  # plain HTTP for every host (loopback hosts use it by default)
    insecure: bool = False  # TLS without verification, and plain HTTP when TLS fails
    ca_file: Path | None = None  # trust these CAs (and use TLS even for loopback hosts)
    auth_file: Path | None = None
    credentials: dict[str, Credentials] = field(default_factory=dict)  # host -> explicit
    retries: int = 4  # per operation (a request, a whole blob transfer)
    backoff: float = 0.2  # seconds before the first retry; doubles, with jitter
    max_backoff: float = 5.0
    connect_timeout: float = 30.0
    read_timeout: float = 120.0
    chunk_size: int = 16 * 1024 * 1024  # uploads larger than this go in PATCH chunks
    concurrency: int = 4  # parallel blob transfers
    user_agent: str = f"ocinest/{__version__}"

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(self.retries, self.backoff, self.max_backoff)


class Transport:
    """Requests to one registry host."""

    def __init__(self, host: str, session: aiohttp.ClientSession, options: Options) -> None:
        self.host = host
        self.api_host = DOCKER_HUB_API if host == DOCKER_HUB else host
        self.options = options
        self.policy = options.retry
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
        self.auth = Authorizer(
            host,
            session,
            self._ssl,
            explicit=options.credentials.get(host),
            auth_file=options.auth_file,
            user_agent=options.user_agent,
        )

    def url(self, path: str) -> URL:
        return URL(f"{self._scheme}://{self.api_host}").join(URL(path))

    def _on_scheme(self, url: URL) -> URL:
        if url.scheme != self._scheme and url.raw_authority == self.api_host:
            return url.with_scheme(self._scheme)
        return url

    async def request(
        self,
        method: str,
        path: str | URL,
        *,
        scopes: Iterable[str] = (),
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        body: Callable[[], Any] | None = None,
        budget: Budget | None = None,
        resend: bool = True,
        what: str = "",
    ) -> aiohttp.ClientResponse:
        """Send a request, authenticating on 401. Temporary failures (dropped connections,
        429, 5xx) are retried from `budget` (a fresh one by default) unless `resend` is off:
        then the caller decides, and a temporary answer is returned to it. `body` makes a
        fresh body for each attempt. The caller releases the response."""
        url = path if isinstance(path, URL) else self.url(path)
        what = what or f"{method} {url.path}"
        needed = list(scopes)
        self.auth.want(needed)
        budget = budget or self.policy.budget()
        challenged = False
        while True:
            send_headers = {"User-Agent": self.options.user_agent, **(headers or {})}
            authorization = await self.auth.authorization(needed)
            if authorization:
                send_headers["Authorization"] = authorization
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
                    continue
                raise NetworkError(
                    f"TLS error talking to {self.api_host}: {exc}; a plain-HTTP registry "
                    "needs --plain-http"
                ) from None
            except TEMPORARY_ERRORS as exc:
                if resend and await budget.wait():
                    continue
                if isinstance(exc, aiohttp.ClientConnectorError):
                    raise NetworkError(
                        f"cannot connect to {self.api_host}: {exc.os_error.strerror or exc}"
                    ) from None
                raise NetworkError(
                    f"{what} on {self.api_host}: {describe(exc)} ({budget.attempts} attempts)"
                ) from None
            if resp.status == 401:
                header = resp.headers.get("WWW-Authenticate", "")
                await drain(resp)
                if challenged:
                    raise self.auth.denied(header, needed, what)
                await self.auth.challenged(header, needed, what)
                challenged = True
                continue
            if resend and resp.status in TEMPORARY_STATUSES and budget.left:
                retry_after = resp.headers.get("Retry-After")
                await drain(resp)
                await budget.wait(retry_after)
                continue
            return resp

    @contextlib.asynccontextmanager
    async def call(
        self,
        method: str,
        path: str | URL,
        *,
        fail: str,
        ok: Iterable[int] = (200,),
        not_found: str | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A request whose answer must be one of `ok`: 404 raises `NotFound(not_found)` when
        given, any other answer the registry's error as a `RegistryError` (`fail: …`)."""
        resp = await self.request(method, path, **kwargs)
        async with resp:
            if resp.status == 404 and not_found is not None:
                raise NotFound(not_found)
            if resp.status not in set(ok):
                await raise_for(resp, fail)
            yield resp


def next_link(resp: aiohttp.ClientResponse) -> URL | None:
    """The `rel="next"` target of a paginated answer (RFC 8288 `Link`, parsed by aiohttp)."""
    link = resp.links.get("next")
    target = link.get("url") if link is not None else None
    return resp.url.join(URL(str(target))) if target is not None else None


async def drain(resp: aiohttp.ClientResponse) -> None:
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
