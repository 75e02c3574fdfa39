"""The scenarios, one module each, named as on the command line (`manifest-get` is
manifest_get.py). Each has `run(bench)`, which measures and adds its rows. They run in this
order; a scenario may use what an earlier one left (download reads upload's blob, gc reuses
tree-scale's seeded folder)."""

from __future__ import annotations

from collections.abc import Callable

from harness.bench import Bench

from scenarios import (
    catalog,
    ceiling,
    copy,
    download,
    gc,
    manifest_get,
    manifest_put,
    push,
    rpm,
    scale_out,
    sign,
    tags,
    tree,
    tree_scale,
    ui_tree,
    upload,
)

SCENARIOS: dict[str, Callable[[Bench], None]] = {
    "ceiling": ceiling.run,
    "upload": upload.run,
    "download": download.run,
    "push": push.run,
    "manifest-put": manifest_put.run,
    "manifest-get": manifest_get.run,
    "tags": tags.run,
    "catalog": catalog.run,
    "tree": tree.run,
    "tree-scale": tree_scale.run,
    "ui-tree": ui_tree.run,
    "copy": copy.run,
    "sign": sign.run,
    "gc": gc.run,
    "rpm": rpm.run,
    "scale-out": scale_out.run,
}
