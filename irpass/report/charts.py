"""Inline SVG charts: bars per pass, lines per layer, an accuracy-vs-size scatter."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from irpass.report.format import PALETTE, esc

__all__ = [
    "MAX_CHART_WIDTH",
    "ParetoPoint",
    "bar_chart",
    "line_chart",
    "pareto_chart",
    "scatter_chart",
]


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * exp >= value:
            return step * exp
    return 10 * exp


def _axis_range(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if lo >= 0:
        return 0.0, _nice_max(hi * 1.05 if hi > 0 else 1.0)
    if lo == hi:
        return lo - 1, hi + 1
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


def _chart_frame(width: int, height: int, title: str, body: str, chart_id: str) -> str:
    return (
        f'<div class="chart"><svg id="{esc(chart_id)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'style="max-width:100%;height:auto" '
        f'aria-label="{esc(title)}"><text x="{width / 2}" y="18" text-anchor="middle" '
        f'font-size="14" font-weight="600" fill="#1d2430">{esc(title)}</text>{body}</svg></div>'
    )


def _y_axis(x0: float, y0: float, y1: float, lo: float, hi: float, x1: float,
            fmt: Callable[[Any], str]) -> str:
    parts = []
    for k in range(5):
        value = lo + (hi - lo) * k / 4
        y = y0 - (y0 - y1) * k / 4
        parts.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#e6e9ef"/>')
        parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
                     f'fill="#5b6576">{esc(fmt(value))}</text>')
    parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="#8a93a3"/>')
    return "".join(parts)


#: Widest chart drawn; more categories than fit get thinner bars and every k-th label.
MAX_CHART_WIDTH = 1100


def _chart_width(count: int) -> int:
    return min(MAX_CHART_WIDTH, max(420, 160 + 46 * count))


def _x_labels(xs: Sequence[float], labels: Sequence[str], y: float) -> str:
    parts = []
    stride = max(1, math.ceil(len(labels) * 30 / max(1.0, (xs[-1] - xs[0]) if xs else 1.0)))
    for k, (x, label) in enumerate(zip(xs, labels, strict=True)):
        if k % stride:
            continue
        short = label if len(label) <= 22 else label[:21] + "…"
        parts.append(f'<text transform="translate({x:.1f},{y}) rotate(35)" font-size="11" '
                     f'fill="#394150">{esc(short)}<title>{esc(label)}</title></text>')
    return "".join(parts)


def bar_chart(labels: Sequence[str], values: Sequence[float | None], title: str,
              fmt: Callable[[Any], str], chart_id: str) -> str:
    """Return an SVG bar chart (one bar per label; None leaves a gap)."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    width = _chart_width(len(labels))
    height = 330
    x0, x1, y0, y1 = 70.0, width - 100.0, 210.0, 34.0
    lo, hi = _axis_range([*known, 0.0])
    step = (x1 - x0) / len(labels)
    parts = [_y_axis(x0, y0, y1, lo, hi, x1, fmt)]
    xs = []
    for k, value in enumerate(values):
        cx = x0 + step * (k + 0.5)
        xs.append(cx)
        if value is None:
            continue
        top = y0 - (y0 - y1) * (value - lo) / (hi - lo)
        bw = min(34.0, step * 0.7)
        parts.append(
            f'<rect x="{cx - bw / 2:.1f}" y="{min(top, y0):.1f}" width="{bw:.1f}" '
            f'height="{abs(y0 - top):.1f}" fill="{PALETTE[0]}" rx="2">'
            f"<title>{esc(labels[k])}: {esc(fmt(value))}</title></rect>"
        )
    parts.append(_x_labels(xs, labels, y0 + 14))
    return _chart_frame(width, height, title, "".join(parts), chart_id)


