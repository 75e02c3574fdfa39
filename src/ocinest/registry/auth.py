"""Authentication (none, Basic against htpasswd, Bearer tokens per the Docker registry token
specification) and authorization (the policy, or a token's access claims)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ocinest.oci.errors import ErrorCode, OCIError
from ocinest.registry.config import Config
from ocinest.registry.policy import ACTIONS, Policy

# How long a checked password is remembered: bcrypt takes tens of milliseconds a check.
PASSWORD_CACHE_SECONDS = 60


@dataclass(frozen=True)
class Identity:
    """Who is asking: a user, or None for anonymous. `grants` are a token's access claims
    (repository -> actions); None when the policy decides."""

    user: str | None
    grants: Mapping[str, frozenset[str]] | None = None


class Htpasswd:
    """An htpasswd file of bcrypt hashes (`htpasswd -B`)."""

    def __init__(self, path: Path) -> None:
        self.hashes: dict[str, bytes] = {}
        for line in path.read_text().splitlines():
            user, sep, hashed = line.strip().partition(":")
            if sep and hashed.startswith(("$2a$", "$2b$", "$2y$")):
                self.hashes[user] = hashed.encode()
        self._checked: dict[tuple[str, bytes], float] = {}

    def check(self, user: str, password: str) -> bool:
        key = (user, hashlib.sha256(password.encode()).digest())
        if self._checked.get(key, 0) > time.monotonic():
            return True
        hashed = self.hashes.get(user)
        if hashed is None or not bcrypt.checkpw(password.encode(), hashed):
            return False
        self._checked[key] = time.monotonic() + PASSWORD_CACHE_SECONDS
        return True


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
    htpasswd: Htpasswd | None = None
    signing_key: Any = None
    # kid (or "") -> (public key, algorithm)
    verify_keys: dict[str, tuple[Any, str]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Config) -> Auth:
        policy = Policy.load(config.policy) if config.policy else Policy.default()
        auth = cls(config, policy, Htpasswd(config.htpasswd) if config.htpasswd else None)
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

    def identify(self, request: web.Request) -> Identity:
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        if self.mode == "none" or not header:
            return Identity(None)
        if self.mode == "basic" and scheme.lower() == "basic":
            return Identity(self.basic_user(credentials.strip(), request))
        if self.mode == "token" and scheme.lower() == "bearer":
            return self._verify(credentials.strip(), request)
        raise self._unauthorized(request, f"{scheme or 'these'} credentials are not accepted here")

    def basic_user(self, credentials: str, request: web.Request) -> str:
        """The user of valid Basic credentials; raises 401 otherwise."""
        try:
            user, sep, password = (
                base64.b64decode(credentials, validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            sep = ""
        if not sep or self.htpasswd is None or not self.htpasswd.check(user, password):
            raise self._unauthorized(request, "wrong user name or password")
        return user

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
                request, f"invalid token: {exc}", error="invalid_token"
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
            raise self._unauthorized(request, "authentication required")

    def deny(
        self, identity: Identity, request: web.Request, repository: str, actions: str
    ) -> OCIError:
        if self.mode == "token" or identity.user is None:
            return self._unauthorized(
                request,
                f"{actions} access to repository {repository} is required",
                scope=f"repository:{repository}:{actions}",
                error="insufficient_scope" if identity.grants is not None else None,
            )
        return OCIError(
            ErrorCode.DENIED, f"{identity.user} may not {actions} repository {repository}"
        )

    def _unauthorized(
        self,
        request: web.Request,
        detail: str,
        *,
        scope: str | None = None,
        error: str | None = None,
    ) -> OCIError:
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
        form = await request.post()
        if form.get("grant_type") != "password":
            raise OCIError(
                ErrorCode.UNSUPPORTED, "only grant_type=password is supported", status=400
            )
        user = str(form.get("username", ""))
        if auth.htpasswd is None or not auth.htpasswd.check(user, str(form.get("password", ""))):
            raise OCIError(ErrorCode.UNAUTHORIZED, "wrong user name or password")
        service = str(form.get("service", auth.config.token_service))
        scopes = str(form.get("scope", "")).split()
    else:
        user = None
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                user = auth.basic_user(header[6:].strip(), request)
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
