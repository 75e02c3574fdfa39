"""sign: signing and verifying every node of an N-child tree (N+1 nodes): one `ocinest sign
--recursive` (and `ocinest verify --recursive`) against a loop of one `ocinest sign` (and
`verify`) per node, as a user scripts it without a recursive mode. Time, and the requests
the registry answered (from its /metrics)."""

from __future__ import annotations

import os
import re
import sys
import time

from harness.bench import Bench
from harness.client import Http
from harness.common import log, run_checked
from harness.oci import sha256
from harness.results import Row
from scenarios.tree import seed_nested_tree

PARENT = "sign/tree"


def requests_answered(base: str) -> int:
    """Every request the server has answered, from its Prometheus metrics."""
    with Http(base) as h:
        text = h.expect(200, "GET", "/metrics").body.decode()
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if re.match(r"ocinest_http_requests_total\{", line)
        )
    )


def timed(base: str, commands: list[list[str]]) -> tuple[float, int]:
    """Seconds to run the commands one after another, and the requests they made."""
    before = requests_answered(base)
    start = time.perf_counter()
    for argv in commands:
        run_checked(argv, " ".join(argv[2:4]))
    return time.perf_counter() - start, requests_answered(base) - before - 1


def run(bench: Bench) -> None:
    p = bench.p
    assert bench.oci is not None
    base, host = bench.oci.base, f"127.0.0.1:{bench.oci.port}"
    n = p.copy_children
    tree = seed_nested_tree(base, n, PARENT)
    os.environ["OCINEST_KEY_PASSWORD"] = ""  # an unencrypted key, for these runs only
    ocinest = [sys.executable, "-m", "ocinest"]
    prefix = bench.work / "sign-key"
    run_checked([*ocinest, "key", "generate", "--output", str(prefix)], "key generate")
    root = f"{host}/{PARENT}:latest"
    nodes = [root] + [
        f"{host}/{PARENT}/c{i:05d}@{sha256(body)}" for i, body in enumerate(tree.bodies)
    ]
    sign = [*ocinest, "sign", "--key", f"{prefix}.key"]
    verify = [*ocinest, "verify", "--key", f"{prefix}.pub"]
    raw: dict[str, list[tuple[float, int]]] = {k: [] for k in ("sign", "loop", "vr", "vloop")}
    for r in range(max(1, p.copy_rounds)):
        raw["sign"].append(timed(base, [[*sign, "--recursive", root]]))
        raw["loop"].append(timed(base, [[*sign, node] for node in nodes]))
        raw["vr"].append(timed(base, [[*verify, "--recursive", root]]))
        raw["vloop"].append(timed(base, [[*verify, node] for node in nodes]))
        log(
            f"sign round {r + 1}: recursive {raw['sign'][-1][0]:.2f}s, loop "
            f"{raw['loop'][-1][0]:.2f}s; verify recursive {raw['vr'][-1][0]:.2f}s, loop "
            f"{raw['vloop'][-1][0]:.2f}s"
        )
    bench.details["sign"] = {"nodes": len(nodes), "rounds": raw}
    for verb, ours, loop in (("sign", "sign", "loop"), ("verify", "vr", "vloop")):
        bench.add(
            Row(
                verb,
                f"{verb} every node of a {n}-child tree ({len(nodes)} nodes): "
                f"ocinest {verb} --recursive vs one ocinest {verb} per node",
                "s",
                False,
                [t for t, _ in raw[ours]],
                [t for t, _ in raw[loop]],
                base_name=f"a {verb} per node",
            )
        )
        bench.add(
            Row(
                f"{verb}-requests",
                f"  … requests the registry answered for one {verb} of the tree",
                "requests",
                False,
                [float(c) for _, c in raw[ours]],
                [float(c) for _, c in raw[loop]],
                base_name=f"a {verb} per node",
            )
        )
