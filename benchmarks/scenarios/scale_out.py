"""scale-out: ocinest against itself, 2 `ocinest serve` processes against 1, sharing one
PostgreSQL database and one S3 bucket, the load spread over both processes' ports
(round-robin, as a load balancer would). The services come from the environment when it has
them, else they are started here (not in smoke mode, which skips the scenario without
them)."""

from __future__ import annotations

import atexit
import os
import subprocess
from typing import Any

from harness.bench import Bench
from harness.client import Http, push_base_image, push_blob
from harness.common import MiB, log
from harness.load import get_load, loadgen
from harness.oci import ACCEPT_MANIFESTS
from harness.results import Row
from harness.s3count import S3Counter
from harness.servers import Server, log_exceptions, ocinest_config_server
from harness.services import ServiceError, SharedStores

REPO = "bench/scale"
GET_PATH = f"/v2/{REPO}/manifests/latest"
BLOB_SIZE = MiB
KINDS = ("get", "push")
COUNTED_PUSHES = 16  # pushes through the counted process, for the S3 figures per push


def run(bench: Bench) -> None:
    missing = SharedStores.missing_from_environment()
    if bench.smoke and missing:
        bench.skip(
            "scale-out",
            f"services absent: {', '.join(missing)} not set. Smoke mode runs it only on "
            "a PostgreSQL and an S3 that the environment provides, and starts none itself "
            "(a full run does)",
        )
        return
    stores = SharedStores()
    atexit.register(stores.stop)
    try:
        try:
            stores.start()
        except (ServiceError, subprocess.TimeoutExpired, OSError) as exc:
            bench.skip("scale-out", f"could not start the services it needs: {exc}")
            return
        _with_stores(bench, stores)
    finally:
        stores.stop()


def _with_stores(bench: Bench, stores: SharedStores) -> None:
    dsn, bucket = stores.fresh()
    settings = {
        "metadata": "postgres",
        "postgres_dsn": dsn,
        "storage": "s3",
        "s3_endpoint": stores.s3_endpoint,
        "s3_bucket": bucket,
    }
    log(
        f"scale-out: PostgreSQL from {stores.origin['postgres']}, database "
        f"{stores.database}; S3 from {stores.origin['s3']} at {stores.s3_endpoint}, "
        f"bucket {bucket}"
    )
    env = stores.server_env()
    servers: list[Server] = []
    try:
        for k in (1, 2):  # one after the other: the first creates the bucket
            server = ocinest_config_server(
                f"ocinest-s3pg-{k}", bench.work / f"scale-out-{k}", bench.logs, settings, env
            )
            servers.append(server.start())
        log(f"scale-out: processes on {', '.join(s.base for s in servers)}")
        _measure(bench, stores, servers)
        _count_s3(bench, stores, settings, env)
    finally:
        for server in reversed(servers):
            server.stop()


def _count_s3(
    bench: Bench, stores: SharedStores, settings: dict[str, Any], env: dict[str, str]
) -> None:
    """S3 requests and bytes per push: one more process, on the same stores, whose S3
    traffic passes through a counter (outside the timed rounds: the counter adds latency)."""
    counter = S3Counter(stores.s3_endpoint)
    server = ocinest_config_server(
        "ocinest-s3pg-counted",
        bench.work / "scale-out-counted",
        bench.logs,
        {**settings, "s3_endpoint": counter.endpoint},
        env,
    )
    try:
        server.start()
        counter.reset()
        spec = {
            "mode": "push-blobs",
            "base": server.base,
            "repo": f"{REPO}-counted",
            "count": COUNTED_PUSHES,
            "concurrency": 4,
            "size": BLOB_SIZE,
        }
        result = loadgen(spec, allow_errors=True)
        counts = counter.snapshot()
    finally:
        server.stop()
        counter.stop()
    pushes = max(1, result["ops"])
    per_push = {
        "requests": counts["requests"] / pushes,
        "bytes_sent": counts["bytes_sent"] / pushes,
        "bytes_read": counts["bytes_read"] / pushes,
        "server_side_copies": counts["server_side_copies"] / pushes,
    }
    bench.details["scale-out-s3"] = {
        "pushes": result["ops"],
        "totals": counts,
        "per_push": per_push,
    }
    bench.notes.append(
        f"scale-out: S3 per {BLOB_SIZE // MiB} MiB push (POST+PUT, {result['ops']} pushes "
        f"through a counting pass-through): {per_push['requests']:.1f} requests, "
        f"{per_push['bytes_sent'] / BLOB_SIZE:.2f}x the blob's bytes sent, "
        f"{per_push['bytes_read'] / BLOB_SIZE:.2f}x read back, "
        f"{per_push['server_side_copies']:.1f} server-side copies (goal: <= 5 requests, "
        "bytes written once)"
    )
    log(bench.notes[-1])


