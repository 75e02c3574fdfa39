"""Turning errors into OCI error responses; nothing escapes as a traceback or as text/plain."""

from __future__ import annotations

import json
import logging

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from ocinest.oci.digest import DigestError
from ocinest.oci.errors import ErrorCode, ErrorDetail, OCIError
from ocinest.storage.errors import (
    BackendUnavailable,
    BlobUnknown,
    ChunkRefused,
    DigestMismatch,
    ManifestReferenced,
    ManifestUnknown,
    ReachTooLarge,
    ReferencesInvalid,
    StorageError,
    UploadBusy,
    UploadComplete,
    UploadOffsetMismatch,
    UploadUnknown,
)

log = logging.getLogger("ocinest.registry")

# The OCI code of an HTTP error by its status; any other is UNSUPPORTED (as 404 and 405 are).
_HTTP_CODES = {
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.DENIED,
    413: ErrorCode.SIZE_INVALID,
    416: ErrorCode.RANGE_INVALID,
    429: ErrorCode.TOOMANYREQUESTS,
}
# Seconds a client is asked to wait before trying again while a backend is unavailable.
RETRY_AFTER = 5


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
    if isinstance(exc, BackendUnavailable):
        return OCIError(ErrorCode.UNAVAILABLE, str(exc), headers={"Retry-After": str(RETRY_AFTER)})
    if isinstance(exc, UploadOffsetMismatch):
        return OCIError(ErrorCode.RANGE_INVALID, str(exc))
    if isinstance(exc, ReachTooLarge):
        # In `message` too, as stock clients print it: the push is refused, nothing stored.
        why = f"{exc}; this registry accepts at most {exc.limit} (tree_max_reach)"
        return OCIError.many([ErrorDetail(ErrorCode.TREE_TOO_LARGE, why, why)])
    return OCIError(_STORAGE_CODES[type(exc)], str(exc))


_STORAGE_CODES: dict[type[StorageError], ErrorCode] = {
    BlobUnknown: ErrorCode.BLOB_UNKNOWN,
    ManifestUnknown: ErrorCode.MANIFEST_UNKNOWN,
    UploadUnknown: ErrorCode.BLOB_UPLOAD_UNKNOWN,
    UploadComplete: ErrorCode.BLOB_UPLOAD_INVALID,
    UploadBusy: ErrorCode.BLOB_UPLOAD_INVALID,
    DigestMismatch: ErrorCode.DIGEST_INVALID,
    ChunkRefused: ErrorCode.RANGE_INVALID,
}


def error_response(request: web.Request, err: OCIError) -> web.Response:
    headers = {"Content-Type": "application/json", **err.headers}
    body = None if request.method == "HEAD" else json.dumps(err.to_json()).encode()
    return web.Response(status=err.status, body=body, headers=headers)


def _oci_error(request: web.Request, exc: web.HTTPError) -> OCIError:
    """An HTTP error that aiohttp (no such route, method not allowed, body too large...) or a
    route raised, as an OCI error of the same status, keeping headers such as Allow."""
    if isinstance(exc, web.HTTPNotFound):
        detail = f"no such endpoint: {request.path[:200]}"
    elif isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        detail = f"{request.method} is not supported here; allowed: {allowed}"
    else:
        detail = exc.text or exc.reason
    body_headers = (hdrs.CONTENT_TYPE.lower(), hdrs.CONTENT_LENGTH.lower())
    headers = {k: v for k, v in exc.headers.items() if k.lower() not in body_headers}
    code = _HTTP_CODES.get(exc.status, ErrorCode.UNSUPPORTED)
    return OCIError(code, detail, status=exc.status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except OCIError as err:
        return error_response(request, err)
    except BackendUnavailable as err:
        log.warning("%s %s: %s", request.method, request.path, err)
        return error_response(request, storage_error(err))
    except StorageError as err:
        return error_response(request, storage_error(err))
    except DigestError as err:
        return error_response(request, OCIError(ErrorCode.DIGEST_INVALID, str(err)))
    except web.HTTPError as exc:
        return error_response(request, _oci_error(request, exc))
    except web.HTTPException:
        raise  # redirects, 304 and the like are answers, not errors
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
