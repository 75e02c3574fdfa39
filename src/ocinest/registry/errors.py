"""Turning errors into OCI error responses; nothing escapes as a traceback."""

from __future__ import annotations

import json
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from ocinest.oci.errors import ErrorCode, OCIError

log = logging.getLogger("ocinest.registry")


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
