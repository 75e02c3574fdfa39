"""push: many small blobs, POST+PUT, concurrent, from loadgen.py."""

from __future__ import annotations

from typing import Any

from harness.bench import Bench
from harness.rounds import rate_rounds
from harness.servers import Server


def run(bench: Bench) -> None:
    p = bench.p

    def spec(server: Server, r: int) -> dict[str, Any]:
        return {
            "mode": "push-blobs",
            "base": server.base,
            "repo": "bench/small",
            "count": p.small_count,
            "concurrency": p.push_concurrency,
            "size": p.small_size,
        }

    rate_rounds(
        bench,
        "push",
        f"{p.small_size // 1024} KiB blob push (POST+PUT), {p.push_concurrency} concurrent",
        "blobs/s",
        spec,
        min_ratio=3,
    )
