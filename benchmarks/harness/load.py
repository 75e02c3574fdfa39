"""Load generators in their own processes: loadgen.py (aiohttp) and wrk (with
manifest_get.lua), so that the client never shares an interpreter with the harness."""

from __future__ import annotations

import json
import os
import resource
import subprocess
from typing import Any

from harness.bench import Bench
from harness.common import BENCH_DIR, log, python_script, run_checked
from harness.oci import ACCEPT_MANIFESTS
from harness.servers import Server


def loadgen(spec: dict[str, Any], allow_errors: bool = False) -> dict[str, Any]:
    """Run loadgen.py with `spec`; its failed operations raise unless `allow_errors` (then
    they are in the result's `errors`, and its rate counts only the operations that
    succeeded)."""
    out = run_checked([*python_script("loadgen.py"), json.dumps(spec)], "loadgen", timeout=900)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    if result.get("errors") and not allow_errors:
        raise RuntimeError(f"loadgen {spec['mode']}: {result['errors']} errors: {result}")
    return result


def wrk_argv(wrk: str, url: str, threads: int, connections: int, seconds: float) -> list[str]:
    """wrk GETting `url` with the Accept header of a stock client (manifest_get.lua)."""
    return [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "-s",
        str(BENCH_DIR / "manifest_get.lua"),
        url,
    ]


def get_load(
    bench: Bench,
    server: Server,
    seconds: float,
    path: str = "/v2/bench/get/manifests/latest",
    spread: list[Server] | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """GET `path` with get_concurrency connections for `seconds`, by wrk (`threads`
    threads) or else the aiohttp load generator. With `spread`, the connections are
    divided among those servers (wrk: thread k goes to server k modulo their number)."""
    p = bench.p
    if bench.wrk is None:
        result = loadgen(
            {
                "mode": "get",
                "base": server.base,
                "bases": [s.base for s in spread] if spread else None,
                "path": path,
                "accept": ACCEPT_MANIFESTS,
                "concurrency": p.get_concurrency,
                "duration": seconds,
            }
        )
        result["tool"] = "aiohttp loadgen"
        return result
    cmd = wrk_argv(bench.wrk, f"{server.base}{path}", threads, p.get_concurrency, seconds)
    env = {k: v for k, v in os.environ.items() if k != "WRK_TARGETS"}
    if spread:
        env["WRK_TARGETS"] = ",".join(f"127.0.0.1:{s.port}" for s in spread)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, env=env)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result: {out.stdout[-1000:]} {out.stderr}")
    w = json.loads(line[len("WRKJSON ") :])
    if w["errors_status"]:
        raise RuntimeError(f"wrk against {server.label}: non-200 answers: {w}")
    errors = sum(w[k] for k in w if k.startswith("errors_"))
    if errors:  # connections broken off: kept, counted and reported
        who = "+".join(s.label for s in spread) if spread else server.label
        bench.notes.append(
            f"manifest GET: {who} broke off connections in one run "
            f"({errors} socket errors: {w}); see its log"
        )
        log(bench.notes[-1])
    return {
        "tool": "wrk",
        "threads": threads,
        "socket_errors": errors,
        "ops": w["requests"],
        "client_cpu_s": (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime),
        "rate": w["requests"] / (w["duration_us"] / 1e6),
        "p50_ms": w["p50_us"] / 1000,
        "p99_ms": w["p99_us"] / 1000,
        "raw": w,
    }
