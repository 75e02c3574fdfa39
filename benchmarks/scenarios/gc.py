"""gc: `ocinest gc --delete-untagged --grace 0s` on a copy of a big data folder built by
seed_gc.py, checked to delete exactly what it must, while a thread keeps pushing (a blob and
a tagged manifest at a time) and afterwards finds everything it pushed still there."""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.bench import Bench
from harness.client import Http, push_base_image, push_blob, put_manifest
from harness.common import log, python_script, run_checked
from harness.oci import ACCEPT_MANIFESTS, image_manifest
from harness.results import Row
from harness.servers import Server, ocinest_server, serving


def seed(bench: Bench) -> tuple[Path, dict[str, Any]]:
    """The GC scenario's data folder and seed_gc.py's summary of it (built once, then
    copied for each use; the tree-scale scenario uses it too)."""
    if bench.gc_seed is None:
        p = bench.p
        seed_dir = bench.work / "gc-seed"
        out = run_checked(
            [
                *python_script("seed_gc.py"),
                str(seed_dir),
                "--repos",
                str(p.gc_repos),
                "--manifests-per-repo",
                str(p.gc_per_repo),
            ],
            "seed_gc.py",
            timeout=1200,
        )
        summary = json.loads(out.strip().splitlines()[-1])
        log(
            f"gc seed: {summary['manifests']:,} manifests in {summary['repositories']} "
            f"repositories in {summary['seconds']}s (through the storage classes)"
        )
        bench.gc_seed = (seed_dir, summary)
    return bench.gc_seed


@contextlib.contextmanager
def serving_seed_copy(bench: Bench, label: str, folder: str) -> Iterator[tuple[Server, Path]]:
    """An ocinest on a fresh copy (bench.work/`folder`) of the seeded data folder, and that
    folder; both gone at the end."""
    seed_dir, _ = seed(bench)
    data = bench.work / folder
    subprocess.run(["cp", "-a", str(seed_dir), str(data)], check=True)
    with serving(ocinest_server(label, data, bench.logs), scratch=data) as server:
        yield server, data


def run(bench: Bench) -> None:
    p = bench.p
    _, summary = seed(bench)
    raw: list[dict[str, Any]] = []
    for r in range(p.gc_rounds):
        with serving_seed_copy(bench, f"ocinest-gc-{r}", f"gc-{r}") as (server, data):
            result = _gc_round(bench, server, data)
        if result["deleted_manifests"] != summary["expect_deleted_manifests"] or (
            result["deleted_blobs"] != summary["expect_deleted_blobs"]
        ):
            raise RuntimeError(f"gc deleted the wrong things: {result} vs {summary}")
        raw.append(result)
        log(
            f"gc round {r + 1}: {result['wall_s']:.1f}s, deleted "
            f"{result['deleted_manifests']:,} manifests and {result['deleted_blobs']} blobs; "
            f"{result['pushes']} pushes during it, p50 {result['push_p50_ms']:.0f} ms, "
            f"max {result['push_max_ms']:.0f} ms"
        )
    bench.details["gc"] = {"seed": summary, "rounds": raw}
    manifests = summary["manifests"]
    total = f"{manifests // 1000}k" if manifests >= 10_000 else manifests
    bench.add(
        Row(
            "gc",
            f"GC --delete-untagged --grace 0s, {total} manifests "
            f"({summary['expect_deleted_manifests']:,} deleted)",
            "s",
            False,
            [x["wall_s"] for x in raw],
            goal="< 60 s",
            max_value=60,
        )
    )
    pushes = sum(x["pushes"] for x in raw)
    bench.add(
        Row(
            "gc-push-p50",
            f"  … push (blob + tagged manifest) while GC runs, p50 ({pushes} pushes, all ok)",
            "ms",
            False,
            [x["push_p50_ms"] for x in raw],
        )
    )
    bench.add(
        Row(
            "gc-push-max",
            "  … push while GC runs, slowest",
            "ms",
            False,
            [x["push_max_ms"] for x in raw],
        )
    )


def _gc_round(bench: Bench, server: Server, data: Path) -> dict[str, Any]:
    h = Http(server.base)
    repo = "gc/live"
    cd, _ = push_base_image(h, repo, tag="base")
    stop = threading.Event()
    pushes: list[tuple[str, str, float]] = []
    failures: list[str] = []

    def pusher() -> None:
        k = 0
        while not stop.is_set():
            layer = f"pushed during gc {k} {time.time_ns()}".encode()
            start = time.perf_counter()
            try:
                lay = (push_blob(h, repo, layer), len(layer))
                put_manifest(h, repo, f"w{k}", image_manifest(cd, lay))
            except Exception as exc:
                failures.append(str(exc))
            else:
                pushes.append((f"w{k}", lay[0], (time.perf_counter() - start) * 1000))
            k += 1
            stop.wait(bench.p.gc_push_gap)

    thread = threading.Thread(target=pusher)
    start = time.perf_counter()
    gc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ocinest",
            "gc",
            "--data",
            str(data),
            "--delete-untagged",
            "--grace",
            "0s",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    thread.start()
    stdout, stderr = gc.communicate(timeout=1800)
    wall = time.perf_counter() - start
    stop.set()
    thread.join()
    if gc.returncode != 0:
        raise RuntimeError(f"ocinest gc failed ({gc.returncode}): {stderr[-2000:]}")
    report = json.loads(stdout)
    if failures:
        raise RuntimeError(f"{len(failures)} pushes failed while GC ran: {failures[0]}")
    if not pushes:
        raise RuntimeError("no push completed while GC ran")
    # Everything pushed during the collection is still there.
    for tag, layer, _ in pushes:
        h.expect(200, "GET", f"/v2/{repo}/manifests/{tag}", Accept=ACCEPT_MANIFESTS)
        h.expect(200, "HEAD", f"/v2/{repo}/blobs/{layer}")
    h.close()
    times = sorted(x[2] for x in pushes)
    return {
        "wall_s": wall,
        "reported_s": report["seconds"],
        "deleted_manifests": len(report["manifests"]),
        "deleted_blobs": len(report["blobs"]),
        "pushes": len(pushes),
        "push_p50_ms": statistics.median(times),
        "push_max_ms": times[-1],
    }
