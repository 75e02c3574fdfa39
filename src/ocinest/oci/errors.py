"""OCI distribution-spec error codes and the exception that carries them."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class ErrorCode(enum.Enum):
    """The error codes of the distribution spec."""

    BLOB_UNKNOWN = "BLOB_UNKNOWN"
    BLOB_UPLOAD_INVALID = "BLOB_UPLOAD_INVALID"
    BLOB_UPLOAD_UNKNOWN = "BLOB_UPLOAD_UNKNOWN"
    DIGEST_INVALID = "DIGEST_INVALID"
    MANIFEST_BLOB_UNKNOWN = "MANIFEST_BLOB_UNKNOWN"
    MANIFEST_INVALID = "MANIFEST_INVALID"
    MANIFEST_UNKNOWN = "MANIFEST_UNKNOWN"
    NAME_INVALID = "NAME_INVALID"
    NAME_UNKNOWN = "NAME_UNKNOWN"
    SIZE_INVALID = "SIZE_INVALID"
    UNAUTHORIZED = "UNAUTHORIZED"
    DENIED = "DENIED"
    UNSUPPORTED = "UNSUPPORTED"
    TOOMANYREQUESTS = "TOOMANYREQUESTS"
    RANGE_INVALID = "RANGE_INVALID"
    # Not in the spec's table; distribution's code, which clients know.
    PAGINATION_NUMBER_INVALID = "PAGINATION_NUMBER_INVALID"
    # Not in the spec's table either: distribution's code for a backend that cannot be reached.
    UNAVAILABLE = "UNAVAILABLE"
    # ocinest's nested extension: a tree past the configured depth or node limits.
    TREE_TOO_LARGE = "TREE_TOO_LARGE"

    @property
    def status(self) -> int:
        """The default HTTP status."""
        return _TABLE[self][0]

    @property
    def message(self) -> str:
        return _TABLE[self][1]


_TABLE: dict[ErrorCode, tuple[int, str]] = {
    ErrorCode.BLOB_UNKNOWN: (404, "blob unknown to registry"),
    ErrorCode.BLOB_UPLOAD_INVALID: (400, "blob upload invalid"),
    ErrorCode.BLOB_UPLOAD_UNKNOWN: (404, "blob upload unknown to registry"),
    ErrorCode.DIGEST_INVALID: (400, "provided digest did not match uploaded content"),
    ErrorCode.MANIFEST_BLOB_UNKNOWN: (
        400,
        "manifest references a manifest or blob unknown to registry",
    ),
    ErrorCode.MANIFEST_INVALID: (400, "manifest invalid"),
    ErrorCode.MANIFEST_UNKNOWN: (404, "manifest unknown to registry"),
    ErrorCode.NAME_INVALID: (400, "invalid repository name"),
    ErrorCode.NAME_UNKNOWN: (404, "repository name not known to registry"),
    ErrorCode.SIZE_INVALID: (400, "provided length did not match content length"),
    ErrorCode.UNAUTHORIZED: (401, "authentication required"),
    ErrorCode.DENIED: (403, "requested access to the resource is denied"),
    ErrorCode.UNSUPPORTED: (405, "the operation is unsupported"),
    ErrorCode.TOOMANYREQUESTS: (429, "too many requests"),
    ErrorCode.RANGE_INVALID: (416, "invalid content range"),
    ErrorCode.PAGINATION_NUMBER_INVALID: (400, "invalid number of results requested"),
    ErrorCode.UNAVAILABLE: (503, "service unavailable"),
    ErrorCode.TREE_TOO_LARGE: (413, "nested tree exceeds the registry's limits"),
}


@dataclass(frozen=True)
class ErrorDetail:
    """One entry of an OCI error body."""

    code: ErrorCode
    detail: str
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code.name,
            "message": self.message or self.code.message,
            "detail": self.detail,
        }


class OCIError(Exception):
    """An error answered to the client as an OCI error body.

    It carries one or more entries; the HTTP status is the first entry's unless given.
    """

    def __init__(
        self,
        code: ErrorCode,
        detail: str,
        *,
        status: int | None = None,
        more: list[ErrorDetail] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.errors = [ErrorDetail(code, detail), *(more or [])]
        self.status = status if status is not None else code.status
        self.headers = headers or {}
        super().__init__(f"{code.name}: {detail}")

    @classmethod
    def many(cls, errors: list[ErrorDetail], *, status: int | None = None) -> OCIError:
        first, *rest = errors
        err = cls(first.code, first.detail, status=status, more=rest)
        err.errors[0] = first
        return err

    @property
    def code(self) -> ErrorCode:
        return self.errors[0].code

    def to_json(self) -> dict[str, Any]:
        return {"errors": [e.to_json() for e in self.errors]}
