"""Online garbage collection: the registry stays readable and writable while it runs.

Live is everything reachable from tags through index children, nested edges (across
repositories), subjects (referrers live while their subject lives) and configs/layers.
Retention (the `retention` rules) first releases tags, never immutable ones; what only those
tags held goes as untagged content, whatever `delete_untagged` says.
A plan is made from a snapshot; each deletion is then re-checked in a small write
transaction, and nothing younger than the grace window is taken, so content pushed or mounted
for a manifest not yet written survives.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import TypeVar

from ocinest.oci.digest import Digest
from ocinest.registry import metrics
from ocinest.registry.state import Registry
from ocinest.storage.meta import GCRun, Inventory, TagRecord

T = TypeVar("T")
log = logging.getLogger("ocinest.gc")
BATCH = 500


@dataclass
class GCReport:
    dry_run: bool
    tags: list[TagRecord] = field(default_factory=list)  # removed by retention
    manifests: list[tuple[str, str, int]] = field(default_factory=list)
    blobs: list[tuple[str, int]] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # What the stores hold once the run is done (not counted by a dry run).
    inventory: Inventory | None = None

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        blob_bytes = sum(size for _, size in self.blobs)
        manifest_bytes = sum(size for _, _, size in self.manifests)
        return (
            f"gc {verb} {len(self.tags)} tags (retention), "
            f"{len(self.manifests)} manifests ({manifest_bytes} bytes), "
            f"{len(self.blobs)} blobs ({blob_bytes} bytes) and {len(self.uploads)} upload "
            f"sessions in {self.seconds:.1f}s"
        )

    def deleted(self) -> dict[str, int]:
        """How many of each kind went (or would go)."""
        return {
            "tag": len(self.tags),
            "manifest": len(self.manifests),
            "blob": len(self.blobs),
            "upload": len(self.uploads),
        }

    def freed(self) -> dict[str, int]:
        """Bytes of manifests and blobs that went (or would go)."""
        return {
            "manifest": sum(size for _, _, size in self.manifests),
            "blob": sum(size for _, size in self.blobs),
        }

    def run(self, finished_at: float) -> GCRun:
        """The record of this collection (a real one: its inventory is counted)."""
        assert self.inventory is not None
        return GCRun(finished_at, self.seconds, self.deleted(), self.freed(), self.inventory)

    def to_json(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "tags": [
                {"repository": t.repository, "tag": t.name, "digest": t.digest} for t in self.tags
            ],
            "manifests": [{"repository": r, "digest": d, "size": s} for r, d, s in self.manifests],
            "blobs": [{"digest": d, "size": s} for d, s in self.blobs],
            "uploads": self.uploads,
            "seconds": round(self.seconds, 3),
            "inventory": None if self.inventory is None else asdict(self.inventory),
        }


def _chunks(items: list[T]) -> Iterator[list[T]]:
    for i in range(0, len(items), BATCH):
        yield items[i : i + BATCH]


async def collect(
    reg: Registry, *, delete_untagged: bool, grace: float, dry_run: bool = False
) -> GCReport:
    start = time.monotonic()
    now = time.time()
    cutoff = now - grace
    report = GCReport(dry_run)
    meta, blobs = reg.meta, reg.blobs
    retention = reg.config.retention
    release = (
        retention.release(await meta.all_tags(), now, reg.config.immutable_tags)
        if retention
        else []
    )
    plan = await meta.gc_plan(cutoff, delete_untagged, release)
    # Content on disk that no row names (left by a crash between publish and commit).
    known = await meta.all_blobs()
    orphans = [(d, size) for d, size, mtime in blobs.scan() if d not in known and mtime < cutoff]
    if dry_run:
        report.tags, report.manifests = plan.tags, plan.manifests
        report.blobs = plan.blobs + orphans
        report.uploads = [u.id for u in await meta.expired_uploads(now - reg.config.upload_ttl)]
        report.seconds = time.monotonic() - start
        return report

    for tags in _chunks(plan.tags):
        report.tags += await meta.gc_untag(tags, cutoff)
    sizes = {(r, d): s for r, d, s in plan.manifests}
    remaining = list(sizes)
    while remaining:  # indexes go before their children: repeat while something goes
        gone: list[tuple[str, str]] = []
        for chunk in _chunks(remaining):
            gone += await meta.gc_delete_manifests(chunk, cutoff)
        report.manifests += [(r, d, sizes[(r, d)]) for r, d in gone]
        done = set(gone)
        remaining = [key for key in remaining if key not in done]
        if not gone:
            break
    if report.manifests:
        plan = await meta.gc_plan(cutoff, delete_untagged=False)
    candidates = dict(plan.blobs + orphans)

    def delete(digest: str) -> None:
        blobs.delete(Digest.parse(digest))

    for digests in _chunks(list(candidates)):
        for digest in await meta.gc_delete_blobs(digests, cutoff, delete):
            report.blobs.append((digest, candidates[digest]))

    expired = now - reg.config.upload_ttl
    for upload in await meta.expired_uploads(expired):
        await meta.delete_upload(upload.id)
        metrics.UPLOADS.dec()
        await blobs.abort(upload.id)
        report.uploads.append(upload.id)
    # Data of sessions with no record (left by a crash between writing data and its row, or
    # between ending a session and dropping its data).
    for upload_id in blobs.stale_uploads(now - max(grace, reg.config.upload_debris_age)):
        if await meta.get_upload(upload_id) is None:
            await blobs.abort(upload_id)
            report.uploads.append(upload_id)
    report.inventory = await meta.inventory()
    report.seconds = time.monotonic() - start
    # Recorded in the store, so that /metrics of every server shows it, whoever ran it.
    await meta.record_gc_run(report.run(time.time()))
    return report


@contextlib.contextmanager
def exclusive(reg: Registry) -> Iterator[bool]:
    """Whether this process may collect now: one collection at a time per data folder."""
    fd = os.open(reg.config.data.resolve() / "gc.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _count(report: GCReport) -> None:
    """The metrics of a scheduled collection that went through."""
    metrics.GC_RUNS.labels("ok").inc()
    metrics.GC_SECONDS.observe(report.seconds)
    for kind, count in report.deleted().items():
        metrics.GC_DELETED.labels(kind).inc(count)
    for kind, size in report.freed().items():
        metrics.GC_FREED.labels(kind).inc(size)


async def schedule(reg: Registry) -> None:
    """Collect every `gc_interval` seconds inside `serve` (one worker at a time)."""
    config = reg.config
    while True:
        await asyncio.sleep(config.gc_interval)
        with exclusive(reg) as mine:
            if not mine:
                continue
            try:
                report = await collect(
                    reg, delete_untagged=config.gc_delete_untagged, grace=config.gc_grace
                )
                log.info(report.summary())
            except Exception:
                metrics.GC_RUNS.labels("failed").inc()
                log.exception("scheduled garbage collection failed")
            else:
                _count(report)
