"""Signatures as cosign v3 writes them by default (`--new-bundle-format`), no I/O.

A node's signature is a Sigstore bundle v0.3 holding a DSSE envelope of an in-toto Statement v1
whose subject is the node's digest and whose predicateType is cosign's "sign" predicate; the
bundle is the one layer of an OCI 1.1 referrer manifest (empty config, `artifactType` the
bundle type, cosign's annotations) whose subject is the node. Key-signed bundles carry the
public key's hint and no transparency-log entry.

Formats: sigstore/protobuf-specs (bundle, envelope), secure-systems-lab/dsse (PAE),
in-toto/attestation (Statement v1), sigstore/cosign (predicate type, referrer annotations).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from . import mediatypes as mt
from .digest import Digest
from .nested import descriptor, empty_config

BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
BUNDLE_TYPES = frozenset({BUNDLE_V03, "application/vnd.dev.sigstore.bundle+json;version=0.3"})
INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_V1 = "https://in-toto.io/Statement/v1"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
CONTENT_ANNOTATION = "dev.sigstore.bundle.content"
PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"
CREATED_ANNOTATION = "org.opencontainers.image.created"


# `--type` shorthands for a predicate type, as cosign takes them (cmd/cosign/cli/options/
# predicate.go); any other value must be the type's URI. cosign's own `custom` type wraps the
# file in a predicate of its own, so it is not among them.
PREDICATE_TYPES = {
    "slsaprovenance": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance02": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance1": "https://slsa.dev/provenance/v1",
    "spdx": "https://spdx.dev/Document",
    "spdxjson": "https://spdx.dev/Document",
    "cyclonedx": "https://cyclonedx.org/bom",
    "link": "https://in-toto.io/Link/v1",
    "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1",
}


def predicate_type(name: str) -> str:
    """The predicate type URI `name` stands for; ValueError when it is neither a shorthand
    nor an absolute URI."""
    uri = PREDICATE_TYPES.get(name, name)
    scheme, _, rest = uri.partition("://")
    if not scheme or not rest or not scheme.isalpha():
        shorthands = ", ".join(sorted(PREDICATE_TYPES))
        raise ValueError(f"predicate type {name!r} is neither a URI nor one of {shorthands}")
    if uri == COSIGN_SIGN_PREDICATE:
        raise ValueError(f"{uri} is the signature's own predicate: use sign")
    return uri


class SignatureProblem(Exception):
    """Why a bundle does not verify a node, in words a user acts on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def key_hint(public_key: ec.EllipticCurvePublicKey) -> str:
    """The key's id in a bundle's `publicKey.hint`: base64 of the SHA-256 of its DER
    SubjectPublicKeyInfo."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def statement(
    name: str,
    digest: Digest,
    kind: str = COSIGN_SIGN_PREDICATE,
    predicate: dict[str, Any] | None = None,
) -> bytes:
    """The in-toto Statement v1 about `name` at `digest`: cosign's signature of an image, or
    an attestation of predicate type `kind`."""
    doc = {
        "_type": STATEMENT_V1,
        "subject": [{"name": name, "digest": {digest.algorithm: digest.encoded}}],
        "predicateType": kind,
        "predicate": predicate or {},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def sign_bundle(
    private_key: ec.EllipticCurvePrivateKey,
    name: str,
    digest: Digest,
    kind: str = COSIGN_SIGN_PREDICATE,
    predicate: dict[str, Any] | None = None,
) -> bytes:
    """The Sigstore bundle v0.3 (JSON) signing a statement about the node `name`@`digest`
    (cosign's signature, or an attestation of predicate type `kind`)."""
    payload = statement(name, digest, kind, predicate)
    signature = private_key.sign(pae(INTOTO_PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    doc = {
        "mediaType": BUNDLE_V03,
        "verificationMaterial": {"publicKey": {"hint": key_hint(private_key.public_key())}},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": INTOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode()}],
        },
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def referrer_manifest(
    bundle: bytes,
    subject: dict[str, Any],
    created: datetime | None = None,
    kind: str = COSIGN_SIGN_PREDICATE,
) -> bytes:
    """The referrer manifest cosign pushes for a bundle: empty config, the bundle as its one
    layer, `subject` the signed node's descriptor, the statement's predicate type annotated."""
    when = (created or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": BUNDLE_V03,
        "config": empty_config(),
        "layers": [descriptor(BUNDLE_V03, Digest.of(bundle), len(bundle))],
        "subject": subject,
        "annotations": {
            CONTENT_ANNOTATION: "dsse-envelope",
            PREDICATE_ANNOTATION: kind,
            CREATED_ANNOTATION: when,
        },
    }
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Verified:
    """What a bundle that verifies says: the key hint and the subject's names."""

    hint: str
    names: tuple[str, ...]


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise SignatureProblem(f"the bundle is malformed: {what} is not a string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        try:  # DSSE allows URL-safe base64 as well
            return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            raise SignatureProblem(f"the bundle is malformed: {what} is not base64") from None


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SignatureProblem(f"the bundle is malformed: {what} is not an object")
    return value


def verify_bundle(
    bundle: bytes,
    public_key: ec.EllipticCurvePublicKey,
    digest: Digest,
    kind: str = COSIGN_SIGN_PREDICATE,
) -> Verified:
    """Check that `bundle` is a DSSE-signed in-toto statement about `digest` (a cosign
    signature unless another predicate type `kind` is named) made with `public_key`;
    `SignatureProblem` saying why not."""
    try:
        doc = json.loads(bundle)
    except (ValueError, UnicodeDecodeError):
        raise SignatureProblem("not a Sigstore bundle: not JSON (truncated?)") from None
    if not isinstance(doc, dict) or doc.get("mediaType") not in BUNDLE_TYPES:
        found = doc.get("mediaType") if isinstance(doc, dict) else type(doc).__name__
        raise SignatureProblem(f"not a Sigstore bundle v0.3 (mediaType {found!r})")
    if "dsseEnvelope" not in doc:
        raise SignatureProblem("the bundle holds no DSSE envelope (a message signature?)")
    envelope = _object(doc["dsseEnvelope"], "dsseEnvelope")
    material = _object(doc.get("verificationMaterial"), "verificationMaterial")
    hint = _object(material.get("publicKey", {}), "publicKey").get("hint", "")
    payload = _b64(envelope.get("payload"), "the payload")
    payload_type = envelope.get("payloadType")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise SignatureProblem("the bundle's envelope has no signature")
    message = pae(str(payload_type), payload)
    ours = key_hint(public_key)
    for entry in signatures:
        sig = _b64(_object(entry, "a signature").get("sig"), "a signature")
        try:
            public_key.verify(sig, message, ec.ECDSA(hashes.SHA256()))
            break
        except InvalidSignature:
            continue
    else:
        if hint == ours:
            raise SignatureProblem("the signature does not match the bundle: it was altered")
        if hint:
            raise SignatureProblem(f"signed by another key (hint {hint}, not {ours})")
        raise SignatureProblem("the signature does not verify with this key (another key?)")
    if payload_type != INTOTO_PAYLOAD_TYPE:
        raise SignatureProblem(f"the envelope's payload is {payload_type!r}, not an in-toto one")
    try:
        stmt = _object(json.loads(payload), "the statement")
    except ValueError:
        raise SignatureProblem("the signed statement is not JSON") from None
    if stmt.get("predicateType") != kind:
        raise SignatureProblem(f"the predicate is {stmt.get('predicateType')!r}, not {kind!r}")
    subjects = stmt.get("subject")
    if not isinstance(subjects, list):
        raise SignatureProblem("the signed statement has no subject")
    names = []
    signed = []
    for s in subjects:
        s = _object(s, "a subject")
        names.append(str(s.get("name", "")))
        for algorithm, encoded in _object(s.get("digest"), "a subject digest").items():
            signed.append(f"{algorithm}:{encoded}")
    if str(digest) not in signed:
        raise SignatureProblem(
            f"the signature is of {', '.join(signed) or 'nothing'}, not {digest}"
        )
    return Verified(hint or ours, tuple(names))
