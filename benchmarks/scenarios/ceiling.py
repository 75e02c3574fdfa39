"""ceiling: the machine's sha256 and write + fsync rates on the big buffer. (The no-HTTP
upload and download paths are measured in the upload and download rounds.)"""

from __future__ import annotations

from harness.bench import Bench
from harness.ceilings import ceiling_sha256, ceiling_write_fsync
from harness.common import log
from harness.results import Row


def run(bench: Bench) -> None:
    buf = memoryview(bench.big_buffer())
    sha, wf = [], []
    for r in bench.rounds():
        sha.append(ceiling_sha256(buf))
        wf.append(ceiling_write_fsync(buf, bench.work))
        log(f"ceiling round {r + 1}: sha256 {sha[-1]:.0f} MiB/s, write+fsync {wf[-1]:.0f} MiB/s")
    bench.add(Row("ceiling-sha256", "ceiling: sha256 (hashlib)", "MiB/s", True, sha))
    bench.add(Row("ceiling-write-fsync", "ceiling: write + fsync, 1 MiB writes", "MiB/s", True, wf))
