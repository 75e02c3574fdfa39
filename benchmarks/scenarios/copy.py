"""copy: recursive copy of a nested tree between two ocinest registries. One `ocinest copy`
against what a stock client must do (a skopeo copy per child, then the index), each into a
fresh destination; then the same `ocinest copy` again, which must re-send nothing (its own
count, and the destination's upload requests from /metrics). And the client's own start-up,
part of every copy: `ocinest --version`, against `skopeo --version`."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from harness.bench import Bench
from harness.client import Http, mount_blob, parallel, push_blob, put_manifest
from harness.common import MiB, log, run_checked
from harness.install import copy_command_available
from harness.oci import (
    NESTED_ANNOTATION,
    OCI_INDEX,
    OCI_MANIFEST,
    image_index,
    image_manifest,
    sha256,
)
from harness.results import Row
from harness.servers import Server, ocinest_server, serving


@dataclass
class CopyTree:
    parent: str
    children: list[tuple[str, str]]  # repository, digest
    bytes: int


def seed_copy_tree(base: str, n: int) -> CopyTree:
    """In ocinest: copy/src (an index tagged `latest`) over n images at copy/src/cXXXXX,
    each of a shared 1 MiB base layer, its own 64 KiB layer and its own config."""
    parent = "copy/src"
    first = f"{parent}/c00000"
    shared = hashlib.sha256(b"copy base").digest() * (MiB // 32)
    with Http(base) as h:
        shared_d = push_blob(h, first, shared)
    digests: list[str] = [""] * n
    sizes: list[int] = [0] * n

    def child(h: Http, i: int) -> None:
        repo = f"{parent}/c{i:05d}"
        if i:
            mount_blob(h, repo, shared_d, first)
        config = json.dumps({"architecture": "amd64", "os": "linux", "child": i}).encode()
        layer = hashlib.sha256(f"copy layer {i}".encode()).digest() * 2048
        cd = push_blob(h, repo, config)
        ld = push_blob(h, repo, layer)
        body = image_manifest((cd, len(config)), (shared_d, len(shared)), (ld, len(layer)))
        digests[i] = sha256(body)
        sizes[i] = len(body) + len(config) + len(layer)
        put_manifest(h, repo, digests[i], body)

    parallel(base, range(n), child)
    nested = [
        {
            "mediaType": OCI_MANIFEST,
            "digest": digests[i],
            "size": 0,
            "annotations": {NESTED_ANNOTATION: f"c{i:05d}"},
        }
        for i in range(n)
    ]
    with Http(base) as h:
        for i, entry in enumerate(nested):
            r = h.expect(200, "HEAD", f"/v2/{parent}/c{i:05d}/manifests/{digests[i]}")
            entry["size"] = int(r.headers["content-length"])
        index = image_index(nested)
        put_manifest(h, parent, "latest", index, OCI_INDEX)
    children = [(f"{parent}/c{i:05d}", digests[i]) for i in range(n)]
    return CopyTree(parent, children, len(shared) + sum(sizes) + len(index))


def ocinest_copy(source: str, destination: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "ocinest", "copy", "--json", source, destination]
    result: dict[str, Any] = json.loads(run_checked(argv, "ocinest copy", timeout=900))
    return result


def startup_s(argv: list[str], times: int) -> list[float]:
    """Wall seconds of each of `times` runs of a command that only starts and exits."""
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        run_checked(argv, " ".join(argv))
        samples.append(time.perf_counter() - start)
    return samples


def check_tree(base: str, parent: str, n: int) -> None:
    with Http(base) as h:
        tree = json.loads(h.expect(200, "GET", f"/v2/{parent}/_ocinest/tree/latest").body)
    if len(tree["children"]) != n:
        raise RuntimeError(f"copied tree has {len(tree['children'])} children, not {n}")


def upload_requests(base: str) -> int:
    """Blob upload requests (POST, PATCH, PUT of uploads) the server has answered, from its
    Prometheus metrics."""
    with Http(base) as h:
        text = h.expect(200, "GET", "/metrics").body.decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("ocinest_http_requests_total{") and re.search(
            r'route="upload(_start)?"', line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def fresh_destination(bench: Bench, name: str) -> AbstractContextManager[Server]:
    """A fresh ocinest to copy into, its data folder removed at the end."""
    data = bench.work / name
    return serving(ocinest_server(f"ocinest-{name}", data, bench.logs), scratch=data)


def run(bench: Bench) -> None:
    p = bench.p
    if not copy_command_available():
        why = "`ocinest copy` is not in this build: the recursive-copy scenario runs once it is"
        bench.skip("copy", why)
        return
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        bench.skip("copy", "skopeo is missing and could not be installed")
        return
    assert bench.oci is not None
    n = p.copy_children
    tree = seed_copy_tree(bench.oci.base, n)
    src = f"127.0.0.1:{bench.oci.port}"
    tls = ["--src-tls-verify=false", "--dest-tls-verify=false"]
    skopeo_copy = [skopeo, "copy", "-q", "--preserve-digests", *tls]
    raw: list[dict[str, Any]] = []
    for r in range(max(1, min(p.rounds, p.copy_rounds))):
        with fresh_destination(bench, f"copy-{r}") as dst:  # ocinest copy
            target = f"127.0.0.1:{dst.port}/{tree.parent}:latest"
            start = time.perf_counter()
            first = ocinest_copy(f"{src}/{tree.parent}:latest", target)
            copy_s = time.perf_counter() - start
            check_tree(dst.base, tree.parent, n)
            uploads0 = upload_requests(dst.base)
            second = ocinest_copy(f"{src}/{tree.parent}:latest", target)
            uploads = upload_requests(dst.base) - uploads0
        with fresh_destination(bench, f"skopeo-{r}") as dst:  # the stock loop
            dhost = f"127.0.0.1:{dst.port}"
            start = time.perf_counter()
            for child, digest in tree.children:
                source, destination = (f"docker://{h}/{child}@{digest}" for h in (src, dhost))
                run_checked([*skopeo_copy, source, destination], "skopeo copy")
            run_checked(
                [
                    *skopeo_copy,
                    "--multi-arch",
                    "index-only",
                    f"docker://{src}/{tree.parent}:latest",
                    f"docker://{dhost}/{tree.parent}:latest",
                ],
                "skopeo copy",
            )
            loop_s = time.perf_counter() - start
            check_tree(dst.base, tree.parent, n)
        raw.append(
            {
                "copy_s": copy_s,
                "skopeo_loop_s": loop_s,
                "first_copy_stats": first["stats"],
                "second_copy_stats": second["stats"],
                "second_copy_upload_requests_at_destination": uploads,
            }
        )
        resent = second["stats"]["bytes_uploaded"]
        log(
            f"copy round {r + 1}: ocinest copy {copy_s:.2f}s, skopeo loop {loop_s:.2f}s;"
            f" second copy re-sent {resent:g} bytes, {uploads} upload requests"
        )
    bench.details["copy"] = {"tree_bytes": tree.bytes, "rounds": raw}
    bench.add(
        Row(
            "copy",
            f"recursive copy, {n}-child tree ({tree.bytes / MiB:.1f} MiB), ocinest to "
            "ocinest: ocinest copy vs skopeo per child + index",
            "s",
            False,
            [x["copy_s"] for x in raw],
            [x["skopeo_loop_s"] for x in raw],
            base_name="skopeo loop",
            goal=">= 5x skopeo loop",
            min_ratio=5,
        )
    )
    uploads_total = sum(x["second_copy_upload_requests_at_destination"] for x in raw)
    bench.add(
        Row(
            "copy-resent",
            f"  … bytes re-sent by a second copy (destination saw {uploads_total} blob "
            "upload requests)",
            "bytes",
            False,
            [float(x["second_copy_stats"]["bytes_uploaded"]) for x in raw],
            goal="0 bytes",
            must_be_zero=True,
        )
    )
    times = 3 if bench.smoke else 20
    bench.add(
        Row(
            "copy-startup",
            "  … client start-up: ocinest --version vs skopeo --version",
            "s",
            False,
            startup_s([sys.executable, "-m", "ocinest", "--version"], times),
            startup_s([skopeo, "--version"], times),
            base_name="skopeo",
            goal="< 0.15 s",
            max_value=0.15,
        )
    )