def line_chart(labels: Sequence[str], series: Mapping[str, Sequence[float | None]], title: str,
               fmt: Callable[[Any], str], chart_id: str, highlight: int | None = None,
               highlight_label: str = "") -> str:
    """Return an SVG line chart: one line per series over categorical x labels.

    ``highlight`` marks one x position with a red dashed line (e.g. the first diverging layer).
    """
    known = [v for values in series.values() for v in values if v is not None]
    if not known:
        return ""
    width = _chart_width(len(labels))
    height = 330 + 16 * max(0, len(series) - 1)
    x0, x1, y0, y1 = 70.0, width - 100.0, 210.0, 34.0
    # accuracy-like series: zoom on the data, a zero-based axis would flatten every change
    lo, hi = min(known), max(known)
    pad = (hi - lo) * 0.1 or max(abs(hi) * 0.05, 1e-6)
    lo, hi = lo - pad, hi + pad
    step = (x1 - x0) / max(1, len(labels))
    xs = [x0 + step * (k + 0.5) for k in range(len(labels))]
    parts = [_y_axis(x0, y0, y1, lo, hi, x1, fmt)]
    if highlight is not None and 0 <= highlight < len(xs):
        hx = xs[highlight]
        parts.append(f'<line x1="{hx:.1f}" y1="{y1}" x2="{hx:.1f}" y2="{y0}" stroke="#b3261e" '
                     f'stroke-dasharray="4,3"><title>{esc(highlight_label)}</title></line>'
                     f'<text x="{hx + 4:.1f}" y="{y1 + 10}" font-size="11" fill="#b3261e">'
                     f"{esc(highlight_label)}</text>")
    radius = 3.5 if len(labels) <= 60 else 2.0
    for n, (name, values) in enumerate(series.items()):
        color = PALETTE[n % len(PALETTE)]
        points = [(xs[k], y0 - (y0 - y1) * (v - lo) / (hi - lo))
                  for k, v in enumerate(values) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" '
                         f'stroke-width="2"/>')
        for k, v in enumerate(values):
            if v is None:
                continue
            y = y0 - (y0 - y1) * (v - lo) / (hi - lo)
            parts.append(f'<circle cx="{xs[k]:.1f}" cy="{y:.1f}" r="{radius}" fill="{color}">'
                         f"<title>{esc(name)} @ {esc(labels[k])}: {esc(fmt(v))}</title></circle>")
        if len(series) > 1:
            ly = height - 14 - 16 * (len(series) - 1 - n)
            parts.append(f'<rect x="{x0}" y="{ly - 9}" width="10" height="10" fill="{color}"/>'
                         f'<text x="{x0 + 14}" y="{ly}" font-size="11">{esc(name)}</text>')
    parts.append(_x_labels(xs, labels, y0 + 14))
    return _chart_frame(width, height, title, "".join(parts), chart_id)


def scatter_chart(points: Sequence[tuple[float, float, str]], title: str, x_title: str,
                  y_title: str, x_fmt: Callable[[Any], str], y_fmt: Callable[[Any], str],
                  chart_id: str) -> str:
    """Return an SVG scatter plot with labelled points, joined in order of x (a trade-off curve)."""
    if not points:
        return ""
    width, height = 560, 340
    x0, x1, y0, y1 = 74.0, width - 24.0, height - 56.0, 34.0
    xlo, xhi = _axis_range([p[0] for p in points])
    ylo, yhi = min(p[1] for p in points), max(p[1] for p in points)
    pad = (yhi - ylo) * 0.1 or max(abs(yhi) * 0.05, 0.01)
    ylo, yhi = ylo - pad, yhi + pad

    def sx(x: float) -> float:
        return x0 + (x1 - x0) * (x - xlo) / ((xhi - xlo) or 1.0)

    def sy(y: float) -> float:
        return y0 - (y0 - y1) * (y - ylo) / ((yhi - ylo) or 1.0)

    parts = [_y_axis(x0, y0, y1, ylo, yhi, x1, y_fmt)]
    for k in range(5):
        value = xlo + (xhi - xlo) * k / 4
        parts.append(f'<text x="{sx(value):.1f}" y="{y0 + 16}" text-anchor="middle" '
                     f'font-size="11" fill="#5b6576">{esc(x_fmt(value))}</text>')
    ordered = sorted(points)
    path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y, _ in ordered)
    parts.append(f'<polyline points="{path}" fill="none" stroke="#9bb0d6" stroke-width="1.5"/>')
    for x, y, label in ordered:
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4.5" fill="{PALETTE[1]}">'
                     f"<title>{esc(label)}: {esc(x_fmt(x))}, {esc(y_fmt(y))}</title></circle>"
                     f'<text x="{sx(x) + 7:.1f}" y="{sy(y) - 7:.1f}" font-size="11">'
                     f"{esc(label)}</text>")
    parts.append(f'<text x="{(x0 + x1) / 2}" y="{height - 12}" text-anchor="middle" '
                 f'font-size="12" fill="#394150">{esc(x_title)}</text>')
    parts.append(f'<text transform="translate(16,{(y0 + y1) / 2}) rotate(-90)" '
                 f'text-anchor="middle" font-size="12" fill="#394150">{esc(y_title)}</text>')
    return _chart_frame(width, height, title, "".join(parts), chart_id)


