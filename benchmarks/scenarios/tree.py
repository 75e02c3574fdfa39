"""tree: nested trees of N children. ocinest's tree endpoint (`GET /v2/P/_ocinest/tree/latest`)
against a stock client walking the tree manifest by manifest, on ocinest and on the
reference.

ocinest holds an index in tree/nN whose N children live in tree/nN/cXXXXX; the reference
refuses nested indexes, so it holds the same N child manifests (same bytes, same digests) in
tree/nN itself, under a plain index."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from typing import Any

from harness.bench import Bench
from harness.client import Http, mount_blob, parallel, push_base_image, put_manifest
from harness.common import log
from harness.oci import (
    ACCEPT_MANIFESTS,
    NESTED_ANNOTATION,
    OCI_INDEX,
    OCI_MANIFEST,
    image_index,
    image_manifest,
    sha256,
)
from harness.results import Row


@dataclass
class SeededTree:
    parent: str
    first: str  # the first child's repository, which holds the blobs the children use
    bodies: list[bytes]
    entries: list[dict[str, Any]]


def tree_url(parent: str) -> str:
    return f"/v2/{parent}/_ocinest/tree/latest"


def seed_nested_tree(base: str, n: int, parent: str | None = None) -> SeededTree:
    """In ocinest: an index tagged `latest` in `parent` (default tree/nN) whose N image
    manifests each live in their own repository parent/cXXXXX (blobs mounted from the
    first)."""
    parent = parent or f"tree/n{n}"
    kids = [f"c{i:05d}" for i in range(n)]
    first = f"{parent}/{kids[0]}"
    with Http(base) as h:
        cd, ld = push_base_image(h, first)
    bodies = [image_manifest(cd, ld, **{"bench.child": str(i)}) for i in range(n)]

    def child(h: Http, i: int) -> None:
        repo = f"{parent}/{kids[i]}"
        if i:
            mount_blob(h, repo, cd[0], first)
            mount_blob(h, repo, ld[0], first)
        put_manifest(h, repo, sha256(bodies[i]), bodies[i])

    parallel(base, range(n), child)
    entries = [{"mediaType": OCI_MANIFEST, "digest": sha256(b), "size": len(b)} for b in bodies]
    nested = [
        {**e, "annotations": {NESTED_ANNOTATION: k}} for e, k in zip(entries, kids, strict=True)
    ]
    with Http(base) as h:
        put_manifest(h, parent, "latest", image_index(nested), OCI_INDEX)
        tree = json.loads(h.expect(200, "GET", tree_url(parent)).body)
    if len(tree["children"]) != n:
        raise RuntimeError(f"tree of {parent}: {len(tree['children'])} children, not {n}")
    return SeededTree(parent, first, bodies, entries)


def seed_plain_tree(base: str, tree: SeededTree) -> None:
    """In the reference, which refuses nested indexes: the same child manifests (same bytes,
    same digests) in the parent repository itself, under a plain index tagged `latest`."""
    with Http(base) as h:
        push_base_image(h, tree.parent, seed=tree.first)
    bodies = tree.bodies
    parallel(
        base,
        range(len(bodies)),
        lambda h, i: put_manifest(h, tree.parent, sha256(bodies[i]), bodies[i]),
    )
    with Http(base) as h:
        put_manifest(h, tree.parent, "latest", image_index(tree.entries), OCI_INDEX)


def walk(h: Http, parent: str) -> int:
    """What a stock client does: the index by tag, then each child by digest, in turn; the
    number of children."""
    r = h.expect(200, "GET", f"/v2/{parent}/manifests/latest", Accept=ACCEPT_MANIFESTS)
    n = 0
    for desc in json.loads(r.body)["manifests"]:
        h.expect(200, "GET", f"/v2/{parent}/manifests/{desc['digest']}", Accept=ACCEPT_MANIFESTS)
        n += 1
    return n


def tree_ms(h: Http, parent: str, reps: int) -> float:
    """The median of `reps` GETs of the tree endpoint, in ms."""
    one: list[float] = []
    for _ in range(reps):
        start = time.perf_counter()
        body = h.expect(200, "GET", tree_url(parent)).body
        one.append((time.perf_counter() - start) * 1000)
        if len(body) < 2:
            raise RuntimeError("empty tree")
    return statistics.median(one)


def walk_ms(h: Http, parent: str, n: int, reps: int) -> float:
    """The median of `reps` stock walks of the tree of `n` children, in ms."""
    one: list[float] = []
    for _ in range(reps):
        start = time.perf_counter()
        if walk(h, parent) != n:
            raise RuntimeError(f"walk of {parent}: wrong child count")
        one.append((time.perf_counter() - start) * 1000)
    return statistics.median(one)


def run(bench: Bench) -> None:
    p = bench.p
    assert bench.oci is not None and bench.ref is not None
    for n in p.tree_sizes:
        start = time.perf_counter()
        seed_plain_tree(bench.ref.base, seed_nested_tree(bench.oci.base, n))
        seconds = time.perf_counter() - start
        log(f"tree: seeded {n} children in both registries in {seconds:.1f}s")
    tree: dict[int, list[float]] = {n: [] for n in p.tree_sizes}
    walk_oci: dict[int, list[float]] = {n: [] for n in p.tree_sizes}
    walk_ref: dict[int, list[float]] = {n: [] for n in p.tree_sizes}
    with Http(bench.oci.base) as ho, Http(bench.ref.base) as hr:
        for n in p.tree_sizes:  # warm both connections and caches once
            ho.expect(200, "GET", tree_url(f"tree/n{n}"))
            walk(ho, f"tree/n{n}")
            walk(hr, f"tree/n{n}")
        for r in bench.rounds():
            for n in p.tree_sizes:
                parent = f"tree/n{n}"
                reps = p.tree_reps if n <= 100 else max(1, p.tree_reps // 2)
                tree[n].append(tree_ms(ho, parent, p.tree_reps))
                walk_ref[n].append(walk_ms(hr, parent, n, reps))
                walk_oci[n].append(walk_ms(ho, parent, n, reps))
            log(
                f"tree round {r + 1}: "
                + "; ".join(
                    f"{n}: tree {tree[n][-1]:.1f} ms, walk ocinest {walk_oci[n][-1]:.0f} ms, "
                    f"walk reference {walk_ref[n][-1]:.0f} ms"
                    for n in p.tree_sizes
                )
            )
    biggest = max(p.tree_sizes)
    for n in p.tree_sizes:
        goal = n == biggest
        for base, name, key in (
            (walk_ref[n], "stock walk on reference", "ref"),
            (walk_oci[n], "stock walk on ocinest", "oci"),
        ):
            bench.add(
                Row(
                    f"tree-{n}-vs-walk-{key}",
                    f"nested tree, {n:,} children: tree endpoint vs {name}",
                    "ms",
                    False,
                    tree[n],
                    base,
                    base_name=name.replace("stock ", ""),
                    goal="< 50 ms, >= 20x walk" if goal else "",
                    min_ratio=20 if goal else None,
                    max_value=50 if goal else None,
                )
            )
        bench.add(
            Row(
                f"tree-{n}-walk",
                f"  … stock walk ({n + 1:,} manifest GETs): ocinest vs reference",
                "ms",
                False,
                walk_oci[n],
                walk_ref[n],
            )
        )
