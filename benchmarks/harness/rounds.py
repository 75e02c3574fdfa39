"""Interleaved rounds: each round measures every target once, in turn (ocinest, reference,
ocinest, reference, ...), so that a slow spell of the shared machine hits both."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from harness.bench import Bench
from harness.common import log
from harness.load import loadgen
from harness.results import Row
from harness.servers import Server

T = TypeVar("T")


def interleave(
    bench: Bench,
    name: str,
    servers: Sequence[Server],
    measure: Callable[[Server, int], T],
    show: Callable[[T], str],
    rounds: int | None = None,
) -> dict[str, list[T]]:
    """measure(server, round) for every server, round after round (`rounds` of them, or the
    run's); the samples by server label. Logs each round's samples as `show` writes them."""
    samples: dict[str, list[T]] = {s.label: [] for s in servers}
    for r in bench.rounds() if rounds is None else range(rounds):
        for server in servers:
            samples[server.label].append(measure(server, r))
        log(
            f"{name} round {r + 1}: "
            + ", ".join(f"{label} {show(xs[-1])}" for label, xs in samples.items())
        )
    return samples


def with_server_cpu(server: Server, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """run()'s result, with the CPU seconds `server` used meanwhile as `server_cpu_s`."""
    cpu0 = server.cpu()
    result = run()
    result["server_cpu_s"] = server.cpu() - cpu0
    return result


def rate_rounds(
    bench: Bench,
    key: str,
    title: str,
    unit: str,
    spec_of: Callable[[Server, int], dict[str, Any]],
    min_ratio: float | None = None,
) -> None:
    """The loadgen.py run spec_of(server, round) on the main pair, interleaved; one row of
    its rates, with a goal of `min_ratio` times the reference's if given."""
    raw = interleave(
        bench,
        key,
        bench.pair,
        lambda server, r: with_server_cpu(server, lambda: loadgen(spec_of(server, r))),
        lambda x: f"{x['rate']:.0f}/s (p99 {x['p99_ms']:.1f} ms)",
    )
    bench.details[key] = raw
    rates = {label: [x["rate"] for x in xs] for label, xs in raw.items()}
    goal = f">= {min_ratio:g}x ref" if min_ratio is not None else ""
    bench.add(
        Row(
            key,
            title,
            unit,
            True,
            rates["ocinest"],
            rates["reference"],
            goal=goal,
            min_ratio=min_ratio,
        )
    )