def _measure(bench: Bench, stores: SharedStores, servers: list[Server]) -> None:
    p = bench.p
    # The two processes see one registry: an image pushed through the first is read by
    # tag through the second, and a blob pushed through the second is in the first.
    with Http(servers[0].base) as h1, Http(servers[1].base) as h2:
        push_base_image(h1, REPO, tag="latest")
        h2.expect(200, "GET", GET_PATH, Accept=ACCEPT_MANIFESTS)
        digest = push_blob(h2, REPO, os.urandom(4096))
        h1.expect(200, "HEAD", f"/v2/{REPO}/blobs/{digest}")

    configs = {1: servers[:1], 2: servers}

    def push(n: int, count: int) -> dict[str, Any]:
        # A failed push is counted and reported, not fatal: the rate counts the pushes
        # that succeeded.
        spec = {
            "mode": "push-blobs",
            "base": configs[n][0].base,
            "bases": [s.base for s in configs[n]],
            "repo": f"{REPO}-push",
            "count": count,
            "concurrency": p.scale_push_concurrency,
            "size": BLOB_SIZE,
        }
        return loadgen(spec, allow_errors=True)

    def get(n: int, seconds: float) -> dict[str, Any]:
        # Two wrk threads in both cases: the client is the same, only where it sends
        # its connections differs.
        return get_load(bench, configs[n][0], seconds, GET_PATH, spread=configs[n], threads=2)

    for n in configs if p.scale_warmup else ():  # connections, pools, caches
        get(n, p.get_warmup)
        push(n, 2 * p.scale_push_concurrency)

    raw: dict[str, dict[int, list[dict[str, Any]]]] = {kind: {1: [], 2: []} for kind in KINDS}
    for r in range(p.scale_rounds):
        order = [1, 2] if r % 2 == 0 else [2, 1]  # alternate which goes first
        for kind in KINDS:
            for n in order:
                cpu0 = [s.cpu() for s in servers]
                svc0 = stores.cpu()
                result = get(n, p.get_seconds) if kind == "get" else push(n, p.scale_blobs)
                result["server_cpu_s"] = [
                    round(s.cpu() - c, 3) for s, c in zip(servers, cpu0, strict=True)
                ]
                result["services_cpu_s"] = {
                    k: round(v - svc0[k], 3) for k, v in stores.cpu().items()
                }
                result["load_average_1min"] = os.getloadavg()[0]
                raw[kind][n].append(result)
        g, u = raw["get"], raw["push"]
        log(
            f"scale-out round {r + 1}: manifest GET 1 process {g[1][-1]['rate']:.0f}/s, "
            f"2 processes {g[2][-1]['rate']:.0f}/s; 1 MiB push 1 process "
            f"{u[1][-1]['rate']:.1f}/s, 2 processes {u[2][-1]['rate']:.1f}/s"
        )
    bench.details["scale-out"] = {
        "postgres": stores.origin["postgres"],
        "s3": stores.origin["s3"],
        "processes": [{"label": s.label, "port": s.port} for s in servers],
        "load_generators": {
            "get": f"{raw['get'][1][0]['tool']}, 2 threads, {p.get_concurrency} connections",
            "push": f"aiohttp loadgen, {p.scale_push_concurrency} concurrent, round-robin",
        },
        "rounds": {kind: {f"{n}p": v for n, v in by.items()} for kind, by in raw.items()},
    }
    failed = {n: sum(x["errors"] for x in raw["push"][n]) for n in configs}
    if any(failed.values()):
        total = len(raw["push"][1]) * p.scale_blobs
        kinds = sorted({x["first_error"] for n in configs for x in raw["push"][n] if x["errors"]})
        bench.notes.append(
            f"scale-out: pushes failed: {failed[1]} of {total} with 1 process, {failed[2]} of "
            f"{total} with 2 processes (first errors: {'; '.join(kinds)}). The registry "
            "processes logged: " + ("; ".join(log_exceptions(servers)) or "nothing")
        )
        log(bench.notes[-1])
    if stores.pids:
        bench.notes.append(
            "scale-out: PostgreSQL and/or Ceph were started by the harness on this machine, "
            "so they share its cores with the registry processes and the load generator; "
            "their CPU seconds per run are in results.json (details.scale-out)"
        )
    _add_rows(bench, raw, failed)


def _add_rows(
    bench: Bench, raw: dict[str, dict[int, list[dict[str, Any]]]], failed: dict[int, int]
) -> None:
    p = bench.p
    tool = raw["get"][1][0]["tool"]
    title = "scale-out, S3 + PostgreSQL, 2 processes vs 1"
    for kind, what, unit in (
        ("get", f"manifest GET by tag, c={p.get_concurrency} ({tool}, 2 threads)", "req/s"),
        (
            "push",
            f"{BLOB_SIZE // MiB} MiB blob push (POST+PUT), {p.scale_push_concurrency} concurrent",
            "blobs/s",
        ),
    ):
        two, one = raw[kind][2], raw[kind][1]
        if kind == "push" and any(failed.values()):
            what += f" (failed pushes: {failed[2]} with 2 processes, {failed[1]} with 1)"
        bench.add(
            Row(
                f"scale-out-{kind}",
                f"{title}: {what}",
                unit,
                True,
                [x["rate"] for x in two],
                [x["rate"] for x in one],
                base_name="1 process",
            )
        )
        bench.add(
            Row(
                f"scale-out-{kind}-p99",
                f"  … {'manifest GET' if kind == 'get' else 'push'} p99 latency, 2 processes vs 1",
                "ms",
                False,
                [x["p99_ms"] for x in two],
                [x["p99_ms"] for x in one],
                base_name="1 process",
            )
        )
        # CPU seconds of both registry processes per operation, in µs (GET) or ms (push)
        scale = 1e6 if kind == "get" else 1e3
        bench.add(
            Row(
                f"scale-out-{kind}-cpu",
                "  … CPU of the registry processes (together) per "
                + ("request" if kind == "get" else "blob"),
                "µs" if kind == "get" else "ms",
                False,
                [scale * sum(x["server_cpu_s"]) / max(1, x["ops"]) for x in two],
                [scale * sum(x["server_cpu_s"]) / max(1, x["ops"]) for x in one],
                base_name="1 process",
            )
        )
