"""Authentication and authorization: Basic, tokens, policy, the nested rules, TLS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tests.authkit import ec_key, write_ca_and_cert, write_htpasswd, write_key
from tests.conftest import Server, error_codes, free_port, push_blob, push_image, push_index
from tests.manifests import index_manifest, nested

USERS = {"alice": "wonderland", "bob": "builder", "carol": "christmas"}
POLICY = """
groups:
  builders: [bob]
rules:
  - subjects: [anonymous]
    repositories: ["public/**"]
    actions: [pull]
  - subjects: [alice]
    repositories: ["**"]
    actions: [pull, push, delete]
  - subjects: [group:builders]
    repositories: ["ko/**", "ko"]
    actions: [pull, push]
  - subjects: [group:builders]
    repositories: ["ko/secret"]
    actions: []
  - subjects: [carol]
    repositories: ["ko"]
    actions: [pull]
"""


def creds(user: str) -> tuple[str, str]:
    return (user, USERS[user])


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    return {
        "htpasswd": write_htpasswd(tmp_path / "htpasswd", USERS),
        "policy": policy,
        "key": write_key(tmp_path / "token.pem", ec_key()),
    }


def start(tmp_path: Path, *args: str, ca: Path | None = None) -> Server:
    srv = Server(tmp_path / "data", free_port(), list(args), ca=ca)
    srv.start()
    return srv


@pytest.fixture
def basic(tmp_path: Path, files: dict[str, Path]) -> Iterator[Server]:
    srv = start(tmp_path, "--htpasswd", str(files["htpasswd"]), "--policy", str(files["policy"]))
    yield srv
    srv.stop()


@pytest.fixture
def token(tmp_path: Path, files: dict[str, Path]) -> Iterator[Server]:
    srv = start(
        tmp_path,
        "--htpasswd",
        str(files["htpasswd"]),
        "--policy",
        str(files["policy"]),
        "--token-key",
        str(files["key"]),
    )
    yield srv
    srv.stop()


def get_token(server: Server, user: str | None, *scopes: str) -> str:
    r = httpx.get(
        f"{server.url}/auth/token",
        params=[("service", "ocinest"), *[("scope", s) for s in scopes]],
        auth=creds(user) if user else None,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def bearer(server: Server, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})


def assert_unauthorized(r: httpx.Response, scheme: str) -> None:
    assert r.status_code == 401, r.text
    assert error_codes(r) == ["UNAUTHORIZED"]
    assert r.headers["WWW-Authenticate"].startswith(scheme)


# Basic


def test_basic_requires_valid_credentials(basic: Server) -> None:
    assert_unauthorized(httpx.get(f"{basic.url}/v2/"), "Basic")
    assert_unauthorized(httpx.get(f"{basic.url}/v2/", auth=("alice", "wrong")), "Basic")
    assert_unauthorized(httpx.get(f"{basic.url}/v2/", auth=("mallory", "x")), "Basic")
    r = httpx.get(f"{basic.url}/v2/", headers={"Authorization": "Basic !!!"})
    assert_unauthorized(r, "Basic")
    assert httpx.get(f"{basic.url}/v2/", auth=creds("alice")).status_code == 200


def test_basic_policy_longest_match_wins(basic: Server) -> None:
    with httpx.Client(base_url=basic.url, auth=creds("bob")) as bob:
        push_image(bob, "ko/app1", tag="v1")
        r = bob.post("/v2/ko/secret/blobs/uploads/")  # the longer rule grants nothing
        assert r.status_code == 403 and error_codes(r) == ["DENIED"]
        r = bob.post("/v2/other/blobs/uploads/")
        assert r.status_code == 403 and error_codes(r) == ["DENIED"]
        r = bob.delete("/v2/ko/app1/manifests/v1")  # pull and push, no delete
        assert r.status_code == 403 and error_codes(r) == ["DENIED"]
    # Anonymous: pull under public/**, nothing else, and asked to log in.
    with httpx.Client(base_url=basic.url, auth=creds("alice")) as alice:
        push_image(alice, "public/x", tag="v1")
    assert httpx.get(f"{basic.url}/v2/public/x/manifests/v1").status_code == 200
    assert_unauthorized(httpx.get(f"{basic.url}/v2/ko/app1/manifests/v1"), "Basic")


def test_catalog_lists_only_what_the_caller_can_pull(basic: Server) -> None:
    with httpx.Client(base_url=basic.url, auth=creds("alice")) as alice:
        for repo in ("ko/app1", "ko/secret", "other", "public/x"):
            push_blob(alice, repo, b"x")
        assert alice.get("/v2/_catalog").json()["repositories"] == [
            "ko/app1",
            "ko/secret",
            "other",
            "public/x",
        ]
    r = httpx.get(f"{basic.url}/v2/_catalog", auth=creds("bob"))
    assert r.json()["repositories"] == ["ko/app1"]
    r = httpx.get(f"{basic.url}/v2/_catalog", params={"n": 1}, auth=creds("carol"))
    assert r.json()["repositories"] == []


def test_mount_needs_pull_on_the_source(basic: Server) -> None:
    with httpx.Client(base_url=basic.url, auth=creds("alice")) as alice:
        digest = push_blob(alice, "other", b"alice's secret layer")
    with httpx.Client(base_url=basic.url, auth=creds("bob")) as bob:
        for params in ({"mount": digest, "from": "other"}, {"mount": digest}):
            r = bob.post("/v2/ko/app1/blobs/uploads/", params=params)
            assert r.status_code == 202  # an upload session: nothing said about the blob
        assert bob.head(f"/v2/ko/app1/blobs/{digest}").status_code == 404


# Nested rules


def test_pushing_an_index_needs_pull_on_each_child_and_reveals_nothing(basic: Server) -> None:
    with httpx.Client(base_url=basic.url, auth=creds("alice")) as alice:
        _, b1 = push_image(alice, "ko/secret")
    with httpx.Client(base_url=basic.url, auth=creds("bob")) as bob:
        ghost = b'{"ghost": true}'
        existing = push_index(bob, "ko", None, index_manifest(nested(b1, "secret")))
        missing = push_index(bob, "ko", None, index_manifest(nested(ghost, "secret")))
        assert existing.status_code == missing.status_code == 403
        assert existing.json() == missing.json()
        assert error_codes(existing) == ["DENIED"]
        # With pull on the child, the usual validation speaks.
        _, b2 = push_image(bob, "ko/app1")
        r = push_index(bob, "ko", None, index_manifest(nested(ghost, "app1")))
        assert r.status_code == 400 and error_codes(r) == ["MANIFEST_BLOB_UNKNOWN"]
        assert push_index(bob, "ko", "set", index_manifest(nested(b2, "app1"))).status_code == 201


def test_pull_on_parent_grants_exactly_the_reachable_content(basic: Server) -> None:
    with httpx.Client(base_url=basic.url, auth=creds("alice")) as alice:
        d1, b1 = push_image(alice, "ko/secret", tag="v1")
        other, _ = push_image(alice, "ko/secret", tag="other")
        assert (
            push_index(alice, "ko", "set", index_manifest(nested(b1, "secret"))).status_code == 201
        )
    layer = json.loads(b1)["layers"][0]["digest"]
    with httpx.Client(base_url=basic.url, auth=creds("carol")) as carol:  # pull on ko only
        assert carol.get(f"/v2/ko/manifests/{d1}").content == b1
        assert carol.get(f"/v2/ko/secret/manifests/{d1}").content == b1
        assert carol.get(f"/v2/ko/secret/blobs/{layer}").status_code == 200
        for path in (
            "/v2/ko/secret/manifests/v1",  # a tag of the child
            f"/v2/ko/secret/manifests/{other}",  # an unreferenced manifest
            "/v2/ko/secret/tags/list",
        ):
            r = carol.get(path)
            assert r.status_code == 403 and error_codes(r) == ["DENIED"], path
        # The tree lists tags only where she may pull the repository itself.
        tree = carol.get("/v2/ko/_ocinest/tree/set", params={"tags": "1"}).json()
        assert tree["tags"] == ["set"] and "tags" not in tree["children"][0]
    with httpx.Client(base_url=basic.url, auth=creds("alice")) as alice:
        tree = alice.get("/v2/ko/_ocinest/tree/set", params={"tags": "1"}).json()
        assert tree["children"][0]["tags"] == ["v1"]


# Tokens


def test_token_flow(token: Server) -> None:
    r = httpx.get(f"{token.url}/v2/")
    assert_unauthorized(r, "Bearer")
    challenge = r.headers["WWW-Authenticate"]
    assert f'realm="{token.url}/auth/token"' in challenge and 'service="ocinest"' in challenge
    # Several scopes at once: push on one repository, pull on another.
    t = get_token(token, "bob", "repository:ko/app1:pull,push", "repository:ko/app2:pull")
    claims = jwt.decode(t, options={"verify_signature": False})
    access = {a["name"]: a["actions"] for a in claims["access"]}
    assert access["ko/app1"] == ["pull", "push"] and access["ko/app2"] == ["pull"]
    with bearer(token, t) as c:
        assert c.get("/v2/").status_code == 200
        push_image(c, "ko/app1", tag="v1")
        r = c.post("/v2/ko/app2/blobs/uploads/")
        assert_unauthorized(r, "Bearer")
        assert 'scope="repository:ko/app2:push"' in r.headers["WWW-Authenticate"]
        assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    # Wrong password at the token endpoint; the policy trims what is asked.
    r = httpx.get(
        f"{token.url}/auth/token", params={"scope": "repository:x:pull"}, auth=("bob", "no")
    )
    assert r.status_code == 401
    t = get_token(token, "bob", "repository:other:pull,push,delete")
    assert jwt.decode(t, options={"verify_signature": False})["access"] == [
        {"type": "repository", "name": "other", "actions": []}
    ]
    # The OAuth2 form.
    r = httpx.post(
        f"{token.url}/auth/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": USERS["alice"],
            "service": "ocinest",
            "scope": "repository:x:pull",
        },
    )
    assert r.status_code == 200 and r.json()["access_token"]


def _forge(token: Server, files: dict[str, Path], **changes: object) -> str:
    key = files["key"]
    claims: dict[str, object] = {
        "iss": "ocinest",
        "aud": "ocinest",
        "sub": "alice",
        "exp": int(time.time()) + 300,
        "access": [{"type": "repository", "name": "ko/app1", "actions": ["pull", "push"]}],
    }
    claims.update(changes)
    return jwt.encode(claims, key.read_bytes(), algorithm="ES256")


def test_bad_tokens_are_refused(token: Server, files: dict[str, Path]) -> None:
    good = _forge(token, files)
    with bearer(token, good) as c:
        assert c.get("/v2/ko/app1/tags/list").status_code in (200, 404)
    other_key = ec_key().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    payload = good.split(".")[1]
    unsigned = jwt.encode(
        jwt.decode(good, options={"verify_signature": False}), None, algorithm="none"
    )
    public_pem = (
        serialization.load_pem_private_key(files["key"].read_bytes(), None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    hs_header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
    hs_sig = (
        base64.urlsafe_b64encode(
            hmac.new(public_pem, f"{hs_header}.{payload}".encode(), hashlib.sha256).digest()
        )
        .rstrip(b"=")
        .decode()
    )
    bad = {
        "expired": _forge(token, files, exp=int(time.time()) - 10),
        "forged": jwt.encode(
            jwt.decode(good, options={"verify_signature": False}), other_key, algorithm="ES256"
        ),
        "alg none": unsigned,
        "key confusion": f"{hs_header}.{payload}.{hs_sig}",
        "wrong audience": _forge(token, files, aud="elsewhere"),
        "wrong issuer": _forge(token, files, iss="mallory"),
        "garbage": "not.a.token",
    }
    for name, t in bad.items():
        with bearer(token, t) as c:
            r = c.get("/v2/ko/app1/tags/list")
            assert r.status_code == 401, name
            assert error_codes(r) == ["UNAUTHORIZED"], name
            assert 'error="invalid_token"' in r.headers["WWW-Authenticate"], name


def test_token_for_parent_reaches_only_referenced_content(token: Server) -> None:
    with bearer(
        token,
        get_token(token, "alice", "repository:ko/secret:pull,push", "repository:ko:pull,push"),
    ) as alice:
        d1, b1 = push_image(alice, "ko/secret", tag="v1")
        other, _ = push_image(alice, "ko/secret", tag="other")
        assert (
            push_index(alice, "ko", "set", index_manifest(nested(b1, "secret"))).status_code == 201
        )
    with bearer(token, get_token(token, "alice", "repository:ko/sibling:push,pull")) as alice:
        push_image(alice, "ko/sibling", tag="v1")
    t = get_token(token, "carol", "repository:ko:pull")
    with bearer(token, t) as c:
        assert c.get(f"/v2/ko/manifests/{d1}").status_code == 200
        assert c.get(f"/v2/ko/secret/manifests/{d1}").status_code == 200
        for path in (
            "/v2/ko/secret/manifests/v1",
            f"/v2/ko/secret/manifests/{other}",
            "/v2/ko/sibling/manifests/v1",
        ):
            assert_unauthorized(c.get(path), "Bearer")
    # The issuer adds pull on an ancestor when a child is asked for (stock clients ask so).
    t = get_token(token, "carol", "repository:ko/secret:pull")
    access = {
        a["name"]: a["actions"]
        for a in jwt.decode(t, options={"verify_signature": False})["access"]
    }
    assert access == {"ko/secret": [], "ko": ["pull"]}
    with bearer(token, t) as c:
        assert c.get(f"/v2/ko/secret/manifests/{d1}").status_code == 200
        assert_unauthorized(c.get("/v2/ko/secret/manifests/v1"), "Bearer")


def test_tls_with_a_test_ca(tmp_path: Path, files: dict[str, Path]) -> None:
    ca, cert, key = write_ca_and_cert(tmp_path / "tls")
    srv = start(
        tmp_path,
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        "--htpasswd",
        str(files["htpasswd"]),
        ca=ca,
    )
    try:
        trust = ssl.create_default_context(cafile=str(ca))
        with httpx.Client(base_url=srv.url, verify=trust, auth=creds("alice")) as c:
            digest, _ = push_image(c, "secure", tag="v1")
            assert c.get("/v2/secure/manifests/v1").headers["Docker-Content-Digest"] == digest
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{srv.url}/v2/")  # not trusted without the CA
    finally:
        srv.stop()


def test_bad_auth_configuration_is_a_clear_error(tmp_path: Path) -> None:
    bad_policy = tmp_path / "bad.yaml"
    bad_policy.write_text("rules:\n  - subjects: [x]\n    repositories: [a]\n    actions: [fly]\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ocinest",
            "serve",
            "--data",
            str(tmp_path / "d"),
            "--addr",
            f"127.0.0.1:{free_port()}",
            "--policy",
            str(bad_policy),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 1
    assert "unknown actions ['fly']" in r.stderr and "Traceback" not in r.stderr
