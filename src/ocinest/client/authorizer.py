"""Authentication of requests to one registry host: none until the registry challenges, then
Basic, or the Bearer token flow (one token per set of credentials, asked for every scope the
operation declared so that one token covers it all). Credentials are looked up per repository,
so that podman's repository-scoped entries apply to the requests for those repositories."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from yarl import URL

from .auth import Challenge, Credentials, find_credentials, parse_challenge
from .errors import AuthError, NetworkError

Scopes = dict[str, set[str]]  # resource ("repository:a/b") -> actions


def parse_scope(scope: str) -> tuple[str, set[str]]:
    resource, _, actions = scope.rpartition(":")
    return resource, set(actions.split(",")) if actions else set()


def repo_scope(repository: str, *actions: str) -> str:
    return f"repository:{repository}:{','.join(actions)}"


def _repository(resource: str) -> str | None:
    kind, _, name = resource.partition(":")
    return name if kind == "repository" else None


def _merge(into: Scopes, scopes: Iterable[str]) -> None:
    for scope in scopes:
        if scope:
            resource, actions = parse_scope(scope)
            into.setdefault(resource, set()).update(actions)


@dataclass
class _Token:
    value: str
    scopes: Scopes = field(default_factory=dict)
    expiry: float = 0.0

    def covers(self, scopes: Scopes) -> bool:
        return time.monotonic() < self.expiry and all(
            actions <= self.scopes.get(res, set()) for res, actions in scopes.items()
        )


class Authorizer:
    def __init__(
        self,
        host: str,
        session: aiohttp.ClientSession,
        ssl_context: ssl.SSLContext | bool,
        *,
        explicit: Credentials | None,
        auth_file: Path | None,
        user_agent: str,
    ) -> None:
        self.host = host
        self._session = session
        self._ssl = ssl_context
        self._explicit = explicit
        self._auth_file = auth_file
        self._user_agent = user_agent
        self._found: dict[str | None, Credentials | None] = {}
        self._scheme: str | None = None  # "basic" | "bearer" once challenged
        self._challenge: Challenge | None = None
        self._tokens: dict[Credentials | None, _Token] = {}
        self._wanted: Scopes = {}
        self._lock = asyncio.Lock()

    def credentials(self, repository: str | None = None) -> Credentials | None:
        """The credentials for `repository` (the most specific entry), else the host's."""
        if self._explicit is not None:
            return self._explicit
        if repository not in self._found:
            self._found[repository] = find_credentials(self.host, repository, self._auth_file)
        return self._found[repository]

    def want(self, scopes: Iterable[str]) -> None:
        """Declare access that later requests will need, so that one token covers it all."""
        _merge(self._wanted, scopes)

    def _for(self, scopes: Iterable[str]) -> Credentials | None:
        """The credentials a request needing `scopes` is sent with: its first repository's."""
        for scope in scopes:
            repository = _repository(parse_scope(scope)[0])
            if repository is not None:
                return self.credentials(repository)
        return self.credentials()

    def _sharing(self, creds: Credentials | None) -> Scopes:
        """The wanted scopes whose repositories use `creds`."""
        return {
            res: actions
            for res, actions in self._wanted.items()
            if self.credentials(_repository(res)) == creds
        }

    async def authorization(self, scopes: list[str]) -> str | None:
        """The `Authorization` header for a request needing `scopes`."""
        if self._scheme is None:
            return None  # not challenged: no credentials looked up (a helper may run for it)
        creds = self._for(scopes)
        if self._scheme == "basic":
            return creds.basic() if creds else None
        async with self._lock:
            needed = self._sharing(creds)
            _merge(needed, scopes)
            token = self._tokens.get(creds)
            if token is None or not token.covers(needed):
                token = await self._fetch_token(creds, needed)
            return f"Bearer {token.value}"

    async def challenged(self, header: str, scopes: list[str], what: str) -> None:
        """Take up the scheme of a 401's `WWW-Authenticate` (fetching a token for Bearer)."""
        challenge = parse_challenge(header)
        if challenge is None:
            raise AuthError(f"{self.host} answered 401 to {what} without an auth challenge")
        creds = self._for(scopes)
        if challenge.scheme == "basic":
            if creds is None:
                raise AuthError(
                    f"{self.host} requires a user name and password; "
                    f"run `ocinest login {self.host}`"
                )
            self._scheme = "basic"
            return
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            raise AuthError(f"{self.host} asks for unsupported authentication {challenge.scheme!r}")
        self._scheme = "bearer"
        self._challenge = challenge
        async with self._lock:
            needed = self._sharing(creds)
            _merge(needed, [*scopes, *challenge.params.get("scope", "").split()])
            await self._fetch_token(creds, needed)

    async def _fetch_token(self, creds: Credentials | None, scopes: Scopes) -> _Token:
        assert self._challenge is not None
        realm = self._challenge.params["realm"]
        service = self._challenge.params.get("service", "")
        scope_list = [f"{res}:{','.join(sorted(a))}" for res, a in sorted(scopes.items())]
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
                headers = {"User-Agent": self._user_agent}
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
        value = doc.get("token") or doc.get("access_token")
        if not isinstance(value, str) or not value:
            raise AuthError(f"the token service {realm} answered no token")
        expires = doc.get("expires_in")
        lifetime = float(expires) if isinstance(expires, int | float) and expires > 0 else 60.0
        token = _Token(value, scopes, time.monotonic() + max(lifetime - 10, lifetime / 2))
        self._tokens[creds] = token
        return token

    def denied(self, header: str, scopes: list[str], what: str) -> AuthError:
        """The error for a 401 that authenticating did not get past."""
        challenge = parse_challenge(header)
        creds = self._for(scopes)
        if self._scheme == "basic" or (challenge and challenge.scheme == "basic"):
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
