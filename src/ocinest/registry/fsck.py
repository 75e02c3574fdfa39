"""Consistency check of the stores: every blob's digest and size, every manifest's digest
and references; `repair` fixes what can be fixed from what is on disk."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ocinest.oci.digest import Digest, new_hasher
from ocinest.registry.state import Registry

# Blobs hashed at once.
PARALLEL = 4


@dataclass
class FsckReport:
    blobs: int = 0
    manifests: int = 0
    missing: list[str] = field(default_factory=list)  # rows whose content is gone
    corrupt: list[str] = field(default_factory=list)  # content not matching its digest or size
    bad_manifests: list[str] = field(default_factory=list)  # repository@digest
    dangling: list[str] = field(default_factory=list)  # references to missing content
    # Descriptors a sparse push accepted unpushed (allow_sparse), still not there: reported,
    # not corruption.
    sparse: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)  # content no row names (GC removes it)
    lost_uploads: list[str] = field(default_factory=list)  # sessions whose data is gone
    repaired: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.missing or self.corrupt or self.bad_manifests or self.dangling or self.lost_uploads
        )

    def lines(self) -> list[str]:
        out = [f"checked {self.blobs} blobs and {self.manifests} manifests"]
        for label, items in [
            ("missing blob", self.missing),
            ("corrupt blob", self.corrupt),
            ("bad manifest", self.bad_manifests),
            ("dangling reference", self.dangling),
            ("sparse descriptor, never pushed (allowed)", self.sparse),
            ("upload session without data", self.lost_uploads),
            ("unreferenced content (gc removes it)", self.orphans),
            ("repaired", self.repaired),
        ]:
            out += [f"{label}: {item}" for item in items]
        out.append("clean" if self.clean else "NOT clean")
        return out


async def check(reg: Registry, *, repair: bool = False) -> FsckReport:
    meta, blobs = reg.meta, reg.blobs
    report = FsckReport()
    rows = await meta.all_blobs()
    on_disk = {digest: size for digest, size, _ in blobs.scan()}
    report.blobs = len(rows)
    report.missing = sorted(d for d in rows if d not in on_disk)
    report.orphans = sorted(d for d in on_disk if d not in rows)
    present = sorted(d for d in rows if d in on_disk)
    sem = asyncio.Semaphore(PARALLEL)

    async def verify(digest: str) -> bool:
        if on_disk[digest] != rows[digest]:
            return False
        parsed = Digest.parse(digest)
        hasher = new_hasher(parsed.algorithm)
        async with sem:
            async for chunk in blobs.read(parsed, 0, on_disk[digest]):
                hasher.update(chunk)
        return hasher.hexdigest() == parsed.encoded

    results = await asyncio.gather(*(verify(d) for d in present))
    report.corrupt = [d for d, ok in zip(present, results, strict=True) if not ok]

    for repository, digest, content in await meta.all_manifests():
        report.manifests += 1
        algorithm = digest.split(":", 1)[0]
        if str(Digest.of(content, algorithm)) != digest:
            report.bad_manifests.append(f"{repository}@{digest}")
    report.dangling = [
        f"{repo}@{digest} -> {kind} {target}"
        for repo, digest, kind, target in await meta.dangling_references()
    ]
    report.sparse = [
        f"{repo}@{digest} -> {kind} {target}"
        for repo, digest, kind, target in await meta.sparse_references()
    ]
    for upload in await meta.expired_uploads(float("inf")):
        if await blobs.upload_size(upload.id) is None:
            report.lost_uploads.append(upload.id)

    if repair:
        # Content that does not match its name is worse than none: drop it and its rows.
        await meta.forget_blobs(
            report.corrupt + report.missing, lambda digest: blobs.delete(Digest.parse(digest))
        )
        report.repaired += [f"dropped blob {d}" for d in report.corrupt + report.missing]
        for upload_id in report.lost_uploads:
            await meta.delete_upload(upload_id)
            report.repaired.append(f"dropped upload session {upload_id}")
        report.lost_uploads = []
        report.missing, report.corrupt = [], []
        report.dangling = [
            f"{repo}@{digest} -> {kind} {target}"
            for repo, digest, kind, target in await meta.dangling_references()
        ]
    return report
