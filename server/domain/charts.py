"""Geometry of the portal's charts, drawn by the server as inline SVG (no script in the page).

Pure: numbers in, coordinates out, so the shapes are unit-tested without a browser. Coordinates
are in the SVG's viewBox; the page scales it to the screen's width.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

CHART_WIDTH, CHART_HEIGHT = 640, 200
# Room under the bars for the first and last day's labels.
AXIS_HEIGHT = 20
GAUGE_RADIUS = 80


@dataclasses.dataclass(frozen=True)
class Bar:
    day: dt.date
    requests: int
    x: float
    y: float
    width: float
    height: float


@dataclasses.dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    bars: list[Bar]
    # Where the included-per-day line is drawn, or None when the plan includes nothing.
    included_y: float | None
    included_per_day: int
    baseline_y: int


def daily_bars(days: list[tuple[dt.date, int]], included_per_day: int) -> BarChart:
    """One bar per day, scaled so the tallest bar or the included line (whichever is higher) fits."""
    plot = CHART_HEIGHT - AXIS_HEIGHT
    top = max([n for _, n in days] + [included_per_day, 1])
    slot = CHART_WIDTH / max(len(days), 1)
    gap = min(2.0, slot / 5)
    bars = []
    for index, (day, requests) in enumerate(days):
        height = plot * requests / top
        bars.append(
            Bar(
                day=day,
                requests=requests,
                x=round(index * slot + gap / 2, 2),
                y=round(plot - height, 2),
                width=round(slot - gap, 2),
                height=round(height, 2),
            )
        )
    included_y = round(plot - plot * included_per_day / top, 2) if included_per_day else None
    return BarChart(
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
        bars=bars,
        included_y=included_y,
        included_per_day=included_per_day,
        baseline_y=plot,
    )


@dataclasses.dataclass(frozen=True)
class Gauge:
    percent: int
    over: bool
    # SVG path of the filled arc; empty at 0 %.
    arc: str
    track: str


def _point(fraction: float) -> tuple[float, float]:
    """A point on the half circle, from the left end (0) over the top to the right end (1)."""
    angle = math.pi * (1 - fraction)
    return round(GAUGE_RADIUS + GAUGE_RADIUS * math.cos(angle) + 10, 2), round(
        GAUGE_RADIUS - GAUGE_RADIUS * math.sin(angle) + 10, 2
    )


def _arc(fraction: float) -> str:
    (x0, y0), (x1, y1) = _point(0), _point(fraction)
    return f"M {x0} {y0} A {GAUGE_RADIUS} {GAUGE_RADIUS} 0 0 1 {x1} {y1}"


def gauge(used: int, included: int) -> Gauge:
    """Usage against included requests as a half-circle gauge; the arc stops full past 100 %."""
    if included <= 0:
        percent = 100 if used else 0
    else:
        percent = math.floor(100 * used / included)
    fraction = min(percent, 100) / 100
    return Gauge(percent=percent, over=used > included, arc=_arc(fraction) if fraction else "", track=_arc(1))
