"""Signing and verifying whole trees in cosign v3's format: the pure model (PAE, statement,
bundle, referrer manifest, the reasons a bundle fails), checked against independent
implementations (sigstore's published protobuf models, securesystemslib's DSSE), keys
(PEM, encrypted, cosign.key), and `ocinest sign`/`verify` against a live registry."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
from pathlib import Path

import httpx
import nacl.secret
import nacl.utils
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, SSlibKey
from sigstore_protobuf_specs.dev.sigstore.bundle.v1 import Bundle

from ocinest.client import ClientError
from ocinest.client import keys as client_keys
from ocinest.oci.digest import Digest
from ocinest.oci.signing import (
    BUNDLE_V03,
    COSIGN_SIGN_PREDICATE,
    INTOTO_PAYLOAD_TYPE,
    SignatureProblem,
    key_hint,
    pae,
    referrer_manifest,
    sign_bundle,
    statement,
    verify_bundle,
)
from tests.conftest import Server, push_image, push_manifest
from tests.manifests import NESTED_ANNOTATION, OCI_INDEX, descriptor, index_manifest, nested, sha256

from .conftest import Cli, Distribution
from .helpers import get_manifest

NODE = Digest.of(b"a node")
OTHER = Digest.of(b"another node")


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def problem(
    bundle: bytes,
    public: ec.EllipticCurvePublicKey,
    digest: Digest = NODE,
    predicate: str = COSIGN_SIGN_PREDICATE,
) -> str:
    with pytest.raises(SignatureProblem) as info:
        verify_bundle(bundle, public, digest, predicate)
    return info.value.reason


# The pure model


def test_pae_is_the_dsse_spec_encoding() -> None:
    # The example of secure-systems-lab/dsse protocol.md.
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_statement_is_an_in_toto_v1_statement_of_the_node() -> None:
    doc = json.loads(statement("reg/p/app1", NODE))
    assert doc == {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "reg/p/app1", "digest": {"sha256": NODE.encoded}}],
        "predicateType": COSIGN_SIGN_PREDICATE,
        "predicate": {},
    }


def test_bundle_is_a_v03_key_bundle_the_published_models_read(
    key: ec.EllipticCurvePrivateKey,
) -> None:
    raw = sign_bundle(key, "reg/p", NODE)
    doc = json.loads(raw)
    parsed = Bundle.from_dict(doc)  # sigstore-protobuf-specs
    assert parsed.media_type == BUNDLE_V03
    assert parsed.verification_material.public_key.hint == key_hint(key.public_key())
    assert parsed.dsse_envelope.payload_type == INTOTO_PAYLOAD_TYPE
    assert parsed.dsse_envelope.payload == statement("reg/p", NODE)
    # Nothing of ours is lost or renamed by the models.
    assert json.loads(parsed.to_json()) == doc
    assert verify_bundle(raw, key.public_key(), NODE).names == ("reg/p",)


def test_securesystemslib_verifies_our_envelope(key: ec.EllipticCurvePrivateKey) -> None:
    envelope = json.loads(sign_bundle(key, "reg/p", NODE))["dsseEnvelope"]
    public = SSlibKey.from_crypto(key.public_key(), keyid="k")
    # securesystemslib wants a keyid on each signature; DSSE makes it optional.
    envelope["signatures"] = [{**s, "keyid": "k"} for s in envelope["signatures"]]
    # from_dict consumes its argument: a copy each time.
    accepted = Envelope.from_dict(copy.deepcopy(envelope)).verify([public], 1)
    assert list(accepted) == ["k"]
    # And refuses it under another key: the check can fail.
    other = SSlibKey.from_crypto(ec.generate_private_key(ec.SECP256R1()).public_key(), "k")
    with pytest.raises(Exception, match="Accepted signatures do not match threshold"):
        Envelope.from_dict(copy.deepcopy(envelope)).verify([other], 1)


def test_we_verify_an_envelope_securesystemslib_signed(key: ec.EllipticCurvePrivateKey) -> None:
    envelope = Envelope(statement("reg/p", NODE), INTOTO_PAYLOAD_TYPE, {})
    envelope.sign(CryptoSigner(key))
    bundle = {
        "mediaType": BUNDLE_V03,
        "verificationMaterial": {"publicKey": {"hint": key_hint(key.public_key())}},
        "dsseEnvelope": envelope.to_dict(),
    }
    raw = json.dumps(bundle).encode()
    assert verify_bundle(raw, key.public_key(), NODE).hint == key_hint(key.public_key())


def test_referrer_manifest_is_shaped_as_cosign_writes_it(key: ec.EllipticCurvePrivateKey) -> None:
    bundle = sign_bundle(key, "reg/p", NODE)
    subject = {**descriptor(b"x" * 10), "digest": str(NODE)}
    doc = json.loads(referrer_manifest(bundle, subject))
    assert doc["artifactType"] == BUNDLE_V03
    assert doc["config"] == {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": sha256(b"{}"),
        "size": 2,
    }
    assert doc["layers"] == [
        {"mediaType": BUNDLE_V03, "digest": sha256(bundle), "size": len(bundle)}
    ]
    assert doc["subject"] == subject
    annotations = doc["annotations"]
    assert annotations["dev.sigstore.bundle.content"] == "dsse-envelope"
    assert annotations["dev.sigstore.bundle.predicateType"] == COSIGN_SIGN_PREDICATE
    assert annotations["org.opencontainers.image.created"].endswith("Z")


def test_each_bad_bundle_has_its_reason(key: ec.EllipticCurvePrivateKey) -> None:
    public = key.public_key()
    good = sign_bundle(key, "reg/p", NODE)
    other_key = ec.generate_private_key(ec.SECP256R1())
    assert "signed by another key" in problem(sign_bundle(other_key, "reg/p", NODE), public)
    assert "not JSON (truncated?)" in problem(good[: len(good) // 2], public)
    assert f"is of {OTHER}, not {NODE}" in problem(sign_bundle(key, "reg/p", OTHER), public)
    doc = json.loads(good)
    tampered = statement("reg/p", OTHER)
    doc["dsseEnvelope"]["payload"] = base64.b64encode(tampered).decode()
    assert "it was altered" in problem(json.dumps(doc).encode(), public)
    assert "not a Sigstore bundle v0.3" in problem(b'{"mediaType": "text/plain"}', public)
    assert "not a Sigstore bundle v0.3" in problem(b"[1, 2]", public)
    no_dsse = {"mediaType": BUNDLE_V03, "verificationMaterial": {}, "messageSignature": {}}
    assert "no DSSE envelope" in problem(json.dumps(no_dsse).encode(), public)
    doc = json.loads(good)
    doc["dsseEnvelope"]["signatures"] = []
    assert "has no signature" in problem(json.dumps(doc).encode(), public)


# Keys


def test_generated_keys_load_and_a_wrong_password_is_a_clear_error(tmp_path: Path) -> None:
    private, public = client_keys.generate(tmp_path / "k", "s3cret")
    assert private.stat().st_mode & 0o777 == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in private.read_bytes()
    loaded = client_keys.load_private(private, lambda: "s3cret")
    assert key_hint(loaded.public_key()) == key_hint(client_keys.load_public(public))
    with pytest.raises(ClientError, match="wrong password"):
        client_keys.load_private(private, lambda: "nope")
    with pytest.raises(ClientError, match="exists"):
        client_keys.generate(tmp_path / "k", "")
    with pytest.raises(ClientError, match="not a PEM public key"):
        client_keys.load_public(private)


def _cosign_key(key: ec.EllipticCurvePrivateKey, password: str) -> bytes:
    """A cosign.key as `cosign generate-key-pair` writes it: the PKCS#8 key sealed in a
    go-securesystemslib `encrypted` envelope (scrypt N=32768 r=8 p=1, nacl/secretbox)."""
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    salt = os.urandom(32)
    secret = hashlib.scrypt(password.encode(), salt=salt, n=32768, r=8, p=1, maxmem=64 << 20)
    nonce = nacl.utils.random(24)
    sealed = nacl.secret.SecretBox(secret[:32]).encrypt(der, nonce).ciphertext
    envelope = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": 32768, "r": 8, "p": 1},
            "salt": base64.b64encode(salt).decode(),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(sealed).decode(),
    }
    body = base64.encodebytes(json.dumps(envelope).encode()).decode()
    return (
        f"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n{body}"
        "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
    ).encode()


def test_a_cosign_key_loads_with_its_password(
    key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    path = tmp_path / "cosign.key"
    path.write_bytes(_cosign_key(key, "pw"))
    loaded = client_keys.load_private(path, lambda: "pw")
    assert key_hint(loaded.public_key()) == key_hint(key.public_key())
    with pytest.raises(ClientError, match="wrong password"):
        client_keys.load_private(path, lambda: "wrong")


# Whole trees against a live registry

PARENT = "team/set"


def _tree(client: httpx.Client) -> dict[str, str]:
    """team/set:v1 -> app1 (image), app2 (linux/amd64 + linux/arm64), app3 (image). The
    digests of every node, by name."""
    d1, b1 = push_image(client, f"{PARENT}/app1")
    d3, b3 = push_image(client, f"{PARENT}/app3")
    amd, amd_body = push_image(client, f"{PARENT}/app2")
    arm, arm_body = push_image(client, f"{PARENT}/app2")
    app2 = index_manifest(
        descriptor(amd_body, platform={"architecture": "amd64", "os": "linux"}),
        descriptor(arm_body, platform={"architecture": "arm64", "os": "linux"}),
    )
    assert push_manifest(client, f"{PARENT}/app2", sha256(app2), app2, OCI_INDEX).is_success
    root = index_manifest(nested(b1, "app1"), nested(app2, "app2", OCI_INDEX), nested(b3, "app3"))
    assert push_manifest(client, PARENT, "v1", root, OCI_INDEX).is_success
    return {"root": sha256(root), "app1": d1, "app2": sha256(app2), "amd": amd, "arm": arm,
            "app3": d3}  # fmt: skip


def _keys(cli: Cli, tmp_path: Path, name: str) -> tuple[Path, Path]:
    cli.env["OCINEST_KEY_PASSWORD"] = f"pw-{name}"
    out = cli("key", "generate", "--output", str(tmp_path / name))
    assert "public key" in out.stdout
    return tmp_path / f"{name}.key", tmp_path / f"{name}.pub"


def _verdicts(cli: Cli, ref: str, pub: Path) -> tuple[int, dict[str, dict[str, object]]]:
    out = cli("verify", ref, "--key", str(pub), "--recursive", "--json", check=False)
    doc = json.loads(out.stdout)
    assert doc["ok"] == (out.returncode == 0)
    return out.returncode, {n["digest"]: n for n in doc["nodes"]}


def test_sign_and_verify_a_whole_tree(
    server: Server, client: httpx.Client, cli: Cli, tmp_path: Path
) -> None:
    nodes = _tree(client)
    private, public = _keys(cli, tmp_path, "team")
    ref = f"{server.host}/{PARENT}:v1"
    out = cli("sign", ref, "--key", str(private), "--recursive", "--json")
    signed = json.loads(out.stdout)["signed"]
    assert {s["digest"] for s in signed} == set(nodes.values())

    # Each signature is a referrer of its node, in the node's own repository, as cosign
    # lists it.
    for name, digest in nodes.items():
        repo = {"root": PARENT, "amd": f"{PARENT}/app2", "arm": f"{PARENT}/app2"}.get(
            name, f"{PARENT}/{name}"
        )
        listed = httpx.get(f"{server.url}/v2/{repo}/referrers/{digest}").json()["manifests"]
        assert [m["artifactType"] for m in listed] == [BUNDLE_V03], name
        assert listed[0]["annotations"]["dev.sigstore.bundle.content"] == "dsse-envelope"
        manifest = get_manifest(server.url, repo, listed[0]["digest"]).json()
        assert manifest["subject"]["digest"] == digest

    code, verdicts = _verdicts(cli, ref, public)
    assert code == 0
    assert set(verdicts) == set(nodes.values())
    assert all(v["ok"] for v in verdicts.values())
    hint = key_hint(client_keys.load_public(public))
    assert {v["keyId"] for v in verdicts.values()} == {hint}
    human = cli("verify", ref, "--key", str(public), "-r").stdout.splitlines()
    assert len(human) == 6 and all(line.endswith("  ok") for line in human)
    assert f"{server.host}/{PARENT}/app2@{nodes['arm']}  key {hint}  ok" in human

    # Signing again adds nothing but what is new (the created time differs: a new one).
    again = json.loads(cli("sign", ref, "--key", str(private), "-r", "--json").stdout)
    assert all(s["pushed"] for s in again["signed"])

    # A signature removed: that node fails, by name; the others still pass.
    for m in httpx.get(f"{server.url}/v2/{PARENT}/app1/referrers/{nodes['app1']}").json()[
        "manifests"
    ]:
        r = httpx.delete(f"{server.url}/v2/{PARENT}/app1/manifests/{m['digest']}")
        assert r.status_code == 202, r.text
    code, verdicts = _verdicts(cli, ref, public)
    assert code == 1
    failed = [v for v in verdicts.values() if not v["ok"]]
    assert [v["repository"] for v in failed] == [f"{server.host}/{PARENT}/app1"]
    assert failed[0]["reason"] == "unsigned: no signature referrer"
    human = cli("verify", ref, "--key", str(public), "-r", check=False)
    assert human.returncode == 1
    assert f"{server.host}/{PARENT}/app1@{nodes['app1']}" in human.stdout
    assert "FAILED: unsigned" in human.stdout


def test_a_node_signed_only_by_another_key_fails(
    server: Server, client: httpx.Client, cli: Cli, tmp_path: Path
) -> None:
    nodes = _tree(client)
    private, public = _keys(cli, tmp_path, "team")
    other, _ = _keys(cli, tmp_path, "other")
    ref = f"{server.host}/{PARENT}:v1"
    cli.env["OCINEST_KEY_PASSWORD"] = "pw-team"
    for name in ("root", "app1", "app2", "amd", "arm"):
        repo = {"root": PARENT, "amd": f"{PARENT}/app2", "arm": f"{PARENT}/app2"}.get(
            name, f"{PARENT}/{name}"
        )
        cli("sign", f"{server.host}/{repo}@{nodes[name]}", "--key", str(private))
    cli.env["OCINEST_KEY_PASSWORD"] = "pw-other"
    cli("sign", f"{server.host}/{PARENT}/app3@{nodes['app3']}", "--key", str(other))
    code, verdicts = _verdicts(cli, ref, public)
    assert code == 1
    app3 = verdicts[nodes["app3"]]
    assert not app3["ok"] and "signed by another key" in str(app3["reason"])
    assert app3["repository"] == f"{server.host}/{PARENT}/app3"
    assert sum(not v["ok"] for v in verdicts.values()) == 1

    # A wrong password for the signing key, or none: one clear line, no traceback.
    cli.env["OCINEST_KEY_PASSWORD"] = "not it"
    out = cli("sign", ref, "--key", str(private), check=False)
    assert out.returncode == 2
    assert "wrong password" in out.stderr and "Traceback" not in out.stderr
    del cli.env["OCINEST_KEY_PASSWORD"]
    out = cli("sign", ref, "--key", str(private), check=False)
    assert out.returncode == 2
    assert out.stderr == "ocinest: error: the key is encrypted: set OCINEST_KEY_PASSWORD\n"


def test_a_re_pointed_child_fails(
    server: Server, client: httpx.Client, cli: Cli, tmp_path: Path
) -> None:
    """The root's signature covers the child paths, which are in the index bytes: the same
    children under another path make another root, which the signature does not cover."""
    nodes = _tree(client)
    private, public = _keys(cli, tmp_path, "team")
    cli("sign", f"{server.host}/{PARENT}:v1", "--key", str(private), "-r")
    root = json.loads(get_manifest(server.url, PARENT, "v1").content)
    app1 = get_manifest(server.url, f"{PARENT}/app1", nodes["app1"]).content
    for blob in [json.loads(app1)["config"], *json.loads(app1)["layers"]]:
        r = client.post(
            f"/v2/{PARENT}/elsewhere/blobs/uploads/",
            params={"mount": blob["digest"], "from": f"{PARENT}/app1"},
        )
        assert r.status_code == 201, r.text
    assert push_manifest(client, f"{PARENT}/elsewhere", nodes["app1"], app1).is_success
    root["manifests"][0]["annotations"][NESTED_ANNOTATION] = "elsewhere"
    moved = json.dumps(root).encode()
    assert push_manifest(client, PARENT, "v1", moved, OCI_INDEX).is_success
    code, verdicts = _verdicts(cli, f"{server.host}/{PARENT}:v1", public)
    assert code == 1
    assert not verdicts[sha256(moved)]["ok"]
    assert verdicts[sha256(moved)]["reason"] == "unsigned: no signature referrer"
    assert not verdicts[nodes["app1"]]["ok"]  # nothing signed it at its new path


def test_a_tampered_signature_in_the_registry_names_its_node(
    server: Server, client: httpx.Client, cli: Cli, tmp_path: Path
) -> None:
    digest, _ = push_image(client, "solo/app", tag="v1")
    private, public = _keys(cli, tmp_path, "team")
    cli("sign", f"{server.host}/solo/app:v1", "--key", str(private))
    listed = httpx.get(f"{server.url}/v2/solo/app/referrers/{digest}").json()["manifests"]
    manifest = get_manifest(server.url, "solo/app", listed[0]["digest"]).json()
    layer = manifest["layers"][0]
    bundle = json.loads(httpx.get(f"{server.url}/v2/solo/app/blobs/{layer['digest']}").content)
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(statement("x", OTHER)).decode()
    bad = json.dumps(bundle).encode()
    r = client.post("/v2/solo/app/blobs/uploads/", params={"digest": sha256(bad)}, content=bad)
    assert r.status_code == 201, r.text
    manifest["layers"][0] = {**layer, "digest": sha256(bad), "size": len(bad)}
    body = json.dumps(manifest).encode()
    assert push_manifest(client, "solo/app", sha256(body), body).is_success
    r = httpx.delete(f"{server.url}/v2/solo/app/manifests/{listed[0]['digest']}")
    assert r.status_code == 202
    out = cli("verify", f"{server.host}/solo/app:v1", "--key", str(public), check=False)
    assert out.returncode == 1
    assert f"solo/app@{digest}" in out.stdout and "it was altered" in out.stdout


# A bundle cosign itself produced (tests/fixtures/cosign/README.md says where from)

COSIGN_FIXTURE = (
    Path(__file__).parent.parent / "fixtures" / "cosign" / "oci-attestation.sigstore.json"
)
COSIGN_SUBJECT = Digest.parse(
    "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"
)
COSIGN_PREDICATE = "https://cosign.sigstore.dev/attestation/v1"


def test_a_bundle_cosign_wrote_verifies_with_its_signers_key() -> None:
    raw = COSIGN_FIXTURE.read_bytes()
    doc = json.loads(raw)
    leaf = x509.load_der_x509_certificate(
        base64.b64decode(doc["verificationMaterial"]["certificate"]["rawBytes"])
    )
    public = leaf.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    verified = verify_bundle(raw, public, COSIGN_SUBJECT, COSIGN_PREDICATE)
    assert verified.names == ("127.0.0.1:60943/repo",)
    # As a signature (the sign predicate) it is refused for what it is, not for its signature.
    assert "the predicate is 'https://cosign.sigstore.dev/attestation/v1'" in problem(
        raw, public, COSIGN_SUBJECT
    )
    assert f"is of {COSIGN_SUBJECT}, not {OTHER}" in problem(raw, public, OTHER, COSIGN_PREDICATE)
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert "does not verify with this key" in problem(raw, other, COSIGN_SUBJECT, COSIGN_PREDICATE)
    # One byte of the signed payload changed: the signature no longer matches.
    payload = bytearray(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    payload[-3] ^= 1
    doc["dsseEnvelope"]["payload"] = base64.b64encode(bytes(payload)).decode()
    tampered = json.dumps(doc).encode()
    assert "does not verify" in problem(tampered, public, COSIGN_SUBJECT, COSIGN_PREDICATE)
    # The published models and securesystemslib read it as we do.
    parsed = Bundle.from_dict(json.loads(raw))
    assert parsed.dsse_envelope.payload_type == INTOTO_PAYLOAD_TYPE
    envelope = json.loads(raw)["dsseEnvelope"]
    envelope["signatures"] = [{**s, "keyid": "leaf"} for s in envelope["signatures"]]
    accepted = Envelope.from_dict(envelope).verify([SSlibKey.from_crypto(public, "leaf")], 1)
    assert list(accepted) == ["leaf"]


def test_signatures_survive_a_copy_to_a_registry_without_referrers_and_back(
    server: Server, client: httpx.Client, distribution: Distribution, cli: Cli, tmp_path: Path
) -> None:
    """Debian's docker-registry (distribution 2.8) has no referrers API: the signatures go
    under the `sha256-<hex>` tags, and verify finds them there, then back on ocinest."""
    nodes = _tree(client)
    private, public = _keys(cli, tmp_path, "team")
    cli("sign", f"{server.host}/{PARENT}:v1", "--key", str(private), "-r")
    there = f"{distribution.host}/{PARENT}:v1"
    cli("copy", "--referrers", f"{server.host}/{PARENT}:v1", there)
    r = httpx.get(
        f"{distribution.url}/v2/{PARENT}/app1/manifests/sha256-{nodes['app1'][7:]}",
        headers={"Accept": OCI_INDEX},
    )
    assert r.status_code == 200, r.text
    assert [m["artifactType"] for m in r.json()["manifests"]] == [BUNDLE_V03]
    code, verdicts = _verdicts(cli, there, public)
    assert code == 0 and set(verdicts) == set(nodes.values())

    back = f"{server.host}/back/set:v1"
    cli("copy", "--referrers", there, back)
    code, verdicts = _verdicts(cli, back, public)
    assert code == 0 and set(verdicts) == set(nodes.values())
    assert {v["repository"] for v in verdicts.values()} >= {
        f"{server.host}/back/set/app1",
        f"{server.host}/back/set/app2",
    }

    # Signing straight on that registry takes the tag scheme too.
    solo, _ = push_image(client, "solo", tag="v1")
    cli("copy", f"{server.host}/solo:v1", f"{distribution.host}/solo:v1")
    cli("sign", f"{distribution.host}/solo:v1", "--key", str(private))
    r = httpx.get(
        f"{distribution.url}/v2/solo/manifests/sha256-{solo[7:]}", headers={"Accept": OCI_INDEX}
    )
    assert r.status_code == 200 and len(r.json()["manifests"]) == 1
    cli("verify", f"{distribution.host}/solo:v1", "--key", str(public))
