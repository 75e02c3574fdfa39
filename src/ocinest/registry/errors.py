"""Turning errors into OCI error responses; nothing escapes as a traceback."""

from __future__ import annotations

import json
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from ocinest.oci.errors import ErrorCode, ErrorDetail, OCIError
from ocinest.storage.errors import (
    BlobUnknown,
    DigestMismatch,
    ManifestReferenced,
    ManifestUnknown,
    ReferencesInvalid,
    StorageError,
    UploadComplete,
    UploadOffsetMismatch,
    UploadUnknown,
)

log = logging.getLogger("ocinest.registry")


def storage_error(exc: StorageError) -> OCIError:
    """The OCI error answer for a storage error: the one place that decides them."""
    if isinstance(exc, ReferencesInvalid):
        # Contract rule 1: a nested child that is missing or not what its descriptor says is
        # MANIFEST_BLOB_UNKNOWN; a descriptor of the repository's own content that does not
        # match is MANIFEST_INVALID.
        return OCIError.many(
            [
                ErrorDetail(
                    ErrorCode.MANIFEST_BLOB_UNKNOWN
                    if p.missing or p.nested
                    else ErrorCode.MANIFEST_INVALID,
                    p.detail,
                )
                for p in exc.problems
            ],
            status=400,
        )
    if isinstance(exc, ManifestReferenced):
        # The reason goes in `message` too: stock clients print code and message.
        return OCIError.many([ErrorDetail(ErrorCode.DENIED, str(exc), str(exc))], status=409)
    if isinstance(exc, UploadOffsetMismatch):
        return OCIError(ErrorCode.RANGE_INVALID, str(exc))
    return OCIError(_CODES[type(exc)], str(exc))


_CODES: dict[type[StorageError], ErrorCode] = {
    BlobUnknown: ErrorCode.BLOB_UNKNOWN,
    ManifestUnknown: ErrorCode.MANIFEST_UNKNOWN,
    UploadUnknown: ErrorCode.BLOB_UPLOAD_UNKNOWN,
    UploadComplete: ErrorCode.BLOB_UPLOAD_INVALID,
    DigestMismatch: ErrorCode.DIGEST_INVALID,
}


def error_response(request: web.Request, err: OCIError) -> web.Response:
    headers = {"Content-Type": "application/json", **err.headers}
    body = None if request.method == "HEAD" else json.dumps(err.to_json()).encode()
    return web.Response(status=err.status, body=body, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except OCIError as err:
        return error_response(request, err)
    except StorageError as err:
        return error_response(request, storage_error(err))
    except web.HTTPException:
        raise
    except ConnectionError as exc:
        # The client went away mid-request: the answer will likely reach no one.
        log.info("client disconnected: %s %s", request.method, request.path)
        return error_response(
            request, OCIError(ErrorCode.BLOB_UPLOAD_INVALID, f"connection lost: {exc}")
        )
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        body = {"errors": [{"code": "UNKNOWN", "message": "internal error", "detail": ""}]}
        return web.json_response(body, status=500)
