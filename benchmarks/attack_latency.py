#!/usr/bin/env python3
"""How fast `/healthz` answers while the reproductions of the reliability issue run against a
live `ocinest serve` (filesystem + SQLite, one process), each measured by polling `/healthz`
every 20 ms from a client of its own:

* idle: nothing else runs (the baseline);
* tree amplification: an index of 3,000 nested descriptors all naming one child that carries a
  300 KB annotation, its tree asked for by 8 clients 40 times each (every answer a 413);
* password guessing: 8 clients looping on wrong Basic passwords for a known user, bcrypt cost 11;
* slow clients: 200 connections that send a header line every half second for 10 s.

    python benchmarks/attack_latency.py

prints one line per attack: median, p95 and max of the /healthz latency. Figures, not
assertions (tests only check that the server keeps answering).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import Server, free_port, push_image, push_index
from tests.integration.test_auth_hardening import serve
from tests.manifests import index_manifest, nested


def probe(url: str, busy: Callable[[], bool]) -> list[float]:
    latencies = []
    with httpx.Client(base_url=url, timeout=30) as c:
        while busy():
            start = time.perf_counter()
            assert c.get("/healthz").status_code == 200
            latencies.append(time.perf_counter() - start)
            time.sleep(0.02)
    return latencies


def report(name: str, latencies: list[float]) -> None:
    ms = sorted(x * 1000 for x in latencies)
    print(
        f"{name}: n={len(ms)} median={statistics.median(ms):.1f} ms "
        f"p95={ms[int(len(ms) * 0.95)]:.1f} ms max={ms[-1]:.1f} ms",
        flush=True,
    )


def for_seconds(seconds: float) -> Callable[[], bool]:
    end = time.monotonic() + seconds
    return lambda: time.monotonic() < end


def idle(tmp: Path) -> None:
    srv = Server(tmp / "idle", free_port())
    srv.start()
    report("idle", probe(srv.url, for_seconds(5)))
    srv.stop()


def tree(tmp: Path) -> None:
    srv = Server(tmp / "tree", free_port())
    srv.start()
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        _, body = push_image(c, "amp/c", annotations={"big": "x" * 300_000})
        parent = index_manifest(*[nested(body, "c") for _ in range(3000)])
        assert push_index(c, "amp", "wide", parent).status_code == 201
    codes: set[int] = set()

    def attack() -> None:
        with httpx.Client(base_url=srv.url, timeout=120) as c:
            for _ in range(40):
                codes.add(c.get("/v2/amp/_ocinest/tree/wide").status_code)

    attackers = [threading.Thread(target=attack) for _ in range(8)]
    for t in attackers:
        t.start()
    latencies = probe(srv.url, lambda: any(t.is_alive() for t in attackers))
    srv.stop()
    report(f"tree amplification (answers {sorted(codes)})", latencies)


def passwords(tmp: Path) -> None:
    (tmp / "auth").mkdir()
    srv = serve(tmp / "auth", cost=11, auth_fail_limit=10**6, auth_fail_limit_address=10**6)
    stop = threading.Event()

    def guess(i: int) -> None:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            while not stop.is_set():
                assert c.get("/v2/", auth=("alice", f"guess{i}")).status_code == 401

    guessers = [threading.Thread(target=guess, args=(i,)) for i in range(8)]
    for t in guessers:
        t.start()
    latencies = probe(srv.url, for_seconds(10))
    stop.set()
    for t in guessers:
        t.join()
    srv.stop()
    report("password guessing (8 clients, bcrypt cost 11)", latencies)


def slow_clients(tmp: Path) -> None:
    srv = Server(tmp / "slow", free_port())
    srv.start()
    conns = []
    for _ in range(200):
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
        conns.append(s)
    busy = for_seconds(10)

    def drip() -> None:
        while busy():
            for s in conns:
                with contextlib.suppress(OSError):
                    s.sendall(b"X-a: b\r\n")
            time.sleep(0.5)

    dripper = threading.Thread(target=drip)
    dripper.start()
    latencies = probe(srv.url, busy)
    dripper.join()
    for s in conns:
        s.close()
    srv.stop()
    report("slow clients (200 connections dripping headers)", latencies)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ocinest-attack-"))
    try:
        for attack in (idle, tree, passwords, slow_clients):
            attack(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
