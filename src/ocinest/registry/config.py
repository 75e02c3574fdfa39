"""Server configuration: defaults < YAML file < environment < flags."""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from ocinest.registry.tagrules import ImmutableTags, Retention

ENV_PREFIX = "OCINEST_"


class ConfigError(Exception):
    """A configuration that cannot be used; the message says why."""


@dataclass(frozen=True)
class Config:
    addr: str = "127.0.0.1:5000"
    data: Path = Path("ocinest-data")
    # Where metadata lives: sqlite (in the data folder) or postgres (postgres_dsn, shared by
    # every process of a scale-out deployment).
    metadata: str = "sqlite"
    postgres_dsn: str | None = None
    # Where blobs live: filesystem (the data folder) or s3 (any S3-compatible service;
    # credentials from s3_access_key/s3_secret_key or the usual AWS_* environment).
    storage: str = "filesystem"
    s3_bucket: str | None = None
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_prefix: str = ""
    s3_part_size: int = 16 << 20
    # Serve blob GETs as redirects to presigned URLs instead of streaming them.
    s3_redirect: bool = False
    # The bound, in seconds, on a wait for a PostgreSQL connection and on each attempt of an
    # S3 call; past it the answer is 503 UNAVAILABLE naming the backend.
    backend_timeout: float = 5.0
    workers: int = 1
    access_log: bool = True
    log_level: str = "info"
    # Cross-repository mount without `from` takes the blob from any repository holding it.
    auto_mount: bool = True
    # Sparse manifests: a manifest or index whose non-nested descriptors (config, layers,
    # index members in the repository itself) were never pushed is accepted and served.
    # Nested children are always checked.
    allow_sparse: bool = False
    # Garbage collection: blobs and untagged manifests younger than the grace window are kept
    # (so content pushed for a manifest not yet written is never taken); upload sessions
    # expire after upload_ttl; gc_interval > 0 runs GC inside `serve` (seconds).
    gc_grace: float = 3600
    upload_ttl: float = 24 * 3600
    # Upload data that no session names is crash debris once this old (and past gc_grace):
    # every upload in flight has a session row, written right after its data.
    upload_debris_age: float = 600
    gc_interval: float = 0
    gc_delete_untagged: bool = False
    # Tag rules per repository pattern (see registry/tagrules.py): tags that never move once
    # pushed, and the tags GC removes (retention).
    immutable_tags: ImmutableTags = field(default_factory=ImmutableTags)
    retention: Retention = field(default_factory=Retention)
    # Bounds of the nested tree endpoint: depth, nodes, and bytes of the serialized answer.
    tree_max_depth: int = 32
    tree_max_nodes: int = 10_000
    tree_max_bytes: int = 16 << 20
    # The most manifests and blobs one index may reach through nested descriptors (the reach
    # rows its push writes, which make them readable through it): a bound on what one push
    # costs, however deep or shared the tree below it. Past it the push is 413 TREE_TOO_LARGE.
    tree_max_reach: int = 100_000
    # Stopping: in-flight requests get shutdown_grace seconds to finish after SIGTERM/SIGINT.
    shutdown_grace: float = 10
    # A connection that sends no byte for idle_timeout seconds is closed (never a cap on the
    # total time of a request that keeps moving).
    idle_timeout: float = 60
    # Failed logins allowed per user and client address (auth_fail_limit) and per client address
    # whatever the user (auth_fail_limit_address), in auth_fail_window seconds; past either the
    # answer is 429 with Retry-After.
    auth_fail_limit: int = 10
    auth_fail_limit_address: int = 100
    auth_fail_window: float = 60
    # Authentication: Basic against an htpasswd (bcrypt) file; or Bearer tokens, issued by the
    # built-in endpoint /auth/token when token_key (a private key, PEM) is set, or by an
    # external issuer whose public key (PEM) or JWKS file is given. policy maps users and
    # groups to repository patterns and actions.
    htpasswd: Path | None = None
    policy: Path | None = None
    token_key: Path | None = None
    token_public_key: Path | None = None
    token_jwks: Path | None = None
    token_issuer: str = "ocinest"
    token_service: str = "ocinest"
    token_realm: str | None = None
    token_ttl: float = 300
    # /metrics asks for a user (Basic, against the htpasswd users) when auth is configured.
    metrics_auth: bool = False
    # The read-only web pages under /ui/ (and `/` redirecting there).
    ui: bool = True
    # TLS: both files in PEM.
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def host(self) -> str:
        return self.addr.rsplit(":", 1)[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.addr.rsplit(":", 1)[1])

    def validate(self) -> Config:
        host, sep, port = self.addr.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"addr must be HOST:PORT, got {self.addr!r}")
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        if self.workers > 1 and int(port) == 0:
            raise ConfigError("several workers need a fixed port, not 0")
        if self.tree_max_reach < 1:
            raise ConfigError(f"tree_max_reach must be at least 1, got {self.tree_max_reach}")
        if min(self.auth_fail_limit, self.auth_fail_limit_address) < 1:
            raise ConfigError("auth_fail_limit and auth_fail_limit_address must be at least 1")
        if self.metadata not in ("sqlite", "postgres"):
            raise ConfigError(f"metadata must be sqlite or postgres, not {self.metadata!r}")
        if self.metadata == "postgres" and not self.postgres_dsn:
            raise ConfigError("metadata: postgres needs postgres_dsn")
        if self.storage not in ("filesystem", "s3"):
            raise ConfigError(f"storage must be filesystem or s3, not {self.storage!r}")
        if self.storage == "s3" and not self.s3_bucket:
            raise ConfigError("storage: s3 needs s3_bucket")
        if self.backend_timeout <= 0:
            raise ConfigError(f"backend_timeout must be positive, got {self.backend_timeout}")
        if self.s3_part_size < 5 << 20:
            raise ConfigError("s3_part_size must be at least 5 MiB (S3's smallest part)")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("TLS needs both tls_cert and tls_key")
        if self.token_key and (self.token_public_key or self.token_jwks):
            raise ConfigError("token_key (built-in issuer) excludes an external issuer's key")
        for name in (
            "htpasswd",
            "policy",
            "token_key",
            "token_public_key",
            "token_jwks",
            "tls_cert",
            "tls_key",
        ):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ConfigError(f"{name}: no such file {path}")
        return self

    @property
    def token_auth(self) -> bool:
        return bool(self.token_key or self.token_public_key or self.token_jwks)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string like `90`, `30s`, `15m`, `1h`, `7d`."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip().lower()
    unit = _UNITS.get(text[-1:]) if text else None
    number = text[:-1] if unit else text
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise ValueError(f"not a duration: {value!r} (use e.g. 90s, 15m, 1h, 7d)") from None
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {value!r}")
    return seconds


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _types() -> dict[str, tuple[type, bool]]:
    """Each setting's type, and whether it may be None, from the dataclass's annotations."""
    kinds: dict[str, tuple[type, bool]] = {}
    for name, hint in typing.get_type_hints(Config).items():
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        kinds[name] = (args[0], True) if args else (hint, False)
    return kinds


