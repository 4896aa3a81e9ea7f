"""Server-rendered SVG charts: a donut, a line/area chart and horizontal bars.

Drawing on the server keeps the dashboard free of a JavaScript charting bundle and makes the
charts visible to the test client (they are plain markup). Every value that reaches the
markup goes through format_html/escape, so labels taken from the database cannot inject.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

# Fixed drawing size; the <svg> scales to its container through viewBox (width: 100%).
LINE_WIDTH, LINE_HEIGHT = 480, 200
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 58, 10, 12, 26
X_LABELS = 6  # at most this many x-axis labels, so they never overlap on a phone
MARKERS_UP_TO = 48  # beyond this many points, dots turn into noise


@dataclass(frozen=True)
class Slice:
    label: str
    value: float
    color: str
    url: str = ""


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    values: Sequence[float | None]
    area: bool = False
    # Averages: draw through empty buckets (nothing happened there, the trend goes on);
    # counts keep their zeros, so this only matters for series with None in them.
    connect: bool = False


def _num(value: float) -> str:
    """Return a compact coordinate (two decimals, no trailing zeros)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _empty(width: int, height: int, label: str) -> SafeString:
    return format_html(
        '<svg class="chart chart-empty" viewBox="0 0 {} {}" role="img" aria-label="{}">'
        '<text x="{}" y="{}" text-anchor="middle" class="chart-muted">No data</text></svg>',
        width, height, label, width // 2, height // 2)


def pie_svg(slices: Sequence[Slice], *, label: str, center: str = "") -> SafeString:
    """Return a donut chart of the slices (zero slices are left out); a slice with a url
    is a link (to the list filtered by that slice)."""
    slices = [s for s in slices if s.value > 0]
    total = sum(s.value for s in slices)
    if total <= 0:
        return _empty(120, 120, label)
    # A circle whose circumference is 100 (r = 100 / 2π) lets dash lengths be percentages.
    radius = 100 / (2 * math.pi)
    offset = 25.0  # start at twelve o'clock, not three
    arcs = []
    for item in slices:
        share = item.value / total * 100
        title = f"{item.label}: {_num(item.value)} ({share:.1f}%)"
        circle = format_html(
            '<circle cx="21" cy="21" r="{}" fill="none" stroke="{}" stroke-width="7" '
            'stroke-dasharray="{} {}" stroke-dashoffset="{}"><title>{}</title></circle>',
            _num(radius), item.color, _num(share), _num(100 - share), _num(offset), title)
        if item.url:
            circle = format_html('<a href="{}" class="pie-slice" data-slice="{}" '
                                 'aria-label="{}">{}</a>', item.url, item.label, title, circle)
        arcs.append(circle)
        offset -= share
    return format_html(
        '<svg class="chart chart-pie" viewBox="0 0 42 42" role="img" aria-label="{}">{}'
        '<text x="21" y="22.5" text-anchor="middle" class="chart-pie-center">{}</text></svg>',
        label, mark_safe("".join(arcs)), center or _num(total))  # noqa: S308 (each escaped)


GRID_STEPS = 4
NICE_MULTIPLES = (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)


def _nice_step(raw: float, integer: bool) -> float:
    """Return the smallest round grid step at least `raw` (whole numbers for counts)."""
    if raw <= 0 or (integer and raw <= 1):
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    for multiple in NICE_MULTIPLES:
        step = multiple * power
        if integer and (step < 1 or step != int(step)):
            continue  # counts never read "0.25 messages"
        if raw <= step * (1 + 1e-9):
            return step
    return 10 * power


def _paths(points: list[tuple[float, float] | None]) -> list[list[tuple[float, float]]]:
    """Split a run of points at gaps (None), so a missing bucket is not drawn as zero."""
    runs: list[list[tuple[float, float]]] = [[]]
    for point in points:
        if point is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(point)
    return [run for run in runs if run]


def _top(value: float, integer: bool) -> float:
    # The top is a whole number of round steps, so every grid label reads well.
    return _nice_step(value / GRID_STEPS, integer) * GRID_STEPS


def line_svg(labels: Sequence[str], series: Sequence[Series], *, label: str,
             y_format: Callable[[float], str] = _num, integer: bool = False) -> SafeString:
    """Return a line chart (optionally filled) of several series over shared x labels."""
    values = [v for s in series for v in s.values if v is not None]
    if not labels or not values or max(values) <= 0 and not integer:
        return _empty(LINE_WIDTH, LINE_HEIGHT, label)
    top = _top(max(values), integer)
    plot_w = LINE_WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = LINE_HEIGHT - PAD_TOP - PAD_BOTTOM
    step = plot_w / max(1, len(labels) - 1)

    def x(i: int) -> float:
        return PAD_LEFT + (i * step if len(labels) > 1 else plot_w / 2)

    def y(v: float) -> float:
        return PAD_TOP + plot_h - (v / top) * plot_h

    parts = [_grid(top, y, y_format), _x_labels(labels, x)]
    for item in series:
        points = [None if v is None else (x(i), y(v)) for i, v in enumerate(item.values)]
        parts.extend(_series_marks(item, points, labels, y_format, y(0)))
    return format_html(
        '<svg class="chart chart-line" viewBox="0 0 {} {}" role="img" aria-label="{}">{}</svg>',
        LINE_WIDTH, LINE_HEIGHT, label, mark_safe("".join(parts)))  # parts escaped above


def _grid(top: float, y: Callable[[float], float], y_format: Callable[[float], str]) -> str:
    lines = []
    for i in range(GRID_STEPS + 1):
        value = top * i / GRID_STEPS
        lines.append(format_html(
            '<line x1="{}" x2="{}" y1="{}" y2="{}" class="chart-grid"/>'
            '<text x="{}" y="{}" text-anchor="end" class="chart-axis">{}</text>',
            PAD_LEFT, LINE_WIDTH - PAD_RIGHT, _num(y(value)), _num(y(value)),
            PAD_LEFT - 4, _num(y(value) + 3.5), y_format(value)))
    return "".join(lines)


def _x_labels(labels: Sequence[str], x: Callable[[int], float]) -> str:
    every = max(1, math.ceil(len(labels) / X_LABELS))
    return "".join(
        format_html('<text x="{}" y="{}" text-anchor="middle" class="chart-axis">{}</text>',
                    _num(x(i)), LINE_HEIGHT - 8, text)
        for i, text in enumerate(labels) if i % every == 0)


def _series_marks(item: Series, points: list[tuple[float, float] | None],
                  labels: Sequence[str], y_format: Callable[[float], str],
                  baseline: float) -> list[str]:
    marks: list[str] = []
    runs = _paths(points)
    if item.connect and runs:
        runs = [[point for run in runs for point in run]]
    for run in runs:
        coords = " ".join(f"{_num(px)},{_num(py)}" for px, py in run)
        if item.area:
            polygon = (f"{_num(run[0][0])},{_num(baseline)} {coords} "
                       f"{_num(run[-1][0])},{_num(baseline)}")
            marks.append(format_html('<polygon points="{}" fill="{}" class="chart-area"/>',
                                     polygon, item.color))
        marks.append(format_html(
            '<polyline points="{}" fill="none" stroke="{}" class="chart-stroke">'
            "<title>{}</title></polyline>", coords, item.color, item.name))
    if sum(p is not None for p in points) <= MARKERS_UP_TO:
        for i, point in enumerate(points):
            value = item.values[i]
            if point is None or value is None:
                continue
            marks.append(format_html(
                '<circle cx="{}" cy="{}" r="2.5" fill="{}"><title>{} {}: {}</title></circle>',
                _num(point[0]), _num(point[1]), item.color, item.name, labels[i],
                y_format(value)))
    return marks


def bars_svg(slices: Sequence[Slice], *, label: str) -> SafeString:
    """Return horizontal bars, one per slice, labelled with name and value."""
    if not slices or max((s.value for s in slices), default=0) <= 0:
        return _empty(LINE_WIDTH, 60, label)
    row, label_w, value_w = 26, 90, 56
    height = row * len(slices) + 8
    top = max(s.value for s in slices)
    rows = []
    for i, item in enumerate(slices):
        y = 4 + i * row
        width = (LINE_WIDTH - label_w - value_w) * item.value / top
        rows.append(format_html(
            '<text x="{}" y="{}" text-anchor="end" class="chart-label">{}</text>'
            '<rect x="{}" y="{}" width="{}" height="{}" rx="3" fill="{}">'
            "<title>{}: {}</title></rect>"
            '<text x="{}" y="{}" class="chart-label">{}</text>',
            label_w - 6, y + 15, item.label, label_w, y + 3, _num(max(width, 1)), row - 8,
            item.color, item.label, _num(item.value), _num(label_w + width + 6), y + 15,
            _num(item.value)))
    return format_html(
        '<svg class="chart chart-bars" viewBox="0 0 {} {}" role="img" aria-label="{}">{}</svg>',
        LINE_WIDTH, height, label, mark_safe("".join(rows)))  # parts escaped above
