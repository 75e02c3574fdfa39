"""Authentication (none, Basic against htpasswd, Bearer tokens per the Docker registry token
specification) and authorization (the policy, or a token's access claims)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import math
import os
import time
import urllib.parse
import uuid
from collections import Counter, OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import bcrypt
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ocinest.oci.errors import ErrorCode, OCIError
from ocinest.registry.config import Config
from ocinest.registry.metrics import AUTH_FAILURES
from ocinest.registry.policy import ACTIONS, Policy

# How long a checked password is remembered (bcrypt takes tens of milliseconds a check), and
# how many are.
PASSWORD_CACHE_SECONDS = 60
PASSWORD_CACHE_SIZE = 1024
# bcrypt runs in this many threads, off the event loop (it releases the GIL).
BCRYPT_THREADS = 2
# bcrypt, as `htpasswd -B`, uses the first 72 bytes of a password.
BCRYPT_MAX_BYTES = 72
# How many failed-login counters are kept (per address, and per user and address).
FAILURE_COUNTERS = 100_000

K = TypeVar("K")
V = TypeVar("V")


class Expiring(Generic[K, V]):
    """A map whose entries expire `ttl` seconds after they were first set, holding at most
    `size` of them (the oldest go first). Entries stay in the order they were first set,
    which is the order they expire in."""

    def __init__(self, ttl: float, size: int) -> None:
        self.ttl = ttl
        self.size = size
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def _purge(self) -> float:
        now = time.monotonic()
        while self._items:
            key, (expires, _) = next(iter(self._items.items()))
            if expires > now:
                break
            del self._items[key]
        return now

    def get(self, key: K, default: V) -> V:
        self._purge()
        item = self._items.get(key)
        return default if item is None else item[1]

    def remaining(self, key: K) -> float:
        """Seconds until `key` expires; 0 when it is not there."""
        now = self._purge()
        item = self._items.get(key)
        return 0 if item is None else item[0] - now

    def set(self, key: K, value: V) -> None:
        """Set `key`, keeping its expiry if it is there already."""
        now = self._purge()
        item = self._items.get(key)
        self._items[key] = (now + self.ttl if item is None else item[0], value)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def pop(self, key: K) -> None:
        self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class Identity:
    """Who is asking: a user, or None for anonymous. `grants` are a token's access claims
    (repository -> actions); None when the policy decides."""

    user: str | None
    grants: Mapping[str, frozenset[str]] | None = None


def _checkpw(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password[:BCRYPT_MAX_BYTES], hashed)
    except ValueError:  # a malformed hash in the file matches nothing
        return False


class Htpasswd:
    """An htpasswd file of bcrypt hashes (`htpasswd -B`). Checks run in a small thread pool,
    off the event loop, and an unknown user costs the same check as a known one (against a
    dummy hash of the file's usual cost), so that timing does not tell which users exist."""

    def __init__(self, path: Path) -> None:
        self.hashes: dict[str, bytes] = {}
        for line in path.read_text().splitlines():
            user, sep, hashed = line.strip().partition(":")
            if sep and hashed.startswith(("$2a$", "$2b$", "$2y$")):
                self.hashes[user] = hashed.encode()
        costs = Counter(int(h[4:6]) for h in self.hashes.values() if h[4:6].isdigit())
        cost = min(max(costs.most_common(1)[0][0], 4), 31) if costs else 12
        self._dummy = bcrypt.hashpw(b"", bcrypt.gensalt(cost))
        self._pool = ThreadPoolExecutor(BCRYPT_THREADS, thread_name_prefix="bcrypt")
        # Successes by user and a keyed hash of the password (no plain hash of it is kept).
        self._key = os.urandom(32)
        self._checked: Expiring[tuple[str, bytes], bool] = Expiring(
            PASSWORD_CACHE_SECONDS, PASSWORD_CACHE_SIZE
        )

    async def check(self, user: str, password: bytes) -> bool:
        key = (user, hmac.digest(self._key, password, "sha256"))
        if self._checked.get(key, False):
            return True
        hashed = self.hashes.get(user)
        loop = asyncio.get_running_loop()
        right = await loop.run_in_executor(self._pool, _checkpw, password, hashed or self._dummy)
        if not right or hashed is None:
            return False
        self._checked.set(key, True)
        return True


def client_address(request: web.Request) -> str:
    """Whom failed logins are counted against: the peer's address, an IPv6 peer by its /64
    (one host usually holds the whole network)."""
    remote = request.remote or ""
    try:
        ip = ipaddress.ip_address(remote)
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                return str(ip.ipv4_mapped)
            return str(ipaddress.IPv6Network((ip, 64), strict=False))
    except ValueError:
        pass
    return remote


class FailedLogins:
    """Failed logins per client address and per user and address, in windows of
    `auth_fail_window` seconds from the first failure; never per user alone, which would let
    anyone lock a user out. An attempt counts as failed from its start (so that concurrent
    guesses cannot outrun the count) until it succeeds."""

    def __init__(self, config: Config) -> None:
        self.per_user = config.auth_fail_limit
        self.per_address = config.auth_fail_limit_address
        self._counts: Expiring[tuple[str, str | None], int] = Expiring(
            config.auth_fail_window, FAILURE_COUNTERS
        )

    def attempt(self, address: str, user: str) -> float:
        """Count an attempt; or, past a limit, count nothing and return the seconds to wait."""
        keys = {(address, None): self.per_address, (address, user): self.per_user}
        wait = max(
            (
                self._counts.remaining(k)
                for k, limit in keys.items()
                if self._counts.get(k, 0) >= limit
            ),
            default=0.0,
        )
        if wait:
            return wait
        for key in keys:
            self._counts.set(key, self._counts.get(key, 0) + 1)
        return 0.0

    def succeeded(self, address: str, user: str) -> None:
        self._counts.pop((address, user))
        count = self._counts.get((address, None), 0)
        if count:
            self._counts.set((address, None), count - 1)


def _algorithm(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return "ES256"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "RS256"
    raise ValueError("token keys must be EC P-256 (ES256) or RSA (RS256)")


def _kid(public_key: Any) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:32]


@dataclass
class Auth:
    config: Config
    policy: Policy
    failures: FailedLogins
    htpasswd: Htpasswd | None = None
    signing_key: Any = None
    # kid (or "") -> (public key, algorithm)
    verify_keys: dict[str, tuple[Any, str]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Config) -> Auth:
        policy = Policy.load(config.policy) if config.policy else Policy.default()
        htpasswd = Htpasswd(config.htpasswd) if config.htpasswd else None
        auth = cls(config, policy, FailedLogins(config), htpasswd)
        if config.token_key:
            key = serialization.load_pem_private_key(config.token_key.read_bytes(), None)
            auth.signing_key = key
            auth.verify_keys[_kid(key.public_key())] = (key.public_key(), _algorithm(key))
        if config.token_public_key:
            public = serialization.load_pem_public_key(config.token_public_key.read_bytes())
            auth.verify_keys[""] = (public, _algorithm(public))
        if config.token_jwks:
            for jwk in json.loads(config.token_jwks.read_text()).get("keys", []):
                public = jwt.PyJWK(jwk).key
                auth.verify_keys[jwk.get("kid", "")] = (public, _algorithm(public))
        return auth

    @property
    def mode(self) -> str:
        if self.config.token_auth:
            return "token"
        return "basic" if self.htpasswd else "none"

    # Authentication

    async def identify(self, request: web.Request) -> Identity:
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if self.mode == "none" or not header:
            return Identity(None)
        if self.mode == "basic" and scheme.lower() == "basic":
            return Identity(await self.basic_user(credentials.strip(), request))
        if self.mode == "token" and scheme.lower() == "bearer":
            return self._verify(credentials.strip(), request)
        raise self._unauthorized(
            request, f"{scheme or 'these'} credentials are not accepted here", reason="scheme"
        )

    async def identify_basic(self, request: web.Request) -> Identity:
        """The caller, taking Basic credentials in token mode too: for the clients that send
        nothing else (dnf on the files path, a browser on the web pages)."""
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if self.mode == "token" and scheme.lower() == "basic":
            if self.htpasswd is None:
                AUTH_FAILURES.labels("scheme").inc()
                raise OCIError(
                    ErrorCode.UNAUTHORIZED,
                    "this registry trusts an external token issuer only: it has no htpasswd "
                    "users to check Basic credentials against",
                )
            return Identity(await self.basic_user(credentials.strip(), request))
        return await self.identify(request)

    def basic_challenge(self, err: OCIError) -> OCIError:
        """`err` with a Basic challenge where it had one and htpasswd users can answer it,
        for the clients of `identify_basic`."""
        if "WWW-Authenticate" in err.headers and self.htpasswd is not None:
            err.headers["WWW-Authenticate"] = 'Basic realm="ocinest"'
        return err

    async def basic_user(self, credentials: str, request: web.Request) -> str:
        """The user of valid Basic credentials; raises 401 otherwise (429 past the limit of
        failed logins)."""
        try:
            decoded = base64.b64decode(credentials, validate=True)
        except binascii.Error:
            decoded = b""
        user, sep, password = decoded.partition(b":")
        # Any bytes: a user name that is not UTF-8 is one that no htpasswd line has.
        name = user.decode(errors="surrogateescape")
        if not sep or not await self.login(name, password, request):
            raise self._unauthorized(request, "wrong user name or password", reason="credentials")
        return name

    async def login(self, user: str, password: bytes, request: web.Request) -> bool:
        """Whether `password` is the user's. Past the limit of failed logins from the
        client's address (or of this user from it) raises 429 without checking, whatever
        the password, until the window ends."""
        address = client_address(request)
        wait = self.failures.attempt(address, user)
        if wait:
            seconds = str(math.ceil(wait))
            AUTH_FAILURES.labels("rate_limited").inc()
            raise OCIError(
                ErrorCode.TOOMANYREQUESTS,
                f"too many failed logins from {address or 'this client'}; retry in {seconds} s",
                headers={"Retry-After": seconds},
            )
        if self.htpasswd is None or not await self.htpasswd.check(user, password):
            return False
        self.failures.succeeded(address, user)
        return True

    def _verify(self, token: str, request: web.Request) -> Identity:
        try:
            kid = jwt.get_unverified_header(token).get("kid", "")
            if kid not in self.verify_keys and len(self.verify_keys) == 1:
                kid = next(iter(self.verify_keys))  # one key: a missing or other kid is no matter
            key, algorithm = self.verify_keys[kid]
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.config.token_service,
                issuer=self.config.token_issuer,
                options={"require": ["exp", "iss", "aud"]},
            )
        except (jwt.PyJWTError, KeyError) as exc:
            raise self._unauthorized(
                request, f"invalid token: {exc}", reason="token", error="invalid_token"
            ) from None
        grants: dict[str, frozenset[str]] = {}
        for entry in claims.get("access") or []:
            if isinstance(entry, dict) and entry.get("type") == "repository":
                name = str(entry.get("name"))
                grants[name] = grants.get(name, frozenset()) | frozenset(
                    map(str, entry.get("actions") or [])
                )
        user = claims.get("sub") or None
        return Identity(str(user) if user else None, grants)

    # Authorization

    def can(self, identity: Identity, repository: str, action: str) -> bool:
        if self.mode == "none":
            return True
        if identity.grants is not None:
            return action in identity.grants.get(repository, frozenset())
        return action in self.policy.actions(identity.user, repository)

    def can_list(self, identity: Identity, repository: str) -> bool:
        """Whether the catalog shows `repository`: the caller can pull it. A token of the
        built-in issuer is judged by the policy for its subject."""
        if self.mode == "token" and self.signing_key is not None:
            return "pull" in self.policy.actions(identity.user, repository)
        return self.can(identity, repository, "pull")

    def require_login(self, identity: Identity, request: web.Request) -> None:
        """For `/v2/` and the catalog: any valid credentials (or no auth at all)."""
        if self.mode != "none" and identity.user is None and identity.grants is None:
            raise self._unauthorized(request, "authentication required", reason="anonymous")

    def deny(
        self, identity: Identity, request: web.Request, repository: str, actions: str
    ) -> OCIError:
        if self.mode == "token" or identity.user is None:
            return self._unauthorized(
                request,
                f"{actions} access to repository {repository} is required",
                reason="anonymous"
                if identity.user is None and identity.grants is None
                else "scope",
                scope=f"repository:{repository}:{actions}",
                error="insufficient_scope" if identity.grants is not None else None,
            )
        AUTH_FAILURES.labels("denied").inc()
        return OCIError(
            ErrorCode.DENIED, f"{identity.user} may not {actions} repository {repository}"
        )

    def _unauthorized(
        self,
        request: web.Request,
        detail: str,
        *,
        reason: str,
        scope: str | None = None,
        error: str | None = None,
    ) -> OCIError:
        """A 401 with the challenge of the auth mode, counted by `reason` (see
        docs/operations.md#metrics)."""
        AUTH_FAILURES.labels(reason).inc()
        if self.mode == "token":
            params = [f'realm="{self.realm(request)}"', f'service="{self.config.token_service}"']
            if scope:
                params.append(f'scope="{scope}"')
            if error:
                params.append(f'error="{error}"')
            challenge = "Bearer " + ",".join(params)
        else:
            challenge = 'Basic realm="ocinest"'
        return OCIError(ErrorCode.UNAUTHORIZED, detail, headers={"WWW-Authenticate": challenge})

    def realm(self, request: web.Request) -> str:
        return self.config.token_realm or f"{request.scheme}://{request.host}/auth/token"

    # The built-in token issuer

    def issue(self, user: str | None, scopes: list[str]) -> dict[str, Any]:
        """A token granting what the policy allows of `scopes`; pull on a repository also
        brings pull on its ancestors the user may pull, for nested content (rule 4)."""
        access: dict[str, set[str]] = {}
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository" or not name:
                continue
            requested = {a.strip() for a in actions.split(",")}
            wanted = ACTIONS if "*" in requested else ACTIONS & requested
            allowed = self.policy.actions(user, name)
            access.setdefault(name, set()).update(wanted & allowed)
            if "pull" in wanted:
                parts = name.split("/")
                for i in range(1, len(parts)):
                    ancestor = "/".join(parts[:i])
                    if "pull" in self.policy.actions(user, ancestor):
                        access.setdefault(ancestor, set()).add("pull")
        now = int(time.time())
        ttl = int(self.config.token_ttl)
        claims = {
            "iss": self.config.token_issuer,
            "sub": user or "",
            "aud": self.config.token_service,
            "iat": now,
            "nbf": now - 5,
            "exp": now + ttl,
            "jti": str(uuid.uuid4()),
            "access": [
                {"type": "repository", "name": name, "actions": sorted(actions)}
                for name, actions in sorted(access.items())
            ],
        }
        key = self.signing_key
        token = jwt.encode(
            claims, key, algorithm=_algorithm(key), headers={"kid": _kid(key.public_key())}
        )
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return {"token": token, "access_token": token, "expires_in": ttl, "issued_at": issued}


