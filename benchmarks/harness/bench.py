"""A run's parameters (full and smoke), and the state the scenarios share: the main pair of
registries, the rows of the table, the details for results.json."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.common import MiB, log
from harness.oci import sha256
from harness.results import Row
from harness.servers import Server, ocinest_server, reference_server


@dataclass(frozen=True)
class Params:
    rounds: int
    blob_mib: int
    chunk_mib: int
    small_count: int
    small_size: int
    push_concurrency: int
    manifest_count: int
    get_concurrency: int
    get_seconds: float
    get_warmup: float
    tags: int
    repos: int
    page: int
    tree_sizes: tuple[int, ...]
    tree_reps: int
    gc_repos: int
    gc_per_repo: int
    gc_rounds: int
    gc_push_gap: float
    copy_children: int
    copy_rounds: int
    scale_rounds: int
    scale_blobs: int  # 1 MiB blobs pushed per scale-out push run
    scale_push_concurrency: int
    scale_warmup: bool
    rpm_count: int  # RPMs in the rpm scenario's repository
    rpm_push_rounds: int
    rpm_rounds: int  # dnf rounds


FULL = Params(
    rounds=5,
    blob_mib=256,
    chunk_mib=16,
    small_count=1000,
    small_size=1024,
    push_concurrency=16,
    manifest_count=1000,
    get_concurrency=32,
    get_seconds=5.0,
    get_warmup=1.0,
    tags=10_000,
    repos=10_000,
    page=1000,
    tree_sizes=(10, 100, 1000),
    tree_reps=5,
    gc_repos=100,
    gc_per_repo=1000,
    gc_rounds=3,
    gc_push_gap=0.1,
    copy_children=100,
    copy_rounds=3,
    scale_rounds=5,
    scale_blobs=160,
    scale_push_concurrency=8,
    scale_warmup=True,
    rpm_count=1000,
    rpm_push_rounds=3,
    rpm_rounds=5,
)
SMOKE = Params(
    rounds=2,
    blob_mib=8,
    chunk_mib=2,
    small_count=40,
    small_size=1024,
    push_concurrency=8,
    manifest_count=40,
    get_concurrency=32,
    get_seconds=1.0,
    get_warmup=0.2,
    tags=300,
    repos=300,
    page=100,
    tree_sizes=(5, 10, 20),
    tree_reps=3,
    gc_repos=2,
    gc_per_repo=400,
    gc_rounds=1,
    gc_push_gap=0.05,
    copy_children=5,
    copy_rounds=1,
    scale_rounds=1,
    scale_blobs=8,
    scale_push_concurrency=8,
    scale_warmup=False,
    rpm_count=3,
    rpm_push_rounds=1,
    rpm_rounds=1,
)


class Bench:
    """What the scenarios share. Each scenario is a function of a Bench: it measures, then
    adds its rows (`add`), and puts what else is worth keeping into `details`."""

    def __init__(self, params: Params, work: Path, smoke: bool) -> None:
        self.p = params
        self.work = work
        self.smoke = smoke
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.rows: list[Row] = []
        self.details: dict[str, Any] = {}
        self.skipped: dict[str, str] = {}
        self.notes: list[str] = []
        self.oci: Server | None = None
        self.ref: Server | None = None
        self.wrk = shutil.which("wrk")
        self.buf: bytearray | None = None
        self.uploaded: dict[str, str] = {}  # target label -> digest of a big blob
        self.gc_seed: tuple[Path, dict[str, Any]] | None = None  # data folder, its summary
        self.load: dict[str, list[float]] = {}  # scenario -> 1-minute load average, end

    def start_main(self) -> None:
        """The main pair, which most scenarios measure: ocinest and the reference."""
        self.oci = ocinest_server("ocinest", self.work / "ocinest", self.logs).start()
        self.ref = reference_server("reference", self.work / "reference", self.logs).start()
        log(f"ocinest on {self.oci.base}, reference (distribution) on {self.ref.base}")

    @property
    def pair(self) -> list[Server]:
        assert self.oci is not None and self.ref is not None
        return [self.oci, self.ref]

    def big_buffer(self) -> bytearray:
        if self.buf is None:
            self.buf = bytearray(os.urandom(self.p.blob_mib * MiB))
        return self.buf

    def fresh_blob(self) -> tuple[memoryview, str]:
        """The big buffer with new content (its first 16 bytes), and its digest."""
        buf = self.big_buffer()
        buf[:16] = os.urandom(16)
        mv = memoryview(buf)
        return mv, sha256(mv)

    def add(self, row: Row) -> Row:
        row.evaluate()
        self.rows.append(row)
        return row

    def rounds(self) -> Iterator[int]:
        yield from range(self.p.rounds)

    def skip(self, scenario: str, why: str) -> None:
        self.skipped[scenario] = why
        log(f"{scenario}: skipped: {why}")
