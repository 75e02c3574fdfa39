"""manifest-put: image manifests of unique content PUT by tag, concurrent, from
loadgen.py."""

from __future__ import annotations

import os
from typing import Any

from harness.bench import Bench
from harness.client import Http, push_base_image
from harness.oci import Descriptor
from harness.rounds import rate_rounds
from harness.servers import Server

REPO = "bench/manifests"


def run(bench: Bench) -> None:
    p = bench.p
    bases: dict[str, tuple[Descriptor, Descriptor]] = {}
    for server in bench.pair:
        with Http(server.base) as h:
            bases[server.label] = push_base_image(h, REPO)

    def spec(server: Server, r: int) -> dict[str, Any]:
        (cd, cs), (ld, ls) = bases[server.label]
        return {
            "mode": "put-manifests",
            "base": server.base,
            "repo": REPO,
            "count": p.manifest_count,
            "concurrency": p.push_concurrency,
            "config_digest": cd,
            "config_size": cs,
            "layer_digest": ld,
            "layer_size": ls,
            "prefix": f"r{r}-{os.urandom(4).hex()}",
        }

    rate_rounds(
        bench,
        "manifest-put",
        f"manifest PUT by tag, {p.push_concurrency} concurrent",
        "manifests/s",
        spec,
    )
