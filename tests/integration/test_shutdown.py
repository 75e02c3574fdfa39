"""Starting and stopping `ocinest serve`: the stop waits for requests in flight up to the
grace period, cuts what is left (a stalled upload stays resumable), and says so in one line;
the start warns about a token realm that follows the Host header."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.authkit import ec_key, write_key
from tests.conftest import Server, free_port
from tests.integration.ocihttp import log_records, server_log
from tests.manifests import sha256

pytestmark = pytest.mark.stores  # run again on S3 + PostgreSQL (see .ci/run)

GRACE = 1.0


def _start(tmp_path: Path, workers: int, grace: float) -> Server:
    args = ["--shutdown-grace", f"{grace:g}"]
    if workers > 1:
        args += ["--workers", str(workers)]
    server = Server(tmp_path / "data", free_port(), args)
    server.start()
    return server


def _connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _idle_keepalive(server: Server) -> socket.socket:
    """A connection that has had one answer and stays open, idle."""
    s = _connect(server)
    s.sendall(f"GET /v2/ HTTP/1.1\r\nHost: {server.host}\r\n\r\n".encode())
    answer = http.client.HTTPResponse(s)
    answer.begin()
    answer.read()
    assert answer.status == 200 and not answer.will_close
    return s


def _begin_patch(server: Server, location: str, offset: int, length: int) -> socket.socket:
    """A PATCH whose handler is running (the server said 100 Continue); no body sent yet."""
    s = _connect(server)
    s.sendall(
        (
            f"PATCH {location} HTTP/1.1\r\nHost: {server.host}\r\n"
            f"Content-Range: {offset}-{offset + length - 1}\r\nContent-Length: {length}\r\n"
            "Content-Type: application/octet-stream\r\nExpect: 100-continue\r\n\r\n"
        ).encode()
    )
    interim = b""
    while b"\r\n\r\n" not in interim:
        chunk = s.recv(1000)
        assert chunk, f"connection closed before 100 Continue: {interim!r}"
        interim += chunk
    assert interim.startswith(b"HTTP/1.1 100"), interim
    return s


def _closed(s: socket.socket) -> bool:
    """The server has closed the connection (EOF or reset), seen within 5 s."""
    s.settimeout(5)
    try:
        return s.recv(1000) == b""
    except ConnectionError:
        return True


def _refused(server: Server) -> bool:
    """Wait (up to 5 s) until the server refuses new connections."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            _connect(server).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.02)
    return False


def _terminate(server: Server) -> float:
    """SIGTERM; the seconds until the process has exited."""
    assert server.proc is not None
    began = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=30)
    return time.monotonic() - began


@pytest.mark.parametrize("workers", [1, 2])
def test_stop_cuts_a_stalled_upload_at_the_grace_and_it_resumes(
    tmp_path: Path, workers: int
) -> None:
    server = _start(tmp_path, workers, GRACE)
    try:
        data = os.urandom(9000)
        with httpx.Client(base_url=server.url, timeout=10) as c:
            location = c.post("/v2/stop/blobs/uploads/").headers["Location"]
            r = c.patch(location, content=data[:3000], headers={"Content-Range": "0-2999"})
            assert r.status_code == 202 and r.headers["Range"] == "0-2999", r.text
        idle = [_idle_keepalive(server) for _ in range(4)]
        stalled = _begin_patch(server, location, 3000, 3000)
        stalled.sendall(data[3000:4000])  # a third of the chunk, then nothing

        seconds = _terminate(server)
        # It waited out the grace for the stalled upload, then stopped promptly.
        assert GRACE <= seconds < GRACE + 3, seconds
        assert all(_closed(s) for s in [*idle, stalled])
        log = server_log(server)
        assert "Traceback" not in log
        assert re.search(r"stopped in [0-9.]+ s; 1 request cut at the grace limit \(1 s\)", log), (
            log
        )
        if workers > 1:
            messages = "\n".join(record["message"] for record in log_records(server))
            assert re.search(r"^ocinest stopped in [0-9.]+ s \(2 workers\)$", messages, re.M), log

        server.start()
        with httpx.Client(base_url=server.url, timeout=10) as c:
            r = c.get(location)
            assert r.status_code == 204, r.text
            held = int(r.headers["Range"].split("-")[1]) + 1
            # What was acknowledged is kept; at most what was sent beyond it.
            assert 3000 <= held <= 4000, held
            r = c.patch(
                location, content=data[held:], headers={"Content-Range": f"{held}-{len(data) - 1}"}
            )
            assert r.status_code == 202 and r.headers["Range"] == f"0-{len(data) - 1}", r.text
            r = c.put(location, params={"digest": sha256(data)})
            assert r.status_code == 201, r.text
            assert c.get(f"/v2/stop/blobs/{sha256(data)}").content == data
    finally:
        server.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_request_in_flight_at_the_stop_gets_its_whole_answer(
    tmp_path: Path, workers: int
) -> None:
    grace = 20.0
    server = _start(tmp_path, workers, grace)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            location = c.post("/v2/stop/blobs/uploads/").headers["Location"]
        idle = _idle_keepalive(server)
        patch = _begin_patch(server, location, 0, 2000)
        patch.sendall(b"a" * 1000)
        assert server.proc is not None
        began = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert _refused(server), "still accepting connections after SIGTERM"
        assert _closed(idle)
        patch.sendall(b"b" * 1000)
        answer = http.client.HTTPResponse(patch)
        answer.begin()
        assert answer.status == 202, answer.read()
        assert answer.headers["Range"] == "0-1999"
        server.proc.wait(timeout=30)
        # Nothing left in flight: no waiting out the grace.
        assert time.monotonic() - began < grace / 2
        assert re.search(r"stopped in [0-9.]+ s; no request cut", server_log(server))
        server.start()
        with httpx.Client(base_url=server.url, timeout=10) as c:
            assert c.get(location).headers["Range"] == "0-1999"
    finally:
        server.stop()


def test_token_auth_without_a_realm_warns_at_start(tmp_path: Path) -> None:
    key = write_key(tmp_path / "token.pem", ec_key())
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules: []\n")  # nobody may do anything: every request is challenged
    server = Server(
        tmp_path / "data", free_port(), ["--token-key", str(key), "--policy", str(policy)]
    )
    server.start()
    server.stop()
    warning = "token_realm is not set: the Bearer realm in each challenge is built from the"
    assert server_log(server).count(warning) == 1
    assert "Host header" in server_log(server)
    server.configure(token_realm="https://registry.example/auth/token")
    server.start()
    try:
        r = httpx.get(f"{server.url}/v2/x/tags/list")
        assert r.status_code == 401, r.text
        assert 'realm="https://registry.example/auth/token"' in r.headers["WWW-Authenticate"]
    finally:
        server.stop()
    assert server_log(server).count(warning) == 1
