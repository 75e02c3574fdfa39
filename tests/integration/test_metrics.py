"""`/metrics` scraped before and after known work: each counter moves by exactly that work.
Also `metrics_auth`, and the access log's and start-up line's fields."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Server, free_port, push_blob, push_image, push_index
from tests.integration.ocihttp import assert_status, log_records
from tests.integration.test_auth import creds
from tests.integration.test_auth_hardening import basic_header, serve
from tests.manifests import index_manifest, nested, sha256

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: httpx.Client, **kwargs: object) -> Samples:
    r = client.get("/metrics", **kwargs)  # type: ignore[arg-type]
    assert_status(r, 200)
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def on_the_wire(server: Server, method: str, path: str) -> bytes:
    """Everything the server sends in answer to one request: status line, headers, body."""
    request = f"{method} {path} HTTP/1.1\r\nHost: {server.host}\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(request.encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


@pytest.mark.stores  # a file answer goes by sendfile, an S3 one is streamed
def test_bytes_received_and_sent_by_route(server: Server, client: httpx.Client) -> None:
    data = os.urandom(1000)
    before = scrape(client)
    digest = push_blob(client, "metrics/bytes", data)  # POST, then PUT with the 1000 bytes
    get = on_the_wire(server, "GET", f"/v2/metrics/bytes/blobs/{digest}")
    head = on_the_wire(server, "HEAD", f"/v2/metrics/bytes/blobs/{digest}")
    after = scrape(client)
    assert get.endswith(b"\r\n\r\n" + data) and head.endswith(b"\r\n\r\n")
    received, sent = "ocinest_http_received_bytes_total", "ocinest_http_sent_bytes_total"
    assert moved(before, after, received, route="upload") == 1000
    assert moved(before, after, received, route="upload_start") == 0
    assert moved(before, after, received, route="blob") == 0
    assert moved(before, after, sent, route="blob") == len(get) + len(head)


@pytest.mark.stores
def test_uploads_in_progress(client: httpx.Client) -> None:
    gauge = "ocinest_uploads_in_progress"
    start = value(scrape(client), gauge)
    first = client.post("/v2/metrics/up/blobs/uploads/").headers["Location"]
    second = client.post("/v2/metrics/up/blobs/uploads/").headers["Location"]
    assert value(scrape(client), gauge) == start + 2
    data = b"finished"
    digest = sha256(data)
    assert client.put(first, params={"digest": digest}, content=data).status_code == 201
    assert value(scrape(client), gauge) == start + 1
    assert client.delete(second).status_code == 204
    # A monolithic upload starts and ends in its one request.
    r = client.post("/v2/metrics/up/blobs/uploads/", params={"digest": digest}, content=data)
    assert r.status_code == 201
    # A failed PUT leaves its session open (the client may retry).
    third = client.post("/v2/metrics/up/blobs/uploads/").headers["Location"]
    assert client.put(third, params={"digest": digest}, content=b"other").status_code == 400
    assert value(scrape(client), gauge) == start + 1


def test_tree_answer_sizes(client: httpx.Client) -> None:
    child, child_body = push_image(client, "metrics/tree/child", "v1")
    r = push_index(client, "metrics/tree", "v1", index_manifest(nested(child_body, "child")))
    assert_status(r, 201)
    before = scrape(client)
    tree = client.get("/v2/metrics/tree/_ocinest/tree/v1")
    assert_status(tree, 200)
    assert tree.json()["children"][0]["digest"] == child
    after = scrape(client)
    assert moved(before, after, "ocinest_tree_response_bytes_count") == 1
    assert moved(before, after, "ocinest_tree_response_bytes_sum") == len(tree.content)


GC_GRACE = 3


@pytest.fixture
def gc_server(tmp_path: Path) -> Iterator[Server]:
    # Content is safe for GC_GRACE seconds after its push: time enough to reference it.
    settings = {"gc_interval": 0.2, "gc_grace": GC_GRACE, "gc_delete_untagged": True}
    srv = Server(tmp_path / "data", free_port(), settings=settings)
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.stores
def test_scheduled_gc_counts_what_it_deleted(gc_server: Server) -> None:
    with httpx.Client(base_url=gc_server.url, timeout=30) as client:
        before = scrape(client)  # an empty registry: nothing for GC to take but what follows
        _, kept = push_image(client, "metrics/gc", "kept", layers=[os.urandom(300)])
        # Untagged: its manifest, config and layer go, and a blob nothing references.
        digest, untagged = push_image(client, "metrics/gc", layers=[os.urandom(400)])
        loose = os.urandom(1000)
        push_blob(client, "metrics/gc", loose)
        config_bytes = client.get(
            f"/v2/metrics/gc/blobs/{json.loads(untagged)['config']['digest']}"
        ).content
        kept_doc = json.loads(kept)
        kept_bytes = kept_doc["config"]["size"] + kept_doc["layers"][0]["size"]
        deleted = "ocinest_gc_deleted_total"
        # Runs go on every 0.2 s; each takes what is past the grace window. Wait (bounded)
        # for all of it to have gone, then check that nothing more did.
        deadline = time.monotonic() + GC_GRACE + 30
        while True:
            after = scrape(client)
            gone = moved(before, after, deleted, kind="blob")
            if gone >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert client.get(f"/v2/metrics/gc/manifests/{digest}").status_code == 404
    assert moved(before, after, deleted, kind="manifest") == 1
    assert moved(before, after, deleted, kind="blob") == 3
    assert moved(before, after, deleted, kind="tag") == 0
    freed = "ocinest_gc_freed_bytes_total"
    assert moved(before, after, freed, kind="manifest") == len(untagged)
    assert moved(before, after, freed, kind="blob") == len(config_bytes) + 400 + 1000
    assert moved(before, after, "ocinest_gc_runs_total", outcome="ok") >= 1
    assert moved(before, after, "ocinest_gc_runs_total", outcome="failed") == 0
    runs = moved(before, after, "ocinest_gc_runs_total", outcome="ok")
    assert moved(before, after, "ocinest_gc_duration_seconds_count") == runs
    assert value(after, "ocinest_gc_last_run_timestamp_seconds") > time.time() - 60
    assert value(after, "ocinest_storage_blobs") == 2  # the kept image's config and layer
    assert value(after, "ocinest_storage_blob_bytes") == kept_bytes


def test_an_ocinest_gc_process_shows_in_the_servers_metrics(
    server: Server, client: httpx.Client
) -> None:
    """`ocinest gc`, run as a process of its own, records its run in the metadata store;
    the server's /metrics reads it there: what went, and what the stores hold."""
    first = scrape(client)
    for name in ("ocinest_storage_manifests", "ocinest_nested_edges", "ocinest_storage_blobs"):
        assert value(first, name) == 0
    assert value(first, "ocinest_gc_last_run_timestamp_seconds") == 0
    images = [push_image(client, repo)[1] for repo in ("gauge/p/a", "gauge/p/b", "gauge/q/c")]
    images.append(push_image(client, "gauge/plain", "v1")[1])
    p = index_manifest(nested(images[0], "a"), nested(images[1], "b"))
    assert_status(push_index(client, "gauge/p", "v1", p), 201)
    assert_status(push_index(client, "gauge/q", "v1", index_manifest(nested(images[2], "c"))), 201)
    # What gc takes: an untagged image and a blob nothing references.
    _, junk = push_image(client, "gauge/plain", layers=[os.urandom(300)])
    loose = os.urandom(500)
    push_blob(client, "gauge/plain", loose)
    junk_doc = json.loads(junk)

    started = time.time()
    gc = [sys.executable, "-m", "ocinest", "gc", *server.cli_args(), "--delete-untagged"]
    r = subprocess.run(
        [*gc, "--grace", "0s"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    after = scrape(client)
    assert value(after, "ocinest_storage_manifests") == 6  # 4 images, 2 parents
    assert value(after, "ocinest_storage_repositories") == 6
    assert value(after, "ocinest_nested_indexes") == 2
    assert value(after, "ocinest_nested_edges") == 3
    sizes = [d["size"] for doc in map(json.loads, images) for d in [doc["config"], *doc["layers"]]]
    assert value(after, "ocinest_storage_blobs") == len(sizes) == 8
    assert value(after, "ocinest_storage_blob_bytes") == sum(sizes)
    deleted, freed = "ocinest_gc_last_run_deleted", "ocinest_gc_last_run_freed_bytes"
    assert value(after, deleted, kind="manifest") == 1
    assert value(after, deleted, kind="blob") == 3
    assert value(after, deleted, kind="tag") == value(after, deleted, kind="upload") == 0
    assert value(after, freed, kind="manifest") == len(junk)
    assert value(after, freed, kind="blob") == junk_doc["config"]["size"] + 300 + 500
    assert started <= value(after, "ocinest_gc_last_run_timestamp_seconds") <= time.time()
    assert 0 < value(after, "ocinest_gc_last_run_duration_seconds") < 300
    # The process's own counters are of scheduled collections only: none ran here.
    assert moved(first, after, "ocinest_gc_runs_total", outcome="ok") == 0


@pytest.fixture
def authed(tmp_path: Path) -> Iterator[Server]:
    srv = serve(tmp_path, metrics_auth=True, auth_fail_limit=2, auth_fail_limit_address=1000)
    yield srv
    srv.stop()


def test_auth_failures_by_reason_and_metrics_auth(authed: Server) -> None:
    with httpx.Client(base_url=authed.url, timeout=30) as client:
        r = client.get("/metrics")
        assert_status(r, 401)
        assert r.headers["WWW-Authenticate"].startswith("Basic ")
        assert_status(client.get("/metrics", auth=("alice", "nope")), 401)
        alice = creds("alice")
        before = scrape(client, auth=alice)
        assert_status(client.get("/v2/private/tags/list"), 401)  # anonymous
        bad = basic_header(b"bob", b"wrong")
        for _ in range(2):
            assert_status(client.get("/v2/", headers=bad), 401)
        assert_status(client.get("/v2/", headers=bad), 429)  # past auth_fail_limit=2
        assert_status(client.get("/v2/private/tags/list", auth=creds("carol")), 403)
        after = scrape(client, auth=alice)
    failures = "ocinest_auth_failures_total"
    assert moved(before, after, failures, reason="anonymous") == 1
    assert moved(before, after, failures, reason="credentials") == 2
    assert moved(before, after, failures, reason="rate_limited") == 1
    assert moved(before, after, failures, reason="denied") == 1
    assert moved(before, after, failures, reason="token") == 0


def test_metrics_open_without_auth_configured_even_with_metrics_auth(tmp_path: Path) -> None:
    srv = Server(tmp_path / "data", free_port(), settings={"metrics_auth": True})
    srv.start()
    try:
        assert_status(httpx.get(srv.url + "/metrics", timeout=30), 200)
    finally:
        srv.stop()


def test_access_log_fields(authed: Server) -> None:
    with httpx.Client(base_url=authed.url, timeout=30, auth=creds("alice")) as client:
        location = client.post("/v2/metrics/log/blobs/uploads/").headers["Location"]
        upload_id = location.rsplit("/", 1)[1]
        data = os.urandom(1000)
        r = client.patch(location, content=data)
        assert r.status_code == 202
        assert client.get("/v2/").status_code == 200
    # A line is written once its answer is sent: wait (bounded) for the last one.
    deadline = time.monotonic() + 10
    while True:
        access = [r for r in log_records(authed) if r["logger"] == "ocinest.access"]
        if access[-1]["path"] == "/v2/" or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    start, patch, base = access[-3:]
    assert (start["action"], start["upload_id"], start["bytes_in"]) == (
        "upload_start",
        upload_id,
        0,
    )
    assert (patch["method"], patch["action"], patch["upload_id"]) == ("PATCH", "upload", upload_id)
    assert (patch["user"], patch["repository"], patch["bytes_in"]) == ("alice", "metrics/log", 1000)
    assert (base["action"], base["repository"], base["upload_id"]) == ("base", None, None)
    assert base["user"] == "alice" and base["status"] == 200


def test_start_line_shows_the_configuration_with_secrets_masked(tmp_path: Path) -> None:
    secret = "s3cret-" + os.urandom(8).hex()
    settings: dict[str, object] = {"s3_secret_key": secret, "tree_max_depth": 7}
    srv = Server(tmp_path / "data", free_port(), settings=settings)
    ours = "postgres_dsn" not in srv.settings
    if ours:
        # Never used (the metadata is SQLite), but logged: its password must not be.
        srv.configure(postgres_dsn=f"postgresql://ocinest:{secret}@db.example/ocinest")
    srv.start()
    srv.stop()
    records = log_records(srv)
    line = next(r for r in records if r["message"] == "effective configuration")
    config = line["config"]
    assert config["s3_secret_key"] == "***"
    assert config["tree_max_depth"] == 7
    assert config["data"] == str(tmp_path / "data")
    if ours:
        assert config["postgres_dsn"] == "postgresql://ocinest:***@db.example/ocinest"
    assert secret not in (tmp_path / f"server-{srv.port}.log").read_text()
