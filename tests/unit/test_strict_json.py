"""Manifests are RFC 8259 JSON: what Python's json module takes beyond it is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ocinest.oci import mediatypes as mt
from ocinest.oci.errors import ErrorCode, OCIError
from ocinest.oci.manifest import NESTED_ANNOTATION, parse_manifest
from tests.manifests import (
    OCI_CONFIG,
    OCI_LAYER,
    descriptor,
    image_manifest,
    index_manifest,
    nested,
)


def image(**extra: Any) -> bytes:
    """An image manifest over content nobody stored (parsing does not look)."""
    config, layer = descriptor(b"config", OCI_CONFIG), descriptor(b"layer", OCI_LAYER)
    return image_manifest(config, [layer], **extra)


def refusal(data: bytes, content_type: str = mt.OCI_MANIFEST) -> str:
    """The detail of the MANIFEST_INVALID error `data` gets."""
    with pytest.raises(OCIError) as info:
        parse_manifest(data, content_type)
    (error,) = info.value.errors
    assert error.code == ErrorCode.MANIFEST_INVALID
    assert info.value.status == 400
    return error.detail


GOOD = image(annotations={"k": "v"})


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_numbers_are_refused(constant: str) -> None:
    data = GOOD.replace(b'"schemaVersion": 2', b'"schemaVersion": 2, "x": ' + constant.encode())
    assert constant in refusal(data)


def test_a_byte_order_mark_is_refused() -> None:
    assert "byte order mark" in refusal(b"\xef\xbb\xbf" + GOOD)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_are_refused(encoding: str) -> None:
    detail = refusal(GOOD.decode().encode(encoding))
    assert "UTF-8" in detail


def test_invalid_utf8_is_refused() -> None:
    # Latin-1 text, and an encoded lone surrogate (not UTF-8 either).
    for bad in ("é".encode("latin-1"), b"\xed\xa0\x80"):
        data = image(annotations={"k": "@"}).replace(b"@", bad)
        assert "not UTF-8" in refusal(data)


@pytest.mark.parametrize(
    "data",
    [
        # At the top, in an object inside an array, in annotations.
        b'{"schemaVersion": 2, "schemaVersion": 2, "config": {}, "layers": []}',
        image().replace(b'"size"', b'"size": 1, "size"', 1),
        image(annotations={"k": "v"}).replace(b'"k": "v"', b'"k": "v", "k": "w"'),
    ],
)
def test_duplicate_keys_are_refused_at_any_depth(data: bytes) -> None:
    assert "duplicate key" in refusal(data)


def test_a_duplicated_child_path_is_refused_naming_the_key() -> None:
    # Which child would a client see? Keeping the first value or the last, parsers disagree.
    data = index_manifest(nested(b"child", "a")).replace(
        f'"{NESTED_ANNOTATION}": "a"'.encode(),
        f'"{NESTED_ANNOTATION}": "a", "{NESTED_ANNOTATION}": "b"'.encode(),
    )
    assert json.loads(data)["manifests"][0]["annotations"][NESTED_ANNOTATION] == "b"
    assert f"duplicate key {NESTED_ANNOTATION!r}" in refusal(data, mt.OCI_INDEX)


def test_unpaired_surrogate_escapes_are_refused() -> None:
    for escape in (rb"\ud800", rb"\udfff", rb"x\uDBFFy", rb"\ude00\ud83d"):
        data = image(annotations={"k": "@"}).replace(b"@", escape)
        assert "surrogate" in refusal(data)


def test_what_json_allows_is_still_taken() -> None:
    # A surrogate pair, an escaped backslash before "ud800", non-ASCII UTF-8, numbers with
    # exponents, the same key in two different objects, whitespace around the document.
    annotations = {"emoji": "\U0001f600", "path": "\\ud800", "text": "grüße", "k": "1"}
    doc = json.loads(image(annotations=annotations, extra={"n": 1e300, "k": "again"}))
    for data in (json.dumps(doc).encode(), json.dumps(doc, ensure_ascii=False).encode()):
        m = parse_manifest(b" \n" + data + b"\r\n\t", mt.OCI_MANIFEST)
        assert m.annotations == annotations
