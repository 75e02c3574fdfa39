"""A small aiohttp load generator, run by benchmarks/run.py in its own process so that the
client never shares an interpreter (or a GIL) with the harness.

    python benchmarks/loadgen.py '<json spec>'

prints one JSON object on stdout. Modes:

* ``push-blobs``: ``count`` monolithic POST+PUT uploads of ``size``-byte blobs of unique
  content, ``concurrency`` at a time (the OCI "POST then PUT" form, which every registry
  takes; a single-POST upload is not supported by distribution 2.8).
* ``put-manifests``: ``count`` image manifests of unique content PUT by tag, ``concurrency``
  at a time; the config and layer they name must already be in the repository.
* ``get``: GET ``path`` with ``concurrency`` connections for ``duration`` seconds (used for
  the manifest GET scenario only when wrk is not available).

Every mode reports operations, seconds, rate, latency percentiles, errors and the CPU
seconds the generator itself used (to tell a client-bound result).

With ``bases`` (a list of base URLs) instead of ``base``, the load is spread over several
registry processes as a round-robin load balancer would: operation i (its POST and its PUT
together) goes to ``bases[i % len(bases)]``, and in ``get`` mode connection k to
``bases[k % len(bases)]``. One process's counts are in ``per_base``.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
import urllib.parse
from typing import Any

import aiohttp
from harness.oci import OCI_MANIFEST, image_manifest, sha256


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def _bases(spec: dict[str, Any]) -> list[str]:
    bases = spec.get("bases") or [spec["base"]]
    return [str(b) for b in bases]


def _with_digest(base: str, location: str, digest: str) -> str:
    url = urllib.parse.urljoin(base + "/", location)
    sep = "&" if urllib.parse.urlsplit(url).query else "?"
    return f"{url}{sep}digest={urllib.parse.quote(digest)}"


async def _push_blob(session: aiohttp.ClientSession, base: str, repo: str, data: bytes) -> None:
    digest = sha256(data)
    async with session.post(f"{base}/v2/{repo}/blobs/uploads/") as r:
        await r.read()
        if r.status != 202:
            raise RuntimeError(f"POST upload: {r.status}")
        location = r.headers["Location"]
    async with session.put(
        _with_digest(base, location, digest),
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    ) as r:
        await r.read()
        if r.status != 201:
            raise RuntimeError(f"PUT upload: {r.status}")


def _manifest(spec: dict[str, Any], i: int) -> bytes:
    return image_manifest(
        (spec["config_digest"], spec["config_size"]),
        (spec["layer_digest"], spec["layer_size"]),
        **{"bench.run": spec["prefix"], "bench.i": str(i)},
    )


async def _put_manifest(
    session: aiohttp.ClientSession, base: str, spec: dict[str, Any], i: int, body: bytes
) -> None:
    url = f"{base}/v2/{spec['repo']}/manifests/{spec['prefix']}-{i}"
    async with session.put(url, data=body, headers={"Content-Type": OCI_MANIFEST}) as r:
        await r.read()
        if r.status != 201:
            raise RuntimeError(f"PUT manifest: {r.status} {(await r.text())[:200]}")


async def _run_ops(spec: dict[str, Any]) -> dict[str, Any]:
    count, concurrency = int(spec["count"]), int(spec["concurrency"])
    mode = spec["mode"]
    bases = _bases(spec)
    per_base = [0] * len(bases)
    run_id = os.urandom(8)
    # Inputs are made before the clock starts.
    if mode == "push-blobs":
        size = int(spec["size"])
        pad = os.urandom(max(0, size - 24))
        payloads: list[bytes] = [
            (run_id + i.to_bytes(8, "big") + pad)[:size].ljust(size, b"\0") for i in range(count)
        ]
    else:
        payloads = [_manifest(spec, i) for i in range(count)]
    latencies: list[float] = []
    errors: list[str] = []
    next_index = 0
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal next_index
            while next_index < count:
                i = next_index
                next_index += 1
                b = i % len(bases)
                t0 = time.perf_counter()
                try:
                    if mode == "push-blobs":
                        await _push_blob(session, bases[b], spec["repo"], payloads[i])
                    else:
                        await _put_manifest(session, bases[b], spec, i, payloads[i])
                except Exception as exc:
                    errors.append(str(exc))
                    continue
                latencies.append(time.perf_counter() - t0)
                per_base[b] += 1

        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    latencies.sort()
    return {
        "ops": len(latencies),
        "seconds": seconds,
        "rate": len(latencies) / seconds if seconds > 0 else 0.0,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "client_cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        "per_base": per_base,
    }


async def _run_get(spec: dict[str, Any]) -> dict[str, Any]:
    urls = [base + spec["path"] for base in _bases(spec)]
    per_base = [0] * len(urls)
    headers = {"Accept": spec.get("accept", "*/*")}
    duration = float(spec["duration"])
    concurrency = int(spec["concurrency"])
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = 0.0

        async def worker(k: int) -> None:
            nonlocal errors
            b = k % len(urls)
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                async with session.get(urls[b], headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                        continue
                latencies.append(time.perf_counter() - t0)
                per_base[b] += 1

        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        deadline = start + duration
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        seconds = time.perf_counter() - start
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    latencies.sort()
    return {
        "ops": len(latencies),
        "per_base": per_base,
        "seconds": seconds,
        "rate": len(latencies) / seconds,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "errors": errors,
        "client_cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    runner = _run_get if spec["mode"] == "get" else _run_ops
    print(json.dumps(asyncio.run(runner(spec))))


if __name__ == "__main__":
    main()