IDENTITY = web.RequestKey("identity", Identity)


@dataclass(frozen=True)
class Access:
    """What the caller of this request may do."""

    auth: Auth
    identity: Identity

    def can(self, repository: str, action: str) -> bool:
        return self.auth.can(self.identity, repository, action)


async def token_endpoint(request: web.Request, auth: Auth) -> web.Response:
    """`/auth/token`: the Docker registry token flow (GET with Basic credentials or none) and
    its OAuth2 form (POST with grant_type=password)."""
    if request.method == "POST":
        form = await _form(request)
        if form.get("grant_type") != b"password":
            raise OCIError(
                ErrorCode.UNSUPPORTED, "only grant_type=password is supported", status=400
            )
        user = form.get("username", b"").decode(errors="surrogateescape")
        if not await auth.login(user, form.get("password", b""), request):
            AUTH_FAILURES.labels("credentials").inc()
            raise OCIError(ErrorCode.UNAUTHORIZED, "wrong user name or password")
        service = form.get("service", auth.config.token_service.encode()).decode(errors="replace")
        scopes = form.get("scope", b"").decode(errors="replace").split()
    else:
        user = None
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                user = await auth.basic_user(header[6:].strip(), request)
            except OCIError as err:
                err.headers["WWW-Authenticate"] = 'Basic realm="ocinest token"'
                raise
        service = request.query.get("service", auth.config.token_service)
        scopes = [s for value in request.query.getall("scope", []) for s in value.split()]
    if service != auth.config.token_service:
        raise OCIError(
            ErrorCode.DENIED, f"this issuer serves {auth.config.token_service!r}, not {service!r}"
        )
    return web.json_response(auth.issue(user, scopes))


async def _form(request: web.Request) -> dict[str, bytes]:
    """The URL-encoded form, its values as bytes: a password may be any bytes. (Latin-1 maps
    each byte to one character and back.)"""
    body = (await request.read()).rstrip().decode("latin-1")
    pairs = urllib.parse.parse_qsl(body, keep_blank_values=True, encoding="latin-1")
    return {k: v.encode("latin-1") for k, v in pairs}
