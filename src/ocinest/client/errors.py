"""What the client raises. Every error has a one-line message meant for a person, and a
category the command line turns into an exit code."""

from __future__ import annotations

import enum
from typing import Any


class Kind(enum.IntEnum):
    """The category of an error; the value is the command line's exit code."""

    FAILED = 1  # the operation failed (a registry refused it, content was invalid)
    USAGE = 2  # bad input: a malformed reference or argument
    AUTH = 3  # authentication or authorization failed
    NOT_FOUND = 4  # a repository, manifest, blob or file does not exist
    NETWORK = 5  # the registry cannot be reached, or the connection broke


class ClientError(Exception):
    """An error of the client, with a one-line message."""

    kind = Kind.FAILED

    def __init__(self, message: str, *, kind: Kind | None = None) -> None:
        super().__init__(" ".join(message.split()))
        if kind is not None:
            self.kind = kind

    @property
    def message(self) -> str:
        return str(self)


class BadReference(ClientError):
    """A malformed reference (`host/repo:tag@digest`, `oci:PATH:tag`)."""

    kind = Kind.USAGE


class AuthError(ClientError):
    kind = Kind.AUTH


class NotFound(ClientError):
    kind = Kind.NOT_FOUND


class NetworkError(ClientError):
    kind = Kind.NETWORK


class DigestMismatch(ClientError):
    """Content whose digest or size is not the one it was asked for; never stored."""


class RegistryError(ClientError):
    """An error answer of a registry, with the OCI error entries it carried."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        codes: list[str] | None = None,
        errors: list[dict[str, Any]] | None = None,
        kind: Kind | None = None,
    ) -> None:
        super().__init__(message, kind=kind)
        self.status = status
        self.codes = codes or []
        self.errors = errors or []
