"""download: GET of a big blob into the client's 1 MiB buffer, beside the no-HTTP download
path (page cache → sendfile → loopback → recv) measured in the same rounds."""

from __future__ import annotations

import time

from harness.bench import Bench
from harness.ceilings import SINK, ceiling_download_path
from harness.client import Http, push_blob
from harness.common import MiB, log
from harness.results import Row
from scenarios.upload import REPO


def run(bench: Bench) -> None:
    p = bench.p
    size = p.blob_mib * MiB
    for server in bench.pair:  # the upload scenario's blob, or one of its own
        if server.label not in bench.uploaded:
            data, digest = bench.fresh_blob()
            with Http(server.base) as h:
                push_blob(h, REPO, data, digest)
            bench.uploaded[server.label] = digest
    samples: dict[str, list[float]] = {s.label: [] for s in bench.pair}
    ceiling: list[float] = []
    source = bench.work / "ceiling-download"
    source.write_bytes(bench.big_buffer())
    sink = memoryview(bytearray(SINK))
    for r in bench.rounds():
        ceiling.append(ceiling_download_path(source))
        for server in bench.pair:
            with Http(server.base) as h:
                start = time.perf_counter()
                resp = h.open("GET", f"/v2/{REPO}/blobs/{bench.uploaded[server.label]}")
                if resp.status != 200:
                    raise RuntimeError(f"download from {server.label}: {resp.status}")
                got = 0
                while n := resp.readinto(sink):
                    got += n
                seconds = time.perf_counter() - start
            if got != size:
                raise RuntimeError(f"download from {server.label}: {got} of {size} bytes")
            samples[server.label].append(size / MiB / seconds)
        log(
            f"download round {r + 1}: ceiling {ceiling[-1]:.0f}, ocinest "
            f"{samples['ocinest'][-1]:.0f}, reference {samples['reference'][-1]:.0f} MiB/s"
        )
    source.unlink()
    bench.add(
        Row(
            "ceiling-download-path",
            "ceiling: page cache → sendfile → loopback → recv (no HTTP)",
            "MiB/s",
            True,
            ceiling,
        )
    )
    bench.add(
        Row(
            "download",
            f"blob download {p.blob_mib} MiB",
            "MiB/s",
            True,
            samples["ocinest"],
            samples["reference"],
            ceiling=ceiling,
            # Both registries stream at the loopback's limit: the goal is to stay there.
            goal=">= 95% ceiling",
            min_ceiling_pct=95,
        )
    )
