"""Geometry of the console's charts, drawn as inline SVG by the templates (no script).

Pure functions of the data: each returns the shapes in pixels, so a test can check them
against the numbers they stand for.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

WATERFALL_ROWS = 12
"""Contributions drawn one by one; the rest are summed in one row."""


@dataclass(frozen=True)
class Bar:
    """One row of the waterfall: a step of the margin from ``start`` to ``end`` (log-odds)."""

    label: str
    value: float | None  # the feature's value, None for the bias and the rest
    start: float
    end: float
    x: float  # pixels
    width: float
    kind: str  # "bias", "up", "down", "total"


@dataclass(frozen=True)
class Waterfall:
    bars: list[Bar]
    width: float
    row_height: float
    zero_x: float
    ticks: list[tuple[float, float]]  # (log-odds, x)

    @property
    def height(self) -> float:
        return self.row_height * len(self.bars) + 24


def waterfall(
    bias: float,
    contributions: list[dict[str, Any]],
    rows: int = WATERFALL_ROWS,
    width: float = 560.0,
    row_height: float = 22.0,
) -> Waterfall:
    """The margin built up from the bias, the largest contributions first, then the rest.

    Args:
        bias: the model's base margin (log-odds).
        contributions: ``{"feature", "value", "contribution"}`` rows, largest magnitude first
            (``GET /v1/decisions/{id}/explanation``).
        rows: contributions drawn one by one; the others are summed in one bar.

    Returns:
        Bars from the bias to the final margin (the last bar, ``total``, spans 0 to it):
        each bar's ``end`` is the running sum (TreeSHAP's local accuracy: bias plus every
        contribution equals the margin).
    """
    steps: list[tuple[str, float | None, float, str]] = [("bias", None, bias, "bias")]
    shown, rest = contributions[:rows], contributions[rows:]
    for row in shown:
        steps.append((row["feature"], row["value"], row["contribution"], ""))
    if rest:
        steps.append(
            (f"{len(rest)} other features", None, sum(r["contribution"] for r in rest), "")
        )
    running, spans = 0.0, []
    for label, value, delta, kind in steps:
        start = 0.0 if kind == "bias" else running
        running = start + delta
        spans.append((label, value, start, running, kind or ("up" if delta >= 0 else "down")))
    spans.append(("margin", None, 0.0, running, "total"))
    lo = min(0.0, *(min(s, e) for _, _, s, e, _ in spans))
    hi = max(0.0, *(max(s, e) for _, _, s, e, _ in spans))
    span = (hi - lo) or 1.0

    def x(v: float) -> float:
        return (v - lo) / span * width

    bars = [
        Bar(label, value, s, e, min(x(s), x(e)), max(abs(x(e) - x(s)), 1.0), kind)
        for label, value, s, e, kind in spans
    ]
    ticks = [(t, x(t)) for t in _ticks(lo, hi)]
    return Waterfall(bars, width, row_height, x(0.0), ticks)


def _ticks(lo: float, hi: float) -> list[float]:
    """Whole log-odds steps across the range (at most about 8)."""
    step = 1
    while (hi - lo) / step > 8:
        step *= 2
    first = int(lo // step) * step
    return [float(t) for t in range(first, int(hi) + step, step) if lo <= t <= hi]


def axis_label(value: float) -> str:
    """A value on a chart's axis, in at most 5 characters so that it fits beside the axis:
    ``393``, ``4,842``, ``48k``, ``1.2M``, ``0.0123``."""
    if value >= 999_500:
        return f"{value / 1e6:.2g}M" if value < 9.95e6 else f"{value / 1e6:.0f}M"
    if value >= 9_999.5:
        return f"{value / 1e3:.0f}k"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    outcome: str
    transaction_id: str
    amount: float
    event_time: str


@dataclass(frozen=True)
class Scatter:
    points: list[Point]
    width: float
    height: float
    max_amount: float
    first: str = ""  # the left edge's event time, UTC, to the minute
    last: str = ""  # the right edge's


def _minute(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M")


def amounts_over_time(decisions: list[Any], width: float = 640.0, height: float = 200.0) -> Scatter:
    """Each decision as a point: event time across, amount up (both linear, amount from 0).

    Args:
        decisions: :class:`services.common.decision.Decision` records, any order.
    """
    if not decisions:
        return Scatter([], width, height, 0.0)
    t0 = min(d.event_time_ms for d in decisions)
    t1 = max(d.event_time_ms for d in decisions)
    top = max(d.amount for d in decisions) or 1.0
    spread = (t1 - t0) or 1
    points = [
        Point(
            (d.event_time_ms - t0) / spread * width,
            height - d.amount / top * height,
            d.outcome,
            d.transaction_id,
            d.amount,
            d.event_time,
        )
        for d in decisions
    ]
    return Scatter(points, width, height, top, _minute(t0), _minute(t1))


@dataclass(frozen=True)
class Line:
    name: str
    points: str  # SVG polyline points, "x,y x,y ..."


@dataclass(frozen=True)
class LineChart:
    lines: list[Line]
    width: float
    height: float
    top: float  # the value at the top edge
    limit_y: float | None  # where a reference line (an SLO) is drawn, if in range


def lines_over_time(
    series: dict[str, list[tuple[float, float]]],
    start: float,
    end: float,
    limit: float | None = None,
    width: float = 460.0,
    height: float = 150.0,
) -> LineChart:
    """Time series as polylines: time across from ``start`` to ``end`` (unix seconds), value
    up from 0 to the largest value (or ``limit``, if larger).

    Args:
        series: name to ``(unix time, value)`` points, in time order (Prometheus
            ``query_range``).
        limit: a reference value drawn as a horizontal line (the latency SLO).
    """
    values = [v for points in series.values() for _, v in points]
    top = max([*values, limit or 0.0]) or 1.0
    spread = (end - start) or 1.0

    def xy(t: float, v: float) -> str:
        return f"{(t - start) / spread * width:.1f},{height - v / top * height:.1f}"

    drawn = [
        Line(name, " ".join(xy(t, v) for t, v in points))
        for name, points in series.items()
        if points
    ]
    limit_y = height - limit / top * height if limit is not None else None
    return LineChart(drawn, width, height, top, limit_y)
