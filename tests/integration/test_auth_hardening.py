"""Authentication under attack: odd passwords, user enumeration by timing, password guessing
(limits and the event loop), and rule 4 when the same bytes are a blob and a manifest."""

from __future__ import annotations

import base64
import json
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest

from tests.authkit import ec_key, write_key
from tests.conftest import Server, error_codes, free_port, push_blob, push_index, push_manifest
from tests.integration.test_auth import POLICY, USERS, assert_unauthorized, creds
from tests.manifests import index_manifest, nested, sha256

# Longer than bcrypt's 72 bytes; as `htpasswd -B`, only the first 72 count.
LONG_PASSWORD = "correct horse battery staple " * 3
ODD_PASSWORDS = [b"w" * 73, b"x" * 1024, b"\xff\xfe\x80 not utf-8", b"nul\x00byte", b""]


def get(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(url, timeout=30, **kwargs)  # generous: the machine may be busy


def post(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(url, timeout=30, **kwargs)


def htpasswd(path: Path, users: dict[str, str], cost: int = 4) -> Path:
    path.write_text(
        "".join(
            f"{u}:{bcrypt.hashpw(p.encode()[:72], bcrypt.gensalt(cost)).decode()}\n"
            for u, p in users.items()
        )
    )
    return path


def serve(tmp_path: Path, *, token: bool = False, cost: int = 4, **settings: object) -> Server:
    users = {**USERS, "long": LONG_PASSWORD}
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    settings |= {"htpasswd": str(htpasswd(tmp_path / "htpasswd", users, cost))}
    settings |= {"policy": str(policy)}
    if token:
        settings |= {"token_key": str(write_key(tmp_path / "token.pem", ec_key()))}
    srv = Server(tmp_path / "data", free_port(), settings=settings)
    srv.start()
    return srv


@pytest.fixture
def basic(tmp_path: Path) -> Iterator[Server]:
    srv = serve(tmp_path, auth_fail_limit=1000, auth_fail_limit_address=1000)
    yield srv
    srv.stop()


@pytest.fixture
def token(tmp_path: Path) -> Iterator[Server]:
    srv = serve(tmp_path, token=True, auth_fail_limit=1000, auth_fail_limit_address=1000)
    yield srv
    srv.stop()


def basic_header(user: bytes, password: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(user + b":" + password).decode()}


def token_form(server: Server, user: bytes, password: bytes) -> httpx.Response:
    """The OAuth2 password form, its bytes sent raw (not percent-encoded)."""
    body = b"grant_type=password&service=ocinest&username=" + user + b"&password=" + password
    return post(
        f"{server.url}/auth/token",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


# Any password is an answer, never a 500


def test_odd_passwords_are_refused_with_401_in_basic_mode(basic: Server) -> None:
    for password in ODD_PASSWORDS:
        for user in (b"alice", b"nobody", b"\xff\xfe"):
            r = get(f"{basic.url}/v2/", headers=basic_header(user, password))
            assert_unauthorized(r, "Basic")
    # A password past 72 bytes works as `htpasswd -B` hashed it.
    assert get(f"{basic.url}/v2/", auth=("long", LONG_PASSWORD)).status_code == 200
    assert get(f"{basic.url}/v2/", auth=creds("alice")).status_code == 200


def test_odd_passwords_are_refused_with_401_by_the_token_endpoint(token: Server) -> None:
    for password in ODD_PASSWORDS:
        for user in (b"alice", b"nobody", b"\xff\xfe"):
            r = get(f"{token.url}/auth/token", headers=basic_header(user, password))
            assert_unauthorized(r, "Basic")
            r = token_form(token, user, password.replace(b"&", b"%26"))
            assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"], r.text
    r = post(
        f"{token.url}/auth/token",
        data={"grant_type": "password", "username": "alice", "password": "x" * 1024},
    )
    assert r.status_code == 401 and error_codes(r) == ["UNAUTHORIZED"]
    r = get(f"{token.url}/auth/token", auth=("long", LONG_PASSWORD))
    assert r.status_code == 200 and r.json()["token"]
    r = token_form(token, b"alice", USERS["alice"].encode())
    assert r.status_code == 200 and r.json()["access_token"]


# Timing does not tell which users exist


def test_an_unknown_user_takes_as_long_as_a_known_one(tmp_path: Path) -> None:
    # Cost 8: a check takes milliseconds, far above a request's own time.
    srv = serve(tmp_path, cost=8, auth_fail_limit=1000, auth_fail_limit_address=1000)
    try:
        times: dict[str, list[float]] = {"alice": [], "nobody": []}
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            for _ in range(10):
                for user in times:
                    start = time.perf_counter()
                    r = c.get("/v2/", auth=(user, "wrong"))
                    times[user].append(time.perf_counter() - start)
                    assert r.status_code == 401
        known, unknown = (statistics.median(times[u]) for u in ("alice", "nobody"))
        assert unknown >= 0.3 * known, (known, unknown)
    finally:
        srv.stop()


# Password guessing: limits


def wait_for_status(server: Server, auth: tuple[str, str], status: int, within: float) -> None:
    deadline = time.monotonic() + within
    while (r := get(f"{server.url}/v2/", auth=auth)).status_code != status:
        assert r.status_code == 429 and time.monotonic() < deadline, r.text
        time.sleep(0.1)


def assert_too_many(r: httpx.Response, window: int) -> None:
    assert r.status_code == 429, r.text
    assert error_codes(r) == ["TOOMANYREQUESTS"]
    assert r.headers["Content-Type"].startswith("application/json")
    assert 1 <= int(r.headers["Retry-After"]) <= window
    assert "too many failed logins" in r.json()["errors"][0]["detail"]


def test_failed_logins_are_limited_per_user_and_address_then_per_address(
    tmp_path: Path,
) -> None:
    srv = serve(tmp_path, auth_fail_limit=3, auth_fail_limit_address=6, auth_fail_window=8)
    url = f"{srv.url}/v2/"
    try:
        assert get(url, auth=creds("alice")).status_code == 200  # now remembered
        for _ in range(3):
            assert_unauthorized(get(url, auth=("alice", "guess")), "Basic")
        # Past the limit: refused unchecked, the right (and remembered) password too.
        assert_too_many(get(url, auth=("alice", "guess")), 8)
        assert_too_many(get(url, auth=creds("alice")), 8)
        # Another user from the same address is not locked out by alice's failures.
        assert get(url, auth=creds("bob")).status_code == 200
        for _ in range(3):
            assert_unauthorized(get(url, auth=("nobody", "guess")), "Basic")
        # Six failures from this address: every user is refused until the window ends.
        assert_too_many(get(url, auth=creds("carol")), 8)
        assert_too_many(get(url, auth=("mallory", "guess")), 8)
        wait_for_status(srv, creds("alice"), 200, within=30)
        assert get(url, auth=creds("carol")).status_code == 200
    finally:
        srv.stop()


def test_the_token_endpoint_counts_failed_logins_too(tmp_path: Path) -> None:
    srv = serve(tmp_path, token=True, auth_fail_limit=2, auth_fail_window=60)
    try:
        r = get(f"{srv.url}/auth/token", auth=("alice", "guess"))
        assert r.status_code == 401
        assert token_form(srv, b"alice", b"guess").status_code == 401
        assert_too_many(get(f"{srv.url}/auth/token", auth=creds("alice")), 60)
        assert_too_many(token_form(srv, b"alice", USERS["alice"].encode()), 60)
        r = get(f"{srv.url}/auth/token", auth=creds("bob"))
        assert r.status_code == 200 and r.json()["token"]
    finally:
        srv.stop()


# Password guessing: the event loop stays free


def test_health_answers_while_many_clients_guess_passwords(tmp_path: Path) -> None:
    # Cost 11: a check takes a tenth of a second or more.
    srv = serve(tmp_path, cost=11, auth_fail_limit=10**6, auth_fail_limit_address=10**6)
    stop = threading.Event()
    refused = [0] * 8

    def guess(i: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            while not stop.is_set():
                assert c.get("/v2/", auth=("alice", f"guess{i}")).status_code == 401
                refused[i] += 1

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(8)]
    try:
        for t in threads:
            t.start()
        slowest = 0.0
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline or sum(refused) < 8:
                start = time.perf_counter()
                assert c.get("/healthz").status_code == 200
                slowest = max(slowest, time.perf_counter() - start)
                time.sleep(0.05)
        assert slowest < 1, f"/healthz took {slowest:.2f} s while passwords were checked"
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        srv.stop()
    assert sum(refused) >= 8


# Rule 4: the grant matches what is reached, a blob or a manifest


def test_bytes_reached_as_a_blob_do_not_grant_them_as_a_manifest(basic: Server) -> None:
    with httpx.Client(base_url=basic.url, auth=creds("alice"), timeout=30) as alice:
        # M2: a manifest of ko/secret no index references.
        config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        layer = b"M2's layer"
        m2 = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": push_blob(alice, "ko/secret", config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": push_blob(alice, "ko/secret", layer),
                        "size": len(layer),
                    }
                ],
            }
        ).encode()
        d2 = sha256(m2)
        assert push_manifest(alice, "ko/secret", d2, m2).status_code == 201
        # M1, which the index of ko nests, has M2's exact bytes as a layer.
        push_blob(alice, "ko/secret", m2)
        m1 = json.loads(m2)
        m1["layers"] = [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d2, "size": len(m2)}
        ]
        b1 = json.dumps(m1).encode()
        d1 = sha256(b1)
        assert push_manifest(alice, "ko/secret", d1, b1).status_code == 201
        # M1's bytes are also a blob of ko/secret, which nothing references as a blob.
        push_blob(alice, "ko/secret", b1)
        assert (
            push_index(alice, "ko", "set", index_manifest(nested(b1, "secret"))).status_code == 201
        )
    with httpx.Client(
        base_url=basic.url, auth=creds("carol"), timeout=30
    ) as carol:  # pull on ko only
        # What is reached, as it is reached.
        assert carol.get(f"/v2/ko/secret/manifests/{d1}").content == b1
        assert carol.get(f"/v2/ko/secret/blobs/{d2}").content == m2
        assert carol.get(f"/v2/ko/blobs/{d2}").content == m2
        # The same bytes as the other kind: not reached, not granted.
        for path in (f"/v2/ko/secret/manifests/{d2}", f"/v2/ko/secret/blobs/{d1}"):
            r = carol.get(path)
            assert r.status_code == 403 and error_codes(r) == ["DENIED"], path
        r = carol.get(f"/v2/ko/manifests/{d2}")
        assert r.status_code == 404 and error_codes(r) == ["MANIFEST_UNKNOWN"]
    with httpx.Client(base_url=basic.url, auth=creds("alice"), timeout=30) as alice:
        assert alice.get(f"/v2/ko/secret/manifests/{d2}").content == m2
        assert alice.get(f"/v2/ko/secret/blobs/{d1}").content == b1
