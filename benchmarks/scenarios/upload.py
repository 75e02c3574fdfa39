"""upload: big blobs of fresh content, monolithic (POST, then PUT of the whole body) and
chunked (PATCHes with Content-Range, then PUT), beside the no-HTTP upload path measured in
the same rounds."""

from __future__ import annotations

import time
from typing import Any

from harness.bench import Bench
from harness.ceilings import ceiling_upload_path, warm_free_memory
from harness.client import Http, push_blob, push_chunked
from harness.common import MiB, log
from harness.results import Row

REPO = "bench/upload"  # the download scenario reads the last blob uploaded here
KINDS = ("mono", "chunked")
# Issue 17's goals: the monolithic upload near the machine's limit; the chunked one (16
# requests) a little below it, and well ahead of the reference.
GOALS: dict[str, dict[str, Any]] = {
    "mono": {"goal": ">= 90% ceiling", "min_ceiling_pct": 90},
    "chunked": {"goal": ">= 3x ref, >= 80% ceiling", "min_ratio": 3, "min_ceiling_pct": 80},
}


def run(bench: Bench) -> None:
    p = bench.p
    size = p.blob_mib * MiB
    ceiling: list[float] = []
    samples: dict[str, dict[str, list[float]]] = {
        kind: {s.label: [] for s in bench.pair} for kind in KINDS
    }
    cpu: dict[str, list[float]] = {s.label: [] for s in bench.pair}
    clients = {s.label: Http(s.base) for s in bench.pair}
    for r in bench.rounds():
        ceiling.append(ceiling_upload_path(size, bench.work))
        for kind in KINDS:
            for server in bench.pair:
                data, digest = bench.fresh_blob()
                h = clients[server.label]
                warm_free_memory()
                cpu0 = server.cpu()
                start = time.perf_counter()
                if kind == "mono":
                    push_blob(h, REPO, data, digest)
                else:
                    push_chunked(h, REPO, data, p.chunk_mib * MiB, digest)
                seconds = time.perf_counter() - start
                cpu[server.label].append(server.cpu() - cpu0)
                samples[kind][server.label].append(size / MiB / seconds)
                bench.uploaded[server.label] = digest
        log(
            f"upload round {r + 1}: ceiling {ceiling[-1]:.0f} MiB/s; mono ocinest "
            f"{samples['mono']['ocinest'][-1]:.0f} reference "
            f"{samples['mono']['reference'][-1]:.0f}; chunked ocinest "
            f"{samples['chunked']['ocinest'][-1]:.0f} reference "
            f"{samples['chunked']['reference'][-1]:.0f} MiB/s"
        )
    for h in clients.values():
        h.close()
    bench.details["upload_server_cpu_s_per_upload"] = cpu
    bench.add(
        Row(
            "ceiling-upload-path",
            "ceiling: socket → sha256 → write → fsync (no HTTP)",
            "MiB/s",
            True,
            ceiling,
        )
    )
    for kind, title in (
        ("mono", f"blob upload {p.blob_mib} MiB, monolithic (POST+PUT)"),
        ("chunked", f"blob upload {p.blob_mib} MiB, chunked ({p.chunk_mib} MiB PATCHes)"),
    ):
        bench.add(
            Row(
                f"upload-{kind}",
                title,
                "MiB/s",
                True,
                samples[kind]["ocinest"],
                samples[kind]["reference"],
                ceiling=ceiling,
                **GOALS[kind],
            )
        )
