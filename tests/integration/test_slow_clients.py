"""Slow clients: a connection that stops sending, in its headers or its body, is closed after
`idle_timeout`; a slow but moving upload is never cut; the server answers others meanwhile."""

from __future__ import annotations

import http.client
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, free_port
from tests.integration.ocihttp import server_log
from tests.manifests import sha256

IDLE = 2.0
# How long past idle_timeout a connection may stay open: the sweep's period, and a loaded CI.
MARGIN = 3.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data", free_port(), settings={"idle_timeout": IDLE})
    srv.start()
    yield srv
    srv.stop()


def _connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _closed_by_server(s: socket.socket, trickle: bytes = b"") -> float:
    """Send one byte of `trickle` every 0.3 s (if any) until the server closes the
    connection; the seconds that took (at most IDLE + MARGIN, else the test fails)."""
    began = time.monotonic()
    s.settimeout(0.3)
    sent = 0
    while time.monotonic() - began < IDLE + MARGIN:
        try:
            if s.recv(1000) == b"":
                return time.monotonic() - began
        except TimeoutError:
            if sent < len(trickle):
                s.sendall(trickle[sent : sent + 1])
                sent += 1
        except ConnectionError:
            return time.monotonic() - began
    raise AssertionError(f"connection still open {IDLE + MARGIN} s later (sent {sent} bytes)")


def _healthy(server: Server) -> None:
    r = httpx.get(f"{server.url}/healthz", timeout=5)
    assert r.status_code == 200, r.text


def test_slowloris_headers_are_cut(server: Server) -> None:
    # One sends a header a byte at a time, never ending it; one stops mid-header.
    trickling, silent = _connect(server), _connect(server)
    for s in (trickling, silent):
        s.sendall(f"GET /v2/ HTTP/1.1\r\nHost: {server.host}\r\nX-Slow: ".encode())
    _healthy(server)
    assert _closed_by_server(trickling, trickle=b"a" * 100) < IDLE + MARGIN
    assert _closed_by_server(silent) < IDLE + MARGIN
    _healthy(server)


def test_idle_keepalive_connection_is_closed(server: Server) -> None:
    s = _connect(server)
    s.sendall(f"GET /v2/ HTTP/1.1\r\nHost: {server.host}\r\n\r\n".encode())
    answer = http.client.HTTPResponse(s)
    answer.begin()
    answer.read()
    assert answer.status == 200 and not answer.will_close
    assert _closed_by_server(s) >= IDLE - 0.5


def _patch_head(server: Server, location: str, length: int) -> bytes:
    return (
        f"PATCH {location} HTTP/1.1\r\nHost: {server.host}\r\nContent-Length: {length}\r\n"
        f"Content-Range: 0-{length - 1}\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode()


def test_slow_but_moving_upload_survives_past_idle_timeout(server: Server) -> None:
    data = os.urandom(12)
    with httpx.Client(base_url=server.url, timeout=10) as c:
        location = c.post("/v2/slow/blobs/uploads/").headers["Location"]
        s = _connect(server)
        s.sendall(_patch_head(server, location, len(data)))
        began = time.monotonic()
        for i in range(len(data)):  # a byte every 0.5 s: 6 s, three times idle_timeout
            time.sleep(0.5)
            s.sendall(data[i : i + 1])
            if i == len(data) // 2:
                _healthy(server)
        assert time.monotonic() - began > IDLE
        answer = http.client.HTTPResponse(s)
        answer.begin()
        assert answer.status == 202, answer.read()
        assert answer.headers["Range"] == f"0-{len(data) - 1}"
        r = c.put(location, params={"digest": sha256(data)})
        assert r.status_code == 201, r.text
        assert c.get(f"/v2/slow/blobs/{sha256(data)}").content == data


def test_stalled_upload_body_is_cut_and_the_session_stays(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        location = c.post("/v2/slow/blobs/uploads/").headers["Location"]
        s = _connect(server)
        s.sendall(_patch_head(server, location, 1000) + b"x" * 10)
        _healthy(server)
        assert _closed_by_server(s) >= IDLE - 0.5
        assert "no byte of the request body for 2 s" in server_log(server)
        r = c.get(location)
        assert r.status_code == 204, r.text
        data = os.urandom(100)
        r = c.patch(location, content=data, headers={"Content-Range": "0-99"})
        assert r.status_code == 202, r.text
        r = c.put(location, params={"digest": sha256(data)})
        assert r.status_code == 201, r.text
