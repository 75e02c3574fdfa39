"""Writing a run's results: table.md (also printed), results.json and chart.png."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import subprocess
import textwrap
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.bench import Bench
from harness.common import log
from harness.results import Row, table


def describe_machine(work: Path, wrk: bool) -> dict[str, Any]:
    """The machine and tools the run measured on."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError, ValueError):
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    fs = subprocess.run(
        ["df", "--output=fstype", str(work)], capture_output=True, text=True
    ).stdout.split()[-1:]
    ref = subprocess.run(["docker-registry", "--version"], capture_output=True, text=True)
    osname = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                osname = line.split("=", 1)[1].strip('"')
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_mib": mem,
        "os": osname,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "filesystem": fs[0] if fs else "unknown",
        "reference": ref.stdout.strip(),
        "load_generator": "wrk 4.1 (-t1)" if wrk else "aiohttp loadgen",
    }


def write(bench: Bench, out: Path, elapsed: float, only: list[str]) -> None:
    """table.md (also printed), results.json and chart.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    machine = describe_machine(bench.work, bench.wrk is not None)
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"ocinest benchmarks, {'SMOKE (numbers mean nothing)' if bench.smoke else 'full run'}"
        f", {date}, {machine['cores']} cores {machine['cpu']}, "
        f"{machine['memory_mib'] // 1024} GiB, {machine['os']}, {machine['filesystem']}; "
        f"reference {machine['reference']}; {bench.p.rounds} rounds interleaved, "
        f"{elapsed:.0f}s in all"
    )
    loads = [v[0] for v in bench.load.values()]
    if loads:
        header += (
            f"; 1-min load average at scenario ends {min(loads):.1f}-{max(loads):.1f} "
            f"on {machine['cores']} cores (a shared machine: other work ran too)"
        )
    text = header + "\n\n" + table(bench.rows) + "\n"
    text += (
        "\nx better: ocinest ÷ baseline for rates, baseline ÷ ocinest for times "
        "(> 1 means ocinest is better). % ceiling: of the no-HTTP upload path measured in "
        "the same rounds.\n"
    )
    for key, why in bench.skipped.items():
        text += f"\nnot run: {key}: {why}\n"
    for note in bench.notes:
        text += f"\nnote: {note}\n"
    missed = [r for r in bench.rows if r.met is False]
    if missed:
        text += "\ngoals missed:\n"
        for r in missed:
            for c in r.checks:
                if not c["met"]:
                    text += (
                        f"- {r.title.strip(' …')}: {c['goal']}, got {c['value']} "
                        f"({c['shortfall']})\n"
                    )
    print(text)
    (out / "table.md").write_text(text)
    doc = {
        "date": date,
        "mode": "smoke" if bench.smoke else "full",
        "scenarios": only,
        "elapsed_s": round(elapsed, 1),
        "machine": machine,
        "load_average_at_scenario_end": bench.load,
        "params": asdict(bench.p),
        "rows": [r.to_json() for r in bench.rows],
        "details": bench.details,
        "skipped": bench.skipped,
        "notes": bench.notes,
    }
    (out / "results.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    chart(bench.rows, out / "chart.png", header)
    log(f"wrote {out / 'results.json'}, {out / 'table.md'}, {out / 'chart.png'}")


def chart(rows: list[Row], path: Path, header: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def label(text: str) -> str:
        return "\n".join(textwrap.wrap(text.strip(" …"), 60))

    def color(met: bool | None) -> str:
        return {True: "tab:green", False: "tab:red", None: "tab:gray"}[met]

    compared = [r for r in rows if r.ratio is not None][::-1]
    # Absolute goals as a share of their threshold.
    absolute: list[tuple[str, float, bool]] = []
    for r in rows:
        for c in r.checks:
            if c["goal"].startswith("<") and r.max_value:
                share = (r.med(r.ours) or 0) / r.max_value
            elif "ceiling" in c["goal"] and r.min_ceiling_pct:
                share = (r.ceiling_pct or 0) / r.min_ceiling_pct
            else:
                continue
            absolute.append((label(f"{r.title}: {c['goal']}"), share, c["met"]))
    absolute.reverse()
    height = max(6.0, 0.5 * len(compared) + 1.5)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(20, height), gridspec_kw={"width_ratios": [5, 4]})
    values = [r.ratio or 0 for r in compared]
    colors = []
    for r in compared:
        ratio_checks = [c["met"] for c in r.checks if "x " in c["goal"]]
        colors.append(color(all(ratio_checks) if ratio_checks else None))
    ax1.barh([label(r.title) for r in compared], values, color=colors)
    for i, r in enumerate(compared):
        if r.min_ratio is not None:
            ax1.plot([r.min_ratio], [i], marker="|", color="black", markersize=16, mew=2)
        ax1.text(values[i], i, f" {values[i]:.2f}x", va="center", fontsize=7)
    ax1.axvline(1, color="black", lw=0.8)
    ax1.set_xscale("log")
    ax1.set_title("how many times better than the baseline (> 1: ocinest better)", fontsize=9)
    ax1.set_xlabel("ratio, log scale; | marks a goal; green met, red missed, grey no goal")
    ax1.tick_params(axis="y", labelsize=7)
    if absolute:
        ax2.barh(
            [a[0] for a in absolute],
            [a[1] for a in absolute],
            color=[color(a[2]) for a in absolute],
        )
        for i, a in enumerate(absolute):
            ax2.text(a[1], i, f" {a[1]:.2f}", va="center", fontsize=7)
        ax2.axvline(1, color="black", lw=0.8)
        ax2.set_title("absolute goals: value / threshold", fontsize=9)
        ax2.set_xlabel("'< limit' goals want < 1; '% of ceiling' goals want >= 1")
        ax2.tick_params(axis="y", labelsize=7)
    fig.suptitle("\n".join(textwrap.wrap(header, 180)), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
