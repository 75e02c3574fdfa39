"""Blob routes: GET/HEAD/DELETE of blobs, and every form of upload (monolithic, POST+PUT,
chunked PATCH, status, cancel, cross-repository mount)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from ocinest.oci.digest import Digest
from ocinest.oci.errors import ErrorCode, OCIError
from ocinest.oci.names import validate_name
from ocinest.registry.metrics import UPLOADS
from ocinest.registry.state import Registry, access, registry
from ocinest.storage.errors import ChunkRefused, UploadComplete, UploadOffsetMismatch
from ocinest.storage.meta import Upload

log = logging.getLogger("ocinest.registry")

_UPLOAD_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_OFFSET = "[0-9]{1,19}"  # ASCII digits, and few enough for a 64-bit offset
_CONTENT_RANGE = re.compile(rf"^(?:bytes[= ])?({_OFFSET})-({_OFFSET})(?:/(?:{_OFFSET}|\*))?\Z")
# Repositories looked at for a mount without `from`.
AUTO_MOUNT_CANDIDATES = 16


def _blob_location(name: str, digest: Digest) -> str:
    return f"/v2/{name}/blobs/{digest}"


def _upload_location(name: str, upload_id: str) -> str:
    return f"/v2/{name}/blobs/uploads/{upload_id}"


def _range(size: int) -> str:
    return f"0-{max(size - 1, 0)}"


def _upload_headers(name: str, upload_id: str, size: int) -> dict[str, str]:
    return {
        "Location": _upload_location(name, upload_id),
        "Range": _range(size),
        "Docker-Upload-UUID": upload_id,
    }


def _created(name: str, digest: Digest) -> web.Response:
    return web.Response(
        status=201,
        headers={"Location": _blob_location(name, digest), "Docker-Content-Digest": str(digest)},
    )


class _BodyLength(ChunkRefused):
    """The body is longer or shorter than its Content-Range says."""


async def _body(request: web.Request, length: int | None = None) -> AsyncIterator[bytes]:
    """The request body as it arrives; a broken transfer becomes an OCI error. With the
    `length` a Content-Range declares, a longer body fails before the chunk that overflows
    is passed on, and a shorter one fails at its end."""
    received = 0
    try:
        async for chunk, _ in request.content.iter_chunks():
            received += len(chunk)
            if length is not None and received > length:
                raise _BodyLength("is longer")
            yield chunk
    except (
        aiohttp.ClientPayloadError,
        HttpProcessingError,
        asyncio.IncompleteReadError,
        ConnectionError,
    ) as exc:
        raise OCIError(ErrorCode.BLOB_UPLOAD_INVALID, f"request body broken off: {exc}") from None
    if length is not None and received < length:
        raise _BodyLength(f"is {received} bytes")


# Blobs


async def get_blob(request: web.Request, name: str, digest: str) -> web.StreamResponse:
    reg = registry(request)
    d = Digest.parse(digest)
    size = await reg.meta.blob_size(name, d)
    if size is None:
        raise OCIError(ErrorCode.BLOB_UNKNOWN, f"blob {d} is not in {name}")
    headers = {
        "Docker-Content-Digest": str(d),
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
    }
    if request.method == "HEAD":  # Range is defined for GET only (RFC 9110 14.2)
        headers["Content-Length"] = str(size)
        return web.Response(status=200, headers=headers)
    path = reg.blobs.local_path(d)
    if path is not None and hdrs.RANGE not in request.headers:
        return web.FileResponse(path, headers=headers)  # sendfile
    url = reg.blobs.presigned_url(d)
    if url is not None:
        return web.Response(status=307, headers={**headers, "Location": url})
    return await stream_blob(request, reg, d, size, headers)


# One byte range: first-last, first- or -suffix (RFC 9110 14.1.2); 19 digits fit 64 bits.
_BYTE_RANGE = re.compile(r"([0-9]{1,19})-([0-9]{0,19})|-([0-9]{1,19})", re.ASCII)


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The bytes [start, end) of a `size`-byte blob that a `Range` header asks for, or None
    for the whole blob: no header, another unit, a header that is not valid, or several
    ranges (a server may ignore Range, RFC 9110 14.2; this spares multipart answers).
    A valid but unsatisfiable range is RANGE_INVALID (416)."""
    if header is None:
        return None
    unit, _, ranges = header.partition("=")
    specs = [spec.strip() for spec in ranges.split(",") if spec.strip()]
    if unit.strip().lower() != "bytes" or len(specs) != 1:
        return None
    m = _BYTE_RANGE.fullmatch(specs[0])
    if m is None:
        return None
    first, last, suffix = m.groups()
    if suffix is not None:
        if size == 0 and int(suffix) > 0:
            return None  # satisfiable, but an empty blob has no byte range to name
        start, end = max(size - int(suffix), 0), size
    else:
        if last and int(last) < int(first):
            return None  # invalid, so ignored
        start, end = int(first), min(int(last) + 1, size) if last else size
    if start >= end:
        raise OCIError(
            ErrorCode.RANGE_INVALID,
            f"range {header[:100]!r} selects none of the blob's {size} bytes",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end


async def stream_blob(
    request: web.Request, reg: Registry, digest: Digest, size: int, headers: dict[str, str]
) -> web.StreamResponse:
    """The blob through the store's read, whole or the one range asked for."""
    start, end, status = 0, size, 200
    span = _byte_range(request.headers.get(hdrs.RANGE), size)
    if span is not None:
        (start, end), status = span, 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    chunks = reg.blobs.read(digest, start, end)
    # The store is asked for the first bytes before the status goes out: a store that
    # cannot serve the blob gets its error answered while one can still be sent.
    first = await anext(chunks, b"")
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = end - start
    await response.prepare(request)
    sent = 0
    try:
        if first:
            await response.write(first)
            sent = len(first)
        async for chunk in chunks:
            await response.write(chunk)
            sent += len(chunk)
    except ConnectionError:
        raise  # the client went away
    except Exception as exc:
        # The status is out: an error answer now would land inside the body. The connection
        # is cut instead, so that the client sees a short read (fewer bytes than
        # Content-Length) and tries again.
        log.warning("blob %s broke off after %d of %d bytes: %s", digest, sent, end - start, exc)
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


async def delete_blob(request: web.Request, name: str, digest: str) -> web.Response:
    await registry(request).meta.unlink_blob(name, Digest.parse(digest))
    return web.Response(status=202)


# Uploads


async def start_upload(request: web.Request, name: str) -> web.Response:
    reg = registry(request)
    query = request.query
    if "mount" in query:
        mounted = await _mount(request, name, Digest.parse(query["mount"]), query.get("from"))
        if mounted is not None:
            return _created(name, mounted)
    elif "digest" in query:
        return await _monolithic(request, reg, name, Digest.parse(query["digest"]))
    upload_id = await _new_session(reg, name)
    return web.Response(status=202, headers=_upload_headers(name, upload_id, 0))


async def _new_session(reg: Registry, name: str) -> str:
    """A new upload session of `name`: its data, then its row. Every upload has one, so
    that data without a row is only ever a session being made (for the moment between the
    two) or debris of a crash, which gc tells apart by age."""
    upload_id = str(uuid.uuid4())
    await reg.blobs.start_upload(upload_id)
    try:
        await reg.meta.create_upload(Upload(upload_id, name, time.time()))
    except BaseException:
        await reg.blobs.abort(upload_id)
        raise
    UPLOADS.inc()
    return upload_id


async def _mount(
    request: web.Request, name: str, digest: Digest, source: str | None
) -> Digest | None:
    """Link `digest` into `name` from `source` (or, without one, from any repository that
    has it) that the caller may pull; None when it cannot be mounted and a normal upload
    must follow (which tells nothing of whether the blob exists elsewhere)."""
    reg = registry(request)
    if source is not None:
        candidates = [validate_name(source)]
    elif reg.config.auto_mount:
        candidates = await reg.meta.repositories_with_blob(digest, AUTO_MOUNT_CANDIDATES)
    else:
        return None
    can = access(request).can
    for candidate in candidates:
        if not can(candidate, "pull"):
            continue
        size = await reg.meta.blob_size(candidate, digest)
        if size is not None and await reg.meta.link_blob(name, digest, size):
            return digest
    return None


async def _monolithic(
    request: web.Request, reg: Registry, name: str, digest: Digest
) -> web.Response:
    # A session row all the same, so that gc never takes the upload in flight for debris;
    # its commit is not durable (`create_upload`), so the one durable commit is the blob's.
    upload_id = await _new_session(reg, name)
    try:
        await reg.blobs.append(upload_id, 0, _body(request), digest)
        await _commit(reg, name, upload_id, digest)
    except BaseException:
        # The row first, as in a cancel: a crash in between leaves only data, which gc removes.
        await reg.meta.delete_upload(upload_id)
        await reg.blobs.abort(upload_id)
        UPLOADS.dec()
        raise
    return _created(name, digest)


async def _commit(reg: Registry, name: str, upload_id: str, digest: Digest) -> None:
    """Verify the upload and make it the blob `digest`, linked in `name`; the session ends."""
    size = await reg.blobs.verify(upload_id, digest)
    await reg.meta.link_blob(
        name, digest, size, lambda: reg.blobs.publish(upload_id, digest), upload_id
    )
    UPLOADS.dec()
    await reg.blobs.abort(upload_id)


async def _session(reg: Registry, name: str, upload_id: str) -> int:
    """The size of the upload session `upload_id` of repository `name`."""
    unknown = OCIError(ErrorCode.BLOB_UPLOAD_UNKNOWN, f"no upload {upload_id} in {name}")
    if not _UPLOAD_ID.match(upload_id):
        raise unknown
    upload = await reg.meta.get_upload(upload_id)
    if upload is None or upload.repository != name:
        raise unknown
    size = await reg.blobs.upload_size(upload_id)
    if size is None:
        raise unknown
    return size


async def _append(
    request: web.Request,
    reg: Registry,
    name: str,
    upload_id: str,
    size: int,
    digest: Digest | None = None,
) -> int:
    """Append the request body to the upload, at the start its Content-Range gives; a body
    of another length than that range is refused, the answer's Range what the upload holds.
    With `digest` the body closes the upload (BlobStore.append)."""
    offset, length = size, None
    header = request.headers.get("Content-Range")
    if header is not None:
        m = _CONTENT_RANGE.match(header.strip())
        if m is None or int(m.group(2)) < int(m.group(1)):
            raise OCIError(
                ErrorCode.RANGE_INVALID,
                f"malformed Content-Range {header[:100]!r}; expected <start>-<end>",
                headers=_upload_headers(name, upload_id, size),
            )
        offset = int(m.group(1))
        length = int(m.group(2)) - offset + 1
        if request.content_length is not None and request.content_length != length:
            raise OCIError(
                ErrorCode.RANGE_INVALID,
                f"Content-Range {header!r} is {length} bytes, Content-Length is "
                f"{request.content_length}",
                headers=_upload_headers(name, upload_id, size),
            )
    try:
        return await reg.blobs.append(upload_id, offset, _body(request, length), digest)
    except UploadOffsetMismatch as exc:
        raise OCIError(
            ErrorCode.RANGE_INVALID,
            f"chunk starts at {offset}, but the upload holds {exc.size} bytes",
            headers=_upload_headers(name, upload_id, exc.size),
        ) from None
    except _BodyLength as exc:
        held = await reg.blobs.upload_size(upload_id)
        raise OCIError(
            ErrorCode.RANGE_INVALID,
            f"Content-Range {header!r} is {length} bytes, but the body {exc}",
            headers=_upload_headers(name, upload_id, size if held is None else held),
        ) from None


async def patch_upload(request: web.Request, name: str, upload_id: str) -> web.Response:
    reg = registry(request)
    size = await _session(reg, name, upload_id)
    size = await _append(request, reg, name, upload_id, size)
    return web.Response(status=202, headers=_upload_headers(name, upload_id, size))


async def finish_upload(request: web.Request, name: str, upload_id: str) -> web.Response:
    reg = registry(request)
    size = await _session(reg, name, upload_id)
    if "digest" not in request.query:
        raise OCIError(ErrorCode.DIGEST_INVALID, "the digest query parameter is required")
    digest = Digest.parse(request.query["digest"])
    if request.body_exists:
        # UploadComplete: a retry of a PUT whose commit failed after the data was closed; the
        # upload holds all of it (this body too), and the commit below checks its digest.
        with contextlib.suppress(UploadComplete):
            await _append(request, reg, name, upload_id, size, digest)
    await _commit(reg, name, upload_id, digest)
    return _created(name, digest)


async def upload_status(request: web.Request, name: str, upload_id: str) -> web.Response:
    size = await _session(registry(request), name, upload_id)
    return web.Response(status=204, headers=_upload_headers(name, upload_id, size))


async def cancel_upload(request: web.Request, name: str, upload_id: str) -> web.Response:
    reg = registry(request)
    await _session(reg, name, upload_id)
    # The record first: a crash in between leaves only data, which gc removes.
    await reg.meta.delete_upload(upload_id)
    UPLOADS.dec()
    await reg.blobs.abort(upload_id)
    return web.Response(status=204)
