"""tags: one repository with many tags, listed n at a time, following `Link` to the end."""

from __future__ import annotations

import time

from harness.bench import Bench
from harness.client import Http, list_all, next_link, parallel, push_base_image, put_manifest
from harness.common import log
from harness.oci import image_manifest
from harness.results import Row
from harness.rounds import interleave
from harness.servers import Server

REPO = "bench/tags"


def seed(server: Server, tags: list[str]) -> float:
    """One image in REPO, tagged with each of `tags`; the seconds the tagging took."""
    with Http(server.base) as h:
        body = image_manifest(*push_base_image(h, REPO))
    return parallel(server.base, tags, lambda h, tag: put_manifest(h, REPO, tag, body))


def run(bench: Bench) -> None:
    p = bench.p
    expected = {f"t{i:05d}" for i in range(p.tags)}
    first = f"/v2/{REPO}/tags/list?n={p.page}"
    for server in bench.pair:
        seconds = seed(server, sorted(expected))
        bench.details.setdefault("tags_seed_per_s", {})[server.label] = p.tags / seconds
        log(f"tags: {p.tags} tags in {server.label} in {seconds:.1f}s")
    for server in bench.pair:  # one untimed listing each: connections, caches
        with Http(server.base) as h:
            list_all(h, first, "tags")

    def listing_ms(server: Server, r: int) -> float:
        with Http(server.base) as h:
            start = time.perf_counter()
            got = list_all(h, first, "tags")
            ms = (time.perf_counter() - start) * 1000
        if set(got) != expected or len(got) != p.tags:
            raise RuntimeError(f"tag list of {server.label}: {len(got)} tags")
        return ms

    samples = interleave(bench, "tags", bench.pair, listing_ms, lambda ms: f"{ms:.1f} ms")
    pages: dict[str, int] = {}
    for server in bench.pair:
        with Http(server.base) as h:
            n = 0
            url: str | None = first
            while url is not None:
                n += 1
                url = next_link(h.expect(200, "GET", url).headers)
        pages[server.label] = n
    bench.details["tags_pages"] = pages
    bench.add(
        Row(
            "tags",
            f"tag list, {p.tags:,} tags, n={p.page} pages (ocinest {pages['ocinest']}, "
            f"reference {pages['reference']})",
            "ms",
            False,
            samples["ocinest"],
            samples["reference"],
        )
    )
