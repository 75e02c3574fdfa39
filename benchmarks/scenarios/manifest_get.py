"""manifest-get: GET by tag with a stock client's Accept header, many connections for a few
seconds per run (wrk with manifest_get.lua, or loadgen.py without wrk): ocinest with 1 and
with 2 worker processes against the reference."""

from __future__ import annotations

from harness.bench import Bench
from harness.client import Http, push_base_image
from harness.load import get_load
from harness.results import Row
from harness.rounds import interleave, with_server_cpu
from harness.servers import ocinest_server, serving


def run(bench: Bench) -> None:
    p = bench.p
    for server in bench.pair:
        with Http(server.base) as h:
            push_base_image(h, "bench/get", tag="latest")
    assert bench.oci is not None and bench.ref is not None
    # A second ocinest, with 2 workers, on the same data folder.
    two_workers = ocinest_server("ocinest-2w", bench.work / "ocinest", bench.logs, workers=2)
    with serving(two_workers) as two:
        targets = [bench.oci, bench.ref, two]
        for server in targets:
            get_load(bench, server, p.get_warmup)
        raw = interleave(
            bench,
            "manifest GET",
            targets,
            lambda server, r: with_server_cpu(
                server, lambda: get_load(bench, server, p.get_seconds)
            ),
            lambda x: f"{x['rate']:.0f}/s p99 {x['p99_ms']:.2f} ms",
        )
    bench.details["manifest-get"] = raw
    ref = raw["reference"]
    tool = ref[0]["tool"]
    # Issue 17's goals: the rate against the reference, and with 2 workers a p99 under 3 ms.
    for label, workers, min_ratio, max_p99 in (("ocinest", 1, 8, 10), ("ocinest-2w", 2, 12, 3)):
        ours = raw[label]
        w = f"{workers} worker{'s' if workers > 1 else ''}"
        bench.add(
            Row(
                f"manifest-get-{workers}w",
                f"manifest GET by tag, c={p.get_concurrency} ({tool}), ocinest {w}",
                "req/s",
                True,
                [x["rate"] for x in ours],
                [x["rate"] for x in ref],
                goal=f">= {min_ratio}x ref",
                min_ratio=min_ratio,
            )
        )
        bench.add(
            Row(
                f"manifest-get-{workers}w-p50",
                f"  … p50 latency, ocinest {w}",
                "ms",
                False,
                [x["p50_ms"] for x in ours],
                [x["p50_ms"] for x in ref],
            )
        )
        bench.add(
            Row(
                f"manifest-get-{workers}w-p99",
                f"  … p99 latency, ocinest {w}",
                "ms",
                False,
                [x["p99_ms"] for x in ours],
                [x["p99_ms"] for x in ref],
                goal=f"p99 < {max_p99} ms",
                max_value=max_p99,
            )
        )
