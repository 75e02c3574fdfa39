"""tree-scale: the tree endpoint on the biggest tree again, in a registry that already holds
the GC scenario's many manifests, since its cost may grow with the registry and not only
with the tree."""

from __future__ import annotations

import time

from harness.bench import Bench
from harness.client import Http
from harness.common import log
from harness.results import Row
from scenarios.gc import seed, serving_seed_copy
from scenarios.tree import seed_nested_tree, tree_ms, tree_url, walk, walk_ms


def run(bench: Bench) -> None:
    p = bench.p
    _, summary = seed(bench)
    n = max(p.tree_sizes)
    tree: list[float] = []
    walks: list[float] = []
    with serving_seed_copy(bench, "ocinest-tree-scale", "tree-scale") as (server, _):
        start = time.perf_counter()
        seeded = seed_nested_tree(server.base, n)
        log(f"tree-scale: seeded {n} children in {time.perf_counter() - start:.1f}s")
        with Http(server.base) as h:
            h.expect(200, "GET", tree_url(seeded.parent))
            walk(h, seeded.parent)
            for r in bench.rounds():
                tree.append(tree_ms(h, seeded.parent, p.tree_reps))
                walks.append(walk_ms(h, seeded.parent, n, 1))
                log(f"tree-scale round {r + 1}: tree {tree[-1]:.1f} ms, walk {walks[-1]:.0f}")
    total = summary["manifests"] + n + 1
    bench.add(
        Row(
            "tree-scale",
            f"nested tree, {n:,} children, registry of {total:,} manifests: tree endpoint "
            "vs stock walk on ocinest",
            "ms",
            False,
            tree,
            walks,
            base_name="walk on ocinest",
            goal="< 50 ms, >= 20x walk",
            min_ratio=20,
            max_value=50,
        )
    )
