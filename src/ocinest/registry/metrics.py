"""The Prometheus metrics of the registry (one process's; docs/operations.md lists them).

Defined here, apart from the code that serves them, so that any part of the registry can
count without importing the web layer."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
GC_LAST = Gauge(
    "ocinest_gc_last_run_timestamp_seconds", "When the last scheduled gc of this process ended"
)
STORED_BLOBS = Gauge(
    "ocinest_storage_blobs", "Distinct blobs stored, as counted by the last scheduled gc"
)
STORED_BLOB_BYTES = Gauge(
    "ocinest_storage_blob_bytes", "Bytes of the blobs stored, as counted by the last scheduled gc"
)

# Every label value from the start, so that a dashboard's rate() sees the first one.
for _reason in ("anonymous", "credentials", "token", "scheme", "scope", "denied", "rate_limited"):
    AUTH_FAILURES.labels(_reason)
for _kind in ("tag", "manifest", "blob", "upload"):
    GC_DELETED.labels(_kind)
for _kind in ("manifest", "blob"):
    GC_FREED.labels(_kind)
for _outcome in ("ok", "failed"):
    GC_RUNS.labels(_outcome)
