"""The Prometheus metrics of the registry (one process's; docs/operations.md lists them).

Defined here, apart from the code that serves them, so that any part of the registry can
count without importing the web layer."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from ocinest.storage.meta import GCRun

REQUESTS = Counter(
    "ocinest_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
LATENCY = Histogram(
    "ocinest_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 10, 60),
)
RECEIVED = Counter("ocinest_http_received_bytes", "Bytes of request bodies received", ["route"])
SENT = Counter("ocinest_http_sent_bytes", "Bytes of response bodies sent", ["route"])
UPLOADS = Gauge(
    "ocinest_uploads_in_progress",
    "Upload sessions this process started minus those it ended (finished, cancelled or "
    "expired by scheduled gc): per process, so sum over the workers, where a session "
    "started in one worker and ended in another adds up to none",
)
AUTH_FAILURES = Counter(
    "ocinest_auth_failures",
    "Requests refused for who is asking (401, 403 and 429), by reason",
    ["reason"],
)
TREE_BYTES = Histogram(
    "ocinest_tree_response_bytes",
    "Size of the tree endpoint's answers (serialized JSON)",
    buckets=tuple(1 << n for n in range(10, 26, 2)),  # 1 KiB to 16 MiB, by 4
)
GC_RUNS = Counter(
    "ocinest_gc_runs", "Scheduled garbage collections (with retention) by outcome", ["outcome"]
)
GC_DELETED = Counter(
    "ocinest_gc_deleted",
    "What scheduled garbage collection removed: tags (by retention), manifests, blobs and "
    "upload sessions",
    ["kind"],
)
GC_FREED = Counter(
    "ocinest_gc_freed_bytes", "Bytes of manifests and blobs scheduled gc deleted", ["kind"]
)
GC_SECONDS = Histogram(
    "ocinest_gc_duration_seconds",
    "Time a scheduled garbage collection took",
    buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
)
# The last collection that went through, whichever process ran it (scheduled in `serve`, or
# `ocinest gc`): read from the metadata store at each scrape (`show_gc_run`), so every worker
# and every server over the same stores shows the same.
GC_LAST = Gauge(
    "ocinest_gc_last_run_timestamp_seconds",
    "When the last garbage collection that went through ended (scheduled or ocinest gc)",
)
GC_LAST_SECONDS = Gauge(
    "ocinest_gc_last_run_duration_seconds", "How long the last garbage collection took"
)
GC_LAST_DELETED = Gauge(
    "ocinest_gc_last_run_deleted",
    "What the last garbage collection removed: tags (by retention), manifests, blobs and "
    "upload sessions",
    ["kind"],
)
GC_LAST_FREED = Gauge(
    "ocinest_gc_last_run_freed_bytes",
    "Bytes of manifests and blobs the last garbage collection deleted",
    ["kind"],
)
STORED_BLOBS = Gauge("ocinest_storage_blobs", "Distinct blobs stored, as the last gc counted them")
STORED_BLOB_BYTES = Gauge(
    "ocinest_storage_blob_bytes", "Bytes of the blobs stored, as the last gc counted them"
)
STORED_MANIFESTS = Gauge(
    "ocinest_storage_manifests",
    "Manifests stored (one per repository and digest), as the last gc counted them",
)
STORED_REPOSITORIES = Gauge(
    "ocinest_storage_repositories", "Repositories (as the catalog lists them), at the last gc"
)
NESTED_INDEXES = Gauge(
    "ocinest_nested_indexes", "Indexes with at least one nested descriptor, at the last gc"
)
NESTED_EDGES = Gauge("ocinest_nested_edges", "Nested descriptors of those indexes, at the last gc")


def show_gc_run(run: GCRun) -> None:
    """Set the gauges of the last collection from its record."""
    GC_LAST.set(run.finished_at)
    GC_LAST_SECONDS.set(run.seconds)
    for kind, count in run.deleted.items():
        GC_LAST_DELETED.labels(kind).set(count)
    for kind, size in run.freed.items():
        GC_LAST_FREED.labels(kind).set(size)
    counted = run.inventory
    STORED_BLOBS.set(counted.blobs)
    STORED_BLOB_BYTES.set(counted.blob_bytes)
    STORED_MANIFESTS.set(counted.manifests)
    STORED_REPOSITORIES.set(counted.repositories)
    NESTED_INDEXES.set(counted.nested_indexes)
    NESTED_EDGES.set(counted.nested_edges)


# Every label value from the start, so that a dashboard's rate() sees the first one.
for _reason in ("anonymous", "credentials", "token", "scheme", "scope", "denied", "rate_limited"):
    AUTH_FAILURES.labels(_reason)
for _kind in ("tag", "manifest", "blob", "upload"):
    GC_DELETED.labels(_kind)
    GC_LAST_DELETED.labels(_kind)
for _kind in ("manifest", "blob"):
    GC_FREED.labels(_kind)
    GC_LAST_FREED.labels(_kind)
for _outcome in ("ok", "failed"):
    GC_RUNS.labels(_outcome)
