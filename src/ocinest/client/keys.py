"""Signing keys: ECDSA P-256 in PEM (`ocinest key generate`), and cosign's own `cosign.key`
("ENCRYPTED SIGSTORE PRIVATE KEY": a go-securesystemslib envelope, scrypt + NaCl secretbox,
around the PKCS#8 key)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.secret
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .errors import ClientError, Kind

PASSWORD_ENV = "OCINEST_KEY_PASSWORD"
SIGSTORE_PEM = "ENCRYPTED SIGSTORE PRIVATE KEY"
COSIGN_PEM = "ENCRYPTED COSIGN PRIVATE KEY"  # cosign 1.x, same envelope
# Where a password comes from when the key needs one (the CLI prompts).
PasswordSource = Callable[[], str]


def _usage(message: str) -> ClientError:
    return ClientError(message, kind=Kind.USAGE)


def generate(prefix: Path, password: str) -> tuple[Path, Path]:
    """A new P-256 key pair: `PREFIX.key` (PKCS#8 PEM, encrypted when `password`, mode 0600)
    and `PREFIX.pub`."""
    key = ec.generate_private_key(ec.SECP256R1())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode())
        if password
        else serialization.NoEncryption()
    )
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_path, pub_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for path in (key_path, pub_path):
        if path.exists():
            raise _usage(f"{path} exists; remove it or choose another --output")
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    pub_path.write_bytes(public)
    return key_path, pub_path


def _pem_body(text: str, label: str) -> bytes:
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise _usage(f"the key is not a complete {label} PEM block")
    try:
        return base64.b64decode("".join(text[start + len(begin) : stop].split()), validate=True)
    except binascii.Error:
        raise _usage(f"the {label} PEM block is not base64") from None


def decrypt_sigstore(envelope: bytes, password: str) -> bytes:
    """The plaintext of a go-securesystemslib `encrypted` envelope (scrypt, nacl/secretbox)."""
    try:
        doc: dict[str, Any] = json.loads(envelope)
        kdf, cipher = doc["kdf"], doc["cipher"]
        if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox":
            raise _usage(f"unsupported key encryption {kdf['name']}/{cipher['name']}")
        params = kdf["params"]
        secret = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(kdf["salt"]),
            n=int(params["N"]),
            r=int(params["r"]),
            p=int(params["p"]),
            maxmem=256 << 20,
            dklen=nacl.secret.SecretBox.KEY_SIZE,
        )
        nonce = base64.b64decode(cipher["nonce"])
        ciphertext = base64.b64decode(doc["ciphertext"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise _usage("the cosign key's envelope is malformed") from None
    try:
        return nacl.secret.SecretBox(secret).decrypt(ciphertext, nonce)
    except nacl.exceptions.CryptoError:
        raise _usage("wrong password for the key (or the key file is damaged)") from None


def _ec_key(key: object, path: Path) -> ec.EllipticCurvePrivateKey:
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise _usage(f"{path}: only ECDSA P-256 keys are supported")
    return key


def load_private(path: Path, password: PasswordSource) -> ec.EllipticCurvePrivateKey:
    """A private key from a PEM file or a cosign.key; `password` is asked only when the
    key is encrypted. A wrong password is a ClientError, never a traceback."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _usage(f"cannot read the key {path}: {exc.strerror}") from None
    text = data.decode("ascii", "replace")
    for label in (SIGSTORE_PEM, COSIGN_PEM):
        if f"BEGIN {label}" in text:
            der = decrypt_sigstore(_pem_body(text, label), password())
            try:
                return _ec_key(serialization.load_der_private_key(der, None), path)
            except ValueError:
                raise _usage(f"{path}: the decrypted key is not a PKCS#8 key") from None
    encrypted = "ENCRYPTED PRIVATE KEY" in text or "Proc-Type: 4,ENCRYPTED" in text
    try:
        key = serialization.load_pem_private_key(data, password().encode() if encrypted else None)
    except ValueError:
        if encrypted:
            raise _usage(f"wrong password for the key {path}") from None
        raise _usage(f"{path} is not a PEM private key") from None
    except TypeError:
        raise _usage(f"{path}: the key is encrypted; give its password") from None
    return _ec_key(key, path)


def load_public(path: Path) -> ec.EllipticCurvePublicKey:
    """A public key from a PEM file (`cosign.pub`, `ocinest key generate`'s `.pub`)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _usage(f"cannot read the key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise _usage(f"{path} is not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise _usage(f"{path}: only ECDSA P-256 keys are supported")
    return key
