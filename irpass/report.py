"""Self-contained HTML pages for optimization reports and graph diffs.

- :func:`render_report_html` / :func:`write_report_html` turn the report dict of an ``optimize``
  run (``RunReport.to_dict()``) into one HTML page: run summary, size and accuracy per pass,
  accuracy vs. size when several settings were tried, the per-pass table, the target's checks,
  and the diff of the whole run with drawings of the changed graph regions.
- :func:`render_diff_html` / :func:`write_diff_html` render a :class:`irpass.diff.GraphDiff`
  dict (and optionally a numeric diff dict) on its own, for ``irpass diff --html``.

The page loads nothing from the network: CSS is inline, charts and graphs are inline SVG laid
out here (graph regions: layered by longest path from the region's sources, nodes ordered in
each layer by the barycenter of their neighbours). Every key of the input dicts is optional;
what is missing is left out of the page, so older or partial reports still render.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import networkx as nx

from irpass.ir import atomic_output_path

__all__ = [
    "graph_region_svg",
    "render_diff_html",
    "render_report_html",
    "write_diff_html",
    "write_report_html",
]

_CONSTANT_OPS = ("Constant", "ConstantOfShape")

#: Rows shown per node table before the rest is summarised in one line.
MAX_TABLE_ROWS = 400

_CSS = """
:root { --fg:#1d2430; --muted:#5b6576; --line:#d8dde6; --bg:#ffffff; --panel:#f5f7fa;
  --add:#1f8a4c; --add-bg:#e3f5ea; --rem:#b3261e; --rem-bg:#fbe4e2; --chg:#9a6700;
  --chg-bg:#fff3cd; --acc:#2f5fb3; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color:var(--fg); background:var(--bg); }
main { max-width:1200px; margin:0 auto; padding:24px 28px 60px; }
h1 { font-size:24px; margin:0 0 4px; } h2 { font-size:19px; margin:32px 0 10px;
  border-bottom:2px solid var(--line); padding-bottom:4px; }
h3 { font-size:15px; margin:18px 0 8px; }
.muted { color:var(--muted); } code, .mono { font-family: "DejaVu Sans Mono", Menlo, monospace;
  font-size:12.5px; }
.pipeline { background:var(--panel); border:1px solid var(--line); border-radius:6px;
  padding:8px 12px; word-break:break-all; }
.cards { display:flex; flex-wrap:wrap; gap:12px; margin:12px 0; }
.card { background:var(--panel); border:1px solid var(--line); border-radius:8px;
  padding:10px 14px; min-width:150px; }
.card .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .v { font-size:20px; font-weight:600; } .card .d { font-size:12.5px; }
table { border-collapse:collapse; width:100%; margin:6px 0 14px; font-size:13px; }
th, td { border-bottom:1px solid var(--line); padding:5px 8px; text-align:left;
  vertical-align:top; }
th { background:var(--panel); font-weight:600; position:sticky; top:0; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
.neg { color:var(--add); } .pos { color:var(--rem); }
.badge { display:inline-block; padding:1px 7px; border-radius:10px; font-size:12px;
  font-weight:600; }
.ok, .pass { background:var(--add-bg); color:var(--add); }
.failed, .fail { background:var(--rem-bg); color:var(--rem); }
.warn, .skipped { background:var(--chg-bg); color:var(--chg); }
.added { background:var(--add-bg); } .removed { background:var(--rem-bg); }
.changed { background:var(--chg-bg); }
.charts { display:flex; flex-wrap:wrap; gap:18px; }
.chart { border:1px solid var(--line); border-radius:8px; padding:8px; background:#fff;
  max-width:100%; }
.tablewrap { overflow-x:auto; }
.region { border:1px solid var(--line); border-radius:8px; margin:10px 0 18px;
  overflow:auto; max-height:900px; background:#fcfcfd; }
.legend span { display:inline-block; margin-right:14px; font-size:12.5px; }
.legend i { display:inline-block; width:12px; height:12px; border-radius:3px;
  margin-right:5px; vertical-align:-1px; border:1px solid #999; }
ul.changes { margin:0; padding-left:16px; }
details summary { cursor:pointer; color:var(--acc); }
details.table > summary h3 { display:inline; color:var(--fg); }
"""

_STATUS_FILL = {
    "added": ("#e3f5ea", "#1f8a4c"),
    "removed": ("#fbe4e2", "#b3261e"),
    "changed": ("#fff3cd", "#9a6700"),
    "unchanged": ("#ffffff", "#8a93a3"),
}

_PALETTE = ["#2f5fb3", "#c2571a", "#1f8a4c", "#8e3bb3", "#b3261e", "#00838f"]


# ----------------------------------------------------------------------------- formatting


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return float(value)


def _fmt_count(value: Any) -> str:
    v = _num(value)
    if v is None:
        return "–"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.2f}{unit}"
    return f"{v:.0f}"


def _fmt_bytes(value: Any) -> str:
    v = _num(value)
    if v is None:
        return "–"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(v) >= scale:
            return f"{v / scale:.1f} {unit}"
    return f"{v:.0f} B"


def _fmt_float(value: Any) -> str:
    v = _num(value)
    if v is None:
        return "–" if value is None else _e(value)
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.3g}"
    return f"{v:.4f}".rstrip("0").rstrip(".")


def _fmt_seconds(value: Any) -> str:
    v = _num(value)
    if v is None:
        return "–"
    return f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s"


def _delta_cell(before: Any, after: Any, fmt: Callable[[Any], str] = _fmt_count) -> str:
    b, a = _num(before), _num(after)
    if b is None or a is None:
        return '<td class="num">–</td>'
    d = a - b
    if d == 0:
        return '<td class="num muted">0</td>'
    pct = f" ({100.0 * d / b:+.1f}%)" if b else ""
    cls = "neg" if d < 0 else "pos"
    sign = "+" if d > 0 else "−"
    return f'<td class="num {cls}">{sign}{_e(fmt(abs(d)))}{_e(pct)}</td>'


def _badge(status: Any) -> str:
    text = _e(status or "–")
    return f'<span class="badge {text}">{text}</span>'


def _table(headers: Sequence[str], rows: Sequence[str], numeric: Sequence[int] = (),
           table_id: str | None = None) -> str:
    head = "".join(
        f'<th class="num">{_e(h)}</th>' if k in numeric else f"<th>{_e(h)}</th>"
        for k, h in enumerate(headers)
    )
    ident = f' id="{_e(table_id)}"' if table_id else ""
    return (f'<div class="tablewrap"><table{ident}><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# ----------------------------------------------------------------------------- charts


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
        f'<div class="chart"><svg id="{_e(chart_id)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'style="max-width:100%;height:auto" '
        f'aria-label="{_e(title)}"><text x="{width / 2}" y="18" text-anchor="middle" '
        f'font-size="14" font-weight="600" fill="#1d2430">{_e(title)}</text>{body}</svg></div>'
    )


def _y_axis(x0: float, y0: float, y1: float, lo: float, hi: float, x1: float,
            fmt: Callable[[Any], str]) -> str:
    parts = []
    for k in range(5):
        value = lo + (hi - lo) * k / 4
        y = y0 - (y0 - y1) * k / 4
        parts.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#e6e9ef"/>')
        parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
                     f'fill="#5b6576">{_e(fmt(value))}</text>')
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
                     f'fill="#394150">{_e(short)}<title>{_e(label)}</title></text>')
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
    lo, hi = _axis_range(known + [0.0])
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
            f'height="{abs(y0 - top):.1f}" fill="{_PALETTE[0]}" rx="2">'
            f"<title>{_e(labels[k])}: {_e(fmt(value))}</title></rect>"
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
                     f'stroke-dasharray="4,3"><title>{_e(highlight_label)}</title></line>'
                     f'<text x="{hx + 4:.1f}" y="{y1 + 10}" font-size="11" fill="#b3261e">'
                     f"{_e(highlight_label)}</text>")
    radius = 3.5 if len(labels) <= 60 else 2.0
    for n, (name, values) in enumerate(series.items()):
        color = _PALETTE[n % len(_PALETTE)]
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
                         f"<title>{_e(name)} @ {_e(labels[k])}: {_e(fmt(v))}</title></circle>")
        if len(series) > 1:
            ly = height - 14 - 16 * (len(series) - 1 - n)
            parts.append(f'<rect x="{x0}" y="{ly - 9}" width="10" height="10" fill="{color}"/>'
                         f'<text x="{x0 + 14}" y="{ly}" font-size="11">{_e(name)}</text>')
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
                     f'font-size="11" fill="#5b6576">{_e(x_fmt(value))}</text>')
    ordered = sorted(points)
    path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y, _ in ordered)
    parts.append(f'<polyline points="{path}" fill="none" stroke="#9bb0d6" stroke-width="1.5"/>')
    for x, y, label in ordered:
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4.5" fill="{_PALETTE[1]}">'
                     f"<title>{_e(label)}: {_e(x_fmt(x))}, {_e(y_fmt(y))}</title></circle>"
                     f'<text x="{sx(x) + 7:.1f}" y="{sy(y) - 7:.1f}" font-size="11">'
                     f"{_e(label)}</text>")
    parts.append(f'<text x="{(x0 + x1) / 2}" y="{height - 12}" text-anchor="middle" '
                 f'font-size="12" fill="#394150">{_e(x_title)}</text>')
    parts.append(f'<text transform="translate(16,{(y0 + y1) / 2}) rotate(-90)" '
                 f'text-anchor="middle" font-size="12" fill="#394150">{_e(y_title)}</text>')
    return _chart_frame(width, height, title, "".join(parts), chart_id)


# ----------------------------------------------------------------------------- graph regions


_NODE_W, _NODE_H, _GAP_X, _GAP_Y, _MARGIN = 168, 40, 22, 46, 20


def _layers(g: nx.DiGraph) -> list[list[str]]:
    """Longest-path layering, then barycenter ordering (a few down/up sweeps)."""
    if not nx.is_directed_acyclic_graph(g):
        # A and B can order the same matched nodes differently (e.g. Relu/MaxPool swapped):
        # lay out by the edges that agree with the region's node order, draw them all
        acyclic = nx.DiGraph()
        acyclic.add_nodes_from(g.nodes(data=True))
        acyclic.add_edges_from((u, v) for u, v in g.edges
                               if g.nodes[u]["order"] < g.nodes[v]["order"])
        g = acyclic
    depth = {n: d for d, gen in enumerate(nx.topological_generations(g)) for n in gen}
    # sources (weights, inputs) sit just above their first consumer, not all in the top row
    for n in g.nodes:
        if g.in_degree(n) == 0 and g.out_degree(n) > 0:
            depth[n] = max(depth[n], min(depth[m] for m in g.successors(n)) - 1)
    layers = [sorted((n for n in g.nodes if depth[n] == d), key=lambda n: g.nodes[n]["order"])
              for d in range(max(depth.values()) + 1)]
    layers = [layer for layer in layers if layer]
    for sweep in range(4):
        downward = sweep % 2 == 0
        pos: dict[str, float] = {}
        for layer in layers if downward else list(reversed(layers)):
            if pos:
                keys = {}
                for n in layer:
                    near = g.predecessors(n) if downward else g.successors(n)
                    known = [pos[m] for m in near if m in pos]
                    keys[n] = (sum(known) / len(known) if known else float("inf"),
                               g.nodes[n]["order"])
                layer.sort(key=keys.__getitem__)
            for k, n in enumerate(layer):
                pos[n] = k - (len(layer) - 1) / 2
    return layers


def graph_region_svg(region: Mapping[str, Any], changes: Mapping[str, list[str]] | None = None,
                     svg_id: str = "region") -> str:
    """Lay out one changed region of a diff (``diff["regions"][k]``) as an SVG.

    Nodes are coloured by status (added / removed / changed / unchanged context); edges that
    exist only in A are dashed red, only in B green. ``changes`` maps a node's A key to the
    change texts shown in its tooltip.
    """
    changes = changes or {}
    g = nx.DiGraph()
    for k, node in enumerate(_list(region.get("nodes"))):
        if isinstance(node, dict) and node.get("id") is not None:
            g.add_node(str(node["id"]), order=k, **{f"n_{x}": node.get(x) for x in
                                                    ("op_type", "label", "status", "a", "b")})
    for edge in _list(region.get("edges")):
        if isinstance(edge, dict) and str(edge.get("from")) in g and str(edge.get("to")) in g:
            g.add_edge(str(edge["from"]), str(edge["to"]), side=edge.get("side", "both"))
    if not g:
        return ""
    layers = _layers(g)
    widest = max(len(layer) for layer in layers)
    nodes_w = 2 * _MARGIN + widest * _NODE_W + (widest - 1) * _GAP_X
    width = nodes_w + _NODE_W * 0.8  # room on the right for edges bowing around layers
    height = 2 * _MARGIN + len(layers) * _NODE_H + (len(layers) - 1) * _GAP_Y
    xy: dict[str, tuple[float, float]] = {}
    for depth, layer in enumerate(layers):
        row_w = len(layer) * _NODE_W + (len(layer) - 1) * _GAP_X
        left = (nodes_w - row_w) / 2
        for k, n in enumerate(layer):
            xy[n] = (left + k * (_NODE_W + _GAP_X), _MARGIN + depth * (_NODE_H + _GAP_Y))
    parts = [
        f'<defs><marker id="arr-{_e(svg_id)}" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#6b7380"/></marker>'
        "</defs>"
    ]
    for u, v, data in g.edges(data=True):
        (ux, uy), (vx, vy) = xy[u], xy[v]
        x1, y1 = ux + _NODE_W / 2, uy + _NODE_H
        x2, y2 = vx + _NODE_W / 2, vy
        if y2 <= y1:  # edge against the layering (only for cyclic input): route around
            y2 = vy + _NODE_H
        mid = (y1 + y2) / 2
        c1x, c2x, c1y, c2y = x1, x2, mid, mid
        if vy - uy > 1.5 * (_NODE_H + _GAP_Y):  # skips a layer: bow sideways around it
            bow = _NODE_W * 0.75
            c1x, c2x = x1 + bow, x2 + bow
            c1y, c2y = y1 + (y2 - y1) * 0.25, y2 - (y2 - y1) * 0.25
        side = data.get("side")
        style = {"a": 'stroke="#b3261e" stroke-dasharray="5,4"',
                 "b": 'stroke="#1f8a4c" stroke-width="1.8"'}.get(side, 'stroke="#8a93a3"')
        parts.append(f'<path d="M{x1:.1f},{y1:.1f} C{c1x:.1f},{c1y:.1f} {c2x:.1f},{c2y:.1f} '
                     f'{x2:.1f},{y2:.1f}" fill="none" {style} '
                     f'marker-end="url(#arr-{_e(svg_id)})"/>')
    for n, data in g.nodes(data=True):
        x, y = xy[n]
        status = str(data.get("n_status") or "unchanged")
        fill, stroke = _STATUS_FILL.get(status, _STATUS_FILL["unchanged"])
        op = str(data.get("n_op_type") or "?")
        label = str(data.get("n_label") or "")
        tip = [f"{op} ({status})", label]
        tip += changes.get(str(data.get("n_a")), [])
        short = label if len(label) <= 26 else "…" + label[-25:]
        dash = ' stroke-dasharray="4,3"' if status == "removed" else ""
        parts.append(
            f'<g class="node {_e(status)}"><title>{_e(chr(10).join(tip))}</title>'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{_NODE_W}" height="{_NODE_H}" rx="6" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"{dash}/>'
            f'<text x="{x + _NODE_W / 2:.1f}" y="{y + 16:.1f}" text-anchor="middle" '
            f'font-size="12.5" font-weight="600" fill="#1d2430">{_e(op)}</text>'
            f'<text x="{x + _NODE_W / 2:.1f}" y="{y + 31:.1f}" text-anchor="middle" '
            f'font-size="10" fill="#5b6576">{_e(short)}</text></g>'
        )
    return (f'<svg id="{_e(svg_id)}" class="graph" xmlns="http://www.w3.org/2000/svg" '
            f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}">'
            + "".join(parts) + "</svg>")


# ----------------------------------------------------------------------------- diff sections


def _cost_rows(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    rows = []
    for key, label, fmt in (
        ("nodes", "nodes", _fmt_count),
        ("params", "parameters", _fmt_count),
        ("weight_bytes", "weight bytes", _fmt_bytes),
        ("macs", "MACs", _fmt_count),
        ("peak_activation_bytes", "peak activation memory", _fmt_bytes),
    ):
        if key not in a and key not in b:
            continue
        rows.append(f"<tr><td>{_e(label)}</td><td class=\"num\">{_e(fmt(a.get(key)))}</td>"
                    f"<td class=\"num\">{_e(fmt(b.get(key)))}</td>"
                    f"{_delta_cell(a.get(key), b.get(key), fmt)}</tr>")
    return rows


def _node_row(node: Mapping[str, Any], status: str) -> str:
    weights = ", ".join(
        f"{_e(w.get('dtype'))}{_e(w.get('shape'))}" for w in _dict(node.get("weights")).values()
        if isinstance(w, dict)
    )
    outs = ", ".join(
        f"{_e(o.get('dtype') or '?')}{_e(o.get('shape'))}" for o in _list(node.get("outputs"))
        if isinstance(o, dict)
    )
    return (f'<tr class="{status}"><td class="mono">{_e(node.get("label") or node.get("name"))}'
            f"</td><td>{_e(node.get('op_type'))}</td><td class=\"mono\">{outs}</td>"
            f'<td class="mono">{weights}</td></tr>')


def _capped(rows: list[str], columns: int) -> list[str]:
    if len(rows) <= MAX_TABLE_ROWS:
        return rows
    rest = len(rows) - MAX_TABLE_ROWS
    return rows[:MAX_TABLE_ROWS] + [
        f'<tr><td colspan="{columns}" class="muted">… {rest} more rows in the JSON output</td></tr>'
    ]


#: Tables with more rows start folded, so the drawings below them stay within reach.
OPEN_TABLE_ROWS = 25


def _collapsible(title: str, body: str, rows: int) -> str:
    opened = " open" if rows <= OPEN_TABLE_ROWS else ""
    return (f'<details class="table"{opened}><summary><h3>{_e(title)}</h3></summary>{body}'
            "</details>")


def _diff_section(diff: Mapping[str, Any], heading: str = "Graph diff") -> str:
    summary = _dict(diff.get("summary"))
    parts = [f'<section id="diff"><h2>{_e(heading)}</h2>']
    if diff.get("a") or diff.get("b"):
        parts.append(f'<p class="muted">A = <code>{_e(diff.get("a"))}</code>, '
                     f'B = <code>{_e(diff.get("b"))}</code></p>')
    cards = [
        ("nodes", f"{_fmt_count(summary.get('nodes_a'))} → {_fmt_count(summary.get('nodes_b'))}"),
        ("matched", _fmt_count(summary.get("matched"))),
        ("changed", _fmt_count(summary.get("changed"))),
        ("added", _fmt_count(summary.get("added"))),
        ("removed", _fmt_count(summary.get("removed"))),
    ]
    parts.append('<div class="cards">' + "".join(
        f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{_e(v)}</div></div>'
        for k, v in cards) + "</div>")
    methods = {k[len("matched_by_"):]: v for k, v in summary.items()
               if str(k).startswith("matched_by_")}
    if methods:
        parts.append('<p class="muted">Matched by ' + ", ".join(
            f"{_e(k)}: {_e(v)}" for k, v in sorted(methods.items())) + "</p>")
    if diff.get("identical"):
        parts.append("<p><strong>The graphs are structurally identical.</strong></p>")

    cost = _dict(diff.get("cost"))
    rows = _cost_rows(_dict(cost.get("a")), _dict(cost.get("b")))
    if rows:
        parts.append("<h3>Size and compute</h3>"
                     + _table(["", "A", "B", "Δ"], rows, numeric=(1, 2, 3), table_id="diff-cost"))

    op_delta = _dict(diff.get("op_delta"))
    if op_delta:
        rows = [
            f"<tr><td>{_e(op)}</td><td class=\"num\">{_e(d.get('a'))}</td>"
            f"<td class=\"num\">{_e(d.get('b'))}</td>{_delta_cell(d.get('a'), d.get('b'))}</tr>"
            for op, d in op_delta.items() if isinstance(d, dict)
        ]
        parts.append("<h3>Op histogram delta</h3>"
                     + _table(["op", "A", "B", "Δ"], rows, numeric=(1, 2, 3), table_id="op-delta"))

    io = _list(diff.get("io_changes"))
    opsets = _dict(diff.get("opset_changes"))
    if io or opsets:
        rows = [f"<tr><td>{_e(c.get('kind'))}</td><td>{_badge(c.get('change'))}</td>"
                f"<td class=\"mono\">{_e(c.get('name'))}</td><td class=\"mono\">"
                f"{_e(c.get('before'))}</td><td class=\"mono\">{_e(c.get('after'))}</td></tr>"
                for c in io if isinstance(c, dict)]
        rows += [f"<tr><td>opset</td><td>{_badge('changed')}</td><td class=\"mono\">{_e(d)}</td>"
                 f"<td>{_e(_dict(v).get('a'))}</td><td>{_e(_dict(v).get('b'))}</td></tr>"
                 for d, v in opsets.items()]
        parts.append("<h3>Signature and opset changes</h3>"
                     + _table(["", "change", "name", "A", "B"], rows, table_id="io-changes"))

    changed = [c for c in _list(diff.get("changed")) if isinstance(c, dict)]
    if changed:
        rows = []
        for c in changed:
            items = "".join(f"<li>{_e(ch.get('text'))}</li>" for ch in _list(c.get("changes"))
                            if isinstance(ch, dict))
            b_label = c.get("b_label")
            name = _e(c.get("a_label"))
            if b_label and b_label != c.get("a_label"):
                name += f" → {_e(b_label)}"
            rows.append(f'<tr class="changed"><td class="mono">{name}</td>'
                        f"<td>{_e(c.get('op_type'))}</td><td>{_e(c.get('method'))}</td>"
                        f'<td><ul class="changes">{items}</ul></td></tr>')
        parts.append(_collapsible(f"Changed nodes ({len(changed)})", _table(
            ["node (A → B)", "op", "matched by", "changes"], _capped(rows, 4),
            table_id="changed-nodes"), len(rows)))
    for key, title, status in (("removed", "Removed nodes", "removed"),
                               ("added", "Added nodes", "added")):
        nodes = [n for n in _list(diff.get(key)) if isinstance(n, dict)]
        compute = [n for n in nodes if n.get("op_type") not in _CONSTANT_OPS]
        constants = [n for n in nodes if n.get("op_type") in _CONSTANT_OPS]
        headers = ["node", "op", "outputs", "weights"]
        if compute:
            parts.append(_collapsible(f"{title} ({len(compute)})", _table(
                headers, _capped([_node_row(n, status) for n in compute], 4),
                table_id=f"{key}-nodes"), len(compute)))
        if constants:
            # constant producers (e.g. folded into initializers) are many and rarely interesting
            parts.append(f"<details><summary>{title}: {len(constants)} constant producers "
                         "(Constant / ConstantOfShape)</summary>" + _table(
                             headers, _capped([_node_row(n, status) for n in constants], 4),
                             table_id=f"{key}-constants") + "</details>")

    regions = [r for r in _list(diff.get("regions")) if isinstance(r, dict)]
    if regions:
        tips = {str(c.get("a")): [str(ch.get("text")) for ch in _list(c.get("changes"))
                                  if isinstance(ch, dict)] for c in changed}
        parts.append('<section id="graph-regions"><h3>Changed regions of the graph</h3>'
                     '<p class="legend">' + "".join(
                         f'<span><i style="background:{f};border-color:{s}"></i>{_e(k)}</span>'
                         for k, (f, s) in _STATUS_FILL.items()) +
                     '<span>edges: <b style="color:#b3261e">dashed red</b> only in A, '
                     '<b style="color:#1f8a4c">green</b> only in B</span></p>')
        for k, region in enumerate(regions):
            size = region.get("size", len(_list(region.get("nodes"))))
            note = ""
            if isinstance(region.get("parts"), int) and region["parts"] > 1:
                note = (f" (part {_e(region.get('part'))} of {_e(region['parts'])} of one "
                        f"connected change of {_e(region.get('component_size'))} nodes)")
            parts.append(f'<h3 class="muted">Region {k + 1}: {_e(size)} nodes{note}</h3>'
                         f'<div class="region">{graph_region_svg(region, tips, f"region-{k}")}'
                         "</div>")
        omitted = _num(diff.get("regions_omitted"))
        if omitted:
            parts.append(f'<p class="muted">{omitted:.0f} more regions are not drawn; the '
                         "tables above list every change.</p>")
        parts.append("</section>")
    parts.append("</section>")
    return "".join(parts)


def _numeric_section(numeric: Mapping[str, Any]) -> str:
    parts = ['<section id="numeric"><h2>Numeric diff</h2>',
             f'<p class="muted">Inputs: {_e(numeric.get("inputs"))}</p>']
    first = numeric.get("first_divergence")
    if isinstance(first, dict):
        parts.append(f'<p><strong>First diverging layer:</strong> <code>{_e(first.get("node"))}'
                     f"</code> ({_e(first.get('op_type'))}, cosine "
                     f"{_fmt_float(first.get('cosine'))}, max abs error "
                     f"{_fmt_float(first.get('max_abs'))})</p>")
    elif numeric.get("intermediates"):
        parts.append("<p>No matched intermediate tensor exceeds the tolerance.</p>")

    def rows_of(items: list[Any]) -> list[str]:
        rows = []
        for t in items:
            if not isinstance(t, dict):
                continue
            cls = "changed" if t.get("diverged") else ""
            rows.append(f'<tr class="{cls}"><td class="mono">{_e(t.get("node"))}</td>'
                        f"<td>{_e(t.get('op_type'))}</td><td class=\"mono\">{_e(t.get('shape'))}"
                        f"</td><td class=\"num\">{_fmt_float(t.get('cosine'))}</td>"
                        f"<td class=\"num\">{_fmt_float(t.get('max_abs'))}</td>"
                        f"<td class=\"num\">{_fmt_float(t.get('mean_abs'))}</td>"
                        f"<td>{'yes' if t.get('diverged') else 'no'}</td></tr>")
        return rows

    headers = ["tensor", "op", "shape", "cosine", "max abs", "mean abs", "diverged"]
    outputs = _list(numeric.get("outputs"))
    if outputs:
        parts.append("<h3>Outputs</h3>" + _table(headers, rows_of(outputs), numeric=(3, 4, 5),
                                                 table_id="numeric-outputs"))
    inter = [t for t in _list(numeric.get("intermediates")) if isinstance(t, dict)]
    if inter:
        labels = [str(t.get("node")) for t in inter]
        first_at = next((k for k, t in enumerate(inter) if t.get("diverged")), None)
        chart = line_chart(labels, {"cosine": [_num(t.get("cosine")) for t in inter]},
                           "cosine similarity per matched layer (A order)", _fmt_float,
                           "chart-cosine", highlight=first_at,
                           highlight_label="first divergence")
        parts.append(f'<div class="charts">{chart}</div>' if chart else "")
        parts.append(f"<details><summary>Matched intermediate tensors ({len(inter)})</summary>"
                     + _table(headers, _capped(rows_of(inter), 7), numeric=(3, 4, 5),
                              table_id="numeric-intermediates") + "</details>")
    skipped = _list(numeric.get("skipped"))
    if skipped:
        parts.append(f"<details><summary>Not compared ({len(skipped)})</summary><ul>"
                     + "".join(f"<li>{_e(s)}</li>" for s in skipped[:200]) + "</ul></details>")
    parts.append("</section>")
    return "".join(parts)


# ----------------------------------------------------------------------------- report sections


def _pass_label(record: Mapping[str, Any], k: int) -> str:
    return str(record.get("step") or record.get("name") or f"pass {k + 1}")


def _charts_section(report: Mapping[str, Any], passes: list[dict[str, Any]]) -> str:
    charts = []
    notes = []
    # passes that left the model alone add nothing to a per-pass chart but width
    shown = [(k, p) for k, p in enumerate(passes) if p.get("modified") or p.get("metrics")]
    labels = ["input"] + [_pass_label(p, k) for k, p in shown]
    before = _dict(report.get("before"))
    if shown:
        sizes = [_num(before.get("weight_bytes"))] + [
            _num(_dict(p.get("after")).get("weight_bytes")) for _, p in shown]
        charts.append(bar_chart(labels, sizes, "weight bytes after each pass", _fmt_bytes,
                                "chart-size"))
        macs = [_num(before.get("macs"))] + [_num(_dict(p.get("after")).get("macs"))
                                             for _, p in shown]
        if any(v for v in macs):
            charts.append(bar_chart(labels, macs, "MACs after each pass", _fmt_count,
                                    "chart-macs"))
        metric_names: list[str] = []
        for _, p in shown:
            for name in _dict(p.get("metrics")):
                if name not in metric_names:
                    metric_names.append(name)
        metrics_before = _dict(report.get("metrics_before"))
        if metric_names:
            series = {name: [_num(metrics_before.get(name))] + [
                _num(_dict(p.get("metrics")).get(name)) for _, p in shown]
                for name in metric_names}
            charts.append(line_chart(labels, series, "accuracy / fidelity after each pass",
                                     _fmt_float, "chart-accuracy"))
        else:
            errors = [None] + [_num(_dict(p.get("verification")).get("max_abs_error"))
                               for _, p in shown]
            known = [v for v in errors if v is not None]
            if known and any(known):
                charts.append(line_chart(labels, {"max abs error": errors},
                                         "verification: max abs error per pass", _fmt_float,
                                         "chart-accuracy"))
            elif known:
                notes.append("Every verified pass reproduced the outputs exactly "
                             "(max abs error 0); no accuracy metrics were measured.")
        if len(shown) < len(passes):
            notes.append(f"Charts show the {len(shown)} passes that changed the model "
                         f"(of {len(passes)} run).")
    sweeps = [s for s in _list(report.get("sweeps")) if isinstance(s, dict)
              and _num(s.get("size_bytes")) is not None and _num(s.get("accuracy")) is not None]
    if sweeps:
        charts.append(scatter_chart(
            [(float(s["size_bytes"]), float(s["accuracy"]), str(s.get("label", "")))
             for s in sweeps],
            "accuracy vs. size of the settings tried", "model size (weight bytes)", "accuracy",
            _fmt_bytes, _fmt_float, "chart-sweeps"))
    charts = [c for c in charts if c]
    if not charts and not notes:
        return ""
    return ('<section id="charts"><h2>Per-pass size and accuracy</h2>'
            + "".join(f'<p class="muted">{_e(n)}</p>' for n in notes)
            + '<div class="charts">' + "".join(charts) + "</div></section>")


def _passes_section(passes: list[dict[str, Any]]) -> str:
    if not passes:
        return '<section id="passes"><h2>Passes</h2><p class="muted">No passes ran.</p></section>'
    rows = []
    for k, p in enumerate(passes):
        b, a = _dict(p.get("before")), _dict(p.get("after"))
        ver = _dict(p.get("verification"))
        stats = ", ".join(f"{_e(r)}: {_e(n)}" for r, n in _dict(p.get("stats")).items())
        metrics = ", ".join(f"{_e(n)}={_fmt_float(v)}" for n, v in _dict(p.get("metrics")).items())
        detail = ver.get("detail") or ""
        error = p.get("error")
        notes = [x for x in (stats, metrics) if x]
        if error:
            notes.append(f'<span class="pos">{_e(error)}</span>')
        if p.get("rolled_back"):
            notes.append('<span class="pos">rolled back</span>')
        status = ver.get("status") or "–"
        cls = "" if p.get("modified") else ' class="muted"'
        lossy = "" if p.get("lossless", True) else ' <span class="badge warn">lossy</span>'
        rows.append(
            f"<tr{cls}><td class=\"num\">{k + 1}</td><td class=\"mono\">{_e(_pass_label(p, k))}"
            f"{lossy}</td>"
            f"<td class=\"num\">{_fmt_seconds(p.get('seconds'))}</td>"
            f"{_delta_cell(b.get('nodes'), a.get('nodes'))}"
            f"{_delta_cell(b.get('params'), a.get('params'))}"
            f"{_delta_cell(b.get('weight_bytes'), a.get('weight_bytes'), _fmt_bytes)}"
            f"{_delta_cell(b.get('macs'), a.get('macs'))}"
            f'<td><span title="{_e(detail)}">{_badge(status)}</span></td>'
            f"<td class=\"num\">{_fmt_float(ver.get('max_abs_error'))}</td>"
            f"<td>{'; '.join(notes)}</td></tr>"
        )
    return ('<section id="passes"><h2>Passes</h2><p class="muted">Greyed rows: the pass '
            "changed nothing. Hover a verification badge for its detail.</p>" + _table(
                ["#", "step", "time", "Δ nodes", "Δ params", "Δ bytes", "Δ MACs",
                 "verification", "max abs err", "stats / metrics"],
                rows, numeric=(0, 2, 3, 4, 5, 6, 8), table_id="passes-table") + "</section>")


def _target_section(checks: list[Any], target: Any) -> str:
    checks = [c for c in checks if isinstance(c, dict)]
    if not checks:
        if target:
            return (f'<section id="target-checks"><h2>Target checks: {_e(target)}</h2>'
                    '<p class="muted">No target checks were run.</p></section>')
        return ""
    rows = [f"<tr><td>{_e(c.get('name'))}</td><td>{_badge(c.get('status'))}</td>"
            f"<td>{_e(c.get('detail'))}</td></tr>" for c in checks]
    title = f"Target checks: {_e(target)}" if target else "Target checks"
    return (f'<section id="target-checks"><h2>{title}</h2>'
            + _table(["check", "status", "detail"], rows, table_id="target-checks-table")
            + "</section>")


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "style-src 'unsafe-inline'; img-src data:\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<main id=\"irpass-report\">{body}</main></body></html>\n"
    )


def render_report_html(report: Mapping[str, Any]) -> str:
    """Render an ``optimize`` report dict (``RunReport.to_dict()``) as a self-contained page."""
    report = report if isinstance(report, Mapping) else {}
    passes = [p for p in _list(report.get("passes")) if isinstance(p, dict)]
    before, after = _dict(report.get("before")), _dict(report.get("after"))
    name = os.path.basename(str(report.get("input") or "model"))
    parts = [f"<h1>irpass optimization report: {_e(name)}</h1>",
             f'<p class="muted">irpass {_e(report.get("irpass_version", "?"))}'
             f" · input <code>{_e(report.get('input'))}</code>"
             + (f" · output <code>{_e(report.get('output'))}</code>" if report.get("output")
                else "")
             + (f" · target <strong>{_e(report.get('target'))}</strong>"
                if report.get("target") else "")
             + f" · {_fmt_seconds(report.get('seconds'))}</p>"]
    pipeline = report.get("expanded_pipeline") or report.get("pipeline")
    if pipeline:
        parts.append(f'<h3>Pipeline</h3><div class="pipeline mono" id="pipeline">{_e(pipeline)}'
                     "</div>")
    cards = []
    for key, label, fmt in (("nodes", "nodes", _fmt_count), ("params", "parameters", _fmt_count),
                            ("weight_bytes", "weights", _fmt_bytes), ("macs", "MACs", _fmt_count)):
        if key in before or key in after:
            b, a = _num(before.get(key)), _num(after.get(key))
            ratio = f"×{a / b:.3f}" if a is not None and b else ""
            cards.append(f'<div class="card"><div class="k">{_e(label)}</div><div class="v">'
                         f"{_e(fmt(b))} → {_e(fmt(a))}</div><div class=\"d muted\">{ratio}</div>"
                         "</div>")
    metrics_b, metrics_a = _dict(report.get("metrics_before")), _dict(report.get("metrics_after"))
    for key in metrics_a:
        cards.append(f'<div class="card"><div class="k">{_e(key)}</div><div class="v">'
                     f"{_fmt_float(metrics_b.get(key))} → {_fmt_float(metrics_a.get(key))}</div>"
                     "</div>")
    if cards:
        parts.append('<section id="summary"><h2>Summary</h2><div class="cards">'
                     + "".join(cards) + "</div>")
        rows = _cost_rows(before, after)
        if rows:
            parts.append(_table(["", "before", "after", "Δ"], rows, numeric=(1, 2, 3),
                                table_id="totals"))
        parts.append("</section>")
    warnings = _list(report.get("warnings"))
    if warnings:
        parts.append('<section id="warnings"><h2>Warnings</h2><ul>'
                     + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul></section>")
    parts.append(_charts_section(report, passes))
    parts.append(_passes_section(passes))
    parts.append(_target_section(_list(report.get("target_checks")), report.get("target")))
    diff = report.get("diff")
    if isinstance(diff, dict):
        parts.append(_diff_section(diff, "Diff of the whole run (input → output)"))
    numeric = report.get("numeric_diff")
    if isinstance(numeric, dict):
        parts.append(_numeric_section(numeric))
    return _page(f"irpass report: {name}", "".join(parts))


def render_diff_html(diff: Mapping[str, Any], numeric: Mapping[str, Any] | None = None) -> str:
    """Render a graph diff dict (and optionally a numeric diff dict) as a self-contained page."""
    title = f"irpass diff: {os.path.basename(str(diff.get('a', 'A')))} → " \
            f"{os.path.basename(str(diff.get('b', 'B')))}"
    body = f"<h1>{_e(title)}</h1>" + _diff_section(diff)
    if numeric:
        body += _numeric_section(numeric)
    return _page(title, body)


def _write(text: str, path: str | os.PathLike[str]) -> None:
    path = os.fspath(path)
    with atomic_output_path(path) as tmp:
        (tmp / os.path.basename(path)).write_text(text, encoding="utf-8")


def write_report_html(report: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write :func:`render_report_html` of ``report`` to ``path`` atomically."""
    _write(render_report_html(report), path)


def write_diff_html(diff: Mapping[str, Any], path: str | os.PathLike[str],
                    numeric: Mapping[str, Any] | None = None) -> None:
    """Write :func:`render_diff_html` to ``path`` atomically."""
    _write(render_diff_html(diff, numeric), path)
