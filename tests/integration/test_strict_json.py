"""A manifest PUT takes RFC 8259 JSON only: what else Python's json module would take is a
400 MANIFEST_INVALID with a detail saying what is wrong, and nothing is stored."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import error_codes, oci_image, push_image, push_manifest
from tests.manifests import OCI_INDEX, OCI_MANIFEST, index_manifest, nested, sha256


def refused(client: httpx.Client, repo: str, body: bytes, media_type: str = OCI_MANIFEST) -> str:
    r = push_manifest(client, repo, "v1", body, media_type)
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert error_codes(r) == ["MANIFEST_INVALID"]
    assert client.get(f"/v2/{repo}/manifests/{sha256(body)}").status_code == 404
    assert client.get(f"/v2/{repo}/manifests/v1").status_code == 404
    detail: str = r.json()["errors"][0]["detail"]
    return detail


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_numbers(client: httpx.Client, constant: str) -> None:
    body = oci_image(client, "sj")
    body = body[:-1] + b', "x": ' + constant.encode() + b"}"
    assert constant in refused(client, "sj", body)


def test_byte_order_mark_and_utf16(client: httpx.Client) -> None:
    body = oci_image(client, "sj")
    assert "byte order mark" in refused(client, "sj", b"\xef\xbb\xbf" + body)
    for encoding in ("utf-16", "utf-16-le", "utf-32"):
        assert "UTF-8" in refused(client, "sj", body.decode().encode(encoding))
    # The same content as plain UTF-8 is fine.
    assert push_manifest(client, "sj", "v1", body).status_code == 201


def test_unpaired_surrogate(client: httpx.Client) -> None:
    body = oci_image(client, "sj", annotations={"k": "@"}).replace(b"@", rb"\udc00")
    assert "surrogate" in refused(client, "sj", body)


def test_duplicate_keys(client: httpx.Client) -> None:
    body = oci_image(client, "sj")
    top = body.replace(b'"schemaVersion": 2', b'"schemaVersion": 2, "schemaVersion": 2')
    assert "duplicate key 'schemaVersion'" in refused(client, "sj", top)
    deep = body.replace(b'"size":', b'"size": 0, "size":', 1)
    assert "duplicate key 'size'" in refused(client, "sj", deep)


def test_duplicated_child_path(client: httpx.Client) -> None:
    # A client keeping the first value would see another child than the registry checked.
    _, a_body = push_image(client, "sj/a")
    push_image(client, "sj/b")
    body = index_manifest(nested(a_body, "a")).replace(
        b'"dev.ocinest.repository": "a"',
        b'"dev.ocinest.repository": "b", "dev.ocinest.repository": "a"',
    )
    assert json.loads(body)["manifests"][0]["annotations"]["dev.ocinest.repository"] == "a"
    detail = refused(client, "sj", body, OCI_INDEX)
    assert "duplicate key 'dev.ocinest.repository'" in detail