def _tag_rules(name: str, kind: type, value: Any) -> ImmutableTags | Retention:
    """A list of tag rules, from YAML (a string, from the environment) or the file's list."""
    try:
        doc = yaml.safe_load(value) if isinstance(value, str) else value
        if kind is ImmutableTags:
            return ImmutableTags.parse(doc)
        return Retention.parse(doc, parse_duration)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{name}{'' if str(exc).startswith('[') else ': '}{exc}") from None


def _coerce(name: str, value: Any) -> Any:
    kind, optional = _types()[name]
    if kind in (ImmutableTags, Retention):
        return _tag_rules(name, kind, value)
    if optional and (value is None or value == ""):
        return None
    try:
        if kind is bool:
            text = str(value).lower()
            if isinstance(value, bool) or text in _TRUE + _FALSE:
                return value if isinstance(value, bool) else text in _TRUE
            raise ValueError(value)
        if kind is float:
            return parse_duration(value)
        if kind is int and isinstance(value, bool):
            raise ValueError(value)
        return kind(value if kind is not Path else str(value))
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: cannot use {value!r}") from None


def load_config(path: Path | None = None, **overrides: Any) -> Config:
    """Build the configuration from a YAML file, `OCINEST_*` variables and `overrides`
    (flags; None means not given)."""
    known = {f.name for f in fields(Config)}
    values: dict[str, Any] = {}
    path = path or (
        Path(os.environ[ENV_PREFIX + "CONFIG"]) if ENV_PREFIX + "CONFIG" in os.environ else None
    )
    if path is not None:
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"config file {path} must hold a mapping")
        unknown = set(doc) - known
        if unknown:
            raise ConfigError(f"config file {path}: unknown keys {', '.join(sorted(unknown))}")
        values.update(doc)
    for name in known:
        env = os.environ.get(ENV_PREFIX + name.upper())
        if env is not None:
            values[name] = env
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = replace(Config(), **{k: _coerce(k, v) for k, v in values.items()})
    return config.validate()