@dataclasses.dataclass(frozen=True)
class ParetoPoint:
    """One point of a Pareto chart: where it is, what it is, and where it links to."""

    x: float
    y: float
    label: str
    href: str
    feasible: bool
    on_front: bool
    chosen: bool = False


def pareto_chart(points: Sequence[ParetoPoint], title: str, x_title: str, y_title: str,
                 x_fmt: Callable[[Any], str], y_fmt: Callable[[Any], str], chart_id: str,
                 threshold: float | None = None) -> str:
    """SVG scatter of the settings a search tried.

    The Pareto front is joined, the budget is a dashed line, every point links to ``href``
    (its row with the pipeline text); infeasible points are hollow, the chosen one is ringed.
    """
    if not points:
        return ""
    width, height = 560, 340
    x0, x1, y0, y1 = 74.0, width - 24.0, height - 56.0, 34.0
    xlo, xhi = _axis_range([p.x for p in points])
    ys = [p.y for p in points] + ([threshold] if threshold is not None else [])
    ylo, yhi = min(ys), max(ys)
    pad = (yhi - ylo) * 0.1 or max(abs(yhi) * 0.05, 0.01)
    ylo, yhi = ylo - pad, yhi + pad

    def sx(x: float) -> float:
        return x0 + (x1 - x0) * (x - xlo) / ((xhi - xlo) or 1.0)

    def sy(y: float) -> float:
        return y0 - (y0 - y1) * (y - ylo) / ((yhi - ylo) or 1.0)

    parts = [_y_axis(x0, y0, y1, ylo, yhi, x1, y_fmt)]
    for k in range(5):
        value = xlo + (xhi - xlo) * k / 4
        parts.append(f'<text x="{sx(value):.1f}" y="{y0 + 16}" text-anchor="middle" '
                     f'font-size="11" fill="#5b6576">{esc(x_fmt(value))}</text>')
    if threshold is not None:
        parts.append(f'<line x1="{x0}" y1="{sy(threshold):.1f}" x2="{x1}" '
                     f'y2="{sy(threshold):.1f}" stroke="{PALETTE[4]}" stroke-dasharray="5,4"/>'
                     f'<text x="{x1}" y="{sy(threshold) - 5:.1f}" text-anchor="end" '
                     f'font-size="11" fill="{PALETTE[4]}">budget</text>')
    front = sorted((p for p in points if p.on_front), key=lambda p: p.x)
    if len(front) > 1:
        path = " ".join(f"{sx(p.x):.1f},{sy(p.y):.1f}" for p in front)
        parts.append(f'<polyline class="front" points="{path}" fill="none" stroke="#9bb0d6" '
                     'stroke-width="1.5"/>')
    for p in points:
        fill = PALETTE[2] if p.feasible else "white"
        ring = (f'<circle cx="{sx(p.x):.1f}" cy="{sy(p.y):.1f}" r="9" fill="none" '
                f'stroke="{PALETTE[1]}" stroke-width="2"/>' if p.chosen else "")
        parts.append(f'<a href="{esc(p.href)}">{ring}<circle cx="{sx(p.x):.1f}" '
                     f'cy="{sy(p.y):.1f}" r="4.5" fill="{fill}" stroke="{PALETTE[2]}" '
                     f'stroke-width="1.5"><title>{esc(p.label)}: {esc(x_fmt(p.x))}, '
                     f"{esc(y_fmt(p.y))}</title></circle></a>")
    parts.append(f'<text x="{(x0 + x1) / 2}" y="{height - 12}" text-anchor="middle" '
                 f'font-size="12" fill="#394150">{esc(x_title)}</text>')
    parts.append(f'<text transform="translate(16,{(y0 + y1) / 2}) rotate(-90)" '
                 f'text-anchor="middle" font-size="12" fill="#394150">{esc(y_title)}</text>')
    return _chart_frame(width, height, title, "".join(parts), chart_id)
