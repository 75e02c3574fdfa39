"""Turning errors into OCI error responses; nothing escapes as a traceback or as text/plain."""

from __future__ import annotations

import json
import logging

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from ocinest.oci.errors import ErrorCode, OCIError

log = logging.getLogger("ocinest.registry")

# The OCI code of an HTTP error by its status; any other is UNSUPPORTED (as 404 and 405 are).
_CODES = {
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.DENIED,
    413: ErrorCode.SIZE_INVALID,
    416: ErrorCode.RANGE_INVALID,
    429: ErrorCode.TOOMANYREQUESTS,
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
    code = _CODES.get(exc.status, ErrorCode.UNSUPPORTED)
    return OCIError(code, detail, status=exc.status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except OCIError as err:
        return error_response(request, err)
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
