"""Credentials and authentication challenges.

Credentials come from, in order: an explicit auth file, `$REGISTRY_AUTH_FILE`, ocinest's own
file (written by `ocinest login`: `$XDG_CONFIG_HOME/ocinest/auth.json`), podman's
`$XDG_RUNTIME_DIR/containers/auth.json` and `$XDG_CONFIG_HOME/containers/auth.json`, and
Docker's `$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`), including its
credential helpers. All share Docker's format: `{"auths": {"host": {"auth": base64(user:pass)}}}`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import AuthError, ClientError
from .reference import DOCKER_HUB

DOCKER_HUB_KEY = "https://index.docker.io/v1/"


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""

    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "basic" or "bearer"
    params: dict[str, str] = field(default_factory=dict)


_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*,?')


def parse_challenge(header: str) -> Challenge | None:
    """Parse one `WWW-Authenticate` value: `Bearer realm="…",service="…",scope="…"`."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM_RE.match(rest, pos)
        if m is None or m.end() == pos:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = m.end()
    return Challenge(scheme.lower(), params)


def _config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def ocinest_auth_file() -> Path:
    """Where `ocinest login` writes, unless told otherwise."""
    return Path(os.environ.get("REGISTRY_AUTH_FILE") or _config_home() / "ocinest" / "auth.json")


def auth_files(explicit: Path | None = None) -> list[Path]:
    """The files credentials are read from, first match wins."""
    files: list[Path] = []
    if explicit is not None:
        files.append(explicit)
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    files.append(_config_home() / "ocinest" / "auth.json")
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    files.append(_config_home() / "containers" / "auth.json")
    docker = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    files.append(docker / "config.json")
    return files


def _normalize_key(key: str) -> str:
    """`https://host/v1/` and `http://host` name `host`; `host/ns` stays scoped."""
    if key == DOCKER_HUB_KEY:
        return DOCKER_HUB
    for prefix in ("https://", "http://"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
            key = key.split("/", 1)[0]  # Docker keys carry API paths, not namespaces
            break
    key = key.rstrip("/")
    if key in ("index.docker.io", "registry-1.docker.io"):
        return DOCKER_HUB
    return key


def _read(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ClientError(f"cannot read auth file {path}: {exc.strerror}") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ClientError(f"auth file {path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ClientError(f"auth file {path} is not a JSON object")
    return doc


def _entry_credentials(entry: object, path: Path) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    if entry.get("identitytoken"):
        username = ""
        if entry.get("auth"):
            username = _decode_auth(str(entry["auth"]), path)[0]
        return Credentials(username=username, identity_token=str(entry["identitytoken"]))
    if entry.get("auth"):
        user, password = _decode_auth(str(entry["auth"]), path)
        return Credentials(user, password)
    if entry.get("username"):
        return Credentials(str(entry["username"]), str(entry.get("password", "")))
    return None


def _decode_auth(raw: str, path: Path) -> tuple[str, str]:
    try:
        text = base64.b64decode(raw, validate=False).decode()
    except (ValueError, UnicodeDecodeError):
        raise ClientError(
            f"auth file {path}: an 'auth' value is not base64 of user:password"
        ) from None
    user, sep, password = text.partition(":")
    if not sep:
        raise ClientError(f"auth file {path}: an 'auth' value is not base64 of user:password")
    return user, password


def _helper(name: str, host: str) -> Credentials | None:
    server = DOCKER_HUB_KEY if host == DOCKER_HUB else host
    try:
        proc = subprocess.run(
            [f"docker-credential-{name}", "get"],
            input=server,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        return None
    user, secret = str(doc.get("Username", "")), str(doc.get("Secret", ""))
    if user == "<token>":
        return Credentials(identity_token=secret)
    return Credentials(user, secret) if user or secret else None


def find_credentials(
    host: str, repository: str | None = None, explicit: Path | None = None
) -> Credentials | None:
    """The credentials for `host` (and, for podman's scoped entries, `repository`)."""
    for path in auth_files(explicit):
        doc = _read(path)
        if doc is None:
            continue
        auths = doc.get("auths") or {}
        if isinstance(auths, dict):
            best: tuple[int, Credentials] | None = None
            for key, entry in auths.items():
                norm = _normalize_key(str(key))
                scope = f"{host}/{repository}" if repository else host
                if norm == host or (scope + "/").startswith(norm + "/"):
                    creds = _entry_credentials(entry, path)
                    if creds is not None and (best is None or len(norm) > best[0]):
                        best = (len(norm), creds)
            if best is not None:
                return best[1]
        helpers = doc.get("credHelpers") or {}
        if isinstance(helpers, dict):
            for key, name in helpers.items():
                if _normalize_key(str(key)) == host:
                    creds = _helper(str(name), host)
                    if creds is not None:
                        return creds
        store = doc.get("credsStore")
        if isinstance(store, str) and store:
            creds = _helper(store, host)
            if creds is not None:
                return creds
    return None


def store_credentials(host: str, creds: Credentials, path: Path | None = None) -> Path:
    """Save `creds` for `host` in `path` (default: ocinest's own auth file), mode 0600."""
    path = path or ocinest_auth_file()
    doc = _read(path) or {}
    auths = doc.setdefault("auths", {})
    if not isinstance(auths, dict):
        raise ClientError(f"auth file {path}: 'auths' is not an object")
    key = DOCKER_HUB_KEY if host == DOCKER_HUB else host
    auths[key] = {"auth": base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()}
    _write(path, doc)
    return path


def remove_credentials(host: str, path: Path | None = None) -> bool:
    """Forget `host` in `path`; whether there was anything to forget."""
    path = path or ocinest_auth_file()
    doc = _read(path)
    if not doc or not isinstance(doc.get("auths"), dict):
        return False
    auths: dict[str, Any] = doc["auths"]
    keys = [k for k in auths if _normalize_key(k) == host]
    for k in keys:
        del auths[k]
    if keys:
        _write(path, doc)
    return bool(keys)


def _write(path: Path, doc: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(path.with_name(path.name + ".tmp"))
        raise AuthError(f"cannot write auth file {path}: {exc.strerror}") from None
