"""ui-tree: the web UI's tree page of a nested tree of N children (N + 1 nodes, every one
shown unfolded: the children are leaves), loaded in Debian's chromium (headless, driven by
selenium through chromium-driver) and fetched as plain HTTP. ocinest alone: the reference
has no web UI.

In chromium the time is the page's navigation timing up to the end of its load event: the
request, the server's rendering, and the browser's parsing, style and layout of every node."""

from __future__ import annotations

import shutil
import tempfile
import time

from harness.bench import Bench
from harness.client import Http
from harness.common import log
from harness.results import Row

from scenarios.tree import seed_nested_tree

# What the closed network here needs (no first-run, sync, component or QUIC traffic).
CHROMIUM = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run " + (
    "--disable-background-networking --disable-component-update --disable-sync"
)
LOADED = """const n = performance.getEntriesByType("navigation")[0];
return [n.responseStart, n.loadEventEnd, document.querySelectorAll(".node").length];"""


def run(bench: Bench) -> None:
    assert bench.oci is not None
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        bench.skip("ui-tree", "chromium or chromedriver is missing (apt: chromium chromium-driver)")
        return
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        bench.skip("ui-tree", "selenium is missing (pip install -c constraints.txt '.[test]')")
        return
    n = max(bench.p.tree_sizes)
    parent = f"ui/n{n}"
    seed_nested_tree(bench.oci.base, n, parent)
    path = f"/ui/{parent}/-/tree/latest"
    profile = tempfile.mkdtemp(prefix="ui-tree-chromium-", dir=bench.work)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROMIUM.split(), f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    load: list[float] = []
    first_byte: list[float] = []
    fetch: list[float] = []
    try:
        driver.get(bench.oci.base + path)  # once untimed: the browser's and server's caches
        size = 0
        with Http(bench.oci.base) as h:
            for r in bench.rounds():
                driver.get(bench.oci.base + path)
                response, loaded, nodes = driver.execute_script(LOADED)
                if nodes != n + 1:
                    raise RuntimeError(f"ui-tree: {nodes} nodes on the page, not {n + 1}")
                load.append(loaded)
                first_byte.append(response)
                start = time.perf_counter()
                size = len(h.expect(200, "GET", path).body)
                fetch.append((time.perf_counter() - start) * 1000)
                log(
                    f"ui-tree round {r + 1}: chromium loaded {nodes} nodes in {loaded:.0f} ms "
                    f"(first byte {response:.0f} ms); the HTML ({size:,} bytes) in "
                    f"{fetch[-1]:.0f} ms"
                )
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    nodes = f"{n + 1:,}-node"
    bench.add(
        Row(
            f"ui-tree-{n}-chromium",
            f"web UI: {nodes} tree page loaded in chromium",
            "ms",
            False,
            load,
            goal="< 1000 ms",
            max_value=1000,
            note=f"first byte after {min(first_byte):.0f}-{max(first_byte):.0f} ms",
        )
    )
    bench.add(
        Row(
            f"ui-tree-{n}-html",
            f"  … its HTML ({size:,} bytes) over HTTP",
            "ms",
            False,
            fetch,
        )
    )
