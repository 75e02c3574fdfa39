#!/usr/bin/env python3
"""Profile an ocinest server under one benchmark load with py-spy, and print where the time
goes (own time by function, and time inside functions, per thread kind).

    python benchmarks/profile.py {manifest-get,upload,upload-chunked,tree,walk}
                                 [--seconds N] [--workers N] [--idle] [--out DIR]

Starts `ocinest serve` on a scratch folder, seeds what the load needs, records the server
with `py-spy record --format raw` (installed into this environment when missing) while the
load runs, and writes the collapsed stacks (DIR/<load>.txt, loadable by speedscope or
flamegraph.pl) and a summary (DIR/<load>-top.txt). Profiling slows the server; read shares,
not speeds.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness.client import Http, push_base_image, push_blob, push_chunked
from harness.common import BENCH_DIR, MiB, python_script
from harness.load import wrk_argv
from harness.oci import sha256
from harness.servers import children, ocinest_server
from scenarios.tree import seed_nested_tree, tree_url, walk

PY_SPY_PIN = "py-spy==0.4.3"


def py_spy() -> str:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", PY_SPY_PIN], check=True)
        exe = str(Path(sys.executable).parent / "py-spy")
    return exe


# Leaf frames of a thread that waits (py-spy cannot always tell a blocked thread from a
# running one): counted as waiting, left out of the shares.
IDLE_LEAVES = (
    "_worker (concurrent/futures/thread.py:81)",
    "EpollSelector.select (selectors.py",
    "Condition.wait (threading.py",
    "Event.wait (threading.py",
)


def summarize(raw: Path, top: int = 30, idle: bool = False) -> str:
    """Where the busy time goes, from py-spy's collapsed stacks: per thread kind, then own
    (leaf) and inclusive time per function, as shares of the busy samples."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    busy_by_thread: collections.Counter[str] = collections.Counter()
    idle_by_thread: collections.Counter[str] = collections.Counter()
    busy = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        if stack.startswith("thread ("):  # recorded with --threads: "thread (tid): name;..."
            head, _, rest = stack.partition(": ")
            name, _, frames_text = rest.partition(";")
            kind = name.rstrip("0123456789").rstrip("_-") or head
        else:
            kind, frames_text = "all threads", stack
        frames = frames_text.split(";") if frames_text else []
        if not frames or (not idle and frames[-1].startswith(IDLE_LEAVES)):
            idle_by_thread[kind] += n
            continue
        busy += n
        busy_by_thread[kind] += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    if not busy:
        return "no busy samples\n"
    out = [f"{busy} busy samples; busy and waiting samples per thread kind:"]
    for kind in sorted(set(busy_by_thread) | set(idle_by_thread)):
        out.append(
            f"  {kind}: busy {busy_by_thread[kind]}, waiting {idle_by_thread[kind]}"
            f" ({busy_by_thread[kind] / busy:.1%} of all busy samples)"
        )
    out += ["", "own time (leaf function), share of busy samples:"]
    out += [f"  {n / busy:6.1%}  {f}" for f, n in own.most_common(top)]
    out += ["", "inclusive time (function and what it calls), share of busy samples:"]
    out += [f"  {n / busy:6.1%}  {f}" for f, n in incl.most_common(top + 10)]
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "load", choices=["manifest-get", "upload", "upload-chunked", "tree", "walk"]
    )
    parser.add_argument(
        "--idle",
        action="store_true",
        help="also sample threads blocked in system calls (fsync shows as _WorkItem.run)",
    )
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--children", type=int, default=1000)
    parser.add_argument(
        "--big",
        action="store_true",
        help="first fill the registry with the GC scenario's ~100k manifests (seed_gc.py)",
    )
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "profiles")
    args = parser.parse_args()
    spy = py_spy()
    work = Path(tempfile.mkdtemp(prefix="ocinest-profile-"))
    (work / "logs").mkdir()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.big:
        subprocess.run(
            [*python_script("seed_gc.py"), str(work / "data")],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    server = ocinest_server("ocinest", work / "data", work / "logs", args.workers).start()
    stop = threading.Event()
    try:
        h = Http(server.base)
        if args.load == "manifest-get":
            push_base_image(h, "bench/get", tag="latest")
            wrk = shutil.which("wrk")
            if not wrk:
                sys.exit("wrk is needed: apt-get install wrk")
            url = f"{server.base}/v2/bench/get/manifests/latest"
            load = subprocess.Popen(
                wrk_argv(wrk, url, 1, 32, int(args.seconds) + 2), stdout=subprocess.DEVNULL
            )

            def finish() -> None:
                load.wait()
        else:
            if args.load in ("tree", "walk"):
                seed_nested_tree(server.base, args.children)
            buf = bytearray(os.urandom(256 * MiB))

            def loop() -> None:
                c = Http(server.base)
                while not stop.is_set():
                    if args.load.startswith("upload"):
                        buf[:16] = os.urandom(16)
                        mv = memoryview(buf)
                        if args.load == "upload":
                            push_blob(c, "bench/upload", mv, sha256(mv))
                        else:
                            push_chunked(c, "bench/upload", mv, 16 * MiB, sha256(mv))
                    elif args.load == "tree":
                        c.expect(200, "GET", tree_url(f"tree/n{args.children}"))
                    else:
                        walk(c, f"tree/n{args.children}")
                c.close()

            thread = threading.Thread(target=loop)
            thread.start()

            def finish() -> None:
                stop.set()
                thread.join()

        time.sleep(1)
        raw = args.out / f"{args.load}.txt"
        pids = [server.proc.pid] if server.proc else []
        if args.workers > 1:  # the workers are the master's children; profile the first
            pids = children(pids[0])[:1]
        subprocess.run(
            [
                spy,
                "record",
                "--pid",
                str(pids[0]),
                "--duration",
                str(int(args.seconds)),
                "--rate",
                "250",
                "--format",
                "raw",
                "--threads",
                *(["--idle"] if args.idle else []),
                "--output",
                str(raw),
            ],
            check=True,
            capture_output=True,
        )
        finish()
        text = summarize(raw, idle=args.idle)
        (args.out / f"{args.load}-top.txt").write_text(text)
        print(text)
        print(f"collapsed stacks: {raw}", file=sys.stderr)
    finally:
        stop.set()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
