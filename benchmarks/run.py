#!/usr/bin/env python3
"""ocinest benchmarks: ocinest against the reference registry (CNCF distribution 2.8, Debian's
`docker-registry`) and against the machine's own limits, as ratios measured side by side.

    python benchmarks/run.py [--smoke] [--out DIR] [--only NAMES] [--keep]

Installs what it needs when missing (apt: docker-registry, wrk, and for the rpm scenario
nginx, dnf, rpm, createrepo-c; pip: matplotlib), starts ocinest and the reference on free
loopback ports with data in a temporary folder, runs every scenario interleaved (ocinest,
reference, ocinest, reference, ...) for several rounds, and prints a table of medians, min-max
and ratios with the goals beside them. Writes results.json, table.md and chart.png to --out
(default benchmarks/results/).

The ratio column is always "how many times better ocinest is": ocinest / reference for
rates, reference / ocinest for times. `--smoke` runs every scenario tiny (seconds) so that
CI keeps the harness alive; its numbers mean nothing.

The scale-out scenario compares ocinest with itself instead: 2 `ocinest serve` processes
against 1, over one shared PostgreSQL database and S3 bucket (the ratio is 2 processes /
1 process). It uses OCINEST_TEST_POSTGRES and S3_ENDPOINT (+ AWS keys) when set, and
otherwise starts a throw-away PostgreSQL and Ceph S3 itself (scripts/), except in smoke mode,
where it is skipped without them.

The rpm scenario times `ocinest rpm push` of 1,000 RPMs, then dnf (makecache + install) from
ocinest's files view against Debian's nginx serving the same files (the ratio is nginx /
ocinest).

Each scenario is a module of scenarios/ (scenarios/manifest_get.py for `manifest-get`); what
they share (servers, services, client, load generators, rounds, results) is in harness/.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from harness import report
from harness.bench import FULL, SMOKE, Bench
from harness.common import BENCH_DIR, log
from harness.install import (
    MATPLOTLIB_PIN,
    RPM_TOOLS,
    UI_TOOLS,
    compile_project,
    copy_command_available,
    ensure_apt,
    ensure_pip,
    ensure_project_python,
)
from harness.servers import stop_all
from scenarios import SCENARIOS


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark ocinest against the reference registry and the machine's limits."
    )
    parser.add_argument("--smoke", action="store_true", help="every scenario tiny, in seconds")
    parser.add_argument(
        "--out",
        type=Path,
        default=BENCH_DIR / "results",
        help="where results go [benchmarks/results]",
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated scenarios to run (default all): {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder and logs")
    args = parser.parse_args()
    only = [s for s in args.only.split(",") if s] or list(SCENARIOS)
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")

    ensure_project_python(Path(__file__))
    compile_project()
    ensure_pip("matplotlib", MATPLOTLIB_PIN)
    tools = {"docker-registry": "docker-registry", "wrk": "wrk"}
    if "copy" in only and copy_command_available():
        tools["skopeo"] = "skopeo"
    if "rpm" in only:
        tools.update(RPM_TOOLS)
    if "ui-tree" in only:
        tools.update(UI_TOOLS)
    still = ensure_apt(tools)
    if "docker-registry" in still:
        sys.exit(
            "the reference registry (Debian's docker-registry) is missing and could not be "
            "installed"
        )
    if "wrk" in still:
        log("wrk is missing: the manifest GET scenario uses the aiohttp load generator")

    params = SMOKE if args.smoke else FULL
    work = args.work or Path(tempfile.mkdtemp(prefix="ocinest-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench = Bench(params, work, args.smoke)
    log(f"{'smoke' if args.smoke else 'full'} run, scratch in {work}, scenarios: {', '.join(only)}")
    start = time.monotonic()
    try:
        bench.start_main()
        for name, scenario in SCENARIOS.items():
            if name in only:
                t = time.monotonic()
                scenario(bench)
                bench.load[name] = [round(x, 2) for x in os.getloadavg()]
                seconds = time.monotonic() - t
                log(f"{name}: done in {seconds:.1f}s (load average {bench.load[name][0]})")
        report.write(bench, args.out, time.monotonic() - start, only)
    finally:
        stop_all()
        if not args.keep:
            t = time.monotonic()
            log(f"removing scratch {work} (the reference's many folders take this disk minutes)")
            shutil.rmtree(work, ignore_errors=True)
            log(f"scratch {work} removed in {time.monotonic() - t:.1f}s")
        else:
            log(f"scratch kept in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
