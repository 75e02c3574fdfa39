"""Helpers shared by the integration tests: OCI error assertions, raw HTTP, upload sessions.

Not a test module; the test modules import it (pytest puts this folder on sys.path).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import Server
from tests.manifests import sha256

API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")

# The error codes of the distribution spec (plus distribution's pagination code).
OCI_ERROR_CODES = frozenset(
    {
        "BLOB_UNKNOWN",
        "BLOB_UPLOAD_INVALID",
        "BLOB_UPLOAD_UNKNOWN",
        "DIGEST_INVALID",
        "MANIFEST_BLOB_UNKNOWN",
        "MANIFEST_INVALID",
        "MANIFEST_UNKNOWN",
        "NAME_INVALID",
        "NAME_UNKNOWN",
        "SIZE_INVALID",
        "UNAUTHORIZED",
        "DENIED",
        "UNSUPPORTED",
        "TOOMANYREQUESTS",
        "RANGE_INVALID",
        "PAGINATION_NUMBER_INVALID",
    }
)

UPLOAD_LOCATION = re.compile(
    r"^/v2/(?P<name>.+)/blobs/uploads/"
    r"(?P<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


def unknown_digest() -> str:
    """A well-formed sha256 digest of content nobody pushed."""
    return sha256(uuid.uuid4().bytes + b"never pushed")


# Assertions


def assert_api_header(r: httpx.Response | RawResponse) -> None:
    name, value = API_VERSION
    assert r.headers.get(name) == value, f"{name} missing or wrong: {dict(r.headers)}"


def error_body(r: httpx.Response) -> list[dict[str, Any]]:
    """The entries of an OCI error body, checked for shape."""
    assert r.headers.get("Content-Type", "").split(";")[0].strip() == "application/json", (
        f"error response is not JSON: {r.headers.get('Content-Type')!r}: {r.text[:300]!r}"
    )
    doc = r.json()
    assert isinstance(doc, dict) and isinstance(doc.get("errors"), list), doc
    assert doc["errors"], "an OCI error body holds at least one error"
    for entry in doc["errors"]:
        assert isinstance(entry, dict), entry
        assert entry.get("code") in OCI_ERROR_CODES, entry
        assert isinstance(entry.get("message"), str), entry
        assert "detail" in entry, entry
    return list(doc["errors"])


def _short(path: str) -> str:
    return path if len(path) <= 200 else f"{path[:150]}...({len(path)} chars)"


def assert_error(r: httpx.Response, status: int, code: str) -> list[dict[str, Any]]:
    """Status, API header and an OCI error body whose first (or only) code is `code`.

    For a HEAD request, only the status, the header and an empty body are checked.
    """
    assert r.status_code == status, (
        f"{r.request.method} {_short(r.request.url.raw_path.decode())} -> {r.status_code}, "
        f"expected {status} {code}: {r.text[:500]}"
    )
    assert_api_header(r)
    if r.request.method == "HEAD":
        assert r.content == b""
        return []
    entries = error_body(r)
    assert entries[0]["code"] == code, f"expected {code}, got {entries}"
    return entries


def assert_status(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, (
        f"{r.request.method} {_short(r.request.url.raw_path.decode())} -> {r.status_code}, "
        f"expected {status}: {r.text[:500]}"
    )
    assert_api_header(r)


def allowed(r: httpx.Response) -> set[str]:
    return {m.strip() for m in r.headers.get("Allow", "").split(",") if m.strip()}


def link_next(r: httpx.Response) -> str | None:
    """The target of a `Link: <...>; rel="next"` header, or None."""
    link = r.headers.get("Link")
    if link is None:
        return None
    m = re.fullmatch(r'<([^>]+)>;\s*rel="next"', link.strip())
    assert m is not None, f"malformed Link header {link!r}"
    return m.group(1)


# Raw HTTP, for what httpx would normalize or refuse to send


@dataclass
class RawResponse:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(
    server: Server,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> RawResponse:
    """Send `path` exactly as given (no dot-segment normalization, no quoting)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return RawResponse(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def send_partial_and_close(
    server: Server, method: str, path: str, claimed_length: int, sent: bytes, **headers: str
) -> None:
    """Send a request that announces `claimed_length` body bytes, send only `sent`, and
    close the connection (a client that goes away mid-upload)."""
    head = [f"{method} {path} HTTP/1.1", f"Host: {server.host}"]
    head += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    head += [f"Content-Length: {claimed_length}", "", ""]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall("\r\n".join(head).encode() + sent)
        # Give the server time to start streaming the body to storage.
        time.sleep(0.3)
        s.shutdown(socket.SHUT_RDWR)


def server_log(server: Server) -> str:
    return (server.data.parent / f"server-{server.port}.log").read_text(errors="replace")


def log_records(server: Server) -> list[dict[str, Any]]:
    """The server's log, one JSON object a line (a line that is not one fails the test)."""
    return [json.loads(line) for line in server_log(server).splitlines() if line.strip()]


def wait_until_healthy(client: httpx.Client, timeout: float = 10) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        r = client.get("/v2/")
        if r.status_code == 200 or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


# Uploads


def start_upload(client: httpx.Client, repo: str) -> str:
    """POST a new upload session; returns its Location."""
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    return r.headers["Location"]
