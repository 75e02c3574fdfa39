"""What every part of the harness uses: paths, units, the log, running a helper program."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent  # benchmarks/
ROOT = BENCH_DIR.parent
MiB = 1 << 20

T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[bench {time.monotonic() - T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def run_checked(argv: list[str], what: str, timeout: float = 600) -> str:
    """Run `argv` to its end; its stdout, or RuntimeError (with its stderr's end) if it
    failed."""
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed ({out.returncode}): {out.stderr[-2000:]}")
    return out.stdout


def python_script(name: str) -> list[str]:
    """The command line that runs benchmarks/`name` with this interpreter."""
    return [sys.executable, str(BENCH_DIR / name)]
