"""The base endpoint, routing (unknown endpoints and methods), health and metrics."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.conftest import Server, push_image
from tests.integration.ocihttp import (
    allowed,
    assert_api_header,
    assert_error,
    assert_status,
    log_records,
    unknown_digest,
)

UPLOAD_ID = "0b9a3a5e-6f1e-4d8c-9c3b-1f2e3d4c5b6a"
DIGEST = "sha256:" + "ab" * 32


def test_base_get(client: httpx.Client) -> None:
    r = client.get("/v2/")
    assert_status(r, 200)
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {}


def test_base_without_trailing_slash(client: httpx.Client) -> None:
    r = client.get("/v2")
    assert_status(r, 200)
    assert r.json() == {}


def test_base_head(client: httpx.Client) -> None:
    r = client.head("/v2/")
    assert_status(r, 200)
    assert r.content == b""


def test_healthz(client: httpx.Client) -> None:
    r = client.get("/healthz")
    assert_status(r, 200)
    assert r.json() == {"status": "ok"}


def test_readyz_reports_each_backend(client: httpx.Client) -> None:
    r = client.get("/readyz")
    assert_status(r, 200)
    assert r.json() == {"status": "ready", "metadata": "ok", "blobs": "ok"}


def test_every_log_line_is_json_with_a_timestamp(server: Server, client: httpx.Client) -> None:
    before = time.time()
    assert client.get("/v2/").status_code == 200
    assert client.get("/v2/no/such/manifests/latest").status_code == 404
    # An access line is written once its answer is sent: wait (bounded) for the last one.
    deadline = time.monotonic() + 10
    while True:
        records = log_records(server)
        paths = [r.get("path") for r in records if r["logger"] == "ocinest.access"]
        if paths[-1:] == ["/v2/no/such/manifests/latest"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    # The start line (not an access line), and one access line a request, all stamped.
    assert any(
        r["logger"] == "ocinest.registry" and "listening on" in r["message"] for r in records
    )
    access = [r for r in records if r["logger"] == "ocinest.access"]
    assert [(r["method"], r["path"], r["status"]) for r in access[-2:]] == [
        ("GET", "/v2/", 200),
        ("GET", "/v2/no/such/manifests/latest", 404),
    ]
    assert all(isinstance(r["ts"], float) and r["level"] for r in records)
    assert before - 60 < records[0]["ts"] <= access[-1]["ts"] <= time.time()


def test_metrics_count_requests(client: httpx.Client) -> None:
    for _ in range(3):
        assert client.get("/v2/").status_code == 200
    r = client.get("/metrics")
    assert_status(r, 200)
    assert r.headers["Content-Type"].startswith("text/plain")
    assert "ocinest_http_requests_total" in r.text
    assert "# TYPE ocinest_http_requests_total counter" in r.text
    m = re.search(
        r'^ocinest_http_requests_total\{method="GET",route="base",status="200"\} (\S+)$',
        r.text,
        re.MULTILINE,
    )
    assert m is not None, r.text
    assert float(m.group(1)) >= 3


def test_metrics_count_errors_by_status(client: httpx.Client) -> None:
    assert client.get(f"/v2/metricsrepo/blobs/{unknown_digest()}").status_code == 404
    r = client.get("/metrics")
    assert_status(r, 200)
    assert re.search(
        r'^ocinest_http_requests_total\{method="GET",route="blob",status="404"\} [1-9]',
        r.text,
        re.MULTILINE,
    ), r.text


def test_metrics_name_a_method_of_the_clients_choosing_other(client: httpx.Client) -> None:
    """A client picks the method, and each label value is a series kept for good: methods
    outside HTTP's usual ones (here WebDAV's, which the HTTP parser knows) are counted as
    one."""
    for method in ("PROPFIND", "MKCOL", "LOCK"):
        assert client.request(method, "/v2/").status_code == 405
    text = client.get("/metrics").text
    assert not re.search("PROPFIND|MKCOL|LOCK", text)
    assert re.search(
        r'^ocinest_http_requests_total\{method="other",route="base",status="405"\} ([3-9]|\d\d)',
        text,
        re.MULTILINE,
    ), text


@pytest.mark.parametrize(
    "path",
    [
        "/v2/repo/unknown",
        "/v2/repo/blobs",
        "/v2/repo/manifests",
        "/v2/repo/tags",
        "/v2/repo/tags/list/extra",
        "/v2/_catalog/extra",
    ],
)
def test_unknown_v2_endpoint_is_404(client: httpx.Client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404, r.text
    assert_api_header(r)
    assert r.json()["errors"], r.text


@pytest.mark.parametrize("path", ["/nope", "/v1/", "/v3/"])
def test_unknown_endpoint_outside_v2_is_404_with_api_header(
    client: httpx.Client, path: str
) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert_api_header(r)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v2/", {"GET", "HEAD"}),
        ("DELETE", "/v2/", {"GET", "HEAD"}),
        ("POST", "/v2/_catalog", {"GET"}),
        ("DELETE", "/v2/repo/tags/list", {"GET"}),
        ("PUT", f"/v2/repo/blobs/{DIGEST}", {"GET", "HEAD", "DELETE"}),
        ("PATCH", f"/v2/repo/blobs/{DIGEST}", {"GET", "HEAD", "DELETE"}),
        ("GET", "/v2/repo/blobs/uploads/", {"POST"}),
        ("POST", f"/v2/repo/blobs/uploads/{UPLOAD_ID}", {"GET", "PATCH", "PUT", "DELETE"}),
        ("POST", "/v2/repo/manifests/latest", {"GET", "HEAD", "PUT", "DELETE"}),
        ("PATCH", "/v2/repo/manifests/latest", {"GET", "HEAD", "PUT", "DELETE"}),
        ("DELETE", f"/v2/repo/referrers/{DIGEST}", {"GET"}),
    ],
)
def test_unsupported_method_is_405_with_allow(
    client: httpx.Client, method: str, path: str, allow: set[str]
) -> None:
    r = client.request(method, path)
    assert_error(r, 405, "UNSUPPORTED")
    assert allowed(r) == allow


def test_unsupported_head_is_405_without_body(client: httpx.Client) -> None:
    r = client.head("/v2/repo/tags/list")
    assert_error(r, 405, "UNSUPPORTED")
    assert allowed(r) == {"GET"}


def test_every_kind_of_response_has_api_header(client: httpx.Client) -> None:
    digest, _ = push_image(client, "hdr", "v1")
    responses = [
        client.get("/v2/"),
        client.get("/v2/_catalog"),
        client.get("/v2/hdr/tags/list"),
        client.get(f"/v2/hdr/manifests/{digest}"),
        client.head("/v2/hdr/manifests/v1"),
        client.get(f"/v2/hdr/referrers/{digest}"),
        client.post("/v2/hdr/blobs/uploads/"),
        client.get("/v2/hdr/manifests/missing"),
        client.get("/v2/BAD/tags/list"),
        client.get("/healthz"),
        client.get("/metrics"),
    ]
    for r in responses:
        assert_api_header(r)
