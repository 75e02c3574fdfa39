"""HTTP the parser refuses, before any route: an OCI error body with a fitting 4xx, the
connection closed, and one short log line (no traceback), rate-limited against floods."""

from __future__ import annotations

import http.client
import json
import re
import socket
import time

import httpx
import pytest

from tests.conftest import Server
from tests.integration.ocihttp import OCI_ERROR_CODES, server_log

HOST = "Host: r\r\n"
CASES: dict[str, tuple[bytes, int]] = {
    "duplicate Content-Length": (
        b"POST /v2/x/blobs/uploads/ HTTP/1.1\r\n"
        + HOST.encode()
        + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        400,
    ),
    "Content-Length and chunked": (
        b"POST /v2/x/blobs/uploads/ HTTP/1.1\r\n"
        + HOST.encode()
        + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "garbage request line": (b"GARBAGE\r\n\r\n", 400),
    "binary noise": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(40)), 400),
    "header without colon": (b"GET /v2/ HTTP/1.1\r\n" + HOST.encode() + b"Oops\r\n\r\n", 400),
    "bad chunk size": (
        b"PATCH /v2/x/blobs/uploads/u HTTP/1.1\r\n"
        + HOST.encode()
        + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
    ),
    "request line too long": (b"GET /v2/" + b"a" * 9000 + b" HTTP/1.1\r\n" + HOST.encode(), 414),
    "header too long": (
        b"GET /v2/ HTTP/1.1\r\n" + HOST.encode() + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n",
        431,
    ),
    "too many headers": (
        b"GET /v2/ HTTP/1.1\r\n"
        + HOST.encode()
        + b"".join(b"X-%d: a\r\n" % i for i in range(200))
        + b"\r\n",
        431,
    ),
}


def _send(server: Server, raw: bytes) -> tuple[http.client.HTTPResponse, bytes, bool]:
    """The answer to `raw`, its body, and whether the server then closed the connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(raw)
        answer = http.client.HTTPResponse(s)
        answer.begin()
        body = answer.read()
        try:
            closed = s.recv(100) == b""
        except ConnectionError:
            closed = True
        return answer, body, closed


def _malformed_lines(server: Server) -> list[str]:
    return [line for line in server_log(server).splitlines() if "malformed request" in line]


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_request_gets_an_oci_error_and_one_log_line(server: Server, case: str) -> None:
    raw, status = CASES[case]
    answer, body, closed = _send(server, raw)
    assert answer.status == status, body
    assert answer.headers["Content-Type"] == "application/json", body
    assert answer.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    errors = json.loads(body)["errors"]
    assert errors[0]["code"] in OCI_ERROR_CODES and errors[0]["code"] == "UNSUPPORTED"
    assert errors[0]["message"] and errors[0]["detail"]
    assert closed
    # One short line in the log, no traceback and no access-log entry of its own.
    deadline = time.monotonic() + 5
    while not _malformed_lines(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    (line,) = _malformed_lines(server)
    assert len(line) < 300 and f" {status} " in line
    log = server_log(server)
    assert "Traceback" not in log
    assert f'"status": {status}' not in log
    assert httpx.get(f"{server.url}/v2/").status_code == 200  # the server goes on


def test_a_flood_of_malformed_requests_is_logged_sparingly(server: Server) -> None:
    for _ in range(25):
        answer, _, _ = _send(server, b"NOT HTTP AT ALL\r\n\r\n")
        assert answer.status == 400
    # At most 10 lines a 10 s window, then one line counting the others.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        summary = re.search(
            r"(\d+) more malformed or stalled requests not logged", server_log(server)
        )
        if summary:
            break
        time.sleep(0.2)
    assert summary is not None, server_log(server)[-2000:]
    logged = len(_malformed_lines(server))
    assert logged == 10 and int(summary.group(1)) == 25 - logged
    assert httpx.get(f"{server.url}/v2/").status_code == 200
