"""References as users write them: `host[:port]/repo[:tag][@digest]` for a registry, and
`oci:PATH[:tag][@digest]` for an OCI image layout on disk."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from pathlib import Path

from ocinest.oci.digest import Digest, DigestError
from ocinest.oci.errors import OCIError
from ocinest.oci.names import child_path_problem, is_tag, validate_name

from .errors import BadReference

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_HOST_RE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]{1,5})?$"
)


def _bad(text: str, why: str) -> BadReference:
    return BadReference(f"invalid reference {text[:300]!r}: {why}")


def _split_digest(text: str, rest: str) -> tuple[str, Digest | None]:
    if "@" not in rest:
        return rest, None
    rest, raw = rest.rsplit("@", 1)
    try:
        return rest, Digest.parse(raw)
    except DigestError as exc:
        raise _bad(text, str(exc)) from None


def _split_tag(text: str, rest: str) -> tuple[str, str | None]:
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon <= slash:
        return rest, None
    tag = rest[colon + 1 :]
    if not is_tag(tag):
        raise _bad(text, f"invalid tag {tag!r}: tags match [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}}")
    return rest[:colon], tag


def is_local_host(host: str) -> bool:
    """Whether `host` (with or without port) is this machine: plain HTTP by default."""
    name = host
    if name.startswith("["):
        name = name[1 : name.find("]")]
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class RemoteRef:
    """A manifest in a repository of a registry."""

    host: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def reference(self) -> str:
        """What goes after `/manifests/`: the digest if given, else the tag, else `latest`."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or "latest"

    @property
    def api_host(self) -> str:
        return DOCKER_HUB_API if self.host == DOCKER_HUB else self.host

    def with_(self, **changes: object) -> RemoteRef:
        return replace(self, **changes)  # type: ignore[arg-type]

    def child(self, path: str) -> RemoteRef:
        problem = child_path_problem(self.repository, path)
        if problem:
            raise BadReference(f"invalid child path: {problem}")
        return RemoteRef(self.host, f"{self.repository}/{path}")

    @property
    def name(self) -> str:
        return f"{self.host}/{self.repository}"

    def pinned(self, digest: Digest) -> str:
        return f"{self.name}@{digest}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True)
class LayoutRef:
    """A manifest in an OCI image layout: `oci:PATH[:tag][@digest]`."""

    path: Path
    tag: str | None = None
    digest: Digest | None = None

    @property
    def reference(self) -> str | None:
        if self.digest is not None:
            return str(self.digest)
        return self.tag

    def with_(self, **changes: object) -> LayoutRef:
        return replace(self, **changes)  # type: ignore[arg-type]

    def __str__(self) -> str:
        text = f"oci:{self.path}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


Ref = RemoteRef | LayoutRef


def parse_reference(text: str) -> Ref:
    """Parse a reference as a user writes it; `BadReference` (one line) when malformed."""
    if not text or text != text.strip() or any(c.isspace() for c in text):
        raise _bad(text, "empty or contains white space")
    if text.startswith("oci:"):
        return _parse_layout(text)
    if "://" in text:
        raise _bad(text, "write host/repository[:tag][@digest], without a URL scheme")
    rest, digest = _split_digest(text, text)
    rest, tag = _split_tag(text, rest)
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        host, repository = first, remainder
        if not _HOST_RE.match(host):
            raise _bad(text, f"invalid registry host {host!r}")
    else:
        host, repository = DOCKER_HUB, rest
        if "/" not in repository:
            repository = f"library/{repository}"
    if host in ("index.docker.io", DOCKER_HUB_API):
        host = DOCKER_HUB
    if not repository:
        raise _bad(text, "no repository")
    try:
        validate_name(repository)
    except OCIError as exc:
        raise _bad(text, exc.errors[0].detail) from None
    return RemoteRef(host, repository, tag, digest)


def _parse_layout(text: str) -> LayoutRef:
    rest = text[len("oci:") :]
    rest, digest = _split_digest(text, rest)
    tag = None
    # A tag is what follows the last ':' after the last '/', if it is a valid tag.
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        candidate = rest[colon + 1 :]
        if not is_tag(candidate):
            raise _bad(text, f"invalid tag {candidate!r}")
        rest, tag = rest[:colon], candidate
    if not rest:
        raise _bad(text, "no layout path after 'oci:'")
    return LayoutRef(Path(rest), tag, digest)


def parse_remote(text: str) -> RemoteRef:
    ref = parse_reference(text)
    if not isinstance(ref, RemoteRef):
        raise _bad(text, "a registry reference (host/repository[:tag]) is needed here")
    return ref
