"""The scale model: how request latency, GC and the metadata's size grow with the registry.

    python benchmarks/scale.py --dsn ADMIN_DSN [--sizes 10k,100k,500k] [--out DIR] [--reps N]

For each size: a fresh database, seeded with COPY (scale_seed.py: nested trees of 10-1,000
children, daily re-pinned parents, multi-platform children, a signature on every index, most
of it untagged); blobs on the filesystem. Then, through a real `ocinest serve` (one worker,
metadata on that PostgreSQL) over HTTP: the median of `--reps` requests of each kind, with the
sequential scans PostgreSQL counted during them (pg_stat_user_tables); then a retention pass,
a GC plan and a GC sweep (`ocinest gc`); then rows and bytes of every table and index.
Writes DIR/scale.json, DIR/scale.md and DIR/scale.png (when matplotlib is there).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.client import Http
from harness.oci import ACCEPT_MANIFESTS, OCI_INDEX, sha256
from harness.servers import ocinest_config_server
from scale_seed import SET_TYPE, seed

# PostgreSQL backends flush their statistics at most once a second, once idle.
STATS_FLUSH = 1.5
REQUESTS = [
    ("get_tag", "manifest GET by tag"),
    ("get_digest", "manifest GET by digest"),
    ("blob_head_nested", "blob HEAD through a parent"),
    ("push_parent", "push of a parent over 1,000 children"),
    ("tree", "tree endpoint, 1,000 children"),
    ("referrers", "referrers listing"),
    ("catalog", "catalog page (n=100)"),
    ("tags", "tag list page (n=100)"),
    ("delete_parent", "delete of a parent"),
]


def parse_size(text: str) -> int:
    text = text.strip().lower()
    for suffix, mult in (("k", 1_000), ("m", 1_000_000)):
        if text.endswith(suffix):
            return int(float(text[:-1]) * mult)
    return int(text)


def with_db(admin: str, name: str) -> str:
    u = urllib.parse.urlsplit(admin)
    return urllib.parse.urlunsplit(u._replace(path="/" + name))


def seq_scans(conn: Any) -> dict[str, tuple[int, int]]:
    rows = conn.execute(
        "SELECT relname, seq_scan, seq_tup_read FROM pg_stat_user_tables"
    ).fetchall()
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def sizes(conn: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for rel, kind, table, rows, total, own in conn.execute(
        "SELECT c.relname, c.relkind, coalesce(t.relname, c.relname), c.reltuples::bigint,"
        " pg_total_relation_size(c.oid), pg_relation_size(c.oid) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_index i ON i.indexrelid = c.oid LEFT JOIN pg_class t ON t.oid = i.indrelid "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i') ORDER BY 3, 2 DESC, 1"
    ).fetchall():
        if kind == "r":
            exact = conn.execute(f'SELECT count(*) FROM "{rel}"').fetchone()[0]
            out[rel] = {"rows": int(exact), "total_bytes": int(total), "heap_bytes": int(own)}
        else:
            out.setdefault(table, {}).setdefault("indexes", {})[rel] = int(own)
            _ = rows
    return out


def measure(h: Http, reps: int, fn: Callable[[int], None]) -> list[float]:
    fn(-1)  # warm
    samples = []
    for i in range(reps):
        t = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - t) * 1000)
    return samples


def run_size(admin: str, n: int, work: Path, reps: int) -> dict[str, Any]:
    import psycopg

    dbname = f"ocinest_scale_{n}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {dbname}".encode())
        conn.execute(f"CREATE DATABASE {dbname}".encode())
    dsn = with_db(admin, dbname)
    data = work / f"data-{n}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    print(f"[{n:,}] seeding", flush=True)
    seeded = seed(dsn, data, n)
    rows = seeded["rows"]
    print(f"[{n:,}] seeded {rows} in {seeded['seconds']} s", flush=True)
    big = [g for g in seeded["groups"] if g[1] == 1000]
    parent_repo, _, parent_digests = big[len(big) // 2]
    child = f"{parent_repo}/c0007"
    names = sorted(g[0] for g in seeded["groups"])
    settings = {
        "metadata": "postgres",
        "postgres_dsn": dsn,
        "retention": [{"repositories": ["scale/**"], "keep": [{"tags": ["day-.*"], "newest": 2}]}],
    }
    server = ocinest_config_server(f"scale-{n}", data, work, settings, dict(os.environ))
    result: dict[str, Any] = {"manifests": rows["manifests"], "seed": seeded, "requests": {}}
    del result["seed"]["groups"]
    server.start()
    try:
        with Http(server.base) as h, psycopg.connect(dsn, autocommit=True) as conn:
            latest = h.expect(
                200, "GET", f"/v2/{parent_repo}/manifests/latest", Accept=ACCEPT_MANIFESTS
            )
            index = json.loads(latest.body)
            kids = index["manifests"]
            child_index = json.loads(
                h.expect(200, "GET", f"/v2/{child}/manifests/{kids[7]['digest']}").body
            )
            platform = json.loads(
                h.expect(
                    200, "GET", f"/v2/{child}/manifests/{child_index['manifests'][0]['digest']}"
                ).body
            )
            layer = platform["layers"][0]["digest"]
            pushed: list[str] = []

            def push(i: int) -> None:
                body = json.dumps(
                    {
                        "schemaVersion": 2,
                        "mediaType": OCI_INDEX,
                        "artifactType": SET_TYPE,
                        "manifests": kids,
                        "annotations": {"dev.ocinest.scale.bench": str(i)},
                    }
                ).encode()
                h.expect(
                    201,
                    "PUT",
                    f"/v2/{parent_repo}/manifests/{sha256(body)}",
                    body,
                    **{"Content-Type": OCI_INDEX},
                )
                pushed.append(sha256(body))

            def delete(i: int) -> None:
                h.expect(202, "DELETE", f"/v2/{parent_repo}/manifests/{pushed.pop()}")

            mid = names[len(names) // 2]
            ops: dict[str, Callable[[int], None]] = {
                "get_tag": lambda i: h.expect(
                    200, "GET", f"/v2/{child}/manifests/v0", Accept=ACCEPT_MANIFESTS
                ),
                "get_digest": lambda i: h.expect(
                    200,
                    "GET",
                    f"/v2/{parent_repo}/manifests/{parent_digests[-1]}",
                    Accept=ACCEPT_MANIFESTS,
                ),
                "blob_head_nested": lambda i: h.expect(
                    200, "HEAD", f"/v2/{parent_repo}/blobs/{layer}"
                ),
                "push_parent": push,
                "tree": lambda i: h.expect(200, "GET", f"/v2/{parent_repo}/_ocinest/tree/latest"),
                "referrers": lambda i: h.expect(
                    200, "GET", f"/v2/{parent_repo}/referrers/{parent_digests[-1]}"
                ),
                "catalog": lambda i: h.expect(200, "GET", f"/v2/_catalog?n=100&last={mid}"),
                "tags": lambda i: h.expect(200, "GET", f"/v2/{parent_repo}/tags/list?n=100"),
                "delete_parent": delete,
            }
            for key, _ in REQUESTS:
                time.sleep(STATS_FLUSH)
                before = seq_scans(conn)
                samples = measure(h, reps, ops[key])
                time.sleep(STATS_FLUSH)  # the server's backends report their counts when idle
                after = seq_scans(conn)
                scans = {
                    t: [after[t][0] - v[0], after[t][1] - v[1]]
                    for t, v in before.items()
                    if t in after and after[t][0] != v[0]
                }
                result["requests"][key] = {
                    "median_ms": round(statistics.median(samples), 2),
                    "min_ms": round(min(samples), 2),
                    "max_ms": round(max(samples), 2),
                    "seq_scans": scans,
                }
                print(f"[{n:,}] {key}: {result['requests'][key]}", flush=True)
            result["tables"] = sizes(conn)
            gc: dict[str, Any] = {}
            base = [
                sys.executable,
                "-m",
                "ocinest",
                "gc",
                "--config",
                str(data.parent / f"scale-{n}.yaml"),
                "--json",
            ]
            for key, extra in (
                ("retention", ["--grace", "0s"]),
                ("gc_plan", ["--dry-run", "--delete-untagged", "--grace", "0s"]),
                ("gc_sweep", ["--delete-untagged", "--grace", "0s"]),
                ("gc_again", ["--delete-untagged", "--grace", "0s"]),
            ):
                t = time.perf_counter()
                out = subprocess.run(base + extra, capture_output=True, text=True, check=True)
                gc[key] = {
                    "seconds": round(time.perf_counter() - t, 2),
                    "report": _short(out.stdout),
                }
                print(f"[{n:,}] {key}: {gc[key]}", flush=True)
            result["gc"] = gc
            result["rows_after_gc"] = {t: v.get("rows") for t, v in sizes(conn).items()}
    finally:
        server.stop()
    shutil.rmtree(data, ignore_errors=True)
    return result


def _short(text: str) -> Any:
    try:
        doc = json.loads(text)
    except ValueError:
        return text[-500:]
    if isinstance(doc, dict):
        return {k: v for k, v in doc.items() if not isinstance(v, list)}
    return doc


def report(results: dict[str, Any], out: Path) -> None:
    sizes_ = sorted(results, key=int)
    lines = ["| request (median ms) | " + " | ".join(f"{int(s):,}" for s in sizes_) + " |"]
    lines.append("| --- |" + " ---: |" * len(sizes_))
    for key, label in REQUESTS:
        lines.append(
            f"| {label} | "
            + " | ".join(f"{results[s]['requests'][key]['median_ms']:.1f}" for s in sizes_)
            + " |"
        )
    for key in ("retention", "gc_plan", "gc_sweep", "gc_again"):
        lines.append(
            f"| `ocinest gc` {key} (s) | "
            + " | ".join(f"{results[s]['gc'][key]['seconds']:.1f}" for s in sizes_)
            + " |"
        )
    lines.append(
        "| seeding (s) | "
        + " | ".join(f"{results[s]['seed']['seconds']:.0f}" for s in sizes_)
        + " |"
    )
    lines += ["", "| table: rows / total MB | " + " | ".join(f"{int(s):,}" for s in sizes_) + " |"]
    lines.append("| --- |" + " ---: |" * len(sizes_))
    for table in results[sizes_[-1]]["tables"]:
        cells = []
        for s in sizes_:
            t = results[s]["tables"].get(table, {})
            cells.append(f"{t.get('rows', 0):,} / {t.get('total_bytes', 0) / 1e6:.1f}")
        lines.append(f"| {table} | " + " | ".join(cells) + " |")
    (out / "scale.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    xs = [results[s]["manifests"] for s in sizes_]
    fig, ax = plt.subplots(figsize=(8, 5))
    for key, label in REQUESTS:
        ax.plot(
            xs, [results[s]["requests"][key]["median_ms"] for s in sizes_], marker="o", label=label
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("manifests in the registry (PostgreSQL)")
    ax.set_ylabel("median latency, ms")
    ax.set_title("ocinest request latency vs registry size")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "scale.png", dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("OCINEST_TEST_POSTGRES"), required=False)
    parser.add_argument("--sizes", default="10k,100k,500k")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "scale")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument(
        "--merge", action="store_true", help="add to the sizes already in DIR/scale.json"
    )
    args = parser.parse_args()
    if not args.dsn:
        raise SystemExit("--dsn (or OCINEST_TEST_POSTGRES): an admin DSN of a PostgreSQL")
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="ocinest-scale-"))
    path = args.out / "scale.json"
    results: dict[str, Any] = json.loads(path.read_text()) if args.merge else {}
    for size in [parse_size(s) for s in args.sizes.split(",")]:
        results[str(size)] = run_size(args.dsn, size, work, args.reps)
        path.write_text(json.dumps(results, indent=1))
        report(results, args.out)
    print((args.out / "scale.md").read_text())


if __name__ == "__main__":
    main()
