"""Figures of one run: measurements per server, and the tables that compare them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from bench.servers import KINDS

Value = float | int | None
Better = Literal["higher", "lower", "zero", ""]


@dataclass
class Measurement:
    """One case of one scenario on one server: what goes into results.jsonl."""

    scenario: str
    case: str
    server: str
    backend: str | None
    metrics: dict[str, Value]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    better: Better = ""
    digits: int = 1


@dataclass
class Row:
    case: str
    metric: Metric
    values: dict[str, Value]  # by server kind


@dataclass
class ScenarioResult:
    name: str
    title: str
    measurements: list[Measurement] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, measurement: Measurement) -> None:
        self.measurements.append(measurement)

    def find(self, case: str, server: str, backend: str | None = None) -> Measurement | None:
        for m in self.measurements:
            if m.case == case and m.server == server and (backend is None or m.backend == backend):
                return m
        return None

    def compare(
        self,
        case: str,
        metrics: Sequence[Metric],
        *,
        label: str | None = None,
        ours_backend: str | None = None,
    ) -> None:
        """Table rows for `case`: each metric for the three servers."""
        for metric in metrics:
            values: dict[str, Value] = {}
            for kind in KINDS:
                found = self.find(case, kind, ours_backend if kind == "ours" else None)
                values[kind] = found.metrics.get(metric.key) if found else None
            self.rows.append(Row(label or case, metric, values))


def ratio(a: Value, b: Value) -> float | None:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def fmt(value: Value, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def fmt_ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def table(result: ScenarioResult) -> str:
    """A markdown table: one row per case and metric; ours, tutorial, raw and the ratios."""
    lines = [
        "| case | metric | ours | tutorial | raw | ours÷raw | ours÷tutorial |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    previous = None
    for row in result.rows:
        v = row.values
        case = row.case if row.case != previous else ""
        previous = row.case
        cells = [fmt(v.get(k), row.metric.digits) for k in KINDS]
        if row.metric.better not in ("higher", "lower"):
            ratios = ["", ""]
        else:
            ratios = [
                fmt_ratio(ratio(v.get("ours"), v.get("raw"))),
                fmt_ratio(ratio(v.get("ours"), v.get("tutorial"))),
            ]
        arrow = {"higher": " ↑", "lower": " ↓"}.get(row.metric.better, "")
        lines.append(f"| {case} | {row.metric.label}{arrow} | " + " | ".join(cells + ratios) + " |")
    return "\n".join(lines)
