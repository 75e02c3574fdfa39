"""Results: a row of the table (samples, baseline, goals), and the Markdown table."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Row:
    """One line of the table: ocinest's samples against a baseline's (or alone)."""

    id: str
    title: str
    unit: str
    higher_better: bool
    ours: list[float]
    base: list[float] | None = None
    base_name: str = "reference"
    ceiling: list[float] | None = None  # for "% of the machine's ceiling"
    goal: str = ""
    min_ratio: float | None = None
    min_ceiling_pct: float | None = None
    max_value: float | None = None
    must_be_zero: bool = False
    note: str = ""
    checks: list[dict[str, Any]] = field(default_factory=list)

    @staticmethod
    def med(xs: list[float] | None) -> float | None:
        return statistics.median(xs) if xs else None

    @property
    def ratio(self) -> float | None:
        a, b = self.med(self.ours), self.med(self.base)
        if a is None or b is None or a <= 0 or b <= 0:
            return None
        return a / b if self.higher_better else b / a

    @property
    def ceiling_pct(self) -> float | None:
        a, c = self.med(self.ours), self.med(self.ceiling)
        return None if a is None or not c else 100 * a / c

    def evaluate(self) -> None:
        self.checks = []
        value = self.med(self.ours)
        if self.min_ratio is not None and self.ratio is not None:
            self.checks.append(
                {
                    "goal": f">= {self.min_ratio:g}x {self.base_name}",
                    "value": f"{self.ratio:.2f}x",
                    "met": self.ratio >= self.min_ratio,
                    "shortfall": f"{self.ratio / self.min_ratio:.0%} of the goal",
                }
            )
        if self.min_ceiling_pct is not None and self.ceiling_pct is not None:
            self.checks.append(
                {
                    "goal": f">= {self.min_ceiling_pct:g}% of ceiling",
                    "value": f"{self.ceiling_pct:.0f}%",
                    "met": self.ceiling_pct >= self.min_ceiling_pct,
                    "shortfall": f"{self.min_ceiling_pct - self.ceiling_pct:.0f} points short",
                }
            )
        if self.max_value is not None and value is not None:
            self.checks.append(
                {
                    "goal": f"< {self.max_value:g} {self.unit}",
                    "value": f"{value:.3g} {self.unit}",
                    "met": value < self.max_value,
                    "shortfall": f"{value / self.max_value:.1f}x the limit",
                }
            )

        if self.must_be_zero and value is not None:
            self.checks.append(
                {
                    "goal": f"0 {self.unit}",
                    "value": f"{value:g} {self.unit}",
                    "met": max(self.ours) == 0,
                    "shortfall": f"{max(self.ours):g} {self.unit} at most",
                }
            )

    @property
    def met(self) -> bool | None:
        return None if not self.checks else all(c["met"] for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            ours_median=self.med(self.ours),
            base_median=self.med(self.base),
            ratio=self.ratio,
            ceiling_pct=self.ceiling_pct,
            met=self.met,
        )
        return d


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def cell(xs: list[float] | None) -> str:
    if not xs:
        return "-"
    if len(xs) == 1:
        return fmt(xs[0])
    return f"{fmt(statistics.median(xs))} [{fmt(min(xs))}-{fmt(max(xs))}]"


def table(rows: list[Row]) -> str:
    head = [
        "scenario",
        "unit",
        "ocinest median [min-max]",
        "baseline median [min-max]",
        "x better",
        "% ceiling",
        "goal",
        "met",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        met = {True: "yes", False: "**NO**", None: ""}[r.met]
        base = f"{r.base_name}: {cell(r.base)}" if r.base else "-"
        lines.append(
            "| "
            + " | ".join(
                [
                    r.title,
                    r.unit,
                    cell(r.ours),
                    base,
                    f"{r.ratio:.2f}x" if r.ratio is not None else "-",
                    f"{r.ceiling_pct:.0f}%" if r.ceiling_pct is not None else "-",
                    r.goal or "-",
                    met,
                ]
            )
            + " |"
        )
    return "\n".join(lines)
