"""catalog: a fresh pair of registries holding exactly that many repositories (made by
cross-repository mounts), listed n at a time, following `Link` to the end."""

from __future__ import annotations

import time

from harness.bench import Bench
from harness.client import Http, list_all, mount_blob, parallel, push_blob
from harness.common import log
from harness.results import Row
from harness.rounds import interleave
from harness.servers import Server, ocinest_server, reference_server


def seed(server: Server, names: list[str]) -> float:
    """A blob in the first of the repositories `names`, mounted into the others; the
    seconds the mounts took."""
    with Http(server.base) as h:
        digest = push_blob(h, names[0], b"catalog blob\n" * 64)
    return parallel(server.base, names[1:], lambda h, repo: mount_blob(h, repo, digest, names[0]))


def run(bench: Bench) -> None:
    p = bench.p
    oci = ocinest_server("ocinest-catalog", bench.work / "ocinest-catalog", bench.logs).start()
    ref = reference_server(
        "reference-catalog", bench.work / "reference-catalog", bench.logs
    ).start()
    first = f"/v2/_catalog?n={p.page}"
    names = [f"cat/r{i:05d}" for i in range(p.repos)]
    try:
        for server in (oci, ref):
            seconds = seed(server, names)
            log(f"catalog: {p.repos} repositories in {server.label} in {seconds:.1f}s")
        for server in (oci, ref):  # one untimed listing each: connections, caches
            with Http(server.base) as h:
                list_all(h, first, "repositories")

        def listing_ms(server: Server, r: int) -> float:
            with Http(server.base) as h:
                start = time.perf_counter()
                got = list_all(h, first, "repositories")
                ms = (time.perf_counter() - start) * 1000
            if sorted(got) != names:
                raise RuntimeError(f"catalog of {server.label}: {len(got)} repositories")
            return ms

        samples = interleave(bench, "catalog", (oci, ref), listing_ms, lambda ms: f"{ms:.1f} ms")
    finally:
        for server in (oci, ref):
            t = time.monotonic()
            server.stop()
            log(f"catalog: {server.label} stopped in {time.monotonic() - t:.1f}s")
        # Removing 10,000 repositories' folders takes this disk a minute or more: it
        # waits for the end, when nothing is measured any more.
        trash = bench.work / "trash"
        trash.mkdir(exist_ok=True)
        for d in ("ocinest-catalog", "reference-catalog"):
            if (bench.work / d).exists():
                (bench.work / d).rename(trash / d)
    bench.add(
        Row(
            "catalog",
            f"catalog, {p.repos:,} repositories, n={p.page} pages",
            "ms",
            False,
            samples[oci.label],
            samples[ref.label],
        )
    )
